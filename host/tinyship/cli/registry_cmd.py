"""`tinyship registry`: list, show, verify and promote model versions."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.cli._common import echo_json, json_option, project_context, registry_options


@click.group()
def registry() -> None:
    """Inspect and manage the model registry."""


@registry.command("list")
@registry_options
@json_option
def list_cmd(config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """List versions, newest last, with their main metric and aliases."""
    reg, _ = project_context(config_path, registry_dir)
    aliases = reg.aliases()
    by_version: dict[str, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(v, []).append(a)
    rows = []
    for v in reg.versions():
        m = reg.manifest(v)
        i8 = m.get("metrics", {}).get("int8", {})
        rows.append({
            "version": v,
            "created": m.get("created"),
            "parent": m.get("parent"),
            "task": m.get("task"),
            "profile": m.get("profile"),
            "model_bytes": m.get("model", {}).get("bytes"),
            "arena_bytes": m.get("model", {}).get("arena_bytes"),
            "metrics": {k: i8[k] for k in ("mae", "r2", "accuracy", "macro_f1") if k in i8},
            "aliases": sorted(by_version.get(v, [])),
        })
    if as_json:
        echo_json({"registry": str(reg.root), "versions": rows, "aliases": aliases})
        return
    from rich.console import Console
    from rich.table import Table

    if not rows:
        Console().print(f"registry {reg.root} is empty: run `tinyship train`")
        return
    t = Table(title=f"registry {reg.root}", show_edge=False)
    for col in ("version", "created", "profile", "bytes", "arena", "metrics", "aliases"):
        t.add_column(col, no_wrap=col in ("version", "created", "profile"))
    for r in rows:
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
    Console().print(Markdown(card.read_text(encoding="utf-8")) if card.is_file() else m)


@registry.command("verify")
@click.argument("version", required=False)
@registry_options
@json_option
def verify_cmd(version: str | None, config_path: Path | None, registry_dir: Path | None,
               as_json: bool) -> None:
    """Check every artifact of a version against the SHA-256 in its manifest."""
    from tinyship.errors import RegistryError
    reg, _ = project_context(config_path, registry_dir)
    v = reg.resolve(version)
    problems = reg.verify(v)
    if as_json:
        echo_json({"version": v, "ok": not problems, "problems": problems})
    elif not problems:
        click.echo(f"{v}: all artifacts match their manifest hashes")
    if problems:
        raise RegistryError(f"{v} is damaged: " + "; ".join(problems))


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
