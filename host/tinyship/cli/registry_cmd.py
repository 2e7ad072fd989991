"""`tinyship registry`: list, show, verify and promote model versions; hold and release
automatic promotion; sign releases."""

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
from tinyship.errors import ConfigError, PolicyError, TinyshipError
from tinyship.registry import MANIFEST, Registry


@click.group()
def registry() -> None:
    """Inspect and manage the model registry; sign and check releases."""


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
@click.option("--public-key", "public_key", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Also check signatures with this Ed25519 public key "
              "[default: the config's deploy.public_key, if set].")
@json_option
def verify_cmd(version: str | None, config_path: Path | None, registry_dir: Path | None,
               public_key: Path | None, as_json: bool) -> None:
    """Check artifacts against the SHA-256 in their manifest: every version (one line each),
    or only VERSION. Exit 6 if any is damaged. With a public key (configured or
    --public-key), also check each version's signature: exit 11 if any is unsigned,
    signed by another key or changed after signing (and none is damaged)."""
    from tinyship.errors import RegistryError

    reg, _ = project_context(config_path, registry_dir)
    if version is None:
        results = reg.verify_all()
        if not results:
            reg.resolve("latest")  # raises: the registry has no versions
    else:
        v = reg.resolve(version)
        results = {v: reg.verify(v)}
    rows: list[dict[str, Any]] = [
        {"version": v, "ok": not p, "problems": p} for v, p in results.items()]
    damaged = [v for v, p in results.items() if p]
    refused: list[str] = []
    if public_key is None:
        from tinyship.signing import public_key_from_config

        public_key = public_key_from_config(config_path)
    if public_key is not None:
        refused = _check_signatures(reg, rows, public_key)
    if not as_json:
        for r in rows:
            p = r["problems"]
            line = f"{r['version']}: " + ("DAMAGED: " + "; ".join(p) if p
                                          else "all artifacts match their manifest hashes")
            if "signature" in r:
                s = r["signature"]
                line += (f"; signed by {s['key_id']}" if s["ok"]
                         else f"; REFUSED ({s['reason']}): {s['message']}")
            click.echo(line)
    if not damaged and not refused:
        if as_json:
            echo_json({"ok": True, "versions": rows})
        return
    if damaged:
        err: TinyshipError = RegistryError(
            f"{len(damaged)} of {len(rows)} version(s) damaged in registry {reg.root}: "
            + ", ".join(damaged),
            hint="restore them from a backup or retrain",
        )
    else:
        err = PolicyError(
            f"{len(refused)} of {len(rows)} version(s) refused by the signing policy in "
            f"registry {reg.root}: " + ", ".join(refused),
            hint="sign them on the release machine: `tinyship registry sign VERSION --key "
            "PATH`",
        )
    if as_json:  # the report, with the error as `--json` errors carry it: one document
        echo_json({**error_json(err), "versions": rows})
    raise err


def _check_signatures(reg: Registry, rows: list[dict[str, Any]], public_key: Path) -> list[str]:
    """Add `signature` to each row ({"ok", "key_id", "reason", "message"}); the versions
    refused. The key is loaded once (a bad key file is a config error, exit 3)."""
    from tinyship.signing import SignatureError, load_public_key, verify_version

    key = load_public_key(public_key)
    refused = []
    for r in rows:
        try:
            sig = verify_version(reg, r["version"], key)
            r["signature"] = {"ok": True, "key_id": sig.key_id, "reason": None,
                              "message": None}
        except SignatureError as e:
            r["ok"] = False
            r["signature"] = {"ok": False, "key_id": e.key_id, "reason": e.reason,
                              "message": str(e)}
            refused.append(r["version"])
    return refused


@registry.command("keygen")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Folder for NAME.key (private, 0600) and NAME.pub.")
@click.option("--name", default="release", show_default=True, help="Key file base name.")
@json_option
def keygen_cmd(out_dir: Path, name: str, as_json: bool) -> None:
    """Create an Ed25519 release-signing key pair; never overwrites a key (exit 3).

    Keep the private key on the release machine (offline or in a secrets store), never on a
    rig; point `deploy.public_key` in tinyship.toml at the public key."""
    from tinyship.signing import generate_keypair

    private, public, kid = generate_keypair(out_dir, name)
    if as_json:
        echo_json({"ok": True, "private_key": str(private), "public_key": str(public),
                   "key_id": kid})
        return
    click.echo(f"private key: {private} (mode 0600: keep it off the rig)")
    click.echo(f"public key:  {public} (key id {kid}): set deploy.public_key to it")


