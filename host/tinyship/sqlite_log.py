"""Append-only logs in SQLite, shared by the deployment log and the audit log.

Why a base: a log several processes write at once (a fleet flash, the retrain job, a
person's `tinyship registry hold`) needs the same handful of SQLite habits every time, and
each is easy to get subtly wrong:

* one short connection per call, `PRAGMA journal_mode=WAL`, a busy timeout, and every
  write inside `BEGIN IMMEDIATE`, so concurrent writers queue instead of failing;
* switching a brand-new file to WAL is retried, because two processes creating the file at
  once race for that switch and SQLite answers the loser "locked" without waiting;
* the schema is versioned with `PRAGMA user_version` and migrated inside the writer's
  transaction; a newer version, or an SQLite file that is not this log, is refused with a
  clear error instead of being migrated blindly;
* history is append-only, enforced by the schema (`append_only_triggers`), so a past row
  is never rewritten, by tinyship or by a hand-run `sqlite3`;
* reading never creates the file.

A subclass sets `label` (for messages), `error` (its `TinyshipError` subclass),
`schema_version`, `migrations` and `marker_table`, then uses `_write()` and `_read()`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from tinyship.errors import TinyshipError


def now_iso() -> str:
    """UTC time with milliseconds, ISO 8601: sorts as text and reads without a time zone."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def current_user() -> str:
    """The login name, or `uid:N` where there is none (containers without a passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def tinyship_version() -> str:
    """The running tinyship's version (imported late: the package imports its modules)."""
    from tinyship import __version__

    return __version__


def append_only_triggers(tables: Iterable[str], what: str) -> str:
    """SQL creating triggers that abort any UPDATE or DELETE on `tables`; `what` names the
    log in the error SQLite raises ("the deployment log is append-only: ...")."""
    return "".join(
        f"""
CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, '{what} is append-only: {t} rows are never updated'); END;
CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t}
BEGIN SELECT RAISE(ABORT, '{what} is append-only: {t} rows are never deleted'); END;
"""
        for t in tables
    )


def split_sql(script: str) -> list[str]:
    """Statements of a schema script, run one by one inside the caller's transaction
    (`executescript` would commit first). Trigger bodies keep their inner semicolons."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class SqliteLog:
    """An append-only SQLite log at `path` (created with its folder on the first write).

    Each call opens its own short connection and commits before returning, so a crash right
    after a call never loses what it wrote, and several processes can share the file.
    """

    #: What the file is, in messages: "deployment log", "audit log".
    label: ClassVar[str] = "log"
    #: Raised for every problem with the file; its exit code and hint are the log's.
    error: ClassVar[type[TinyshipError]] = TinyshipError
    #: Schema version this code writes (PRAGMA user_version).
    schema_version: ClassVar[int] = 0
    #: user_version -> script that brings the schema from the previous version to it.
    migrations: ClassVar[Mapping[int, str]] = {}
    #: A table every version of this log has: another tinyship log (same user_version,
    #: other tables) is refused by name instead of failing on its first query.
    marker_table: ClassVar[str | None] = None

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise self.error(f"cannot open {self.label} {self.path}: {e}") from None
        try:
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            self._wal(con)
        except sqlite3.Error as e:
            con.close()
            raise self.error(f"{self.path} is not a usable {self.label}: {e}") from None
        return con

    def _wal(self, con: sqlite3.Connection) -> None:
        """Switch a new log to WAL. Two processes creating the file at once race for the
        switch, and SQLite answers the loser "database is locked" without waiting for the
        busy timeout: retry within it."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _check_version(self, con: sqlite3.Connection) -> int:
        """The file's schema version; refuses a newer one and a foreign SQLite file."""
        v = int(con.execute("PRAGMA user_version").fetchone()[0])
        if v > 0 and self.marker_table is not None and not con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (self.marker_table,)).fetchone():
            raise self.error(
                f"{self.path} is an SQLite file but not a tinyship {self.label} (schema "
                f"version {v}, no '{self.marker_table}' table)",
                hint=f"point the {self.label} at another file",
            )
        if v > self.schema_version or v < 0:
            raise self.error(
                f"{self.label} {self.path} has schema version {v}; this tinyship "
                f"({tinyship_version()}) knows versions up to {self.schema_version}",
                hint="upgrade tinyship to read it; it is never downgraded or rewritten",
            )
        if v == 0:
            tables = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise self.error(
                    f"{self.path} is an SQLite file but not a tinyship {self.label} "
                    f"(no schema version, {tables} table(s))",
                    hint=f"point the {self.label} at another file",
                )
        return v

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside `BEGIN IMMEDIATE` with the schema current; commits on exit."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self.error(f"cannot create folder for {self.label} {self.path}: "
                             f"{e.strerror or e}") from None
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            v = self._check_version(con)
            for target in range(v + 1, self.schema_version + 1):
                for stmt in split_sql(self.migrations[target]):
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version = {target}")
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise self.error(f"cannot write {self.label} {self.path}: {e}") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A connection for reading, or None when no log exists yet (reading creates none)."""
        if not self.path.exists():
            yield None
            return
        con = self._connect()
        try:
            yield None if self._check_version(con) == 0 else con
        except sqlite3.Error as e:
            raise self.error(f"cannot read {self.label} {self.path}: {e}") from None
        finally:
            con.close()


def limit_clause(limit: int | None, error: type[TinyshipError]) -> str:
    """` LIMIT n` for a caller's limit (none for None); a negative one is refused."""
    if limit is None:
        return ""
    if limit < 0:
        raise error(f"limit must be 0 or more, got {limit}")
    return f" LIMIT {int(limit)}"
