"""`tinyship fleet flash`: one registry version onto every board of a fleet file, a few at a
time; a thin command over `tinyship.deploy.fleet`.

Exit code: 0 when every board is ok, else the most severe board's (13 > 8 > 12 > 9 > 7 >
11 > 6 > others: `tinyship.deploy.fleet.SEVERITY` says why); 3 for a bad fleet file and 6
for an unknown version, before any board is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tinyship.cli._common import (
    RESULT_COLORS,
    echo_json,
    error_json,
    json_option,
    log_option,
    registry_options,
)

if TYPE_CHECKING:
    from tinyship.deploy.fleet import BoardResult, FleetResult

@click.group()
def fleet() -> None:
    """Deploy to many boards at once, from a fleet file (FLEET.toml)."""


def _board_now(item: BoardResult) -> str:
    b = item.outcome.board
    if b is None:
        return "?"
    if not b.reachable:
        return "no answer"
    return (b.model_version or "?") + (f", {b.running}" if b.running else "")


def _problem(item: BoardResult) -> str:
    """The failed step and the message, the step once when the message starts with it."""
    o = item.outcome
    step, message = o.failed_step or "", o.message or ""
    if step and message and not message.startswith(step):
        return f"{step}: {message}"
    return message or step


def _live_line(item: BoardResult, done: int, total: int) -> str:
    """One board finished: a line on stderr while the others run."""
    from rich.markup import escape

    o = item.outcome
    color = RESULT_COLORS.get(o.result, "red")
    line = (f"{escape(f'[{done}/{total}]')} [{color}]{o.result}[/] {escape(item.board.name)}: "
            f"{o.from_version or '?'} -> {o.to_version or '?'}"
            + (f" by {o.path}" if o.path else "") + f", {item.duration_s:.1f} s")
    if not o.ok:
        line += f"; {escape(_problem(item))}; board now {escape(_board_now(item))}"
    elif o.message:  # "already runs v0004": nothing was sent
        line += f"; {escape(o.message)}"
    return line


def _print_table(result: FleetResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    where = f" from {result.path}" if result.path else ""
    counts = ", ".join(f"{n} {r}" for r, n in result.counts().items())
    t = Table(title=escape(f"fleet flash {result.model}{where}: {counts}"), show_edge=False)
    for col in ("label", "device", "device id", "from -> to", "path", "result",
                "failed step / message", "rollback", "board now", "duration"):
        t.add_column(col, no_wrap=col in ("result", "duration"))
    for item in result.boards:
        o = item.outcome
        color = RESULT_COLORS.get(o.result, "red")
        t.add_row(escape(item.board.label or ""), escape(item.board.device),
                  escape(o.device_id or "?"),
                  f"{o.from_version or '?'} -> {o.to_version or '?'}", o.path or "",
                  f"[{color}]{o.result}[/]", escape(_problem(item)), escape(o.rollback or ""),
                  escape(_board_now(item)), f"{item.duration_s:.1f} s")
    Console().print(t)


@fleet.command("flash")
@click.argument("fleet_file", metavar="FLEET.toml",
                type=click.Path(path_type=Path, dir_okay=False))
@click.option("--model", "model", required=True, metavar="VERSION",
              help="Registry version or alias for every board (resolved once).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Boards flashed at once [default: the fleet file's [fleet] workers, "
              "else 4].")
@click.option("--allow-downgrade", is_flag=True,
              help="Allow an older version than a board runs.")
@click.option("--smoke-vectors", type=click.IntRange(min=0), default=None, metavar="N",
              help="Test vectors run on each board before it is confirmed (0: none) "
              "[default: as `tinyship flash`].")
@log_option
@registry_options
@json_option
def flash_cmd(fleet_file: Path, model: str, workers: int | None, allow_downgrade: bool,
              smoke_vectors: int | None, log_path: Path | None, config_path: Path | None,
              registry_dir: Path | None, as_json: bool) -> None:
    """Flash one registry version onto every board of FLEET.toml, as `tinyship flash` does
    for one (verify, smoke check, confirm, automatic rollback, one deployment-log row and
    one lock per board), a few boards at a time. A board's failure never stops the
    others. Prints a line per board as it finishes (stderr), then a table; exits with the
    most severe board's code (13 rollback failed > 8 unreachable > 12 rolled back > 9 >
    7 > 11 > 6)."""
    from rich.console import Console

    from tinyship.deploy.flash import DeployContext
    from tinyship.deploy.fleet import flash_fleet, load_fleet

    spec = load_fleet(fleet_file)
    ctx = DeployContext.from_project(config_path, registry_dir, log_path=log_path)
    options: dict[str, Any] = {"allow_downgrade": allow_downgrade}
    if smoke_vectors is not None:
        options["smoke_vectors"] = smoke_vectors
    err_console = Console(stderr=True, highlight=False)
    total = len(spec.boards)
    n = min(workers or spec.workers, total)
    err_console.print(f"flashing {model} onto {total} board{'s' * (total != 1)}, "
                      f"{n} at a time")
    done = 0

    def on_done(item: BoardResult) -> None:
        nonlocal done
        done += 1
        err_console.print(_live_line(item, done, total))

    result = flash_fleet(spec, model, ctx, workers=workers, on_done=on_done, **options)
    error = result.error()
    if as_json:
        doc = result.to_dict()
        echo_json({**error_json(error), **doc} if error is not None else doc)
    else:
        _print_table(result)
    if error is not None:
        raise error
