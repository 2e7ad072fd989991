"""Atomic file replacement: readers (and a crash) see the old file or the new one, never half.

One implementation for the registry's aliases, generated datasets, the virtual board's state
and its flash image: write a temp file in the same folder, fsync, then rename over the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _temp_copy(path: Path, data: bytes, mode: int | None) -> str:
    """A temporary file beside `path` holding `data`, fsynced, with `mode` (mkstemp's
    default is 0600); the caller moves it into place and removes it on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data`; `mode` sets its permissions (mkstemp's default is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_copy(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_bytes_exclusive(path: Path, data: bytes, *, mode: int) -> None:
    """Write `path` whole or not at all, refusing to replace an existing file
    (FileExistsError): the complete temporary file is hard-linked to the name; where the
    file system has no hard links (FAT on a USB stick), the file is created with O_EXCL and
    written instead."""
    path = Path(path)
    tmp = _temp_copy(path, data, mode)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links: create exclusively instead
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(out, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))
