"""The versioned dataset store: snapshots with parent and fingerprint, quarantine of bad
batches (nothing merged), column mismatches, folder batches, immutability, re-ingesting
the same file, `tinyship data ingest` / `data snapshots`, and their audit events."""

from __future__ import annotations

import hashlib
import json
import stat
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import run_cli as _cli
from tinyship.audit import AuditLog, default_audit_path
from tinyship.config import Config, parse_config
from tinyship.data.generate import (
    BATTERY_FEATURES,
    BATTERY_TARGET,
    generate_battery_dataset,
    to_csv_bytes,
)
from tinyship.data.load import fingerprint, load_dataset
from tinyship.data.store import (
    DatasetStore,
    QuarantinedBatch,
    Snapshot,
    default_store_path,
)
from tinyship.errors import DataError, ExitCode
from tinyship.registry import Registry

DATA: dict[str, Any] = {
    "features": BATTERY_FEATURES, "target": BATTERY_TARGET, "group": "cell_id",
    "min_rows": 200, "ranges": {"mean_temperature_c": [-30, 80], "soh_pct": [0, 110]},
}


def _csv(path: Path, *, cells: int = 4, seed: int = 1, **kw: Any) -> Path:
    """A battery CSV from the bundled generator (a few cells: ~250 rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_csv_bytes(generate_battery_dataset(cells=cells, seed=seed, **kw)))
    return path


def _config(tmp: Path, seed_csv: Path | None) -> Config:
    data = {**DATA, "path": str(seed_csv or tmp / "absent.csv")}
    return parse_config({"project": {"registry": str(tmp / "models")}, "data": data},
                        base_dir=tmp, source="test config")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Config, DatasetStore]:
    cfg = _config(tmp_path, _csv(tmp_path / "train.csv", cells=6, seed=1))
    return cfg, DatasetStore.for_registry(cfg.registry_path)


def _rows(path: Path) -> int:
    return len(pd.read_csv(path))


def _tree(root: Path) -> dict[str, str]:
    """Every file under root with its SHA-256: 'nothing else changed' is this, unchanged."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_good_batch_makes_a_snapshot_with_parent_and_fingerprint(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    assert store.list() == [] and store.latest() is None
    batch = _csv(tmp_path / "in" / "new.csv", cells=3, seed=2)
    snap = store.ingest(batch, cfg)

    seed = store.get("ds-0001")
    assert seed.parent is None and seed.sources[0].name == "train.csv"
    # The seed is the configured dataset byte for byte: models trained before the store
    # existed already carry its fingerprint.
    assert seed.data_path.read_bytes() == cfg.dataset_path.read_bytes()
    assert seed.sha256 == fingerprint(cfg.dataset_path)["sha256"]
    assert seed.new_rows_path == seed.data_path
    assert seed.rows_total == seed.rows_new == _rows(cfg.dataset_path)

    assert snap.id == "ds-0002" and snap.parent == "ds-0001"
    assert [s.id for s in store.list()] == ["ds-0001", "ds-0002"] and store.latest() == snap
    fp = fingerprint(snap.data_path)
    assert (snap.sha256, snap.rows_total) == (fp["sha256"], fp["rows"])
    assert snap.rows_new == _rows(batch) and snap.duplicates_dropped == 0
    assert snap.rows_total == seed.rows_total + snap.rows_new
    assert snap.data_path.read_bytes().startswith(seed.data_path.read_bytes())
    new = load_dataset(snap.new_rows_path, cfg.data)
    pd.testing.assert_frame_equal(new, load_dataset(batch, cfg.data))
    (src,) = snap.sources
    assert (src.name, src.rows) == ("new.csv", snap.rows_new)
    assert src.sha256 == hashlib.sha256(batch.read_bytes()).hexdigest()
    meta = json.loads((snap.path / "snapshot.json").read_text())
    assert meta == {k: v for k, v in snap.to_dict().items() if k != "path"}
    assert meta["rows_total"] == snap.rows_total and meta["columns"][0] == "cell_id"
    assert store.get("ds-0002") == snap
    assert store.find(str(fingerprint(cfg.dataset_path)["sha256"])) == seed
    assert store.find(snap.sha256) == snap and store.find("0" * 64) is None
    # Training reads a snapshot as it reads any dataset, and it passes the checks.
    assert len(load_dataset(snap.data_path, cfg.data)) == snap.rows_total
    # The registry only lists vNNNN folders: the store beside the versions is invisible.
    assert Registry(cfg.registry_path).versions() == []


