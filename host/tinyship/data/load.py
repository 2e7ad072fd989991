"""Reading and writing dataset CSVs, with errors that name the file and the columns.

Training, checks and the registry manifest all go through here, so a dataset problem is
reported once, the same way, before any model code runs.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from tinyship import atomic
from tinyship.config import DataSection
from tinyship.errors import DataError


def load_dataset(path: Path, data_cfg: DataSection) -> pd.DataFrame:
    """Read a CSV and keep the configured features, the target (and the group column, if
    configured), in config order.

    Raises DataError naming the file when it is missing, empty, not UTF-8 (with the line of
    the first bad byte), unparseable, or lacks a configured column (all missing columns are
    named, with the ones available and the config key that asked for each).
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
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None
    except (pd.errors.ParserError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"dataset {path} is not a readable CSV: {first}") from None
    if df.empty:
        raise DataError(f"dataset {path} has a header but no data rows")

    # Each column with the config key that asked for it, so the hint names the right key.
    keyed = [(c, "data.features") for c in data_cfg.features]
    keyed.append((data_cfg.target, "data.target"))
    if data_cfg.group is not None:
        keyed.append((data_cfg.group, "data.group"))
    missing = [(c, key) for c, key in keyed if c not in df.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c, _ in missing)
        keys = " / ".join(dict.fromkeys(key for _, key in missing))
        available = ", ".join(str(c) for c in df.columns)
        raise DataError(
            f"dataset {path} is missing configured column(s) {names} (available: {available})",
            hint=f"fix {keys} in the config or the CSV header",
        )
    return df[[c for c, _ in keyed]].copy()


def _not_utf8(path: Path, err: UnicodeDecodeError) -> DataError:
    """DataError naming the line and byte of the first byte that is not UTF-8.

    pandas reports a position inside its read buffer ("position 0"), which points nowhere
    in the file; decoding the bytes again gives the real offset.
    """
    try:
        blob = path.read_bytes()
    except OSError as e:
        return DataError(f"cannot read dataset {path}: {e.strerror or e}")
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = blob.rfind(b"\n", 0, e.start) + 1
        line = blob.count(b"\n", 0, e.start) + 1
        byte = e.start - line_start + 1
        return DataError(
            f"dataset {path} is not UTF-8 text: the first undecodable byte"
            f" (0x{blob[e.start]:02x}) is on line {line}, byte {byte} of that line",
            hint="re-save the CSV as UTF-8 (a spreadsheet's 'CSV UTF-8' format, or"
            " `iconv -f latin1 -t utf-8 old.csv > new.csv` for Latin-1 text)",
        )
    # The bytes decode as a whole, so pandas' error has no better position: keep its words.
    return DataError(f"dataset {path} is not a readable CSV: {err}")


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
    """Write a dataset atomically (a reader or a crash never sees half of it), readable by
    others: a dataset is meant to be shared."""
    atomic.write_bytes_atomic(path, data, mode=0o644)
