"""`tinyship flash` and `tinyship rollback`: thin commands over `tinyship.deploy.flash`.

Exit codes (README "Exit codes"): 0 ok; 8 the board is unreachable (nothing changed);
9 the new model failed its checks and --no-rollback left it; 11 refused by policy before
anything was sent; 12 the flash failed and the board was rolled back, verified; 13 the
rollback failed too (the message names what the board runs now).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tinyship.cli._common import (
    RESULT_COLORS,
    echo_json,
    json_option,
    log_option,
    registry_options,
)

if TYPE_CHECKING:
    from tinyship.deploy.flash import DeployContext, FlashOutcome

_device = click.option("--device", "url", required=True, metavar="URL",
                       help="Serial port or pyserial URL (/dev/ttyACM0, COM5, "
                       "socket://host:port, rfc2217://rig-host:port).")


def _checks(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by flash and rollback: how the result is checked on the board."""
    for opt in reversed([
        click.option("--env", default=None, metavar="ENV",
                     help="PlatformIO env of the board, for a full image [default: the "
                     "board's, from its INFO]."),
        click.option("--baud", type=click.IntRange(min=1), default=115200, show_default=True,
                     help="Line rate."),
        click.option("--smoke-vectors", type=click.IntRange(min=0), default=32,
                     show_default=True, help="Test vectors of the version run on the board "
                     "before it is confirmed (0: none)."),
        click.option("--tolerance", "tolerance_lsb", type=click.IntRange(min=0), default=0,
                     show_default=True, help="Allowed output difference from the host "
                     "reference in the smoke check (LSB)."),
        click.option("--reboot-timeout", type=click.FloatRange(min=0.5), default=30.0,
                     show_default=True, help="Seconds a board may take to come back."),
        log_option,
    ]):
        f = opt(f)
    return f


@contextmanager
def _progress(ctx: DeployContext, label: str, quiet: bool) -> Iterator[None]:
    """Rich progress on stderr: the step, and bytes for transfers."""
    if quiet:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def show(step: str, done: int, total: int) -> None:
            if total:
                bar.update(task, description=f"{label}: {step}", completed=done, total=total)
            else:
                bar.update(task, description=f"{label}: {step}", total=None)

        ctx.progress = show
        yield


def _report(outcome: FlashOutcome, as_json: bool) -> None:
    """Print the outcome; raise its error (main maps it to the exit code)."""
    if as_json:
        echo_json(outcome.to_dict())
    else:
        from rich.console import Console
        from rich.markup import escape

        con = Console()
        b = outcome.board
        now = (f"{b.model_version} ({b.running or 'factory'}, self-test {b.self_test})"
               if b is not None and b.reachable else "unreachable")
        color = RESULT_COLORS.get(outcome.result, "red")
        con.print(f"[{color}]{outcome.result}[/]: {escape(outcome.url)} "
                  f"{outcome.from_version or '?'} -> {outcome.to_version or '?'}"
                  + (f" by {outcome.path}" if outcome.path else "")
                  + f"; board now: {escape(now)}"
                  + (f" (log #{outcome.attempt_id})" if outcome.attempt_id else ""))
        if outcome.error is None and outcome.message:
            con.print(escape(outcome.message))
        if outcome.rollback:
            con.print(f"rollback: {escape(outcome.rollback)}")
    if outcome.error is not None:
        raise outcome.error


@click.command("flash")
@_device
@click.option("--model", "model", required=True, metavar="VERSION",
              help="Registry version or alias to install (v0004, production).")
@click.option("--allow-downgrade", is_flag=True,
              help="Allow an older version than the board runs (else: tinyship rollback).")
@click.option("--path", "path", type=click.Choice(["auto", "slot", "image"]), default="auto",
              show_default=True, help="auto: a model slot when the board's firmware can run "
              "the model, else the stored full image.")
@click.option("--no-rollback", is_flag=True,
              help="Leave a model that fails verification or the smoke check on the board "
              "as a trial, for inspection (exit 9); a reset reverts it.")
@_checks
@registry_options
@json_option
def flash(url: str, model: str, allow_downgrade: bool, path: str, no_rollback: bool,
          env: str | None, baud: int, smoke_vectors: int, tolerance_lsb: int,
          reboot_timeout: float, log_path: Path | None, config_path: Path | None,
          registry_dir: Path | None, as_json: bool) -> None:
    """Install a registry version on a board, verify it, smoke-test it, then confirm it.

    Reads what the board runs, checks the release policy (no downgrade, registry SHA-256s,
    signature when deploy.public_key is set, one flash per board), installs by a model
    slot or a full image, waits for the board to come back, verifies version, SHA-256 and
    self-test, runs a HIL smoke check and confirms. Any failure rolls the board back and
    says what it runs now; every attempt is a row in the deployment log."""
    from tinyship.deploy.flash import DeployContext, FlashRequest, flash_device

    ctx = DeployContext.from_project(config_path, registry_dir, log_path=log_path)
    req = FlashRequest(url, model, env=env, baud=baud, allow_downgrade=allow_downgrade,
                       path=path, smoke_vectors=smoke_vectors,  # type: ignore[arg-type]
                       tolerance_lsb=tolerance_lsb, reboot_timeout_s=reboot_timeout,
                       rollback=not no_rollback)
    with _progress(ctx, f"flash {model}", as_json):
        outcome = flash_device(req, ctx)
    _report(outcome, as_json)


@click.command("rollback")
@_device
@click.option("--to", "to", default=None, metavar="VERSION",
              help="Version to go back to [default: the other slot's confirmed model, else "
              "the previous good version in the deployment log].")
@_checks
@registry_options
@json_option
def rollback(url: str, to: str | None, env: str | None, baud: int, smoke_vectors: int,
             tolerance_lsb: int, reboot_timeout: float, log_path: Path | None,
             config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """Put a board back on its previous known-good model, verified: instantly from the
    other model slot when it holds it, else by flashing the version the deployment log
    names (or --to). Works offline: only the board and the registry folder are needed."""
    from tinyship.deploy.flash import DeployContext, RollbackRequest, rollback_device

    ctx = DeployContext.from_project(config_path, registry_dir, log_path=log_path)
    req = RollbackRequest(url, to=to, env=env, baud=baud, smoke_vectors=smoke_vectors,
                          tolerance_lsb=tolerance_lsb, reboot_timeout_s=reboot_timeout)
    with _progress(ctx, "rollback", as_json):
        outcome = rollback_device(req, ctx)
    _report(outcome, as_json)
