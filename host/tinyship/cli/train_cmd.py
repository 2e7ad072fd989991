"""`tinyship train`: the model half end to end (data checks -> ... -> registry version)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.cli._common import config_option, echo_json, error_json, json_option
from tinyship.errors import GateError
from tinyship.profiles import PROFILES


@click.command()
@config_option
@click.option("--data", "data_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Train on this CSV instead of the config's dataset.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=None,
              help="Target-runtime profile for this run, overriding quantization.profile "
                   "(the firmware env's TFLM library decides which one it can run).")
@click.option("--force", is_flag=True,
              help="Train and register even when this config, data and code are already "
                   "registered as a version.")
@json_option
def train(config_path: Path | None, data_path: Path | None, profile: str | None,
          force: bool, as_json: bool) -> None:
    """Check data, train, quantize to int8, export the C array, gate, and register.

    Nothing is registered unless every data check and quality gate passes.
    """
    from rich.console import Console

    from tinyship.config import load_config, with_overrides
    from tinyship.pipeline import run_pipeline

    cfg = load_config(config_path)
    if profile is not None:
        cfg = with_overrides(cfg, "--profile", quantization={"profile": profile})
    err = Console(stderr=True)
    try:
        if as_json:
            result = run_pipeline(cfg, data_path=data_path, force=force)
        else:
            with err.status("starting") as status:
                result = run_pipeline(
                    cfg, data_path=data_path, progress=lambda msg: status.update(msg),
                    force=force,
                )
    except GateError as e:
        if as_json:  # one document: the run's result with the error in it
            echo_json({**error_json(e), **e.result})
        else:
            _print_summary(err, e.result)
        raise
    out = result.to_dict()
    if as_json:
        echo_json(out)
    elif result.duplicate_of:
        Console().print(
            f"[bold yellow]already registered[/]: {result.duplicate_of} was trained from the "
            f"same config, data and code; nothing trained (--force trains anyway)")
    else:
        _print_summary(Console(), out)


def _print_summary(console: object, r: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    assert isinstance(console, Console)
    metrics = r.get("metrics", {})
    assert isinstance(metrics, dict)
    i8, f32 = metrics.get("int8", {}), metrics.get("float", {})
    table = Table(title="quality gates", show_edge=False)
    for col in ("gate", "value", "threshold", "ok"):
        table.add_column(col)
    for g in r.get("gates", []):  # type: ignore[attr-defined]
        table.add_row(g["name"], _fmt(g["value"]), f"{g['op']} {_fmt(g['threshold'])}",
                      "[green]pass[/]" if g["passed"] else "[red]FAIL[/]")
    console.print(table)
    base = metrics.get("baseline", {})
    keys = [k for k in ("mae", "rmse", "r2", "accuracy", "macro_f1") if k in i8]
    console.print("metrics (float -> int8): " + ", ".join(
        f"{k} {_fmt(f32.get(k))} -> {_fmt(i8.get(k))}" for k in keys))
    if base:
        console.print(f"trivial baseline ({base.get('strategy')}): " + ", ".join(
            f"{k} {_fmt(base.get(k))}" for k in keys if k in base))
    if "output_step" in metrics:
        console.print(f"int8 output step: {_fmt(metrics['output_step'])} target units")
    parity = metrics.get("parity", {})
    if parity.get("output_rows"):
        grew = parity["output_max_lsb"] > parity["max_lsb"]
        console.print(
            f"TFLite vs TFLM: {parity['max_lsb']} LSB per operator; end to end up to"
            f" {parity['output_max_lsb']} LSB on test rows {parity['output_rows'][:8]}"
            + (" (rounding ties grown through later layers)" if grew else "")
            + "; the device and the HIL reference both run TFLM")
    tail = i8.get("long_tail")
    if tail:
        console.print(f"long tail ({tail['slice']}, {tail['rows']} rows): mae {_fmt(tail['mae'])}")
    console.print(f"model {r.get('model_bytes')} bytes, arena {r.get('arena_bytes')} bytes")
    if r.get("version"):
        console.print(f"[bold green]registered {r['version']}[/] in {r.get('registry')}")
    else:
        console.print("[bold red]not registered[/]: a quality gate failed")


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
