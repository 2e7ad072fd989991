"""The `tinyship` command line: thin click commands over the stage modules.

One module per command group (as pyOCD and PlatformIO do); this module only builds the
group and maps `TinyshipError` to documented exit codes, the single place that does so.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO, cast

import click

from tinyship import __version__
from tinyship.errors import ExitCode, TinyshipError


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so `tinyship --help` stays fast."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            import importlib

            module_name, attr = self._lazy[cmd_name].split(":")
            cmd = getattr(importlib.import_module(module_name), attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)


# name -> "module:attribute"; every entry has a module under tinyship/cli/.
COMMANDS: dict[str, str] = {
    "data": "tinyship.cli.data_cmd:data",
    "train": "tinyship.cli.train_cmd:train",
    "registry": "tinyship.cli.registry_cmd:registry",
    "emulator": "tinyship.cli.emulator_cmd:emulator",
    "build": "tinyship.cli.build_cmd:build",
    "device": "tinyship.cli.device_cmd:device",
    "hil": "tinyship.cli.hil_cmd:hil",
    "deployments": "tinyship.cli.deploy_cmd:deployments",
    "flash": "tinyship.cli.flash_cmd:flash",
    "rollback": "tinyship.cli.flash_cmd:rollback",
    "retrain": "tinyship.cli.retrain_cmd:retrain",
    "fleet": "tinyship.cli.fleet_cmd:fleet",
    "drift": "tinyship.cli.drift_cmd:drift",
    "monitor": "tinyship.cli.monitor_cmd:monitor",
    "audit": "tinyship.cli.audit_cmd:audit",
}


@click.group(
    cls=_LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="tinyship")
def cli() -> None:
    """tinyship: CSV -> int8 TFLite Micro model -> firmware -> validated on the device."""


def _wants_json(args: list[str]) -> bool:
    """True when `--json` is on the command line (before a `--` that ends the options)."""
    options = args[: args.index("--")] if "--" in args else args
    return "--json" in options


class _StdoutWatch:
    """sys.stdout for one command run: passes everything through and remembers whether the
    command wrote anything, so `main` never adds a second JSON document after a command's
    own (`data check`, a gate failure in `train`, `hil`, `device info` print theirs, then
    raise)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.written = False

    def write(self, text: str) -> int:
        if text:
            self.written = True
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _echo_error_json(
    watch: _StdoutWatch | None, e: TinyshipError | click.ClickException, code: int
) -> None:
    """With `--json`, the error as the one JSON document on stdout, unless the command
    already printed its own. (Imported here: `tinyship --help` stays light.)"""
    if watch is None or watch.written:
        return
    from tinyship.cli._common import echo_json, error_doc, error_json

    if isinstance(e, TinyshipError):
        echo_json(error_json(e))
    else:
        kind = "UsageError" if isinstance(e, click.UsageError) else type(e).__name__
        echo_json(error_doc(kind, code, e.format_message()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning tinyship errors into exit codes and short messages.

    Messages go to stderr. With `--json`, stdout holds exactly one JSON document: the
    command's own (on failure, with `error_json` in it when the command adds it), or, when
    the command fails without printing anything, `error_json` / `error_doc` alone.
    """
    stdout = sys.stdout
    watch: _StdoutWatch | None = None
    if _wants_json(sys.argv[1:] if argv is None else list(argv)):
        watch = _StdoutWatch(stdout)
        sys.stdout = cast(TextIO, watch)

    try:
        cli.main(args=argv, prog_name="tinyship", standalone_mode=False)
    except TinyshipError as e:
        click.echo(f"error: {e}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        _echo_error_json(watch, e, int(e.exit_code))
        sys.exit(int(e.exit_code))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        code = ExitCode.USAGE if e.exit_code == 2 else e.exit_code
        _echo_error_json(watch, e, int(code))
        sys.exit(code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        sys.stdout = stdout
    sys.exit(0)
