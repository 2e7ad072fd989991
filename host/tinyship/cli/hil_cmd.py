"""`tinyship hil`: validate a registry version on a board (or the virtual board).

Exit codes: 0 every check passed, 9 a check failed (`ValidationFailed`), 8 the device or
link failed (`DeviceError`). `--json` prints the report on stdout and nothing else there;
the progress bar and human summary go to stderr / stdout respectively.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tinyship.cli._common import json_option, model_option, project_context, registry_options

VIRTUAL = "virtual"


@contextlib.contextmanager
def _device_url(device: str, registry: Path, model: str | None, board: Any, baud: int,
                faults_spec: str | None) -> Iterator[str]:
    """The URL to validate; `virtual` starts a VirtualBoard in-process for the version."""
    if device != VIRTUAL:
        if faults_spec:
            raise click.BadParameter("only with --device virtual", param_hint="--faults")
        yield device
        return
    from tinyship.device.virtual import VirtualBoard, parse_faults

    try:
        faults = parse_faults(faults_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--faults") from None
    with VirtualBoard(registry, model, board=board, baud=baud, faults=faults) as vb:
        yield vb.url


@click.command()
@click.option("--device", "device", default=VIRTUAL, show_default=True, metavar="URL",
              help="Serial port or pyserial URL (/dev/ttyACM0, COM5, socket://host:port, "
              "rfc2217://...); `virtual` runs the virtual board in-process.")
@model_option
@registry_options
@click.option("--baud", type=click.IntRange(min=0), default=115200, show_default=True,
              help="Line rate: sets the port (with `virtual`, the emulated UART; 0 = "
              "unpaced). Link utilisation is reported when the device says its link is a "
              "UART; for firmware that does not say, passing --baud means a physical UART "
              "at that rate.")
@click.option("--tolerance-lsb", type=click.IntRange(0, 255), default=0, show_default=True,
              help="Allowed |device - reference| per int8 output (0 = bit exact).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Validate only the first N test vectors.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.05), default=1.0,
              show_default=True, help="Base reply timeout in seconds (scaled by wire time).")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False),
              help="Write JUnit XML (one testcase per check).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write one CSV row per test vector.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a PNG (device vs reference, latency histogram); needs matplotlib.")
@click.option("--faults", "faults_spec", default=None, metavar="SPEC",
              help="With --device virtual: fault injection, as `tinyship emulator --faults`.")
@json_option
@click.pass_context
def hil(ctx: click.Context, device: str, model: str | None, config_path: Path | None,
        registry_dir: Path | None,
        baud: int, tolerance_lsb: int, limit: int | None, timeout_s: float, junit: Path | None,
        csv_path: Path | None, plot: Path | None, faults_spec: str | None, as_json: bool) -> None:
    """Validate a model version on a device: identity, parity, metric, latency, link."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tinyship.errors import ValidationFailed
    from tinyship.hil import validate

    reg, board = project_context(config_path, registry_dir)
    registry = reg.root
    version = reg.resolve(model)
    err = Console(stderr=True)
    with _device_url(device, registry, version, board, baud, faults_spec) as url, Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=True,
    ) as progress:
        task = progress.add_task(f"validating {version} on {url}", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        explicit_baud = ctx.get_parameter_source("baud") is not click.core.ParameterSource.DEFAULT
        report = validate(url, registry, version, board_cfg=board, tolerance_lsb=tolerance_lsb,
                          baud=baud, baud_is_physical=explicit_baud, limit=limit,
                          timeout_s=timeout_s, on_progress=on_progress)
    if junit is not None:
        report.write_junit(junit)
    if csv_path is not None:
        report.write_csv(csv_path)
    if plot is not None:
        report.write_plot(plot)
    if as_json:
        click.echo(report.to_json())
    else:
        _summary(report, url)
    if not report.passed:
        names = ", ".join(c.name for c in report.failed_checks)
        raise ValidationFailed(f"HIL validation of {version} on {url} failed: {names}")


def _summary(report: Any, url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    t = Table(title=f"HIL {report.expected['version']} on {url}", show_edge=False)
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for c in report.checks:
        t.add_row(c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.detail)
    out.print(t)
    from tinyship.hil.linkrate import describe

    lat, rtt = report.latency_us, report.round_trip_ms
    out.print(f"{report.vectors} vectors, {report.mismatches} mismatches, max diff "
              f"{report.max_lsb_diff} LSB; latency p50/p99/max {lat.get('p50')}/{lat.get('p99')}/"
              f"{lat.get('max')} µs; round trip p50 {rtt.get('p50') or 0:.1f} ms; "
              f"{report.retries} retries, {report.errors} errors")
    out.print(f"link: {describe(report.link)}", highlight=False)
    out.print("[green]PASSED[/]" if report.passed else "[red]FAILED[/]")