@registry.command("sign")
@click.argument("version")
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Ed25519 private key (PEM, from `registry keygen`).")
@registry_options
@json_option
def sign_cmd(version: str, key_path: Path, config_path: Path | None,
             registry_dir: Path | None, as_json: bool) -> None:
    """Sign VERSION (vNNNN, an alias, or `latest`): writes signature.json in its folder,
    covering its manifest and every artifact's SHA-256. Exit 6 for an unknown or damaged
    version, 3 for a bad key file; signing again replaces the signature."""
    from tinyship.signing import (
        key_id,
        load_public_key,
        public_key_from_config,
        sign_version,
    )

    reg, _ = project_context(config_path, registry_dir)
    sig = sign_version(reg, version, key_path)
    warning = None
    configured = public_key_from_config(config_path)
    if configured is not None:
        try:
            want: str | None = key_id(load_public_key(configured))
        except ConfigError as e:  # the signature is written; say why it may not be accepted
            want = None
            warning = f"deploy.public_key cannot be used: {e}"
            click.echo(f"warning: {warning}", err=True)
        if want is not None and want != sig.key_id:
            warning = (f"signed with key {sig.key_id}, but deploy.public_key ({configured}) "
                       f"is key {want}: this project will refuse {sig.version}")
            click.echo(f"warning: {warning}", err=True)
    if as_json:
        echo_json({"ok": True, **sig.to_dict(), "warning": warning})
        return
    click.echo(f"{sig.version}: signed by key {sig.key_id} ({sig.path})")


@registry.command("promote")
@click.argument("version")
@click.option("--reason", default=None, metavar="TEXT",
              help="Why (recorded in the audit log; say so when overriding a hold).")
@registry_options
@json_option
def promote_cmd(version: str, reason: str | None, config_path: Path | None,
                registry_dir: Path | None, as_json: bool) -> None:
    """Make VERSION the production model; the previous one becomes last_known_good.

    A person's promotion goes ahead even while production is held (it is the override);
    it is recorded in the audit log with its author (TINYSHIP_AUTHOR, else the login)."""
    from tinyship.audit import AuditLog, default_audit_path

    reg, _ = project_context(config_path, registry_dir)
    hold = reg.held()
    aliases = reg.promote(version, audit=AuditLog(default_audit_path(reg.root)),
                          reason=reason)
    note = None
    if hold is not None:
        note = (f"production is held by {hold.author} ({hold.reason}): promoted as a manual "
                "override; the hold stays until `tinyship registry release production`")
        click.echo(f"note: {note}", err=True)
    if as_json:
        echo_json({"aliases": aliases, "hold": hold.to_json() if hold else None})
    else:
        click.echo(", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())))


@registry.command("hold")
@click.argument("alias")
@click.option("--reason", required=True, metavar="TEXT",
              help="Why, and who should approve (shown to whoever meets the hold).")
@registry_options
@json_option
def hold_cmd(alias: str, reason: str, config_path: Path | None, registry_dir: Path | None,
             as_json: bool) -> None:
    """Hold ALIAS (usually production): the retrain job then stops at "challenger ready,
    awaiting approval" instead of promoting. A person's `registry promote` still works.
    Holding again replaces the reason; recorded in the audit log."""
    from tinyship.audit import AuditLog, default_audit_path

    reg, _ = project_context(config_path, registry_dir)
    h = reg.hold(alias, reason, audit=AuditLog(default_audit_path(reg.root)))
    if as_json:
        echo_json({"held": True, **h.to_json()})
    else:
        click.echo(f"{alias} held by {h.author} ({h.reason}): automatic promotion is refused "
                   f"until `tinyship registry release {alias}`")


@registry.command("release")
@click.argument("alias")
@registry_options
@json_option
def release_cmd(alias: str, config_path: Path | None, registry_dir: Path | None,
                as_json: bool) -> None:
    """Release the hold on ALIAS: automatic promotion is allowed again. Recorded in the
    audit log; releasing an alias that is not held changes nothing (exit 0)."""
    from tinyship.audit import AuditLog, default_audit_path

    reg, _ = project_context(config_path, registry_dir)
    h = reg.release(alias, audit=AuditLog(default_audit_path(reg.root)))
    if as_json:
        echo_json({"released": h is not None, "alias": alias,
                   "hold": h.to_json() if h else None})
    elif h is None:
        click.echo(f"{alias} was not held: nothing to release")
    else:
        click.echo(f"{alias} released (held by {h.author} since {h.since}: {h.reason})")
