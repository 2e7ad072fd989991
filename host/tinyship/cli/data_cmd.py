"""`tinyship data`: generate the example dataset, and check a dataset before training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tinyship.cli._common import config_option, echo_json, error_json, json_option
from tinyship.errors import DataError

if TYPE_CHECKING:
    from tinyship.data.checks import CheckReport


@click.group()
def data() -> None:
    """Generate and check datasets."""


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
