"""The deployment log: every flash or rollback attempt, append-only, in SQLite.

Where: `<registry root>/deployments.sqlite` by default (`default_log_path`); callers pass
the path, so a config setting can move it. The registry lists only `vNNNN` folders, so the
file and its `-wal`/`-shm` siblings never show up as versions.

Append-only, enforced by the schema: triggers abort any UPDATE or DELETE on the three fact
tables, so a past row is never rewritten, by tinyship or by a hand-run `sqlite3`. An attempt
is therefore written as a sequence of events, each in its own committed transaction:

    attempts      one row per attempt, inserted by `start_attempt` before the device is touched
                  (when, device, port, env, board, from/to versions, path, operator, host, pid,
                  tinyship version)
    step_events   a 'start' row when a step begins and an 'end' row (duration, ok, message)
                  when it ends, so a step cut short by a crash is still named
    outcomes      at most one per attempt (primary key): the result, the failing step and its
                  message, rollback performed and its result, and what the board reported at
                  the end; `finish_attempt` writes it, or `reconcile` after a crash

    attempt_log   view: attempts LEFT JOIN outcomes, result 'in_progress' while no outcome
    steps         view: each step's start joined with its end (NULL end: never finished)

An attempt killed by a crash, SIGKILL or Ctrl-C has no outcome row: its result reads
'in_progress'. The next command on that device (holding the device lock) calls
`reconcile` with what the board reports now, which appends an 'interrupted' outcome naming
the step that never finished.

Every connection sets WAL mode, a busy timeout and foreign keys; writes use
`BEGIN IMMEDIATE`, so concurrent writers from several processes queue instead of failing.
The schema is versioned with `PRAGMA user_version`; a file from a newer tinyship (or not a
deployment log at all) is refused with a clear `DeployLogError`, never migrated blindly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyship.errors import RegistryError
from tinyship.sqlite_log import (
    SqliteLog,
    append_only_triggers,
    current_user,
    limit_clause,
    now_iso,
    tinyship_version,
)

#: File name of the log in the registry folder.
LOG_NAME = "deployments.sqlite"
#: Schema version this code writes (PRAGMA user_version).
SCHEMA_VERSION = 1
#: Outcomes an attempt can end with; 'in_progress' is what the view says while it has none.
RESULTS = ("ok", "failed", "rolled_back", "rollback_failed", "refused", "interrupted")
IN_PROGRESS = "in_progress"
PATHS = ("slot", "image")
_FACT_TABLES = ("attempts", "step_events", "outcomes")

_SCHEMA_V1 = f"""
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    started_at       TEXT NOT NULL,
    command          TEXT NOT NULL,
    device_id        TEXT,
    port             TEXT,
    env              TEXT,
    board            TEXT,
    from_firmware    TEXT,
    from_model       TEXT,
    to_firmware      TEXT,
    to_model         TEXT,
    path             TEXT CHECK (path IS NULL OR path IN ('slot', 'image')),
    operator         TEXT NOT NULL,
    host             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    tinyship_version TEXT NOT NULL
);
CREATE INDEX attempts_device ON attempts(device_id, id);
CREATE TABLE step_events (
    id          INTEGER PRIMARY KEY,
    attempt_id  INTEGER NOT NULL REFERENCES attempts(id),
    step        TEXT NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('start', 'end')),
    at          TEXT NOT NULL,
    duration_s  REAL,
    ok          INTEGER CHECK (ok IS NULL OR ok IN (0, 1)),
    message     TEXT
);
CREATE INDEX step_events_attempt ON step_events(attempt_id, id);
CREATE TABLE outcomes (
    attempt_id          INTEGER PRIMARY KEY REFERENCES attempts(id),
    recorded_at         TEXT NOT NULL,
    result              TEXT NOT NULL CHECK (result IN ({", ".join(f"'{r}'" for r in RESULTS)})),
    failed_step         TEXT,
    message             TEXT,
    rollback_performed  INTEGER NOT NULL CHECK (rollback_performed IN (0, 1)),
    rollback_result     TEXT,
    board_model_version TEXT,
    board_model_sha256  TEXT,
    board_slot_state    TEXT,
    recorded_by         TEXT NOT NULL,
    recorded_on         TEXT NOT NULL
);
CREATE VIEW attempt_log AS
    SELECT a.*, COALESCE(o.result, '{IN_PROGRESS}') AS result, o.recorded_at AS finished_at,
           o.failed_step, o.message, o.rollback_performed, o.rollback_result,
           o.board_model_version, o.board_model_sha256, o.board_slot_state
    FROM attempts a LEFT JOIN outcomes o ON o.attempt_id = a.id;
