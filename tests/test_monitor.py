"""Production monitoring: the prediction log joined with late truth, metrics per slice and
window, low-confidence flags, the Prometheus textfile, and the rules and dashboard in
monitoring/ querying only what is exported (`tinyship monitor`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm

from conftest import FIXTURE_REGISTRY, add_version, make_classification_csv, small_config
from conftest import run_cli as _cli
from conftest import run_cli_json as _cli_json
from tinyship.data.generate import BATTERY_FEATURES, BATTERY_TARGET, generate_battery_dataset
from tinyship.data.profile import PROFILE_FILE, reference_profile
from tinyship.deploy.log import RESULTS, DeploymentLog
from tinyship.errors import DataError, ExitCode, TinyshipError
from tinyship.monitor import prom
from tinyship.monitor.production import (
    ModelReference,
    load_predictions,
    load_reference,
    parse_window,
    production_report,
    rare_classes,
)
from tinyship.pipeline import long_tail_mask
from tinyship.registry import MANIFEST, Registry

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "monitoring" / "tinyship.rules.yml"
DASHBOARD = REPO / "monitoring" / "grafana-dashboard.json"
START = pd.Timestamp("2026-03-01", tz="UTC")
DAYS = 21
#: node_exporter's own metrics, which the staleness alert reads (not tinyship's to export).
NODE_EXPORTER_METRICS = {"node_textfile_mtime_seconds"}


# --- fixtures: a registry and a prediction log from the bundled generator -------------------


def _add_artifact(root: Path, version: str, name: str, data: bytes) -> None:
    """Add a file to a stored version with its digest in the manifest, as training would."""
    (root / version / name).write_bytes(data)
    path = root / version / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["artifacts"][name] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(manifest, indent=1))


def _ranges(df: pd.DataFrame) -> dict[str, Any]:
    """A drift profile's per-feature min/max (`tinyship.monitor.drift` stores more)."""
    return {"features": {f: {"min": float(df[f].min()), "max": float(df[f].max())}
                         for f in BATTERY_FEATURES}}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """v0001 (no drift profile, as trained before profiles existed) and v0002 (the same
    model with one); production -> v0002, last_known_good -> v0001."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(FIXTURE_REGISTRY / "v0001", root / "v0001")
    add_version(root, "v0002")
    training = generate_battery_dataset(cells=40, seed=7)
    _add_artifact(root, "v0002", PROFILE_FILE, json.dumps(_ranges(training)).encode())
    reg = Registry(root)
    assert reg.verify_all() == {"v0001": [], "v0002": []}
    reg.set_alias("production", "v0002")
    reg.set_alias("last_known_good", "v0001")
    return reg


def _battery_log(seed: int = 3, cells: int = 12) -> pd.DataFrame:
    """Predictions a fleet of three boards logged over three weeks: the truth plus noise,
    worse (bias +2) on cells below 85 % SoH; `target` holds the truth for every row."""
    df = generate_battery_dataset(cells=cells, seed=seed)
    rng = np.random.default_rng(seed)
    n = len(df)
    seconds = np.sort(rng.uniform(0, DAYS * 86400, n))
    y = df[BATTERY_TARGET].to_numpy()
    pred = y + rng.normal(0, 0.5, n) + np.where(y < 85, 2.0, 0.0)
    log = pd.DataFrame({
        "id": [f"p{i:05d}" for i in range(n)],
        "timestamp": [(START + pd.Timedelta(seconds=s)).isoformat() for s in seconds],
        "device_id": [f"board-{c % 3}" for c in df["cell_id"]],
        "model_version": np.where(np.arange(n) < n // 2, "v0001", "v0002"),
        "prediction": pred.round(3),
    })
    for f in BATTERY_FEATURES:
        log[f] = df[f]
    log["target"] = y
    return log


@pytest.fixture
def battery_log() -> pd.DataFrame:
    return _battery_log()


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


# --- the report -------------------------------------------------------------------------------


def test_regression_metrics_overall_per_slice_and_window(
        registry: Registry, battery_log: pd.DataFrame, tmp_path: Path) -> None:
    log_path = _write(battery_log, tmp_path / "log.csv")
    ref = load_reference(registry, "production")
    report = production_report(load_predictions(log_path), ref, window="7d")
    y, p = battery_log["target"].to_numpy(), battery_log["prediction"].to_numpy()

    assert (report.task, report.version, report.rows, report.labelled) == (
        "regression", "v0002", len(y), len(y))
    overall = report.slice("all")
    assert overall is not None
    assert overall.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert overall.metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    # The long tail is the training definition (pipeline.long_tail_mask, the version's
    # config: bottom 10 %), cut on the version's held-out targets.
    with np.load(registry.path("v0002") / "test_set.npz") as z:
        mask, desc = long_tail_mask(y, z["y"], ref.config)
    tail = report.slice("long_tail")
    assert tail is not None and report.long_tail == desc and desc.startswith("soh_pct <=")
    assert tail.rows == mask.sum() > 0
    assert tail.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y[mask], p[mask]))
    assert tail.metrics["mae"] > 3 * overall.metrics["mae"] / 2  # the injected bias shows
    board = report.slice("device:board-1")
    sel = (battery_log["device_id"] == "board-1").to_numpy()
    assert board is not None and board.rows == sel.sum()
    assert board.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y[sel], p[sel]))
    assert {s.name for s in report.slices} >= {"model_version:v0001", "model_version:v0002"}
    # Registered int8 test metrics of the version, the alerts' baseline.
    int8 = registry.manifest("v0002")["metrics"]["int8"]
    assert report.registered["all"]["mae"] == int8["mae"]
    assert report.registered["long_tail"]["mae"] == int8["long_tail"]["mae"]

    # Windows: consecutive 7-day bins covering every row, and the trailing 7 days.
    assert len(report.windows) == 3
    assert sum(w.overall.rows for w in report.windows) == len(y)
    ts = pd.to_datetime(battery_log["timestamp"], utc=True)
    first = (ts < pd.Timestamp(report.windows[0].end)).to_numpy()
    assert report.windows[0].overall.metrics["mae"] == pytest.approx(
        skm.mean_absolute_error(y[first], p[first]))
    recent = (ts > ts.max() - pd.Timedelta(days=7)).to_numpy()
    r_all = report.slice("all", recent=True)
    assert r_all is not None and r_all.rows == recent.sum()
    assert r_all.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y[recent], p[recent]))
    json.dumps(report.to_dict())  # plain data


def test_late_truth_is_joined_on_id(battery_log: pd.DataFrame, tmp_path: Path) -> None:
    log = battery_log.copy()
    truth_values = log[["id", "target"]].rename(columns={"target": BATTERY_TARGET})
    log["target"] = np.where(np.arange(len(log)) < 100, log["target"], np.nan)
    log.loc[0, "target"] = 1.0  # a wrong early label; the truth file corrects it
    late = truth_values.iloc[np.r_[0, 50:300]]
    extra = pd.DataFrame({"id": ["nope-1", "nope-2"], BATTERY_TARGET: [90.0, 91.0]})
    truth = _write(pd.concat([late, extra]), tmp_path / "truth.csv")

    joined = load_predictions(_write(log, tmp_path / "log.csv"), truth,
                              target_name=BATTERY_TARGET)
    assert (joined.truth_rows, joined.truth_unmatched) == (253, 2)
    target = joined.frame["target"].astype(float)
    assert target.notna().sum() == 300  # rows 0-99 from the log, 50-299 from the truth
    assert target.iloc[0] == pytest.approx(battery_log["target"].iloc[0])
    report = production_report(joined, window=None)
    assert (report.rows, report.labelled, report.truth_unmatched) == (len(log), 300, 2)
    assert report.notes and "long-tail slice unavailable" in " ".join(report.notes)

    # The value column may be `target`, the model's target name, or the only one; else refused.
    _write(pd.DataFrame({"id": ["p00001"], "label": [1.0], "other": [2.0]}), tmp_path / "t2.csv")
    with pytest.raises(DataError, match="cannot tell the target column"):
        load_predictions(tmp_path / "log.csv", tmp_path / "t2.csv")
    _write(pd.DataFrame({"id": ["p00001", "p00001"], "target": [1.0, 2.0]}), tmp_path / "t3.csv")
    with pytest.raises(DataError, match="duplicated id"):
        load_predictions(tmp_path / "log.csv", tmp_path / "t3.csv")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.drop(columns=["timestamp"]), "missing column"),
    (lambda d: d.assign(timestamp="yesterday"), "ISO 8601"),
    (lambda d: d.assign(id="same"), "duplicated id"),
    (lambda d: d.assign(prediction="high"), None),  # inferred as a classification log
])
def test_bad_logs_are_data_errors(battery_log: pd.DataFrame, tmp_path: Path, change: Any,
                                  message: str | None) -> None:
    path = _write(change(battery_log.head(20)), tmp_path / "log.csv")
    if message is None:
        assert production_report(load_predictions(path), window=None).task == "classification"
        return
    with pytest.raises(DataError, match=message):
        load_predictions(path)


def test_regression_low_confidence_is_input_outside_training_range(
        registry: Registry, battery_log: pd.DataFrame, tmp_path: Path) -> None:
    ranges = _ranges(generate_battery_dataset(cells=40, seed=7))["features"]
    log = battery_log.copy()
    log.loc[:9, "mean_temperature_c"] = ranges["mean_temperature_c"]["max"] + 5
    log.loc[5:14, "cycle_index"] = ranges["cycle_index"]["max"] * 3
    path = _write(log, tmp_path / "log.csv")
    inside = np.ones(len(log), dtype=bool)
    for f, r in ranges.items():
        inside &= log[f].between(r["min"], r["max"]).to_numpy()

    report = production_report(load_predictions(path), load_reference(registry, "v0002"))
    lc = report.low_confidence
    assert lc.available and lc.flagged == (~inside).sum() >= 15
    assert lc.by_feature["mean_temperature_c"] >= 10 and lc.by_feature["cycle_index"] >= 10
    low = report.slice("low_confidence")
    assert low is not None and low.rows == lc.flagged
    overall = report.slice("all")
    assert overall is not None and overall.low_confidence_ratio == pytest.approx(
        lc.flagged / len(log))

    # v0001 has no drift profile: the rule is unavailable, said so, and nothing crashes.
    old = production_report(load_predictions(path), load_reference(registry, "v0001"))
    assert not old.low_confidence.available
    assert PROFILE_FILE in old.low_confidence.detail
    assert old.slice("low_confidence") is None
    assert old.slices[0].low_confidence is None


def _classification_log(n: int = 400, seed: int = 4) -> pd.DataFrame:
    """Three classes, `faulty` rare; probabilities with a few unsure rows."""
    rng = np.random.default_rng(seed)
    classes = np.array(["faulty", "healthy", "worn"])
    y = rng.choice(3, size=n, p=[0.06, 0.64, 0.30])
    pred = np.where(rng.uniform(size=n) < 0.85, y, rng.integers(0, 3, n))
    proba = np.full((n, 3), 0.05)
    proba[np.arange(n), pred] = np.where(np.arange(n) % 10 == 0, 0.5, 0.9)
    log = pd.DataFrame({
        "id": np.arange(n).astype(str),
        "timestamp": [(START + pd.Timedelta(hours=i)).isoformat() for i in range(n)],
        "device_id": "board-0",
        **{f"p_{c}": proba[:, j] for j, c in enumerate(classes)},
        "target": classes[y],
    })
    log.loc[n - 50:, "target"] = np.nan  # truth not in yet
    return log


def test_classification_accuracy_rare_classes_and_confidence(tmp_path: Path) -> None:
    log = _classification_log()
    path = _write(log, tmp_path / "log.csv")
    cfg = small_config(tmp_path, make_classification_csv(tmp_path / "c.csv"),
                       task="classification")
    reference = ModelReference(
        version="v0009", task="classification", target="label",
        classes=["faulty", "healthy", "worn"], config=cfg,
        y_reference=np.array(["faulty"] * 6 + ["healthy"] * 64 + ["worn"] * 30, dtype=object),
        registered={"all": {"accuracy": 0.95, "macro_f1": 0.9}}, feature_ranges=None)
    report = production_report(load_predictions(path), reference, window="1d",
                               confidence_threshold=0.6)

    proba = log[["p_faulty", "p_healthy", "p_worn"]].to_numpy()
    pred = np.array(["faulty", "healthy", "worn"])[proba.argmax(axis=1)]  # no prediction column
    lab = log["target"].notna().to_numpy()
    y = log["target"].to_numpy()
    overall = report.slice("all")
    assert overall is not None and (overall.rows, overall.labelled) == (400, 350)
    assert overall.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y[lab], pred[lab]))
    assert overall.metrics["macro_f1"] == pytest.approx(
        skm.f1_score(y[lab], pred[lab], average="macro"))
    # The long tail of a classifier: its rarest classes (here `faulty`, 6 % of the reference).
    assert report.long_tail is not None and "{faulty}" in report.long_tail
    tail = report.slice("long_tail")
    assert tail is not None and tail.rows == (y[lab] == "faulty").sum()
    # Low confidence: top-class probability 0.5 < 0.6 on every tenth row.
    assert report.low_confidence.available and report.low_confidence.flagged == 40
    assert overall.low_confidence_ratio == pytest.approx(0.1)
    assert len(report.windows) == 17  # 400 hours in 1-day bins

    no_proba = _write(log.drop(columns=["p_faulty", "p_healthy", "p_worn"])
                      .assign(prediction=pred), tmp_path / "plain.csv")
    plain = production_report(load_predictions(no_proba), reference)
    assert not plain.low_confidence.available and "p_<class>" in plain.low_confidence.detail


def test_rare_classes_and_windows() -> None:
    labels = np.array(["a"] * 50 + ["b"] * 40 + ["c"] * 6 + ["d"] * 4)
    assert rare_classes(labels, 0.10) == ["c", "d"]
    assert rare_classes(labels, 0.01) == ["d"]  # at least the rarest one
    assert rare_classes(np.array([]), 0.1) == []
    assert parse_window("7d") == pd.Timedelta(days=7)
    assert parse_window("12h") == pd.Timedelta(hours=12)
    for bad in ("0d", "7", "week", "-1d"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


# --- Prometheus ---------------------------------------------------------------------------------


def _drift_dict() -> dict[str, Any]:
    """The shape of `DriftReport.to_dict()`: feature rows and the predictions' row."""
    rows = [{"feature": f, "psi": 0.02 * (i + 1), "ks_stat": 0.01 * (i + 1), "ks_p": 0.5,
             "band": "ok"} for i, f in enumerate(BATTERY_FEATURES)]
    rows.append({"feature": "charge_time_s_unscored", "psi": None, "ks_stat": None,
                 "ks_p": None, "band": "insufficient"})
    return {"features": rows, "predictions": {"feature": "prediction", "psi": 0.3,
                                              "ks_stat": 0.25, "ks_p": 1e-9, "band": "alert"}}


