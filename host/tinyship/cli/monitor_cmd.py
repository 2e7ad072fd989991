"""`tinyship monitor`: production performance from a prediction log, and the Prometheus
textfile (`tinyship.monitor.production`, `tinyship.monitor.prom`).

Exit codes: 0 the report was made (a worse model is for the alert rules to judge, not the
exit code), 4 the log or the truth file is unreadable (`DataError`), 6 the model version
cannot be read (`RegistryError`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tinyship.cli._common import (
    echo_json,
    json_option,
    log_option,
    model_option,
    project_context,
    registry_options,
)

if TYPE_CHECKING:
    from tinyship.monitor.production import ProductionReport

_FILE = click.Path(path_type=Path, dir_okay=False)


def _window(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from tinyship.monitor.production import parse_window

    if value is None or value.lower() == "none":
        return None
    try:
        parse_window(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _prom_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix != ".prom":
        raise click.BadParameter("node_exporter's textfile collector reads only *.prom files")
    return value


def _json_file(path: Path | None, what: str) -> dict[str, Any] | None:
    from tinyship.errors import DataError

    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{what} {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path}: expected a JSON object")
    return data


@click.command()
@click.option("--predictions", "predictions", type=_FILE, required=True, metavar="LOG.csv",
              help="Prediction log: id,timestamp[,device_id,model_version],prediction"
              "[,p_<class>...][,<features>...][,target].")
@click.option("--truth", type=_FILE, default=None, metavar="CSV",
              help="Late ground truth `id,<target>`, joined on id (overrides the log's target).")
@model_option
@click.option("--window", default="7d", show_default=True, callback=_window,
              help="Trailing window and window size (30m, 12h, 1d, 7d, 2w; `none` for none).")
@click.option("--confidence", "confidence", type=click.FloatRange(0.0, 1.0, min_open=True),
              default=0.6, show_default=True,
              help="Classification: a top-class probability below this is low-confidence.")
@click.option("--prom-file", type=_FILE, default=None, callback=_prom_path, metavar="PATH",
              help="Write the metrics here (Prometheus text format, atomically) for "
              "node_exporter's textfile collector.")
@click.option("--drift-report", type=_FILE, default=None, metavar="JSON",
              help="With --prom-file: export per-feature PSI/KS from `tinyship drift --json`.")
@click.option("--hil-report", type=_FILE, default=None, metavar="JSON",
              help="With --prom-file: export device latency from `tinyship hil --json`.")
@log_option
@registry_options
@json_option
def monitor(predictions: Path, truth: Path | None, model: str | None, window: str | None,
            confidence: float, prom_file: Path | None, drift_report: Path | None,
            hil_report: Path | None, log_path: Path | None, config_path: Path | None,
            registry_dir: Path | None, as_json: bool) -> None:
    """Score logged device predictions against late ground truth: MAE/RMSE (accuracy,
    macro-F1) overall, per slice (long tail, low confidence, device, model version) and per
    time window, with low-confidence flags; optionally write the Prometheus textfile."""
    from tinyship.monitor.production import load_predictions, load_reference, production_report

    if prom_file is None and (drift_report or hil_report):
        raise click.UsageError("--drift-report and --hil-report only feed --prom-file")
    reg, _ = project_context(config_path, registry_dir)
    reference = None
    if model is not None or reg.versions():  # no registry yet: score the log alone
        reference = load_reference(reg, model)
    log = load_predictions(predictions, truth,
                           target_name=reference.target if reference else None)
    report = production_report(log, reference, window=window,
                               confidence_threshold=confidence)
    if prom_file is not None:
        from tinyship.deploy.flash import DeployContext
        from tinyship.deploy.log import DeploymentLog
        from tinyship.monitor.prom import build_registry, write_textfile

        deploy_log = DeployContext.from_project(config_path, registry_dir,
                                                log_path=log_path).log_path
        write_textfile(prom_file, build_registry(
            report, models=reg, drift=_json_file(drift_report, "drift report"),
            hil=_json_file(hil_report, "HIL report"),
            deployments=DeploymentLog(deploy_log).list_attempts()))
    if as_json:
        echo_json({**report.to_dict(), "prom_file": str(prom_file) if prom_file else None})
        return
    _summary(report, prom_file)


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.4g}"


def _summary(report: ProductionReport, prom_file: Path | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tinyship.monitor.production import HEADLINE

    out = Console()
    keys = HEADLINE[report.task]
    main = keys[0]
    low = ["low conf."] if report.low_confidence.available else []
    recent = {s.name: s for s in report.recent}
    t = Table(title=f"production {report.task}, model {report.version or 'unknown'}: "
              f"{report.rows} predictions, {report.labelled} with truth", show_edge=False)
    t.add_column("slice", overflow="fold")
    for col in ("rows", "truth", main, *([f"{main} {report.window}"] if report.window else []),
                f"{main} test", *keys[1:], *low):
        t.add_column(col, justify="right")
    group = ""
    for s in report.slices:
        kind, _, name = s.name.rpartition(":")  # device:<id> and model_version:<v> grouped
        if kind != group:
            t.add_row(f"[bold]{kind.replace('_', ' ')}[/]")
            group = kind
        r = recent.get(s.name)
        cells = [escape(f"  {name}" if kind else name), str(s.rows), str(s.labelled),
                 _fmt(s.metrics.get(main))]
        if report.window:
            cells.append(_fmt(r.metrics.get(main) if r else None))
        cells.append(_fmt(report.registered.get(s.name, {}).get(main)))
        cells += [_fmt(s.metrics.get(k)) for k in keys[1:]]
        cells += [_fmt(s.low_confidence_ratio, pct=True)] if low else []
        t.add_row(*cells)
    out.print(t)
    if report.windows:
        w = Table(title=f"per {report.window} window", show_edge=False)
        for col in ("start", "rows", "truth", *keys, *low):
            w.add_column(col, justify="left" if col == "start" else "right")
        for win in report.windows:
            o = win.overall
            w.add_row(win.start[:16].replace("T", " "), str(o.rows), str(o.labelled),
                      *(_fmt(o.metrics.get(k)) for k in keys),
                      *([_fmt(o.low_confidence_ratio, pct=True)] if low else []))
        out.print(w)
    if report.long_tail:
        out.print(f"long tail: {escape(report.long_tail)}", highlight=False)
    lc = report.low_confidence
    state = f"{lc.flagged} flagged" if lc.available else "unavailable"
    out.print(f"low confidence ({escape(lc.rule)}): {state}; {escape(lc.detail)}",
              highlight=False)
    if report.truth_unmatched:
        out.print(f"[yellow]{report.truth_unmatched} truth row(s) match no prediction id[/]")
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    if prom_file is not None:
        out.print(f"metrics written to {escape(str(prom_file))}", highlight=False)
