"""`tinyship fleet flash`: one registry version onto every board of a fleet file, a few at a
time, each board independently verified and rolled back by `flash_device`.

A fleet file (FLEET.toml) lists the boards; unknown keys are errors, as in tinyship.toml:

    [fleet]                       # optional
    workers = 4                   # boards flashed at once
    env = "nano33ble"             # defaults for the boards below
    baud = 115200

    [[board]]
    device = "/dev/ttyACM0"       # a serial port, socket://host:port or rfc2217://host:port
    label = "line-1"              # optional, unique: names the board in tables and logs
    env = "rp2040"                # optional, overrides [fleet]
    baud = 115200                 # optional, overrides [fleet]

`flash_fleet` runs one `flash_device` per board in a bounded thread pool. A board's failure
never stops the others (an unexpected exception becomes that board's `failed` outcome),
and the result keeps the file's order. The fleet's exit code is that of its most severe
board (`fleet_exit_code`): a board needing a person first, then one not reached, then one
that was put back, then the refusals before anything was sent.
"""

from __future__ import annotations

import logging
import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tinyship.deploy.flash import DeployContext, FlashOutcome, FlashRequest, flash_device
from tinyship.deploy.lock import port_key
from tinyship.deploy.log import RESULTS
from tinyship.device.transport import DEFAULT_BAUD
from tinyship.errors import ConfigError, ExitCode, TinyshipError

log = logging.getLogger(__name__)

#: Boards flashed at once when neither the fleet file nor the caller says.
DEFAULT_WORKERS = 4
#: Exit codes from most to least severe; any other non-zero code ranks below them (the
#: larger first). Why this order: 13, a board on no verified model, needs a person; 8, a
#: board not reached, is in an unknown state; 12, rolled back, is safe but not updated; 9,
#: a failed check left for inspection (no rollback asked); 7, 11 and 6 refused the version
#: before anything was sent (incompatible model, policy or busy board, registry).
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.ROLLBACK_FAILED, ExitCode.DEVICE, ExitCode.ROLLED_BACK, ExitCode.VALIDATION,
    ExitCode.MODEL, ExitCode.POLICY, ExitCode.REGISTRY)
#: pyserial URL schemes a board may be reached by (`serial.serial_for_url`).
URL_SCHEMES = frozenset({"socket", "rfc2217", "loop", "spy", "hwgrep", "alt", "cp2110"})
_NEEDS_HOST_PORT = frozenset({"socket", "rfc2217"})

FlashFn = Callable[[FlashRequest, DeployContext], FlashOutcome]


# --- the fleet file ----------------------------------------------------------------------


@dataclass(frozen=True)
class FleetBoard:
    """One board of a fleet, the `[fleet]` defaults applied."""

    device: str
    label: str | None = None
    env: str | None = None
    baud: int = DEFAULT_BAUD

    @property
    def name(self) -> str:
        """What tables call it: the label, else the device URL."""
        return self.label or self.device


@dataclass(frozen=True)
class Fleet:
    boards: tuple[FleetBoard, ...]
    workers: int = DEFAULT_WORKERS
    path: Path | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _FleetTable(_Strict):
    workers: int = Field(DEFAULT_WORKERS, ge=1)
    env: str | None = Field(None, min_length=1)
    baud: int | None = Field(None, ge=1)


class _BoardEntry(_Strict):
    device: str
    label: str | None = Field(None, min_length=1)
    env: str | None = Field(None, min_length=1)
    baud: int | None = Field(None, ge=1)

    @field_validator("device")
    @classmethod
    def _device_url(cls, url: str) -> str:
        return check_device_url(url)


class _FleetFile(_Strict):
    fleet: _FleetTable = _FleetTable()
    board: list[_BoardEntry] = []


def check_device_url(url: str) -> str:
    """`url` if pyserial can open it as a board's port: a port name (/dev/ttyACM0, COM5) or
    a URL of a known scheme, socket:// and rfc2217:// with host and port. ValueError
    otherwise, so a typo fails when the file is read, not board by board."""
    url = url.strip()
    if not url or any(c.isspace() for c in url):
        raise ValueError(f"'{url}' is not a serial port or URL")
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"'{url}': unknown scheme '{parts.scheme}' (expected a port name or "
                         f"one of {', '.join(s + '://' for s in sorted(URL_SCHEMES))})")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme in _NEEDS_HOST_PORT and (not parts.hostname or port is None):
        raise ValueError(f"'{url}': expected {parts.scheme}://HOST:PORT")
    return url


