"""`tinyship data`: generate the example dataset, check a dataset before training, and
ingest new batches into the versioned dataset store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tinyship.cli._common import (
    F,
    config_option,
    echo_json,
    error_json,
    json_option,
    project_context,
    registry_options,
)
from tinyship.errors import DataError

if TYPE_CHECKING:
    from tinyship.data.checks import CheckReport
    from tinyship.data.store import Snapshot


@click.group()
def data() -> None:
    """Generate, check and ingest datasets."""


def store_option(f: F) -> F:
    """`--store DIR`: the dataset store (default: datasets/ in the registry)."""
    return click.option(
        "--store", "store_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
        help="Dataset store [default: datasets/ in the registry].")(f)


@data.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("data/battery_soh.csv"),
    show_default=True,
    help="CSV to write (replaced atomically).",
)
@click.option("--cells", type=int, default=60, show_default=True, help="Cells in the fleet.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--sample-every", type=int, default=5, show_default=True, help="Log one row every N cycles."
)
@click.option(
    "--temperature-shift",
    type=float,
    default=0.0,
    show_default=True,
    help="Shift of the ambient temperature, degC (drift knob).",
)
@click.option(
    "--chemistry",
    type=click.Choice(["nmc", "lfp"]),
    default="nmc",
    show_default=True,
    help="Cell chemistry (drift knob).",
)
@click.option(
    "--long-tail-fraction",
    type=float,
    default=0.15,
    show_default=True,
    help="Share of cells run past 80 % SoH down to 60 % (drift knob).",
)
@json_option
def generate(
    out: Path,
    cells: int,
    seed: int,
    sample_every: int,
    temperature_shift: float,
    chemistry: str,
    long_tail_fraction: float,
    as_json: bool,
) -> None:
    """Write the synthetic battery state-of-health dataset (deterministic per seed)."""
    from tinyship.data.generate import generate_battery_dataset, to_csv_bytes
    from tinyship.data.load import fingerprint, write_bytes_atomic

    try:
        df = generate_battery_dataset(
            cells=cells,
            seed=seed,
            sample_every=sample_every,
            temperature_shift_c=temperature_shift,
            chemistry=chemistry,
            long_tail_fraction=long_tail_fraction,
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    write_bytes_atomic(out, to_csv_bytes(df))
    fp = fingerprint(out)
    if as_json:
        echo_json({"path": str(out), "rows": fp["rows"], "sha256": fp["sha256"]})
    else:
        click.echo(f"wrote {out}: {fp['rows']} rows, sha256 {fp['sha256']}")


@data.command()
@config_option
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Dataset to check instead of the config's data.path.",
)
@json_option
def check(config_path: Path | None, data_path: Path | None, as_json: bool) -> None:
    """Run the data checks from the config; exit code 4 when any fails."""
    from tinyship.config import load_config
    from tinyship.data.checks import run_checks
    from tinyship.data.load import load_dataset

    cfg = load_config(config_path)
    path = data_path if data_path is not None else cfg.dataset_path
    report = run_checks(load_dataset(path, cfg.data), cfg.data)
    doc = {"path": str(path), **report.to_dict()}
    if not as_json:
        _print_report(path, report)
    try:
        report.raise_for_failures()
    except DataError as e:
        if as_json:  # one document: the report with the error in it
            echo_json({**error_json(e), **doc})
        raise
    if as_json:
        echo_json(doc)


def _print_report(path: Path, report: CheckReport) -> None:
    """Rich table of every check, failures in red: the human view of `report.to_dict()`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"data checks: {path} ({report.rows} rows)")
    for name in ("column", "rule", "result", "detail"):
        table.add_column(name, overflow="fold")
    for r in report.results:
        detail = r.message.removesuffix(f" (rule: {r.rule})").split(": ", 1)[-1]
        result = "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        table.add_row(r.column or "(all rows)", r.rule, result, detail)
    console = Console()
    console.print(table)
    failed = len(report.failures)
    console.print(
        f"{len(report.results) - failed} passed, {failed} failed",
        style="green" if failed == 0 else "bold red",
    )


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@config_option
@store_option
@json_option
def ingest(path: Path, config_path: Path | None, store_dir: Path | None,
           as_json: bool) -> None:
    """Add a batch of new labelled rows (PATH: a CSV, or a folder of CSVs taken in name
    order) to the dataset store as a new immutable snapshot: the previous snapshot's rows
    plus the batch's, exact duplicates dropped. The batch must pass the config's data
    checks and have the snapshot's columns; otherwise it is quarantined with its reason
    and nothing is merged (exit 4). An empty store is seeded with the configured dataset
    first. Both outcomes are recorded in the audit log."""
    from tinyship.audit import AuditLog, default_audit_path
    from tinyship.config import load_config
    from tinyship.data.store import DatasetStore, QuarantinedBatch, default_store_path

    cfg = load_config(config_path)
    store = DatasetStore(store_dir or default_store_path(cfg.registry_path))
    before = store.latest()
    try:
        snap = store.ingest(path, cfg, audit=AuditLog(default_audit_path(cfg.registry_path)))
    except QuarantinedBatch as e:
        if as_json:
            echo_json({**error_json(e), "quarantine": str(e.folder), "reason": e.reason})
        raise
    status = "unchanged" if before is not None and snap.id == before.id else "accepted"
    if as_json:
        echo_json({"ok": True, "status": status, "store": str(store.root),
                   "snapshot": snap.to_dict()})
    elif status == "unchanged":
        click.echo(f"nothing new: every row of {path} is already in {snap.id}")
    else:
        if before is None and snap.parent is not None:
            click.echo(f"{snap.parent}: seeded from {cfg.dataset_path}")
        click.echo(f"{snap.id}: {snap.rows_new} new row(s) ({snap.duplicates_dropped} "
                   f"duplicate(s) dropped), {snap.rows_total} in all; parent "
                   f"{snap.parent or 'none'}; sha256 {snap.sha256}")


@data.command()
@registry_options
@store_option
@json_option
def snapshots(config_path: Path | None, registry_dir: Path | None, store_dir: Path | None,
              as_json: bool) -> None:
    """List the dataset store's snapshots, oldest first: id, parent, rows (new and in
    all), sources and fingerprint."""
    from tinyship.data.store import DatasetStore, default_store_path

    if store_dir is None:
        reg, _ = project_context(config_path, registry_dir)
        store_dir = default_store_path(reg.root)
    snaps = DatasetStore(store_dir).list()
    if as_json:
        echo_json({"store": str(store_dir), "snapshots": [s.to_dict() for s in snaps]})
        return
    _print_snapshots(store_dir, snaps)


def _print_snapshots(store_dir: Path, snaps: list[Snapshot]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not snaps:
        console.print(f"no snapshots in {escape(str(store_dir))}: `tinyship data ingest PATH`")
        return
    t = Table(title=f"dataset snapshots {escape(str(store_dir))}", show_edge=False)
    for col in ("id", "created", "parent", "rows", "new", "sources", "sha256"):
        t.add_column(col, no_wrap=col in ("id", "created", "sha256"))
    for s in snaps:
        t.add_row(s.id, s.created[:19].replace("T", " "), s.parent or "", str(s.rows_total),
                  str(s.rows_new), escape(", ".join(f.name for f in s.sources)),
                  s.sha256[:12])
    console.print(t)
