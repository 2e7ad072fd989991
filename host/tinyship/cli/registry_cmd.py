"""`tinyship registry`: list, show, verify and promote model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinyship.cli._common import (
    echo_json,
    error_json,
    json_option,
    project_context,
    registry_options,
)
from tinyship.registry import MANIFEST


@click.group()
def registry() -> None:
    """Inspect and manage the model registry."""


def _mapping(value: Any) -> dict[str, Any]:
    """A manifest section as a dict, or empty: a hand-edited manifest must not crash `list`."""
    return value if isinstance(value, dict) else {}


@registry.command("list")
@registry_options
@json_option
def list_cmd(config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """List versions, newest last, with their main metric and aliases; a version with an
    unreadable manifest is listed as broken (and named on stderr)."""
    from tinyship.errors import RegistryError

    reg, _ = project_context(config_path, registry_dir)
    aliases = reg.aliases()
    by_version: dict[str, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(v, []).append(a)
    rows: list[dict[str, Any]] = []
    broken: list[str] = []
    for v in reg.versions():
        try:
            m = reg.manifest(v)
            reason = None
        except RegistryError as e:
            m = {}
            reason = str(e).removeprefix(f"{reg.root / v / MANIFEST}: ")
            broken.append(f"{v} ({reason})")
        i8 = _mapping(_mapping(m.get("metrics")).get("int8"))
        model = _mapping(m.get("model"))
        rows.append({
            "version": v,
            "created": m.get("created"),
            "parent": m.get("parent"),
            "task": m.get("task"),
            "profile": m.get("profile"),
            "model_bytes": model.get("bytes"),
            "arena_bytes": model.get("arena_bytes"),
            "metrics": {k: i8[k] for k in ("mae", "r2", "accuracy", "macro_f1")
                        if isinstance(i8.get(k), int | float)},
            "aliases": sorted(by_version.get(v, [])),
            "broken": reason,
        })
    if broken:
        click.echo(f"warning: {len(broken)} broken version(s) in registry {reg.root}: "
                   + "; ".join(broken), err=True)
    if as_json:
        echo_json({"registry": str(reg.root), "versions": rows, "aliases": aliases})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        Console().print(f"registry {reg.root} is empty: run `tinyship train`")
        return
    t = Table(title=f"registry {reg.root}", show_edge=False)
    for col in ("version", "created", "profile", "bytes", "arena", "metrics", "aliases"):
        t.add_column(col, no_wrap=col in ("version", "created", "profile"))
    for r in rows:
        if r["broken"]:
            t.add_row(f"[red]{r['version']}[/]", "", "", "", "",
                      f"[red]BROKEN: {escape(r['broken'])}[/]", ", ".join(r["aliases"]))
            continue
        created = str(r["created"] or "")[:16].replace("T", " ")
        t.add_row(r["version"], created, str(r["profile"]), str(r["model_bytes"]),
                  str(r["arena_bytes"]),
                  ", ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items()),
                  ", ".join(r["aliases"]))
    Console().print(t)


@registry.command("show")
@click.argument("version", required=False)
@registry_options
@json_option
def show_cmd(version: str | None, config_path: Path | None, registry_dir: Path | None,
             as_json: bool) -> None:
    """Show one version's manifest (VERSION: vNNNN, an alias, or `latest`; default:
    production, else latest)."""
    reg, _ = project_context(config_path, registry_dir)
    v = reg.resolve(version)
    m = reg.manifest(v)
    if as_json:
        echo_json(m)
        return
    from rich.console import Console
    from rich.markdown import Markdown

    card = reg.path(v) / "MODEL_CARD.md"
    try:
        text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else None
    except OSError:
        text = None  # the manifest says the same, less prettily
    Console().print(Markdown(text) if text is not None else m)


@registry.command("verify")
@click.argument("version", required=False)
@registry_options
@json_option
def verify_cmd(version: str | None, config_path: Path | None, registry_dir: Path | None,
               as_json: bool) -> None:
    """Check artifacts against the SHA-256 in their manifest: every version (one line each),
    or only VERSION. Exit 6 if any is damaged."""
    from tinyship.errors import RegistryError

    reg, _ = project_context(config_path, registry_dir)
    if version is None:
        results = reg.verify_all()
        if not results:
            reg.resolve("latest")  # raises: the registry has no versions
    else:
        v = reg.resolve(version)
        results = {v: reg.verify(v)}
    rows = [{"version": v, "ok": not p, "problems": p} for v, p in results.items()]
    damaged = [v for v, p in results.items() if p]
    if not as_json:
        for v, p in results.items():
            click.echo(f"{v}: " + ("DAMAGED: " + "; ".join(p) if p
                                   else "all artifacts match their manifest hashes"))
    if not damaged:
        if as_json:
            echo_json({"ok": True, "versions": rows})
        return
    err = RegistryError(
        f"{len(damaged)} of {len(rows)} version(s) damaged in registry {reg.root}: "
        + ", ".join(damaged),
        hint="restore them from a backup or retrain",
    )
    if as_json:  # the report, with the error as `--json` errors carry it: one document
        echo_json({**error_json(err), "versions": rows})
    raise err


@registry.command("promote")
@click.argument("version")
@registry_options
@json_option
def promote_cmd(version: str, config_path: Path | None, registry_dir: Path | None,
                as_json: bool) -> None:
    """Make VERSION the production model; the previous one becomes last_known_good."""
    reg, _ = project_context(config_path, registry_dir)
    aliases = reg.promote(version)
    if as_json:
        echo_json({"aliases": aliases})
    else:
        click.echo(", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())))