def test_bad_batch_is_quarantined_with_its_reason_and_nothing_merged(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    store.ingest(_csv(tmp_path / "in" / "ok.csv", cells=2, seed=3), cfg)
    before = _tree(store.root)
    df = generate_battery_dataset(cells=3, seed=4)
    df.loc[5, "soh_pct"] = 250.0  # outside the declared range
    df.loc[7, "mean_temperature_c"] = None  # missing
    bad = tmp_path / "in" / "bad.csv"
    bad.write_bytes(to_csv_bytes(df))
    with pytest.raises(QuarantinedBatch, match="quarantined: the batch fails 2 data check") as e:
        store.ingest(bad, cfg)
    q = e.value
    assert q.exit_code == ExitCode.DATA and isinstance(q, DataError)
    assert {(f["rule"], f["column"]) for f in q.failures} == {
        ("range", "soh_pct"), ("missing", "mean_temperature_c")}
    assert q.folder.parent == store.root / "quarantine"
    assert q.folder.name.endswith(hashlib.sha256(bad.read_bytes()).hexdigest()[:12])
    assert (q.folder / "bad.csv").read_bytes() == bad.read_bytes()
    reason = json.loads((q.folder / "reason.json").read_text())
    assert reason["stage"] == "checks" and reason["snapshot"] == "ds-0002"
    assert {f["rule"] for f in reason["failures"]} == {"range", "missing"}
    assert reason == q.reason
    # Nothing merged: the snapshots are as they were, no new one; the batch is untouched.
    after = {k: v for k, v in _tree(store.root).items() if not k.startswith("quarantine")}
    assert after == before and [s.id for s in store.list()] == ["ds-0001", "ds-0002"]
    assert bad.is_file()


def test_a_bad_first_batch_leaves_the_store_without_even_a_seed(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe not a csv \x00\n")
    with pytest.raises(QuarantinedBatch, match="not UTF-8") as e:
        store.ingest(bad, cfg)
    assert e.value.reason["stage"] == "read" and e.value.reason["snapshot"] is None
    assert store.list() == [] and not (store.root / "snapshots").exists()
    with pytest.raises(DataError, match="new data not found") as nf:
        store.ingest(tmp_path / "missing.csv", cfg)
    assert not isinstance(nf.value, QuarantinedBatch)  # nothing to set aside


def test_column_mismatch_is_quarantined_and_column_order_is_not(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    df = generate_battery_dataset(cells=2, seed=5)
    extra = tmp_path / "extra.csv"
    extra.write_bytes(to_csv_bytes(df.assign(humidity_pct=40.0)))
    with pytest.raises(QuarantinedBatch, match=r"columns differ .*extra \['humidity_pct'\]") as e:
        store.ingest(extra, cfg)
    assert e.value.reason["stage"] == "columns" and store.list() == []
    missing = tmp_path / "missing.csv"
    missing.write_bytes(to_csv_bytes(df.drop(columns=["cell_id"])))
    with pytest.raises(QuarantinedBatch, match=r"missing configured column.*'cell_id'") as e:
        store.ingest(missing, cfg)  # a configured column (data.group): training can't read it
    assert e.value.reason["stage"] == "read"
    # A column the config does not name, missing from the batch: still not the snapshot's.
    no_group = _config(tmp_path / "ng", cfg.dataset_path).model_copy(
        update={"data": cfg.data.model_copy(update={"group": None})})
    other = DatasetStore.for_registry(no_group.registry_path)
    with pytest.raises(QuarantinedBatch, match=r"missing \['cell_id'\], extra none") as e:
        other.ingest(missing, no_group)
    assert e.value.reason["stage"] == "columns" and other.list() == []

    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_bytes(to_csv_bytes(df[list(reversed(df.columns))]))
    snap = store.ingest(shuffled, cfg)
    assert list(snap.columns) == list(df.columns)  # stored in the snapshot's order
    assert list(pd.read_csv(snap.new_rows_path).columns) == list(df.columns)


def test_a_folder_batch_is_concatenated_in_name_order(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    folder = tmp_path / "inbox"
    b = _csv(folder / "b.csv", cells=2, seed=7)
    a = _csv(folder / "a.csv", cells=2, seed=6)
    (folder / "notes.txt").write_text("not data")
    snap = store.ingest(folder, cfg)
    assert [(s.name, s.rows) for s in snap.sources] == [("a.csv", _rows(a)),
                                                        ("b.csv", _rows(b))]
    new = pd.read_csv(snap.new_rows_path)
    expected = pd.concat([pd.read_csv(a), pd.read_csv(b)], ignore_index=True)
    pd.testing.assert_frame_equal(new, expected)

    odd = tmp_path / "odd"
    _csv(odd / "1.csv", cells=2, seed=8)
    (odd / "2.csv").write_bytes(to_csv_bytes(
        generate_battery_dataset(cells=2, seed=9).assign(extra=1)))
    with pytest.raises(QuarantinedBatch, match=r"2\.csv has other columns than 1\.csv") as e:
        store.ingest(odd, cfg)
    assert sorted(p.name for p in e.value.folder.iterdir()) == ["1.csv", "2.csv",
                                                                 "reason.json"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CSV files"):
        store.ingest(tmp_path / "empty", cfg)
    assert store.latest() == snap


def test_snapshots_are_immutable(project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    cfg, store = project
    first = store.ingest(_csv(tmp_path / "1.csv", cells=2, seed=10), cfg)
    frozen = _tree(first.path)
    second = store.ingest(_csv(tmp_path / "2.csv", cells=2, seed=11), cfg)
    assert second.parent == first.id and _tree(first.path) == frozen
    for snap in store.list():
        for f in snap.path.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o444, f
        assert not any(p.name.startswith(".staging") for p in snap.path.parent.iterdir())
    assert not any(p.name.startswith(".staging") for p in store.root.iterdir())
    with pytest.raises(DataError, match="no dataset snapshot 'ds-0009'"):
        store.get("ds-0009")
    with pytest.raises(DataError, match="no dataset snapshot"):
        store.get("../x")


def test_ingesting_the_same_file_again_adds_nothing(
        project: tuple[Config, DatasetStore], tmp_path: Path) -> None:
    """Documented: every row already in the latest snapshot -> no new snapshot, the latest
    is returned; a batch overlapping it adds only its new rows."""
    cfg, store = project
    audit = AuditLog(default_audit_path(cfg.registry_path))
    batch = _csv(tmp_path / "new.csv", cells=2, seed=12)
    snap = store.ingest(batch, cfg, audit=audit, run_id="r1")
    again = store.ingest(batch, cfg, audit=audit, run_id="r2")
    assert again == snap and [s.id for s in store.list()] == ["ds-0001", "ds-0002"]
    (unchanged,) = audit.list(run_id="r2")
    assert (unchanged.kind, unchanged.decision, unchanged.snapshot) == (
        "ingest", "unchanged", "ds-0002")

    old = pd.read_csv(batch)
    fresh = generate_battery_dataset(cells=2, seed=13)
    overlap = tmp_path / "overlap.csv"
    overlap.write_bytes(to_csv_bytes(pd.concat([old.iloc[:10], fresh], ignore_index=True)))
    third = store.ingest(overlap, cfg)
    assert third.parent == "ds-0002" and third.duplicates_dropped == 10
    assert third.rows_new == len(fresh) and third.rows_total == snap.rows_total + len(fresh)


def test_dataset_level_rules_judge_the_merged_snapshot(tmp_path: Path) -> None:
    """A batch smaller than min_rows is fine on top of enough data; alone it is not."""
    small = _csv(tmp_path / "small.csv", cells=2, seed=14)
    assert _rows(small) < DATA["min_rows"]
    seeded = _config(tmp_path / "a", _csv(tmp_path / "a" / "train.csv", cells=6, seed=1))
    snap = DatasetStore.for_registry(seeded.registry_path).ingest(small, seeded)
    assert snap.rows_new == _rows(small)

    unseeded = _config(tmp_path / "b", None)  # no configured dataset: nothing to seed
    store = DatasetStore.for_registry(unseeded.registry_path)
    with pytest.raises(QuarantinedBatch, match="merged with nothing, the data would fail") as e:
        store.ingest(small, unseeded)
    assert e.value.reason["stage"] == "merged" and store.list() == []
    assert {f["rule"] for f in e.value.failures} == {"min_rows"}
    first = store.ingest(_csv(tmp_path / "big.csv", cells=5, seed=15), unseeded)
    assert first.id == "ds-0001" and first.parent is None
    assert first.new_rows_path == first.data_path and first.rows_new == first.rows_total


def _cli_config(tmp_path: Path) -> Path:
    _csv(tmp_path / "train.csv", cells=6, seed=1)
    cfg = tmp_path / "tinyship.toml"
    cfg.write_text(textwrap.dedent(f"""
        [project]
        registry = "models"
        [data]
        path = "train.csv"
        features = {json.dumps(BATTERY_FEATURES)}
        target = "{BATTERY_TARGET}"
        min_rows = 200
        [data.ranges]
        soh_pct = [0, 110]
    """))
    return cfg


def test_ingest_and_snapshots_commands_and_their_audit_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TINYSHIP_AUTHOR", "data-bot")
    cfg = _cli_config(tmp_path)
    reg = tmp_path / "models"
    code, out, _ = _cli(capsys, "data", "snapshots", "--config", str(cfg))
    assert code == 0 and "no snapshots" in out

    batch = _csv(tmp_path / "in" / "b1.csv", cells=2, seed=20)
    code, out, err = _cli(capsys, "data", "ingest", str(batch), "--config", str(cfg))
    assert code == 0, err
    assert "ds-0001: seeded" in out and "ds-0002:" in out and "parent ds-0001" in out
    code, out, err = _cli(capsys, "data", "ingest", str(batch), "--config", str(cfg),
                          "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "unchanged" and doc["snapshot"]["id"] == "ds-0002"
    code, out, _ = _cli(capsys, "data", "ingest", str(batch), "--config", str(cfg))
    assert "nothing new" in out

    df = generate_battery_dataset(cells=2, seed=21)
    df.loc[0, "soh_pct"] = -5.0
    bad = tmp_path / "in" / "bad.csv"
    bad.write_bytes(to_csv_bytes(df))
    code, out, err = _cli(capsys, "data", "ingest", str(bad), "--config", str(cfg), "--json")
    assert code == ExitCode.DATA and "quarantined" in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"]["type"] == "QuarantinedBatch"
    assert doc["error"]["failures"][0]["rule"] == "range"
    assert Path(doc["quarantine"]).is_dir() and doc["reason"]["stage"] == "checks"

    code, out, err = _cli(capsys, "data", "snapshots", "--registry", str(reg), "--json")
    assert code == 0, err
    snaps = json.loads(out)["snapshots"]
    assert [(s["id"], s["parent"]) for s in snaps] == [("ds-0001", None),
                                                       ("ds-0002", "ds-0001")]
    code, out, _ = _cli(capsys, "data", "snapshots", "--config", str(cfg))
    assert "ds-0002" in out and "b1.csv" in out and snaps[1]["sha256"][:12] in out
    other = tmp_path / "elsewhere"
    code, out, err = _cli(capsys, "data", "ingest", str(batch), "--config", str(cfg),
                          "--store", str(other), "--json")
    assert code == 0 and json.loads(out)["store"] == str(other)
    assert [s.id for s in DatasetStore(other).list()] == ["ds-0001", "ds-0002"]

    events = list(reversed(AuditLog(default_audit_path(reg)).list()))
    assert [(e.kind, e.decision, e.snapshot) for e in events] == [
        ("ingest", "seeded", "ds-0001"), ("ingest", "accepted", "ds-0002"),
        ("ingest", "unchanged", "ds-0002"), ("ingest", "unchanged", "ds-0002"),
        ("quarantine", "quarantined", "ds-0002"),
        ("ingest", "seeded", "ds-0001"), ("ingest", "accepted", "ds-0002")]
    assert {e.author for e in events} == {"data-bot"}
    assert events[4].details["stage"] == "checks" and "folder" in events[4].details
    assert default_store_path(reg) == reg / "datasets"


def test_snapshot_round_trips_through_its_json(project: tuple[Config, DatasetStore],
                                               tmp_path: Path) -> None:
    cfg, store = project
    snap = store.ingest(_csv(tmp_path / "x.csv", cells=2, seed=30), cfg)
    d = snap.to_dict()
    assert isinstance(snap, Snapshot) and d["path"] == str(snap.path)
    assert set(d) == {"id", "parent", "created", "sha256", "rows_total", "rows_new",
                      "duplicates_dropped", "columns", "sources", "path"}


def test_a_first_batch_with_nothing_new_only_seeds_the_store(
        project: tuple[Config, DatasetStore]) -> None:
    cfg, store = project
    snap = store.ingest(cfg.dataset_path, cfg)  # every row is already the configured data
    assert [s.id for s in store.list()] == ["ds-0001"] and snap.id == "ds-0001"
    assert snap.sha256 == fingerprint(cfg.dataset_path)["sha256"]
