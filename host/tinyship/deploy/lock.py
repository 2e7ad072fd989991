"""One flash per device at a time: a lock keyed by the port and by the device id.

`DeviceLock(lock_dir, port=..., command=...)` takes the port's lock first (a board whose id
is not known yet is locked by its port); `add_device_id(id)` then takes the device's lock
too, once INFO has named the board, so the same board reached through another port
(re-enumerated, or through RFC 2217) is also refused. Acquiring never waits: a held lock
raises `DeviceBusy` (a `PolicyError`, exit code 11: refused, nothing was sent) naming the
holder (pid, user, host, command, since when).

Each key is a `filelock` lock file `<key>.lock` in the lock folder (default
`<registry root>/deploy-locks/`, beside the deployment log) plus a `<key>.holder.json`
beside it written right after acquiring, so a refusal can say who holds it. On POSIX the
lock is a kernel `flock`, released by the kernel when the holder dies: a dead holder cannot
block anyone. What it leaves is its holder file; the next acquirer finds that holder's pid
gone on this host, says so (`took_over`) and takes the lock over. If the lock is still held
although the named pid is gone (a child process it started still holds the file), the
refusal says that too instead of breaking the lock. The lock folder is per host: a board
reached from two hosts over RFC 2217 is only protected when both use the same folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from tinyship.atomic import write_text_atomic
from tinyship.deploy.log import DeployLogError
from tinyship.errors import PolicyError
from tinyship.sqlite_log import current_user

#: Lock folder name beside the deployment log.
LOCK_DIR_NAME = "deploy-locks"


def default_lock_dir(log_path: Path) -> Path:
    """`deploy-locks/` in the folder of the deployment log."""
    return Path(log_path).parent / LOCK_DIR_NAME


def port_key(url: str) -> str:
    """What makes two port names one port: a local port by its real path (a
    /dev/serial/by-id link and /dev/ttyACM0 are one port; COM ports case-insensitive), a
    URL up to the case of its scheme and host."""
    if "://" not in url:
        return os.path.realpath(url) if url.startswith("/") else url.upper()
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}?{parts.query}"


def _key(kind: str, value: str) -> str:
    """A file name for a port or device id: readable, and unique thanks to a short hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._")[:48] or "_"
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]
    return f"{kind}-{safe}-{digest}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a device or port lock."""

    key: str
    pid: int
    user: str
    host: str
    command: str
    started_at: str

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def gone(self) -> bool:
        """True only when provably dead: on this host and its pid no longer exists."""
        return self.on_this_host and not _pid_alive(self.pid)

    def describe(self) -> str:
        return (f"pid {self.pid} ({self.user}@{self.host}, `{self.command}`, "
                f"since {self.started_at})")

    @classmethod
    def read(cls, path: Path) -> LockHolder | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in
                          ("key", "pid", "user", "host", "command", "started_at")})
        except (OSError, ValueError, KeyError, TypeError):
            return None


class DeviceBusy(PolicyError):
    """Another process holds this board's (or port's) lock: a second flash is refused before
    anything is sent (exit code 11, refused by policy)."""

    hint = ("wait for it to finish; if that process is hung, stop it (its pid is named) "
            "and run the command again")

    def __init__(self, message: str, *, holder: LockHolder | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class DeviceLock:
    """Non-blocking per-port and per-device lock for one flash or rollback.

    Use as a context manager (acquires the port's lock, and the device's when `device_id`
    is given) or call `acquire`/`release`. `took_over` lists stale holders it replaced.
    """

    def __init__(self, lock_dir: Path, *, port: str | None = None,
                 device_id: str | None = None, command: str = "tinyship flash") -> None:
        if port is None and device_id is None:
            raise ValueError("DeviceLock needs a port, a device id or both")
        self.lock_dir = Path(lock_dir)
        self.port = port
        self.device_id = device_id
        self.command = command
        self.took_over: list[LockHolder] = []
        self._held: list[tuple[FileLock, Path]] = []

    def __enter__(self) -> DeviceLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return bool(self._held)

    def acquire(self) -> None:
        """Take the port's lock, then the device's; on refusal nothing stays held."""
        try:
            if self.port is not None:
                self._take("port", port_key(self.port))
            if self.device_id is not None:
                self._take("device", self.device_id)
        except BaseException:
            self.release()
            raise

    def add_device_id(self, device_id: str) -> None:
        """Also lock the device id, learned after the port was locked (from INFO)."""
        if self.device_id == device_id and any(
                p.name.startswith("device-") for _, p in self._held):
            return
        self.device_id = device_id
        self._take("device", device_id)

    def _take(self, kind: str, value: str) -> None:
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DeployLogError(f"cannot create lock folder {self.lock_dir}: "
                              f"{e.strerror or e}") from None
        key = _key(kind, value)
        lock_path = self.lock_dir / f"{key}.lock"
        holder_path = self.lock_dir / f"{key}.holder.json"
        lock = FileLock(lock_path, timeout=0, blocking=False, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise self._busy(kind, value, holder_path) from None
        except OSError as e:
            raise DeployLogError(f"cannot lock {kind} {value!r} ({lock_path}): "
                              f"{e.strerror or e}") from None
        previous = LockHolder.read(holder_path)
        if previous is not None and previous.gone:
            self.took_over.append(previous)
        me = LockHolder(key=f"{kind} {value}", pid=os.getpid(), user=current_user(),
                        host=socket.gethostname(), command=self.command,
                        started_at=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            write_text_atomic(holder_path, json.dumps(asdict(me), indent=2) + "\n")
        except OSError as e:
            lock.release()
            raise DeployLogError(f"cannot write lock holder {holder_path}: "
                              f"{e.strerror or e}") from None
        self._held.append((lock, holder_path))

    def _busy(self, kind: str, value: str, holder_path: Path) -> DeviceBusy:
        what = f"{'board' if kind == 'device' else 'port'} {value}"
        holder = None
        for _ in range(3):  # the holder may be between taking the lock and naming itself
            holder = LockHolder.read(holder_path)
            if holder is not None:
                break
            import time

            time.sleep(0.05)
        if holder is None:
            return DeviceBusy(f"{what} is locked by another process (holder unknown: "
                              f"{holder_path} missing or unreadable)", holder=None)
        if holder.gone:
            return DeviceBusy(
                f"{what} is still locked, although its recorded holder {holder.describe()} "
                f"is gone: a process it started still holds {holder_path.with_suffix('')}",
                holder=holder,
                hint="stop that process (e.g. an uploader left running: `fuser` on the lock "
                     "file names it), then run the command again")
        return DeviceBusy(f"{what} is busy: held by {holder.describe()}", holder=holder)

    def release(self) -> None:
        """Release everything held, newest first; removes our holder files."""
        while self._held:
            lock, holder_path = self._held.pop()
            mine = LockHolder.read(holder_path)
            if mine is not None and mine.pid == os.getpid():
                with contextlib.suppress(OSError):
                    holder_path.unlink()
            lock.release()

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "device_id": self.device_id, "held": self.held,
                "took_over": [asdict(h) for h in self.took_over]}