def _entry_name(index: int, raw: Any) -> str:
    device = raw.get("device") if isinstance(raw, dict) else None
    return f"[[board]] #{index + 1}" + (f" ({device})" if isinstance(device, str) else "")


def _format_errors(path: Path, raw: dict[str, Any], err: ValidationError) -> str:
    """One line per problem, naming the file, the `[[board]]` entry and the key."""
    entries = raw.get("board")
    boards: list[Any] = entries if isinstance(entries, list) else []
    lines = [f"{path}: invalid fleet file"]
    for e in err.errors():
        loc = list(e["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "board" and isinstance(loc[1], int):
            i = loc[1]
            where = _entry_name(i, boards[i] if i < len(boards) else None) + ": "
            loc = loc[2:]
        elif loc and loc[0] == "fleet":
            where, loc = "[fleet]: ", loc[1:]
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"  {where}missing required key '{key}'")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"  {where}key '{key}': {msg}" if key else f"  {where}{msg}")
    return "\n".join(lines)


def _refuse_duplicates(path: Path, raw_boards: list[Any], boards: list[FleetBoard]) -> None:
    seen_devices: dict[str, int] = {}
    seen_labels: dict[str, int] = {}
    for i, b in enumerate(boards):
        for seen, key, what in ((seen_devices, port_key(b.device), f"device {b.device}"),
                                (seen_labels, b.label, f"label '{b.label}'")):
            if key is None:
                continue
            if key in seen:
                first = seen[key]
                raise ConfigError(
                    f"{path}: {_entry_name(i, raw_boards[i])} repeats the {what} of "
                    f"{_entry_name(first, raw_boards[first])}",
                    hint="each board once, each label once")
            seen[key] = i


def load_fleet(path: Path) -> Fleet:
    """Read and validate a fleet file; every refusal is a `ConfigError` (exit 3) naming the
    file, the entry and the key: missing file, bad TOML, unknown key, wrong type, a device
    that is not a port or URL, no boards, a device or label listed twice."""
    if not path.is_file():
        raise ConfigError(f"fleet file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        parsed = _FleetFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(path, raw, e)) from None
    if not parsed.board:
        raise ConfigError(f"{path}: no [[board]] entries: an empty fleet flashes nothing",
                          hint='add one [[board]] table per board, with device = "PORT"')
    d = parsed.fleet
    boards = [FleetBoard(device=b.device, label=b.label, env=b.env or d.env,
                         baud=b.baud or d.baud or DEFAULT_BAUD) for b in parsed.board]
    _refuse_duplicates(path, raw["board"], boards)
    return Fleet(boards=tuple(boards), workers=d.workers, path=path)


# --- flashing ----------------------------------------------------------------------------


def fleet_exit_code(codes: Iterable[int]) -> int:
    """0 when every code is 0, else the most severe one by `SEVERITY`.

    >>> fleet_exit_code([0, 12, 8, 0])
    8
    >>> fleet_exit_code([0, 0])
    0
    """
    bad = [c for c in codes if c != 0]
    if not bad:
        return 0

    def rank(code: int) -> tuple[int, int]:
        ranked = [int(s) for s in SEVERITY]
        return (ranked.index(code), 0) if code in ranked else (len(ranked), -code)

    return min(bad, key=rank)


class FleetFailed(TinyshipError):
    """At least one board of a fleet was not updated; `exit_code` is the fleet's (the most
    severe board's), the boards' own errors are in the result."""

    def __init__(self, message: str, exit_code: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = ExitCode(exit_code)


@dataclass
class BoardResult:
    """One board's outcome, where it is in the fleet file, and how long it took."""

    index: int
    board: FleetBoard
    outcome: FlashOutcome
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "device": self.board.device, "label": self.board.label,
                "env": self.board.env, "duration_s": round(self.duration_s, 3),
                **{k: v for k, v in self.outcome.to_dict().items()
                   if k not in ("url", "label")}}


@dataclass
class FleetResult:
    """Every board's outcome in the fleet file's order."""

    model: str
    boards: list[BoardResult]
    workers: int
    elapsed_s: float
    path: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every board is ok, else the most severe board's code (`SEVERITY`)."""
        return fleet_exit_code(b.outcome.exit_code for b in self.boards)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def counts(self) -> dict[str, int]:
        """Boards per result, in the deployment log's order of results."""
        c = Counter(b.outcome.result for b in self.boards)
        order = [*RESULTS, *sorted(set(c) - set(RESULTS))]
        return {r: c[r] for r in order if c[r]}

    def error(self) -> FleetFailed | None:
        """The fleet's failure for the CLI (message, exit code, the worst board's hint)."""
        code = self.exit_code
        if code == 0:
            return None
        failed = [b for b in self.boards if not b.outcome.ok]
        summary = ", ".join(f"{n} {r}" for r, n in self.counts().items() if r != "ok")
        worst = next(b for b in failed if b.outcome.exit_code == code)
        names = ", ".join(b.board.name for b in failed[:5]) + (", ..." if len(failed) > 5
                                                               else "")
        hint = worst.outcome.error.hint if worst.outcome.error is not None else None
        return FleetFailed(
            f"{len(failed)} of {len(self.boards)} boards not updated to {self.model} "
            f"({summary}: {names}); exit code {code} from {worst.board.name}", code,
            hint=hint or "`tinyship deployments` lists each board's attempt and failing step")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "model": self.model,
                "fleet": None if self.path is None else str(self.path),
                "workers": self.workers, "elapsed_s": round(self.elapsed_s, 3),
                "counts": self.counts(), "boards": [b.to_dict() for b in self.boards]}


