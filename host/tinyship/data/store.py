"""The versioned dataset store: immutable, fingerprinted snapshots, and a quarantine.

Why: a retrained model must name the exact data it was trained on, and a bad batch of new
rows must never leak into it. New data therefore never edits a dataset in place: each
accepted batch makes a new snapshot (the previous snapshot's rows plus the new ones), and a
batch that fails the data checks is set aside with its reason.

Layout (`<registry root>/datasets/` by default; the registry lists only `vNNNN` folders,
so the store never shows up as a version):

    datasets/
      .lock                       one writer at a time (snapshot numbers)
      snapshots/ds-0001/          the first snapshot (seeded from the configured dataset)
        data.csv                  every row, read-only
        snapshot.json             id, parent, sha256, row counts, columns, sources, created
      snapshots/ds-0002/
        data.csv                  ds-0001's data.csv byte for byte, then the new rows
        new_rows.csv              the new rows alone (header + rows), for drift checks
        snapshot.json
      quarantine/20250101T120000Z-1a2b3c4d5e6f/
        batch.csv                 a copy of each rejected source file
        reason.json               why: the stage, the message and every failed check

Rules `ingest` applies, in order (any failure quarantines the batch, nothing is merged):

1. Each CSV of the batch (a file, or every `*.csv` of a folder in name order) is read by
   `load_dataset` as training reads it; folder files must share one header.
2. The batch must have the same columns as the snapshot it extends (any order; it is
   stored in the snapshot's order).
3. `run_checks` on the batch: every rule of `[data]`. The rules about the whole
   distribution judge what training will see, so they are judged on the merged rows (4)
   rather than on a small batch alone: `min_rows`, `min_class_samples`,
   `constant_feature`, `constant_target`, and `outliers` (a robust z-score against the
   batch's own median and MAD misfires on a batch from two or three units: a second
   unit's C-rate is "20 % outliers"). Every other rule (missing, non-numeric,
   non-finite, range, duplicates) must pass on the batch itself.
4. `run_checks` on the merged snapshot, read back from its `data.csv` exactly as training
   will read it: every snapshot passes the checks training applies. (So a few outliers
   in a large snapshot are allowed up to `max_outlier_fraction` of all rows, exactly as
   if they had been in the training CSV from the start.)

Deduplication: a new row identical in every column to a row already in the snapshot, or
to an earlier row of the batch, is dropped (counted in `duplicates_dropped`); rows already
in the snapshot are kept as they are. Ingesting the same file twice therefore adds nothing
the second time: no new snapshot is made, and `ingest` returns the latest snapshot
unchanged (same id as before the call); with an audit log the event says `unchanged`.

Fingerprint: `sha256` and `rows_total` are what `tinyship.data.load.fingerprint` computes
for `data.csv`, the same numbers a model's manifest records for its training data. The
seed snapshot is the configured dataset copied byte for byte, so models trained before
the store existed carry its fingerprint already.

Immutability: a snapshot is written in a temporary folder and renamed into place whole;
its files are then read-only (0444). Folders stay writable so an operator can prune old
snapshots; tinyship never does.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
from filelock import FileLock

from tinyship.atomic import create_bytes_exclusive
from tinyship.data.checks import CheckReport, run_checks
from tinyship.data.load import fingerprint, load_dataset
from tinyship.errors import DataError

if TYPE_CHECKING:
    from tinyship.audit import AuditLog
    from tinyship.config import Config

#: Folder of the store in the registry.
STORE_DIR = "datasets"
SNAPSHOTS = "snapshots"
QUARANTINE = "quarantine"
DATA_CSV = "data.csv"
NEW_ROWS_CSV = "new_rows.csv"
SNAPSHOT_JSON = "snapshot.json"
REASON_JSON = "reason.json"
SNAPSHOT_RE = re.compile(r"^ds-(\d{4,})$")
#: Rules judged on the merged snapshot only (see the module doc, rule 3).
MERGED_ONLY_RULES = frozenset({"min_rows", "min_class_samples", "constant_feature",
                               "constant_target", "outliers"})
_READ_ONLY = 0o444


def default_store_path(registry_root: Path) -> Path:
    """`<registry root>/datasets/`: the data lives beside the models trained on it."""
    return Path(registry_root) / STORE_DIR


def format_snapshot_id(n: int) -> str:
    return f"ds-{n:04d}"


class QuarantinedBatch(DataError):
    """A new data batch failed a check and was quarantined; nothing was merged (exit 4).
    `folder` holds a copy of the batch and its `reason.json`."""

    def __init__(self, message: str, *, folder: Path, reason: dict[str, Any],
                 failures: list[dict[str, object]] | None = None) -> None:
        super().__init__(message, failures=failures,
                         hint=f"the batch and its reason are in {folder}; fix the data and "
                         "ingest it again")
        self.folder = folder
        self.reason = reason


@dataclass(frozen=True)
class SourceFile:
    """One file a snapshot's new rows came from."""

    name: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class Snapshot:
    """One immutable snapshot; `to_dict` is its snapshot.json plus its folder."""

    id: str
    parent: str | None
    created: str
    sha256: str
    rows_total: int
    rows_new: int
    duplicates_dropped: int
    columns: tuple[str, ...]
    sources: tuple[SourceFile, ...]
    path: Path

    @property
    def data_path(self) -> Path:
        """Every row: what training on this snapshot reads."""
        return self.path / DATA_CSV

    @property
    def new_rows_path(self) -> Path:
        """The rows this snapshot added (the whole data for a first snapshot)."""
        return self.path / (NEW_ROWS_CSV if self.parent is not None else DATA_CSV)

    def _meta(self) -> dict[str, Any]:
        d = asdict(self)
        del d["path"]
        d["columns"] = list(self.columns)
        d["sources"] = [asdict(s) for s in self.sources]
        return d

    def to_dict(self) -> dict[str, Any]:
        return {**self._meta(), "path": str(self.path)}