HIL = {"passed": True, "latency_us": {"p50": 800.0, "p95": 950.0, "p99": 1200.0,
                                      "max": 1500.0}}


def _deployments(tmp_path: Path) -> DeploymentLog:
    log = DeploymentLog(tmp_path / "deployments.sqlite")
    for i, result in enumerate(["ok", "ok", "rolled_back", "rollback_failed", None]):
        aid = log.start_attempt(device_id=f"dev-{i}", port="/dev/ttyACM0", to_model="v0002")
        if result is not None:
            log.finish_attempt(aid, result)
    return log


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _full_export(registry: Registry, battery_log: pd.DataFrame, tmp_path: Path) -> str:
    log_path = _write(battery_log, tmp_path / "log.csv")
    report = production_report(load_predictions(log_path), load_reference(registry),
                               window="7d")
    reg = prom.build_registry(
        report, models=registry, drift=_drift_dict(), hil=HIL,
        last_retrain_time=pd.Timestamp("2026-03-20", tz="UTC").to_pydatetime(),
        last_retrain_outcome="deployed",
        deployments=_deployments(tmp_path).list_attempts())
    return prom.render(reg)


def test_build_registry_exports_every_input(registry: Registry, battery_log: pd.DataFrame,
                                            tmp_path: Path) -> None:
    s = _samples(_full_export(registry, battery_log, tmp_path))
    sha = registry.manifest("v0002")["model"]["sha256"]
    assert _value(s, "tinyship_model_info", alias="production", version="v0002",
                  sha256=sha) == 1
    assert _value(s, "tinyship_model_info", alias="last_known_good", version="v0001",
                  sha256=registry.manifest("v0001")["model"]["sha256"]) == 1
    assert _value(s, "tinyship_prediction_mae", slice="all", window="test") == (
        registry.manifest("v0002")["metrics"]["int8"]["mae"])
    for window in ("all", "7d"):
        for sl in ("all", "long_tail", "device:board-0", "model_version:v0002"):
            assert _value(s, "tinyship_prediction_mae", slice=sl, window=window) >= 0
            assert _value(s, "tinyship_prediction_rmse", slice=sl, window=window) >= 0
    assert _value(s, "tinyship_prediction_mae", slice="low_confidence", window="all") >= 0
    assert _value(s, "tinyship_low_confidence_ratio", slice="all", window="7d") >= 0
    assert _value(s, "tinyship_predictions_total", slice="all") == len(battery_log)
    assert _value(s, "tinyship_predictions_labelled_total", slice="all") == len(battery_log)
    assert _value(s, "tinyship_feature_psi", feature="cycle_index") == pytest.approx(0.02)
    assert _value(s, "tinyship_feature_ks_statistic", feature="charge_time_s") == (
        pytest.approx(0.08))
    assert not any(k[0].startswith("tinyship_feature") and ("feature",
                   "charge_time_s_unscored") in k[1] for k in s)  # unscored: no made-up 0
    assert _value(s, "tinyship_prediction_ks_statistic") == 0.25
    assert _value(s, "tinyship_hil_latency_seconds", quantile="0.99") == pytest.approx(1.2e-3)
    assert _value(s, "tinyship_hil_latency_seconds", quantile="1") == pytest.approx(1.5e-3)
    assert _value(s, "tinyship_last_retrain_timestamp_seconds") == pd.Timestamp(
        "2026-03-20", tz="UTC").timestamp()
    assert _value(s, "tinyship_last_retrain_outcome", outcome="deployed") == 1
    assert _value(s, "tinyship_last_retrain_outcome", outcome="refused") == 0
    # Deployment results from the log; the attempt still in progress is not counted yet.
    counts = {r: _value(s, "tinyship_deployments_total", result=r) for r in RESULTS}
    assert counts == {"ok": 2, "failed": 0, "rolled_back": 1, "rollback_failed": 1,
                      "refused": 0, "interrupted": 0}


