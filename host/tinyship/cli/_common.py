"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from tinyship.config import BoardSection
    from tinyship.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])


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


def project_context(
    config_path: Path | None, registry_dir: Path | None
) -> tuple[Registry, BoardSection]:
    """The (Registry, BoardSection) a command works on, by one rule for every command:
    an explicit --config is loaded; else ./tinyship.toml if present; --registry overrides
    the config's registry; with neither, ./models and the default board."""
    from tinyship.config import DEFAULT_CONFIG_NAME, BoardSection, load_config
    from tinyship.registry import Registry

    if config_path is not None or Path(DEFAULT_CONFIG_NAME).is_file():
        cfg = load_config(config_path)
        return Registry(registry_dir or cfg.registry_path), cfg.board
    return Registry(registry_dir or Path("models")), BoardSection()
