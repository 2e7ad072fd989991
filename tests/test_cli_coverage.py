"""Every CLI command has help text and is exercised by some test (as imgtool enforces).

A new subcommand added without a test makes `test_every_command_is_tested` fail and name it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tinyship.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _leaf_commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    ctx = click.Context(group)
    out: list[list[str]] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join([*prefix, name])} is listed but cannot be loaded"
        if isinstance(cmd, click.Group):
            out.extend(_leaf_commands(cmd, [*prefix, name]))
        else:
            out.append([*prefix, name])
    return out


COMMANDS = _leaf_commands(cli, [])


@functools.cache
def _test_sources() -> str:
    """All test code but this file's, read once for every parametrized case."""
    me = Path(__file__).resolve()
    files = [p for d in ("tests", "hil") for p in (ROOT / d).rglob("*.py") if p.resolve() != me]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def test_cli_has_the_pipeline_commands() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in ("train", "registry list", "registry show", "emulator", "hil", "build",
                     "device info"):
        assert expected in names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: "-".join(p))
def test_every_command_has_help(path: list[str]) -> None:
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    # A one-line summary beyond the usage line, so `tinyship --help` says what it does.
    assert len(res.output.strip().splitlines()) > 3


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: "-".join(p))
def test_every_command_is_tested(path: list[str]) -> None:
    # A test invokes a command as an argument list: ["registry", "show", ...] or
    # ("-m", "tinyship", "hil", ...); match the quoted words in order.
    pattern = r",\s*".join(re.escape(f'"{word}"') for word in path)
    if len(path) == 1:
        pattern = r"[\[(,]\s*" + pattern + r"\s*,"
    assert re.search(pattern, _test_sources()), (
        f"`tinyship {' '.join(path)}` is not invoked by any test in tests/ or hil/")