def test_device_slices_are_capped_and_registries_are_private(
        battery_log: pd.DataFrame, tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    report = production_report(load_predictions(_write(battery_log, tmp_path / "l.csv")))
    text = prom.render(prom.build_registry(report, max_device_slices=2))
    assert 'slice="device:' not in text and 'slice="model_version:v0001"' in text
    assert 'slice="device:board-2"' in prom.render(prom.build_registry(report))
    assert not any(m.name.startswith("tinyship_") for m in REGISTRY.collect())
    assert prom.render(prom.build_registry()) == ""  # no input, no made-up metric


def test_textfile_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    path = tmp_path / "textfile" / "tinyship.prom"
    prom.write_textfile(path, prom.build_registry(last_retrain_outcome="deployed"))
    assert path.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    before = path.read_bytes()
    assert _value(_samples(before.decode()), "tinyship_last_retrain_outcome",
                  outcome="deployed") == 1

    # The rename is the commit point: if it fails, the old file stays whole and no
    # temp file is left for node_exporter (which reads only *.prom anyway).
    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(TinyshipError, match="No space"):
        prom.write_textfile(path, prom.build_registry(last_retrain_outcome="refused"))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["tinyship.prom"]
    monkeypatch.undo()
    prom.write_textfile(path, prom.build_registry(last_retrain_outcome="refused"))
    assert _value(_samples(path.read_text()), "tinyship_last_retrain_outcome",
                  outcome="refused") == 1


def test_real_drift_report_feeds_the_exporter() -> None:
    """The contract with `tinyship.monitor.drift`: its report dict exports as is."""
    from tinyship.monitor.drift import drift_report

    train = generate_battery_dataset(cells=20, seed=1)
    hot = generate_battery_dataset(cells=20, seed=2, temperature_shift_c=12.0)
    profile = reference_profile(train[BATTERY_FEATURES].to_numpy(), BATTERY_FEATURES)
    report = drift_report(profile, hot[BATTERY_FEATURES]).to_dict()
    # The ranges the regression low-confidence rule reads are in the same profile.
    assert set(profile["features"]["cycle_index"]) >= {"min", "max"}
    s = _samples(prom.render(prom.build_registry(drift=report)))
    rows = {r["feature"]: r for r in report["features"]}
    psi = _value(s, "tinyship_feature_psi", feature="mean_temperature_c")
    assert psi == pytest.approx(rows["mean_temperature_c"]["psi"]) and psi > 0.25


# --- monitoring/: rules and dashboard query only exported metrics ---------------------------


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and grouping clauses are removed, minus functions and keywords."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = _GROUPING.sub(" ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def _rule_exprs() -> Iterator[tuple[str, str]]:
    import yaml

    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_promql_metric_names() -> None:
    assert promql_metric_names(
        'tinyship_prediction_mae{window!~"all|test", slice=~"a|b"} > ignoring(window) '
        'group_left 1.10 * tinyship_prediction_mae{window="test"}') == {
        "tinyship_prediction_mae"}
    assert promql_metric_names("time() - tinyship_last_retrain_timestamp_seconds > 35 * 86400"
                               ) == {"tinyship_last_retrain_timestamp_seconds"}
    assert promql_metric_names("sort_desc(increase(x_total[$__range])) > 1e6 and on (a) y"
                               ) == {"x_total", "y"}


def test_rules_and_dashboard_query_only_exported_metrics(
        registry: Registry, battery_log: pd.DataFrame, tmp_path: Path) -> None:
    exported = {name for name, _ in _samples(_full_export(registry, battery_log, tmp_path))}
    cls_log = _write(_classification_log(), tmp_path / "cls.csv")
    cls = production_report(load_predictions(cls_log), window="7d")
    exported |= {name for name, _ in _samples(prom.render(prom.build_registry(cls)))}

    queried: dict[str, set[str]] = {}
    for where, expr in [*_rule_exprs(), *_dashboard_exprs()]:
        for name in promql_metric_names(expr):
            queried.setdefault(name, set()).add(where)
    missing = {n: sorted(w) for n, w in queried.items()
               if n not in exported and n not in NODE_EXPORTER_METRICS}
    assert not missing, f"queried but not exported: {missing}"
    # And everything exported is on the dashboard (alerts need not cover all of it).
    on_dashboard = {n for _, e in _dashboard_exprs() for n in promql_metric_names(e)}
    assert exported <= on_dashboard, exported - on_dashboard
    assert len(list(_rule_exprs())) >= 8


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("TINYSHIP_REQUIRE_PROMTOOL"):
            pytest.fail("promtool not on PATH and TINYSHIP_REQUIRE_PROMTOOL is set")
        pytest.skip("promtool not on PATH (Debian: apt-get install prometheus)")
    return tool


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_alert_expressions_fire_on_exported_series(tmp_path: Path) -> None:
    """Prometheus itself (`promtool test rules`) evaluates the rule expressions on series
    as the exporter writes them: the label matching (`ignoring(window) group_left`) works."""
    tool = _promtool()
    report = production_report(
        load_predictions(_write(_battery_log(), tmp_path / "log.csv")), window="7d")
    report.registered = {"all": {"mae": 0.1}}
    text = prom.render(prom.build_registry(report, last_retrain_outcome="refused",
                                           last_retrain_time=0.0))
    series = [{"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}",
               "values": f"{value}x50"} for (name, labels), value in _samples(text).items()]
    exprs = dict(_rule_exprs())
    mae = _value(_samples(text), "tinyship_prediction_mae", slice="all", window="7d")
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1d",
        # One sample a day for 50 days: late enough for the 35-day staleness rule.
        "tests": [{"interval": "1d", "input_series": series, "promql_expr_test": [
            # Only slice "all" has a test baseline: device and version slices match nothing.
            {"expr": exprs["TinyshipMaeUp"], "eval_time": "40d",
             "exp_samples": [{"labels": 'tinyship_prediction_mae{slice="all",window="7d"}',
                              "value": mae}]},
            {"expr": exprs["TinyshipRetrainFailed"], "eval_time": "40d",
             "exp_samples": [{"labels": 'tinyship_last_retrain_outcome{outcome="refused"}',
                              "value": 1}]},
            {"expr": exprs["TinyshipRetrainStale"], "eval_time": "40d",
             "exp_samples": [{"labels": "{}", "value": 40 * 86400}]},
        ]}],
    }
    test_file = tmp_path / "rules.test.json"  # JSON is YAML
    test_file.write_text(json.dumps(spec))
    out = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the command ------------------------------------------------------------------------------


