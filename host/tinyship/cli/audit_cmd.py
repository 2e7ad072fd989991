"""`tinyship audit`: the audit trail (retrain decisions, promotions, holds, overrides)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.audit import KINDS, AuditLog, default_audit_path
from tinyship.cli._common import echo_json, json_option, project_context, registry_options


@click.command("audit")
@click.option("--run", "run_id", default=None, metavar="ID", help="Only this retrain run.")
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="Only events of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the N newest events.")
@registry_options
@json_option
def audit(run_id: str | None, kind: str | None, limit: int | None, config_path: Path | None,
          registry_dir: Path | None, as_json: bool) -> None:
    """List the audit log (audit.sqlite in the registry), newest first: every retrain run,
    trigger, comparison, promotion, hold, release, refusal, quarantine and reflash, with
    its author, host, data snapshot, versions, decision and reason."""
    reg, _ = project_context(config_path, registry_dir)
    log = AuditLog(default_audit_path(reg.root))
    events = log.list(run_id=run_id, kind=kind, limit=limit)
    if as_json:
        echo_json({"log": str(log.path), "run": run_id, "kind": kind,
                   "events": [e.to_json() for e in events]})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not events:
        console.print(f"no audit events in {escape(str(log.path))}")
        return
    t = Table(title=f"audit {escape(str(log.path))}", show_edge=False)
    for col in ("#", "time", "kind", "run", "author", "snapshot", "versions", "decision",
                "reason"):
        t.add_column(col, no_wrap=col in ("#", "time", "kind"))
    for e in events:
        versions = " -> ".join(v for v in (e.champion, e.challenger) if v)
        t.add_row(str(e.id), e.at[:19].replace("T", " "), e.kind, escape(e.run_id or ""),
                  escape(f"{e.author}@{e.host}"), escape(e.snapshot or ""), escape(versions),
                  escape(e.decision or ""), escape(e.reason or ""))
    console.print(t)
