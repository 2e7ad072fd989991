"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tinyship.config import project_context

__all__ = ["project_context"]

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
