"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tinyship.errors import DataError, TinyshipError

if TYPE_CHECKING:
    from tinyship.config import BoardSection
    from tinyship.registry import Registry

__all__ = ["project_context"]

F = TypeVar("F", bound=Callable[..., Any])


def project_context(
    config_path: Path | None = None, registry_dir: Path | None = None
) -> tuple[Registry, BoardSection]:
    """`tinyship.config.project_context`, imported when called: the config module brings
    pydantic (~0.1 s), which `device info --registry DIR` and the other device commands
    do not need."""
    from tinyship.config import project_context as resolve

    return resolve(config_path, registry_dir)


def config_option(f: F) -> F:
    """`--config PATH` (default `tinyship.toml` in the current folder)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Project config file [default: ./tinyship.toml].",
    )(f)


def json_option(f: F) -> F:
    """`--json`: machine-readable output on stdout, nothing else there."""
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON result.")(f)


def echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def error_doc(
    kind: str, exit_code: int, message: str, hint: str | None = None, **extra: Any
) -> dict[str, Any]:
    """`{"ok": false, "error": {"type", "exit_code", "message", "hint", ...}}`: what `--json`
    puts on stdout when a command fails, so a script always finds one JSON document there."""
    error = {"type": kind, "exit_code": exit_code, "message": message, "hint": hint, **extra}
    return {"ok": False, "error": error}


def error_json(e: TinyshipError) -> dict[str, Any]:
    """`error_doc` for a tinyship error; a data error adds its failed checks (`failures`).

    `tinyship.cli.main` prints it for a command that fails without output. A command that
    fails after building its report prints `{**error_json(e), **report}` and raises `e`;
    main then only writes the message to stderr and exits with the error's code.
    """
    extra = {"failures": e.failures} if isinstance(e, DataError) else {}
    return error_doc(type(e).__name__, int(e.exit_code), str(e), e.hint, **extra)


def registry_options(f: F) -> F:
    """`--config` and `--registry`: which project (and so which registry and board)."""
    f = click.option(
        "--registry", "registry_dir", type=click.Path(path_type=Path, file_okay=False),
        default=None, help="Registry folder [default: the config's, else ./models].",
    )(f)
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Project config: its registry and [board] [default: ./tinyship.toml if present].",
    )(f)


def model_option(f: F) -> F:
    """`--model VERSION`: a registry version, an alias, or `latest`."""
    return click.option(
        "--model", "model", default=None, metavar="VERSION",
        help="Registry version or alias [default: production, else latest].",
    )(f)


def log_option(f: F) -> F:
    """`--log PATH`: the deployment log (flash, rollback, fleet, deployments)."""
    return click.option(
        "--log", "log_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
        help="Deployment log [default: the config's deploy.log, else deployments.sqlite in "
        "the registry].")(f)


#: Colour of a flash/rollback result in tables and lines (anything else: red).
RESULT_COLORS = {"ok": "green", "rolled_back": "yellow", "refused": "yellow",
                 "in_progress": "yellow", "interrupted": "yellow"}