@dataclass
class _Batch:
    """A batch read and checked so far: its rows, where they came from, and its digest."""

    path: Path
    files: list[Path]
    sources: list[SourceFile]
    sha256: str


class DatasetStore:
    """Versioned snapshots of the training data, and the quarantine for rejected batches."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_registry(cls, registry_root: Path) -> DatasetStore:
        """The store at its default place in a registry."""
        return cls(default_store_path(registry_root))

    # --- reading ---------------------------------------------------------------------
    def list(self) -> builtins.list[Snapshot]:
        """Every complete snapshot, oldest first."""
        folder = self.root / SNAPSHOTS
        if not folder.is_dir():
            return []
        found = sorted((int(m.group(1)), p.name) for p in folder.iterdir()
                       if (m := SNAPSHOT_RE.match(p.name)) and (p / SNAPSHOT_JSON).is_file())
        return [self.get(name) for _, name in found]

    def latest(self) -> Snapshot | None:
        snaps = self.list()
        return snaps[-1] if snaps else None

    def find(self, sha256: str) -> Snapshot | None:
        """The newest snapshot whose data.csv has this SHA-256 (a model manifest's data
        fingerprint), or None: names the snapshot a version was trained on."""
        return next((s for s in reversed(self.list()) if s.sha256 == sha256), None)

    def get(self, snapshot_id: str) -> Snapshot:
        """A snapshot by id; DataError naming the store when it does not exist or its
        snapshot.json is damaged."""
        folder = self.root / SNAPSHOTS / snapshot_id
        meta = folder / SNAPSHOT_JSON
        if not SNAPSHOT_RE.match(snapshot_id) or not meta.is_file():
            raise DataError(f"no dataset snapshot '{snapshot_id}' in store {self.root}",
                            hint="`tinyship data snapshots` lists them")
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            return Snapshot(
                id=str(d["id"]), parent=d["parent"], created=str(d["created"]),
                sha256=str(d["sha256"]), rows_total=int(d["rows_total"]),
                rows_new=int(d["rows_new"]), duplicates_dropped=int(d["duplicates_dropped"]),
                columns=tuple(str(c) for c in d["columns"]),
                sources=tuple(SourceFile(str(s["name"]), str(s["sha256"]), int(s["rows"]))
                              for s in d["sources"]),
                path=folder)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{meta}: damaged snapshot metadata: {e}") from None

    # --- writing ---------------------------------------------------------------------
    def ingest(self, path: Path, cfg: Config, *, audit: AuditLog | None = None,
               run_id: str | None = None) -> Snapshot:
        """Check a new batch (a CSV, or a folder of CSVs) and make the next snapshot from
        it, seeding the store from `cfg.dataset_path` first when it is empty and that file
        exists. A failing batch raises `QuarantinedBatch` after copying it to the
        quarantine; a batch with nothing new returns the latest snapshot (module doc).
        With `audit`, an `ingest` or `quarantine` event is appended (with `run_id`)."""
        batch = _open_batch(Path(path))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create dataset store {self.root}: "
                            f"{e.strerror or e}") from None
        with FileLock(self.root / ".lock"):
            try:
                return self._ingest(batch, cfg, audit, run_id)
            except QuarantinedBatch as q:
                if audit is not None:
                    audit.record("quarantine", run_id=run_id, snapshot=q.reason["snapshot"],
                                 decision="quarantined", reason=str(q),
                                 details={"folder": str(q.folder), **q.reason})
                raise

    def _ingest(self, batch: _Batch, cfg: Config, audit: AuditLog | None,
                run_id: str | None) -> Snapshot:
        base = self.latest()
        seed = self._seed(cfg) if base is None else None
        old = base.data_path.read_bytes() if base else (seed[1] if seed else b"")
        against = base.id if base else ("the configured dataset" if seed else "nothing")
        quarantine = _Quarantiner(self.root / QUARANTINE, batch, base.id if base else None)
        frame = quarantine.read(cfg)
        existing = _read_exact(io.BytesIO(old)) if old else frame.iloc[:0]
        columns = [str(c) for c in existing.columns]
        if sorted(frame.columns) != sorted(columns):
            missing = [c for c in columns if c not in frame.columns]
            extra = [c for c in frame.columns if c not in columns]
            raise quarantine.reject(
                "columns", f"the batch's columns differ from {against}'s: missing "
                f"{missing or 'none'}, extra {extra or 'none'}")
        frame = frame[columns]
        quarantine.check(run_checks(frame, cfg.data), "checks", "the batch fails",
                         skip=MERGED_ONLY_RULES)

        merged = pd.concat([existing, frame], ignore_index=True)
        is_dup = merged.duplicated(keep="first").to_numpy()[len(existing):]
        new = frame[~is_dup]
        if new.empty and (base is not None or seed is not None):
            if base is None:  # seeding now: the seed is the snapshot, nothing comes after
                assert seed is not None
                base = self._write(seed[1], None, [seed[0]], columns, duplicates=0)
                if audit is not None:
                    _record_ingest(audit, run_id, base, "seeded", None,
                                   f"seeded from {cfg.dataset_path}")
            if audit is not None:
                _record_ingest(audit, run_id, base, "unchanged", batch,
                               f"every row of the batch is already in {base.id}")
            return base
        body = new.to_csv(index=False, header=not old, lineterminator="\n").encode()
        data = (old if old.endswith(b"\n") or not old else old + b"\n") + body
        with _staging(self.root) as tmp:  # judged as training will read it, before any write
            create_bytes_exclusive(tmp / DATA_CSV, data, mode=_READ_ONLY)
            quarantine.check(run_checks(load_dataset(tmp / DATA_CSV, cfg.data), cfg.data),
                             "merged", f"merged with {against}, the data would fail")

        if seed is not None:
            base = self._write(seed[1], None, [seed[0]], columns, duplicates=0)
            if audit is not None:
                _record_ingest(audit, run_id, base, "seeded", None,
                               f"seeded from {cfg.dataset_path}")
        snap = self._write(data, base, batch.sources, columns, duplicates=int(is_dup.sum()),
                           new=new)
        if audit is not None:
            _record_ingest(audit, run_id, snap, "accepted", batch,
                           f"{snap.rows_new} new row(s), {snap.rows_total} in all")
        return snap

    def _seed(self, cfg: Config) -> tuple[SourceFile, bytes] | None:
        """The configured dataset (its bytes, as the first snapshot), when it exists."""
        path = cfg.dataset_path
        if not path.is_file():
            return None
        load_dataset(path, cfg.data)  # a seed must be readable as training reads it
        fp = fingerprint(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"cannot read dataset {path}: {e.strerror or e}") from None
        return SourceFile(path.name, str(fp["sha256"]), cast(int, fp["rows"])), data

    def _write(self, data: bytes, base: Snapshot | None,
               sources: builtins.list[SourceFile], columns: builtins.list[str], *,
               duplicates: int, new: pd.DataFrame | None = None) -> Snapshot:
        """The next snapshot: `data` (and `new` as new_rows.csv) written in a temporary
        folder with its snapshot.json, then renamed into place whole."""
        folder = self.root / SNAPSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        last = self.latest()
        n = int(SNAPSHOT_RE.match(last.id).group(1)) + 1 if last else 1  # type: ignore[union-attr]
        sid = format_snapshot_id(n)
        with _staging(folder) as tmp:
            create_bytes_exclusive(tmp / DATA_CSV, data, mode=_READ_ONLY)
            if base is not None and new is not None:
                body = new.to_csv(index=False, lineterminator="\n").encode()
                create_bytes_exclusive(tmp / NEW_ROWS_CSV, body, mode=_READ_ONLY)
            fp = fingerprint(tmp / DATA_CSV)
            total = cast(int, fp["rows"])
            snap = Snapshot(
                id=sid, parent=base.id if base else None,
                created=datetime.now(UTC).isoformat(timespec="milliseconds"),
                sha256=str(fp["sha256"]), rows_total=total,
                rows_new=total if new is None or base is None else len(new),
                duplicates_dropped=duplicates,
                columns=tuple(columns),
                sources=tuple(sources), path=folder / sid)
            meta = json.dumps(snap._meta(), indent=2) + "\n"
            create_bytes_exclusive(tmp / SNAPSHOT_JSON, meta.encode(), mode=_READ_ONLY)
            os.rename(tmp, snap.path)
        return snap


def _record_ingest(audit: AuditLog, run_id: str | None, snap: Snapshot, decision: str,
                   batch: _Batch | None, reason: str) -> None:
    details = snap.to_dict()
    if batch is not None:
        details["batch"] = {"path": str(batch.path), "sha256": batch.sha256}
    audit.record("ingest", run_id=run_id, snapshot=snap.id, decision=decision, reason=reason,
                 details=details)


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A temporary folder in `folder` (readable by all once renamed into place), removed
    unless the body renamed it away."""
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the data from the team sharing it
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: pandas 3 parses floats exactly by default (and deprecates the option); pandas 2's
#: default parser may be one ULP off, so equal rows might not compare equal.
_EXACT_FLOATS: dict[str, Any] = (
    {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"})


def _read_exact(source: Path | io.BytesIO) -> pd.DataFrame:
    """A CSV with every column, floats parsed exactly, so equal rows compare equal
    wherever they were written."""
    return pd.read_csv(source, **_EXACT_FLOATS)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _open_batch(path: Path) -> _Batch:
    """The batch's files and digests; DataError (not a quarantine: there is nothing to set
    aside) when the path does not exist or a folder holds no CSV."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv"),
                       key=lambda p: p.name)
        if not files:
            raise DataError(f"no CSV files in {path}", hint="a batch folder holds *.csv files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"new data not found: {path}")
    digests = [_sha256(f) for f in files]
    if len(files) == 1:
        sha = digests[0]
    else:  # a folder: its files' names and contents, in order
        listing = "".join(f"{f.name}\0{d}\n" for f, d in zip(files, digests, strict=True))
        sha = hashlib.sha256(listing.encode()).hexdigest()
    sources = [SourceFile(f.name, d, 0) for f, d in zip(files, digests, strict=True)]
    return _Batch(path=path, files=files, sources=sources, sha256=sha)


class _Quarantiner:
    """Reads and judges one batch; `reject` copies it to the quarantine with its reason."""

    def __init__(self, root: Path, batch: _Batch, snapshot: str | None) -> None:
        self.root = root
        self.batch = batch
        self.snapshot = snapshot

    def read(self, cfg: Config) -> pd.DataFrame:
        """Every file as training reads it (`load_dataset`), then with all its columns;
        the files of a folder must share one header. Records each file's row count."""
        frames: builtins.list[pd.DataFrame] = []
        for i, f in enumerate(self.batch.files):
            try:
                load_dataset(f, cfg.data)
            except DataError as e:
                raise self.reject("read", str(e)) from None
            df = _read_exact(f)
            if frames and list(df.columns) != list(frames[0].columns):
                raise self.reject("columns", f"{f.name} has other columns than "
                                  f"{self.batch.files[0].name}: {list(df.columns)} vs "
                                  f"{list(frames[0].columns)}")
            frames.append(df)
            s = self.batch.sources[i]
            self.batch.sources[i] = SourceFile(s.name, s.sha256, len(df))
        return pd.concat(frames, ignore_index=True)

    def check(self, report: CheckReport, stage: str, what: str,
              skip: frozenset[str] = frozenset()) -> None:
        failures = [r for r in report.failures if r.rule not in skip]
        if failures:
            lines = "; ".join(r.message for r in failures)
            raise self.reject(stage, f"{what} {len(failures)} data check(s): {lines}",
                              [r.to_dict() for r in failures])

    def reject(self, stage: str, message: str,
               failures: builtins.list[dict[str, object]] | None = None) -> QuarantinedBatch:
        """Copy the batch and a reason.json to `quarantine/<time>-<sha12>/` (whole or not
        at all); returns the error to raise."""
        reason: dict[str, Any] = {
            "quarantined_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "batch": str(self.batch.path), "sha256": self.batch.sha256,
            "snapshot": self.snapshot, "stage": stage, "message": message,
            "failures": failures or [],
            "sources": [asdict(s) for s in self.batch.sources],
        }
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with _staging(self.root) as tmp:
            for f in self.batch.files:
                shutil.copyfile(f, tmp / f.name)
                os.chmod(tmp / f.name, _READ_ONLY)
            text = json.dumps(reason, indent=2, default=str) + "\n"
            create_bytes_exclusive(tmp / REASON_JSON, text.encode(), mode=_READ_ONLY)
            name = f"{stamp}-{self.batch.sha256[:12]}"
            target, k = self.root / name, 1
            while target.exists():  # the same batch twice within a second
                k += 1
                target = self.root / f"{name}-{k}"
            os.rename(tmp, target)
        return QuarantinedBatch(f"batch {self.batch.path} quarantined: {message}",
                                folder=target, reason=reason, failures=failures)
