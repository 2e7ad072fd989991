"""The audit trail: every decision of the retrain job, and every person's override, in one
append-only SQLite log.

Why: the retrain job promotes and reflashes without a person watching; when a board runs a
surprising model, the first questions are who or what decided it, on which data, against
which champion, and why. Each event answers them in one row, and a run id groups the events
of one retrain run.

Where: `<registry root>/audit.sqlite` by default (`default_audit_path`), beside the
deployment log (`deployments.sqlite`); the registry lists only `vNNNN` folders, so neither
shows up as a version. Like the deployment log it is append-only, enforced by the schema
(triggers abort UPDATE and DELETE), WAL, one `BEGIN IMMEDIATE` transaction per event, so
the retrain job and a person's `tinyship registry hold` can write at the same time.

Kinds (`KINDS`, a closed set checked on `record`; deliberately not a CHECK constraint,
because SQLite can only change one by rebuilding the table, which an append-only table
must never be):

    run_started   a retrain run began (details: its options)
    trigger       one trigger's decision: fired or not, its value and threshold
    ingest        a data batch was accepted into a new dataset snapshot
    quarantine    a data batch failed its checks and was quarantined, never merged
    register      a challenger was trained and registered (its lineage in details)
    comparison    champion vs challenger: the test, p-value, effect size, verdict
    validation    a challenger's hardware-in-the-loop validation and its result
    promotion     `production` moved to another version (automatic, or a person's override)
    hold          a person held an alias (decision `held`), or a run met that hold and
                  stopped before promoting (decision `awaiting_approval`)
    release       a person released that hold
    refusal       something was refused (a failed gate, HIL validation, a guard)
    reflash       a board was reflashed (or rolled back) after a promotion
    run_finished  a retrain run ended (decision: its outcome)

Author: `TINYSHIP_AUTHOR` when set (a CI job names the pipeline or the person who
triggered it), else the login name.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import sqlite3
from collections.abc import Mapping
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

#: File name of the audit log in the registry folder.
AUDIT_NAME = "audit.sqlite"
#: Environment variable naming the author instead of the login name (CI jobs).
AUTHOR_ENV = "TINYSHIP_AUTHOR"
#: Schema version this code writes (PRAGMA user_version).
SCHEMA_VERSION = 1
#: Event kinds, in the order a retrain run usually writes them (see the module doc).
KINDS = ("run_started", "trigger", "ingest", "quarantine", "register", "comparison",
         "build", "validation", "promotion", "hold", "release", "refusal", "reflash",
         "run_finished")

_SCHEMA_V1 = """
CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
    at               TEXT NOT NULL,
    kind             TEXT NOT NULL,
    run_id           TEXT,
    author           TEXT NOT NULL,
    host             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    tinyship_version TEXT NOT NULL,
    snapshot         TEXT,
    champion         TEXT,
    challenger       TEXT,
    decision         TEXT,
    reason           TEXT,
    details          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events(run_id, id);
CREATE INDEX events_kind ON events(kind, id);
""" + append_only_triggers(["events"], "the audit log")

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}


class AuditLogError(RegistryError):
    """The audit log cannot be opened, read or written, or an event is invalid (exit code
    6, as the registry it lives beside)."""

    hint = ("check the file's and its folder's permissions; never edit the audit log by "
            "hand")


def default_audit_path(registry_root: Path) -> Path:
    """`<registry root>/audit.sqlite`: beside the versions and the deployment log."""
    return Path(registry_root) / AUDIT_NAME


def current_author() -> str:
    """Who is acting: `TINYSHIP_AUTHOR` if set and not blank, else the login name."""
    return os.environ.get(AUTHOR_ENV, "").strip() or current_user()


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log."""

    id: int
    at: str
    kind: str
    run_id: str | None
    author: str
    host: str
    pid: int
    tinyship_version: str
    snapshot: str | None = None
    champion: str | None = None
    challenger: str | None = None
    decision: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog(SqliteLog):
    """The append-only audit log at `path` (created with its folder on the first event)."""

    label = "audit log"
    error = AuditLogError
    schema_version = SCHEMA_VERSION
    migrations = _MIGRATIONS
    marker_table = "events"

    def record(
        self,
        kind: str,
        *,
        run_id: str | None = None,
        snapshot: str | None = None,
        champion: str | None = None,
        challenger: str | None = None,
        decision: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        author: str | None = None,
    ) -> AuditEvent:
        """Append one event and commit it; returns it as stored. `snapshot` is the dataset
        snapshot id, `champion`/`challenger` registry versions; `details` must be a JSON
        object (values JSON cannot hold are stored as text)."""
        if kind not in KINDS:
            raise AuditLogError(f"unknown audit event kind {kind!r} (expected one of "
                                f"{', '.join(KINDS)})")
        if details is not None and not isinstance(details, Mapping):
            raise AuditLogError(f"audit details must be a mapping, got {type(details).__name__}")
        text = json.dumps(dict(details or {}), sort_keys=True, default=str)
        event = AuditEvent(
            id=0, at=now_iso(), kind=kind, run_id=run_id, author=author or current_author(),
            host=socket.gethostname(), pid=os.getpid(), tinyship_version=tinyship_version(),
            snapshot=snapshot, champion=champion, challenger=challenger, decision=decision,
            reason=reason, details=json.loads(text),
        )
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO events (at, kind, run_id, author, host, pid, tinyship_version, "
                "snapshot, champion, challenger, decision, reason, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.at, kind, run_id, event.author, event.host, event.pid,
                 event.tinyship_version, snapshot, champion, challenger, decision, reason,
                 text))
            assert cur.lastrowid is not None
            return AuditEvent(**{**asdict(event), "id": int(cur.lastrowid)})

    def list(self, run_id: str | None = None, kind: str | None = None,
             limit: int | None = None) -> builtins.list[AuditEvent]:
        """Events newest first (as `tinyship deployments` lists attempts), optionally of
        one run and/or one kind, at most `limit` of them."""
        if kind is not None and kind not in KINDS:
            raise AuditLogError(f"unknown audit event kind {kind!r} (expected one of "
                                f"{', '.join(KINDS)})")
        where, args = [], []
        for column, value in (("run_id", run_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = ("SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC" + limit_clause(limit, AuditLogError))
        with self._read() as con:
            if con is None:
                return []
            rows = con.execute(sql, args).fetchall()
        return [_event(r) for r in rows]


def _event(r: sqlite3.Row) -> AuditEvent:
    """An `events` row as an AuditEvent; unreadable details JSON is kept as text, since a
    damaged row must still be shown, not hide the rest of the log."""
    try:
        details = json.loads(r["details"])
    except (TypeError, ValueError):
        details = {"unparsed": r["details"]}
    return AuditEvent(
        id=r["id"], at=r["at"], kind=r["kind"], run_id=r["run_id"], author=r["author"],
        host=r["host"], pid=r["pid"], tinyship_version=r["tinyship_version"],
        snapshot=r["snapshot"], champion=r["champion"], challenger=r["challenger"],
        decision=r["decision"], reason=r["reason"],
        details=details if isinstance(details, dict) else {"value": details},
    )
