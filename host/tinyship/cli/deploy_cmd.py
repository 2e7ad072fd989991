"""`tinyship deployments`: the deployment log, newest first."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.cli._common import (
    RESULT_COLORS,
    echo_json,
    json_option,
    log_option,
    project_context,
    registry_options,
)


@click.command("deployments")
@click.option("--device", "device_id", default=None, metavar="ID",
              help="Only attempts on this device id.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the N newest attempts.")
@log_option
@registry_options
@json_option
def deployments(device_id: str | None, limit: int | None, log_path: Path | None,
                config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """List flash and rollback attempts from the deployment log, newest first: when, which
    board, from and to which version, by which path, the result, the failing step,
    the rollback, who ran it and where. An attempt cut short by a crash reads
    `in_progress` until the next command on that board reconciles it."""
    from tinyship.config import project_config
    from tinyship.deploy.log import DeploymentLog, default_log_path

    if log_path is None:
        cfg = project_config(config_path)
        log_path = cfg.deploy_log_path if cfg is not None else None
    if log_path is None:
        reg, _ = project_context(config_path, registry_dir)
        log_path = default_log_path(reg.root)
    log = DeploymentLog(log_path)
    attempts = log.list_attempts(device_id=device_id, limit=limit)
    if as_json:
        echo_json({"log": str(log_path), "device": device_id,
                   "attempts": [a.to_json() for a in attempts]})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not attempts:
        which = f" for device {device_id}" if device_id else ""
        console.print(f"no deployments{which} in {escape(str(log_path))}")
        return
    t = Table(title=f"deployments {escape(str(log_path))}", show_edge=False)
    for col in ("#", "started", "command", "device", "port", "from", "to", "path", "result",
                "failed step", "rollback", "steps", "operator"):
        t.add_column(col, no_wrap=col in ("#", "started", "result"))
    for a in attempts:
        color = RESULT_COLORS.get(a.result, "red")
        failed = a.failed_step or ""
        if a.message and a.result != "ok":
            failed = f"{failed}: {a.message}" if failed else a.message
        rollback = (a.rollback_result or "yes") if a.rollback_performed else ""
        steps = ", ".join(
            f"{s.name} {s.duration_s:.1f}s" if s.duration_s is not None else f"{s.name} …"
            for s in a.steps)
        t.add_row(
            str(a.id), a.started_at[:19].replace("T", " "), a.command,
            escape(a.device_id or "?"), escape(a.port or ""),
            escape(f"{a.from_firmware or '?'}/{a.from_model or '?'}"),
            escape(f"{a.to_firmware or '?'}/{a.to_model or '?'}"), a.path or "",
            f"[{color}]{a.result}[/]", escape(failed), escape(rollback), escape(steps),
            escape(f"{a.operator}@{a.host}"),
        )
    console.print(t)