def _unexpected(request: FlashRequest, e: Exception) -> FlashOutcome:
    """A `flash` that raised instead of returning an outcome: that board failed, with the
    error (a TinyshipError keeps its exit code; anything else is internal, exit 1) and the
    traceback in `details` for the bug report."""
    log.error("flashing %s raised", request.url, exc_info=e)
    err = e if isinstance(e, TinyshipError) else TinyshipError(
        f"unexpected {type(e).__name__}: {e}", hint="a bug in tinyship: please report it "
        "with the traceback from `--json` (boards.details.traceback)")
    return FlashOutcome(
        command="flash", url=request.url, label=request.label, device_id=None,
        result="failed", from_version=None, to_version=request.model, path=None,
        message=str(err), error=err,
        details={"traceback": "".join(traceback.format_exception(e))})


def _flash_one(flash: FlashFn, request: FlashRequest, ctx: DeployContext
               ) -> tuple[FlashOutcome, float]:
    start = time.monotonic()
    try:
        outcome = flash(request, ctx)
    except Exception as e:  # one board's bug must not take the fleet down
        outcome = _unexpected(request, e)
    return outcome, time.monotonic() - start


def flash_fleet(fleet: Fleet, model: str, ctx: DeployContext, *, workers: int | None = None,
                flash: FlashFn = flash_device,
                on_done: Callable[[BoardResult], None] | None = None,
                **request_options: Any) -> FleetResult:
    """Flash registry version or alias `model` onto every board of `fleet`, at most
    `workers` (default: the fleet file's) at once, and return every outcome in file order.

    `model` is resolved once (RegistryError, exit 6, before any board), so an alias moved
    meanwhile cannot give boards different versions. `request_options` are `FlashRequest`
    fields (`allow_downgrade`, `smoke_vectors`, ...); an unknown one is a TypeError before
    any board. `flash` is `flash_device` unless a test passes a double. `on_done` runs in
    the calling thread as each board finishes; an exception from it, or Ctrl-C, starts no
    further board and lets the ones in progress finish (a flash cut short leaves a trial
    to revert), then propagates.
    """
    from tinyship.registry import Registry

    n_workers = fleet.workers if workers is None else workers
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    version = Registry(ctx.registry_root).resolve(model)
    requests = [FlashRequest(url=b.device, model=version, env=b.env, label=b.label,
                             baud=b.baud, **request_options) for b in fleet.boards]
    n_workers = max(1, min(n_workers, len(requests)))
    results: list[BoardResult | None] = [None] * len(requests)
    start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="tinyship-fleet")
    futures: dict[Future[tuple[FlashOutcome, float]], int] = {}
    try:
        for i, r in enumerate(requests):
            futures[pool.submit(_flash_one, flash, r, ctx)] = i
        for future in as_completed(futures):
            i = futures[future]
            outcome, duration = future.result()
            results[i] = done = BoardResult(i, fleet.boards[i], outcome, duration)
            if on_done is not None:
                on_done(done)
    except BaseException:
        running = sum(f.running() for f in futures)
        if running:  # said now: the wait below can take a whole flash
            log.warning("stopping: no further board starts; waiting for the %d in progress "
                        "to finish or roll back", running)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    boards = [r for r in results if r is not None]
    return FleetResult(model=version, boards=boards, workers=n_workers,
                       elapsed_s=time.monotonic() - start, path=fleet.path)