def test_cli_monitor_json_and_human(registry: Registry, battery_log: pd.DataFrame,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = battery_log.assign(target=np.nan)
    log_path = _write(log, tmp_path / "log.csv")
    truth = _write(battery_log[["id", "target"]].head(200), tmp_path / "truth.csv")
    prom_file = tmp_path / "textfile" / "tinyship.prom"
    hil = tmp_path / "hil.json"
    hil.write_text(json.dumps(HIL))
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps(_drift_dict()))
    _deployments(tmp_path)
    common = ["--predictions", str(log_path), "--truth", str(truth),
              "--registry", str(registry.root)]

    code, doc = _cli_json(capsys, "monitor", *common, "--window", "7d", "--prom-file",
                          str(prom_file), "--hil-report", str(hil), "--drift-report", str(drift),
                          "--log", str(tmp_path / "deployments.sqlite"))
    assert code == 0, doc
    assert (doc["version"], doc["rows"], doc["labelled"]) == ("v0002", len(log), 200)
    assert doc["prom_file"] == str(prom_file) and doc["window"] == "7d"
    assert doc["slices"][0]["slice"] == "all" and "mae" in doc["slices"][0]["metrics"]
    s = _samples(prom_file.read_text())
    assert _value(s, "tinyship_predictions_labelled_total", slice="all") == 200
    assert _value(s, "tinyship_deployments_total", result="rollback_failed") == 1
    assert _value(s, "tinyship_hil_latency_seconds", quantile="0.5") == pytest.approx(8e-4)

    code, out, err = _cli(capsys, "monitor", *common, "--model", "v0001")
    assert code == 0, err
    assert "production regression, model v0001" in out
    assert "long_tail" in out and "board-2" in out and "per 7d window" in out
    assert "unavailable" in out  # v0001 has no drift profile: no low-confidence rule

    code, out, err = _cli(capsys, "monitor", *common, "--prom-file", str(tmp_path / "x.txt"))
    assert code == ExitCode.USAGE and "*.prom" in err
    code, out, err = _cli(capsys, "monitor", *common, "--window", "fortnight")
    assert code == ExitCode.USAGE and "window" in err
    code, out, err = _cli(capsys, "monitor", *common, "--hil-report", str(hil))
    assert code == ExitCode.USAGE and "--prom-file" in err
    code, doc = _cli_json(capsys, "monitor", "--predictions", str(tmp_path / "none.csv"),
                          "--registry", str(registry.root))
    assert code == ExitCode.DATA and doc["error"]["type"] == "DataError"


def test_retrain_outcomes_agree_with_the_job() -> None:
    """The exporter lists the job's outcomes (monitor sits below retrain, so it cannot
    import them); this keeps the two lists in step."""
    job = pytest.importorskip("tinyship.retrain.job")
    assert set(prom.RETRAIN_OUTCOMES) == set(job.OUTCOMES)