CREATE VIEW steps AS
    SELECT s.attempt_id, s.id AS start_id, s.step, s.at AS started_at,
           e.duration_s, e.ok, e.message
    FROM step_events s
    LEFT JOIN step_events e ON e.attempt_id = s.attempt_id AND e.event = 'end'
         AND e.id = (SELECT MIN(x.id) FROM step_events x WHERE x.attempt_id = s.attempt_id
                     AND x.event = 'end' AND x.step = s.step AND x.id > s.id)
    WHERE s.event = 'start';
""" + append_only_triggers(_FACT_TABLES, "the deployment log")

#: user_version -> script that brings the schema from the previous version to it.
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}


class DeployLogError(RegistryError):
    """The deployment log (or the lock folder beside it) cannot be opened, read or written
    (exit code 6, as the registry it lives beside), or an attempt id or outcome is invalid."""

    hint = ("check the file's and its folder's permissions, or point the deployment log "
            "elsewhere; never edit the log by hand")


def default_log_path(registry_root: Path) -> Path:
    """`<registry root>/deployments.sqlite`: the log lives beside the versions it deploys."""
    return Path(registry_root) / LOG_NAME


@dataclass(frozen=True)
class BoardReport:
    """What the board reported at the end of an attempt (or when reconciling one)."""

    model_version: str | None = None
    model_sha256: str | None = None
    slot_state: str | None = None


@dataclass(frozen=True)
class StepRecord:
    """One step of an attempt; `ok`/`duration_s` are None when it never ended (a crash)."""

    name: str
    started_at: str
    duration_s: float | None
    ok: bool | None
    message: str | None

    @property
    def finished(self) -> bool:
        return self.ok is not None


@dataclass(frozen=True)
class Attempt:
    """One row of the `attempt_log` view, with its steps in order."""

    id: int
    started_at: str
    command: str
    device_id: str | None
    port: str | None
    env: str | None
    board: str | None
    from_firmware: str | None
    from_model: str | None
    to_firmware: str | None
    to_model: str | None
    path: str | None
    operator: str
    host: str
    pid: int
    tinyship_version: str
    result: str
    finished_at: str | None = None
    failed_step: str | None = None
    message: str | None = None
    rollback_performed: bool | None = None
    rollback_result: str | None = None
    board_after: BoardReport = field(default_factory=BoardReport)
    steps: tuple[StepRecord, ...] = ()

    @property
    def in_progress(self) -> bool:
        return self.result == IN_PROGRESS

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        return d


class _Step:
    """Handle yielded by `DeploymentLog.step`: set `message` to record a note on success."""

    def __init__(self) -> None:
        self.message: str | None = None


class DeploymentLog(SqliteLog):
    """The append-only deployment log at `path` (created with its folder on first write).

    Each call opens its own short connection and commits before returning, so a crash
    right after a call never loses what it wrote, and several processes can share the file.
    """

    label = "deployment log"
    error = DeployLogError
    schema_version = SCHEMA_VERSION
    migrations = _MIGRATIONS
    marker_table = "attempts"

    # --- writing -----------------------------------------------------------------------
    def start_attempt(
        self,
        *,
        command: str = "flash",
        device_id: str | None,
        port: str | None,
        env: str | None = None,
        board: str | None = None,
        from_firmware: str | None = None,
        from_model: str | None = None,
        to_firmware: str | None = None,
        to_model: str | None = None,
        path: str | None = None,
    ) -> int:
        """Record an attempt as 'in_progress' and commit it; returns its id. Call it before
        anything is sent to the device, so a crash afterwards leaves this row behind."""
        if path is not None and path not in PATHS:
            raise DeployLogError(f"unknown deployment path {path!r} (expected one of {PATHS})")
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO attempts (started_at, command, device_id, port, env, board, "
                "from_firmware, from_model, to_firmware, to_model, path, operator, host, pid, "
                "tinyship_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), command, device_id, port, env, board, from_firmware, from_model,
                 to_firmware, to_model, path, current_user(), socket.gethostname(), os.getpid(),
                 tinyship_version()),
            )
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def _require_open(self, con: sqlite3.Connection, attempt_id: int) -> None:
        row = con.execute(
            "SELECT a.id, o.result FROM attempts a LEFT JOIN outcomes o ON o.attempt_id = a.id "
            "WHERE a.id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise DeployLogError(f"no attempt {attempt_id} in deployment log {self.path}")
        if row["result"] is not None:
            raise DeployLogError(
                f"attempt {attempt_id} already ended ({row['result']}); outcomes are final")

    def step_started(self, attempt_id: int, name: str) -> None:
        """Append a step's 'start' event (committed before the step runs)."""
        with self._write() as con:
            self._require_open(con, attempt_id)
            con.execute("INSERT INTO step_events (attempt_id, step, event, at) "
                        "VALUES (?, ?, 'start', ?)", (attempt_id, name, now_iso()))

    def step_ended(self, attempt_id: int, name: str, *, duration_s: float, ok: bool,
                   message: str | None = None) -> None:
        """Append a step's 'end' event: its duration, whether it succeeded, and a message."""
        with self._write() as con:
            self._require_open(con, attempt_id)
            con.execute(
                "INSERT INTO step_events (attempt_id, step, event, at, duration_s, ok, message) "
                "VALUES (?, ?, 'end', ?, ?, ?, ?)",
                (attempt_id, name, now_iso(), float(duration_s), int(ok), message))

    @contextlib.contextmanager
    def step(self, attempt_id: int, name: str) -> Iterator[_Step]:
        """Record one step: its start before the body runs, its end (duration, ok, message)
        after. An exception ends the step as failed with the exception's text, then goes on;
        a process killed inside leaves only the start, which `reconcile` then names."""
        self.step_started(attempt_id, name)
        handle = _Step()
        t0 = time.monotonic()
        try:
            yield handle
        except BaseException as e:
            msg = str(e) or type(e).__name__
            self.step_ended(attempt_id, name, duration_s=time.monotonic() - t0, ok=False,
                            message=msg)
            raise
        self.step_ended(attempt_id, name, duration_s=time.monotonic() - t0, ok=True,
                        message=handle.message)

    def finish_attempt(
        self,
        attempt_id: int,
        result: str,
        *,
        failed_step: str | None = None,
        message: str | None = None,
        rollback_performed: bool = False,
        rollback_result: str | None = None,
        board: BoardReport | None = None,
    ) -> None:
        """Append the attempt's one outcome. A second outcome for it is refused."""
        if result not in RESULTS:
            raise DeployLogError(f"unknown result {result!r} (expected one of {RESULTS})")
        b = board or BoardReport()
        with self._write() as con:
            self._require_open(con, attempt_id)
            self._insert_outcome(con, attempt_id, result, failed_step, message,
                                 rollback_performed, rollback_result, b)

    @staticmethod
    def _insert_outcome(con: sqlite3.Connection, attempt_id: int, result: str,
                        failed_step: str | None, message: str | None, rollback_performed: bool,
                        rollback_result: str | None, b: BoardReport) -> None:
        con.execute(
            "INSERT INTO outcomes (attempt_id, recorded_at, result, failed_step, message, "
            "rollback_performed, rollback_result, board_model_version, board_model_sha256, "
            "board_slot_state, recorded_by, recorded_on) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (attempt_id, now_iso(), result, failed_step, message, int(rollback_performed),
             rollback_result, b.model_version, b.model_sha256, b.slot_state, current_user(),
             socket.gethostname()))

    def reconcile(
        self,
        device_id: str,
        reported_model_version: str | None,
        reported_sha256: str | None,
        running_slot_state: str | None,
    ) -> list[Attempt]:
        """Close every open attempt on `device_id` with an appended 'interrupted' outcome
        holding what the board reports now; returns the attempts as they read afterwards.

        Call it holding the device's lock (`DeviceLock`): then no live process is flashing
        the board, so an attempt still open was cut short by a crash or Ctrl-C."""
        board = BoardReport(reported_model_version, reported_sha256, running_slot_state)
        with self._write() as con:
            open_ids = [int(r["id"]) for r in con.execute(
                "SELECT id FROM attempt_log WHERE device_id = ? AND result = ? ORDER BY id",
                (device_id, IN_PROGRESS))]
            for aid in open_ids:
                unfinished = con.execute(
                    "SELECT step FROM steps WHERE attempt_id = ? AND ok IS NULL "
                    "ORDER BY start_id DESC LIMIT 1", (aid,)).fetchone()
                failed_step = unfinished["step"] if unfinished else None
                where = f" during step '{failed_step}'" if failed_step else ""
                now = (f"model {reported_model_version or 'unknown'}, slot state "
                       f"{running_slot_state or 'unknown'}")
                self._insert_outcome(
                    con, aid, "interrupted", failed_step,
                    f"interrupted{where} (crash or Ctrl-C); reconciled later: the board "
                    f"reports {now}", False, None, board)
        return [self.get(aid) for aid in open_ids]

    # --- reading -----------------------------------------------------------------------
    def _attempts(self, where: str, args: tuple[Any, ...], limit: int | None) -> list[Attempt]:
        sql = (f"SELECT * FROM attempt_log {where} ORDER BY id DESC"
               + limit_clause(limit, DeployLogError))
        with self._read() as con:
            if con is None:
                return []
            rows = con.execute(sql, args).fetchall()
            out = []
            for r in rows:
                steps = tuple(
                    StepRecord(s["step"], s["started_at"], s["duration_s"],
                               None if s["ok"] is None else bool(s["ok"]), s["message"])
                    for s in con.execute("SELECT * FROM steps WHERE attempt_id = ? "
                                         "ORDER BY start_id", (r["id"],)))
                rb = r["rollback_performed"]
                out.append(Attempt(
                    id=r["id"], started_at=r["started_at"], command=r["command"],
                    device_id=r["device_id"], port=r["port"], env=r["env"], board=r["board"],
                    from_firmware=r["from_firmware"], from_model=r["from_model"],
                    to_firmware=r["to_firmware"], to_model=r["to_model"], path=r["path"],
                    operator=r["operator"], host=r["host"], pid=r["pid"],
                    tinyship_version=r["tinyship_version"], result=r["result"],
                    finished_at=r["finished_at"], failed_step=r["failed_step"],
                    message=r["message"], rollback_performed=None if rb is None else bool(rb),
                    rollback_result=r["rollback_result"],
                    board_after=BoardReport(r["board_model_version"], r["board_model_sha256"],
                                            r["board_slot_state"]),
                    steps=steps,
                ))
            return out

    def list_attempts(self, device_id: str | None = None,
                      limit: int | None = None) -> list[Attempt]:
        """Attempts newest first, optionally for one device and at most `limit` of them."""
        if device_id is None:
            return self._attempts("", (), limit)
        return self._attempts("WHERE device_id = ?", (device_id,), limit)

    def open_attempts(self, device_id: str) -> list[Attempt]:
        """Attempts on `device_id` that have no outcome yet (running, or cut short)."""
        return list(reversed(self._attempts("WHERE device_id = ? AND result = ?",
                                            (device_id, IN_PROGRESS), None)))

    def get(self, attempt_id: int) -> Attempt:
        found = self._attempts("WHERE id = ?", (attempt_id,), None)
        if not found:
            raise DeployLogError(f"no attempt {attempt_id} in deployment log {self.path}")
        return found[0]
