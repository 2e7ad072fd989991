"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

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
