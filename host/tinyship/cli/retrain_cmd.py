"""`tinyship retrain`: one run of the periodic retrain-and-reflash job (thin: the work is
`tinyship.retrain`). Exit codes: 0 promoted and deployed, 14 nothing due, 15 not better,
16 deployed with failures, 17 refused, 18 awaiting approval (README "Retrain")."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.cli._common import config_option, echo_json, json_option


@click.command("retrain")
@click.option("--new-data", "new_data", required=True,
              type=click.Path(path_type=Path, exists=True),
              help="New labelled rows: a CSV, or a folder of CSVs.")
@click.option("--fleet", "fleet", type=click.Path(path_type=Path, dir_okay=False,
                                                  exists=True), default=None,
              help="Fleet file to reflash after a promotion [default: retrain.fleet].")
@click.option("--force", is_flag=True, help="Retrain even when no trigger fires.")
@click.option("--warm-start/--no-warm-start", "warm_start", default=None,
              help="Continue production's weights on old + new data [default: "
              "retrain.warm_start].")
@click.option("--hil-device", default=None, metavar="URL",
              help="HIL rig for the challenger: a device URL or 'virtual' [default: "
              "retrain.hil_device].")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Where reports go [default: retrain.reports].")
@config_option
@json_option
def retrain(new_data: Path, fleet: Path | None, force: bool, warm_start: bool | None,
            hil_device: str | None, report_dir: Path | None, config_path: Path | None,
            as_json: bool) -> None:
    """Ingest new data, decide whether retraining is due, train a challenger, compare it
    with production, and when it wins: validate it on the HIL rig, promote it and reflash
    the fleet. Writes a Markdown + JSON report; every decision goes to the audit log."""
    from tinyship.config import load_config
    from tinyship.retrain.job import RetrainOptions, RetrainStopped, run_retrain

    cfg = load_config(config_path)
    opts = RetrainOptions(new_data, fleet=fleet, force=force, warm_start=warm_start,
                          hil_device=hil_device, report_dir=report_dir)
    say = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    result = run_retrain(cfg, opts, progress=say)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"{result.outcome}: " + "; ".join(result.reasons))
        click.echo(f"report: {result.report_dir}/report.md")
    if result.exit_code:
        raise RetrainStopped(result)
