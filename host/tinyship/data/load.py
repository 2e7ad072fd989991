"""Reading and writing dataset CSVs, with errors that name the file and the columns.

Training, checks and the registry manifest all go through here, so a dataset problem is
reported once, the same way, before any model code runs.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd

from tinyship.config import DataSection
from tinyship.errors import DataError


def load_dataset(path: Path, data_cfg: DataSection) -> pd.DataFrame:
    """Read a CSV and keep the configured features, the target (and the group column, if
    configured), in config order.

    Raises DataError naming the file when it is missing, empty, unparseable, or lacks a
    configured column (all missing columns are named, with the ones available).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"dataset not found: {path}",
            hint="check data.path in the config (or --data); 'bundled:NAME' names a shipped one",
        )
    if not path.is_file():
        raise DataError(f"dataset is not a file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"dataset file is empty: {path}")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"dataset {path} is not a readable CSV: {first}") from None
    if df.empty:
        raise DataError(f"dataset {path} has a header but no data rows")

    wanted = [*data_cfg.features, data_cfg.target]
    if data_cfg.group is not None:
        wanted.append(data_cfg.group)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        available = ", ".join(str(c) for c in df.columns)
        raise DataError(
            f"dataset {path} is missing configured column(s) {names} (available: {available})",
            hint="fix data.features / data.target in the config or the CSV header",
        )
    return df[wanted].copy()


def fingerprint(path: Path) -> dict[str, object]:
    """SHA-256 of the file bytes and its data-row count: ties a model to the exact data."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read dataset {path}: {e.strerror or e}") from None
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        lines = sum(1 for row in csv.reader(f) if row)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "rows": max(lines - 1, 0),
    }


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and `os.replace`, so a reader (or a crash)
    never sees half a dataset."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a dataset is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
