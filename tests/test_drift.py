"""Drift: PSI on the training data's quantile bins, two-sample KS, the report, `tinyship drift`.

Drifted data comes from the bundled generator's knobs (`temperature_shift_c`, `chemistry`);
the registry is a copy of the committed fixture version with a drift profile added the way
training stores it (`add_drift_reference`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import FIXTURE_REGISTRY, add_version, run_cli, run_cli_json
from tinyship.data import profile as P
from tinyship.data.generate import BATTERY_FEATURES, generate_battery_dataset
from tinyship.data.profile import reference_profile
from tinyship.errors import DataError, ExitCode
from tinyship.monitor import drift as D
from tinyship.monitor.drift import drift_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def battery() -> pd.DataFrame:
    """The bundled dataset's rows (generator defaults): the training data of these tests."""
    return generate_battery_dataset()


@pytest.fixture(scope="module")
def profile(battery: pd.DataFrame) -> dict[str, Any]:
    x = battery[BATTERY_FEATURES].to_numpy()
    return reference_profile(x, BATTERY_FEATURES, predictions=x[:, 1] / 60.0)


# --- PSI maths -----------------------------------------------------------------------------


def test_psi_of_two_bins_by_hand() -> None:
    # p = (0.5, 0.5), q = (0.8, 0.2):
    # 0.3 ln(0.8/0.5) + (-0.3) ln(0.2/0.5) = 0.3 (ln 1.6 - ln 0.4) = 0.3 ln 4 = 0.4158883
    assert D.psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.3 * np.log(4.0))
    assert D.psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.4158883, abs=1e-7)
    assert D.psi([0.25] * 4, [0.25] * 4) == 0.0


def test_psi_report_matches_a_hand_computed_example() -> None:
    # Training 1..10, 4 bins. Inverted-CDF quantiles: q=0.25 -> 3 (F(3) = 0.3 is the first
    # F >= 0.25), q=0.5 -> 5, q=0.75 -> 8; 8 < max 10, so edges (3, 5, 8) and right-closed
    # bins (-inf,3] (3,5] (5,8] (8,inf) hold 3, 2, 3, 2 rows: p = (0.3, 0.2, 0.3, 0.2).
    prof = reference_profile(np.arange(1.0, 11.0)[:, None], ["a"], bins=4)
    assert prof["features"]["a"]["edges"] == [3.0, 5.0, 8.0]
    assert prof["features"]["a"]["fractions"] == pytest.approx([0.3, 0.2, 0.3, 0.2])
    # Current: 30 x 1, 12 x 4, 18 x 6 (60 rows): q = (0.5, 0.2, 0.3, 0), the top bin empty.
    cur = np.r_[[1.0] * 30, [4.0] * 12, [6.0] * 18][:, None]
    # PSI = 0.2 ln(0.5/0.3) + 0 + 0 + (1e-4 - 0.2) ln(1e-4/0.2)      [empty bin: q -> 1e-4]
    #     = 0.2 (ln 5 - ln 3) - 0.1999 (ln 5 - ln 10000)
    #     = 0.2 x 0.5108256 + 0.1999 x 7.6009025 = 0.1021651 + 1.5194204 = 1.6215855
    row = drift_report(prof, cur).features[0]
    assert row.psi == pytest.approx(1.6215855, abs=1e-6)
    assert row.band == "alert" and row.empty_bins == 1
    assert row.current_fractions == pytest.approx([0.5, 0.2, 0.3, 0.0])


def test_bands_at_their_thresholds() -> None:
    assert [D.band(v) for v in (0.0, 0.0999, 0.10, 0.2499, 0.25, 3.0)] == [
        "ok", "ok", "warning", "warning", "alert", "alert"]
    assert D.band(0.3, warn=0.2, alert=0.5) == "warning"


# --- the profile ---------------------------------------------------------------------------


def test_profile_is_json_compact_and_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50_000, 30)) * rng.uniform(0.1, 1000, size=30)
    names = [f"f{i}" for i in range(30)]
    prof = reference_profile(x, names, predictions=x[:, 0])
    text = json.dumps(prof)
    assert len(text) < 400_000  # 31 continuous columns x 5000 sample values
    assert json.loads(text) == prof
    assert reference_profile(x, names, predictions=x[:, 0]) == prof  # same seed, same bytes
    assert reference_profile(x, names, seed=1)["features"]["f0"]["sample"] != (
        prof["features"]["f0"]["sample"])
    f0 = prof["features"]["f0"]
    assert len(f0["edges"]) == 9 and sum(f0["fractions"]) == pytest.approx(1.0)
    assert f0["min"] == x[:, 0].min() and f0["mean"] == pytest.approx(x[:, 0].mean())
    assert prof["sample_size"] == 5000 and prof["feature_names"] == names


def test_sample_round_trips_in_order_at_five_digits() -> None:
    v = np.array([-np.inf, -1e300, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, 131072.0, 1e300, np.inf])
    keys = P.ks_keys(v)
    assert np.all(np.diff(keys.astype(np.int64)) >= 0)  # order kept
    assert keys[4] == keys[5]  # -0.0 and 0.0 are one value
    assert len(set(P.ks_keys(np.arange(131073.0)).tolist())) == 131073  # integers exact
    k = np.sort(P.ks_keys(np.random.default_rng(1).normal(size=5000)))
    assert np.array_equal(P.decode_keys(P._encode_keys(k), 5000), k)
    with pytest.raises(ValueError, match="expected 4999"):
        P.decode_keys(P._encode_keys(k), 4999)


def test_profile_refuses_bad_training_data() -> None:
    x = np.ones((10, 2))
    with pytest.raises(ValueError, match="shape"):
        reference_profile(x, ["a"])
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"\['b'\]"):
        reference_profile(x, ["a", "b"])


# --- KS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n2", [80, 30_000], ids=["exact", "asymptotic"])
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_ks_equals_scipy_ks_2samp(n2: int, kind: str) -> None:
    rng = np.random.default_rng(n2)
    for _ in range(20):
        if kind == "continuous":
            a, b = rng.normal(size=300), rng.normal(rng.uniform(-0.2, 0.2), size=n2)
        else:  # few distinct values: ties on both sides and across
            a = rng.integers(0, 5, 300).astype(float)
            b = rng.integers(0, 6, n2).astype(float)
        got = D._ks_sorted(np.sort(P.ks_keys(a)), np.sort(P.ks_keys(b)))
        ref = stats.ks_2samp(a, b, method="asymp" if n2 > 10_000 else "auto")
        assert got[0] == pytest.approx(ref.statistic, abs=1e-12)
        assert got[1] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


# --- the report ----------------------------------------------------------------------------


def test_identical_data_does_not_drift(battery: pd.DataFrame, profile: dict[str, Any]) -> None:
    report = drift_report(profile, battery, current_predictions=battery["discharge_time_s"] / 60)
    assert not report.alerts and not report.warnings
    for r in [*report.features, report.predictions]:
        assert r is not None
        assert r.band == "ok" and r.psi == pytest.approx(0.0, abs=1e-12)
        assert r.ks_p is not None and r.ks_p > 0.99
    assert report.rows == len(battery) and report.worst is not None


def test_temperature_shift_alerts_and_sorts_first(battery: pd.DataFrame,
                                                  profile: dict[str, Any]) -> None:
    hot = generate_battery_dataset(temperature_shift_c=10.0)
    report = drift_report(profile, hot)
    first = report.features[0]
    assert first.feature == "mean_temperature_c" and first.band == "alert"
    assert {"mean_temperature_c", "max_temperature_c"} <= {r.feature for r in report.alerts}
    assert first.ks_p is not None and first.ks_p < 1e-6
    assert [r.psi for r in report.features] == sorted(
        (r.psi for r in report.features), key=lambda v: -(v or 0))
    assert report.worst is first


def test_one_shifted_column_is_the_only_alert(battery: pd.DataFrame,
                                              profile: dict[str, Any]) -> None:
    cur = battery.copy()
    cur["mean_current_a"] += cur["mean_current_a"].std()
    report = drift_report(profile, cur, critical=["mean_current_a"])
    assert [r.feature for r in report.alerts] == ["mean_current_a"]
    assert [r.feature for r in report.critical_alerts] == ["mean_current_a"]
    assert report.features[0].feature == "mean_current_a"


def test_lfp_chemistry_alerts_several_features(profile: dict[str, Any]) -> None:
    report = drift_report(profile, generate_battery_dataset(chemistry="lfp"))
    assert len(report.alerts) >= 3
    bands = [r.band for r in report.features]
    assert bands == sorted(bands, key=lambda b: -D._SEVERITY[b])


def test_critical_features_sort_first_within_a_band() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 2))
    prof = reference_profile(x, ["a", "b"])
    cur = rng.normal(size=(5000, 2)) + np.array([2.0, 1.0])  # both alert, a more than b
    assert [r.feature for r in drift_report(prof, cur).features] == ["a", "b"]
    report = drift_report(prof, cur, critical=["b"])
    assert [r.feature for r in report.features] == ["b", "a"]
    assert [r.feature for r in report.critical_alerts] == ["b"]


def test_discrete_feature_gets_one_bin_per_value() -> None:
    # 50 x 0, 30 x 1, 20 x 2: deciles 0 (x5), 1 (x3), 2 (the maximum, so it moves down to 1)
    x = np.r_[[0.0] * 50, [1.0] * 30, [2.0] * 20][:, None]
    col = reference_profile(x, ["gear"])["features"]["gear"]
    assert col["edges"] == [0.0, 1.0] and col["fractions"] == pytest.approx([0.5, 0.3, 0.2])
    prof = reference_profile(x, ["gear"])
    assert drift_report(prof, x).features[0].psi == 0.0
    # a rare low value shares the bin above it: 5 x 0, 95 x 1 -> bins {0} and {1}
    rare = reference_profile(np.r_[[0.0] * 5, [1.0] * 95][:, None], ["g"])["features"]["g"]
    assert rare["edges"] == [0.0] and rare["fractions"] == pytest.approx([0.05, 0.95])
    # shares moved to the top value: (0.2, 0.3, 0.5) against (0.5, 0.3, 0.2)
    moved = np.r_[[0.0] * 20, [1.0] * 30, [2.0] * 50][:, None]
    row = drift_report(prof, moved).features[0]
    assert row.psi == pytest.approx(2 * 0.3 * np.log(0.5 / 0.2)) and row.band == "alert"


def test_current_outside_the_training_range_fills_one_bin() -> None:
    prof = reference_profile(np.arange(1000.0)[:, None], ["a"])
    row = drift_report(prof, np.full((200, 1), 5000.0)).features[0]
    assert row.empty_bins == 9 and row.current_fractions is not None
    assert row.current_fractions[-1] == 1.0
    # 9 bins of 0.1 floored: 9 x (1e-4 - 0.1) ln(1e-4/0.1); the top one: 0.9 ln(1/0.1)
    expected = 9 * (1e-4 - 0.1) * np.log(1e-4 / 0.1) + 0.9 * np.log(1 / 0.1)
    assert row.psi == pytest.approx(expected) and np.isfinite(row.psi)


def test_constant_feature_flags_any_departure() -> None:
    x = np.c_[np.full(500, 5.0), np.arange(500.0)]
    prof = reference_profile(x, ["const", "ramp"])
    col = prof["features"]["const"]
    assert col["fractions"] == [0.0, 1.0, 0.0] and col["edges"][1] == 5.0
    same = drift_report(prof, x, feature_names=["const", "ramp"])
    assert {r.feature: r.band for r in same.features} == {"const": "ok", "ramp": "ok"}
    for value in (5.001, 4.999):
        moved = np.c_[np.full(500, value), np.arange(500.0)]
        row = next(r for r in drift_report(prof, moved).features if r.feature == "const")
        # every bin has an empty side: the outer bins in training, the constant's now
        assert row.band == "alert" and row.empty_bins == 3


def test_missing_values_are_left_out_and_counted(battery: pd.DataFrame,
                                                 profile: dict[str, Any]) -> None:
    cur = battery.copy()
    cur.loc[::10, "cycle_index"] = np.nan
    cur.loc[1, "charge_time_s"] = np.inf
    rows = {r.feature: r for r in drift_report(profile, cur).features}
    assert rows["cycle_index"].n_missing == len(range(0, len(cur), 10))
    assert rows["charge_time_s"].n_missing == 1 and rows["charge_time_s"].band == "ok"


def test_too_few_rows_is_reported_not_scored(profile: dict[str, Any],
                                             battery: pd.DataFrame) -> None:
    for n in (0, 1, D.MIN_ROWS - 1):
        report = drift_report(profile, battery.head(n),
                              current_predictions=battery["discharge_time_s"].head(n))
        assert all(r.band == "insufficient" and r.psi is None for r in report.features)
        assert report.worst is None and not report.alerts
        assert report.insufficient and any("not scored" in note for note in report.notes)
        assert report.predictions is not None and report.predictions.band == "insufficient"
        json.dumps(report.to_dict())
    assert drift_report(profile, battery.head(D.MIN_ROWS)).worst is not None


def test_missing_and_non_numeric_columns_are_data_errors(
        battery: pd.DataFrame, profile: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="'charge_time_s'") as e:
        drift_report(profile, battery.drop(columns=["charge_time_s"]))
    assert e.value.exit_code == ExitCode.DATA
    bad = battery.astype({"mean_current_a": object})
    bad.loc[7, "mean_current_a"] = "1,5"
    with pytest.raises(DataError, match=r"'mean_current_a' is not numeric.*'1,5'"):
        drift_report(profile, bad)
    with pytest.raises(DataError, match="shape"):
        drift_report(profile, np.zeros((100, 3)))
    with pytest.raises(ValueError, match="not in the drift profile"):
        drift_report(profile, battery, critical=["voltage"])


def test_no_prediction_drift_without_reference_predictions(battery: pd.DataFrame) -> None:
    prof = reference_profile(battery[BATTERY_FEATURES].to_numpy(), BATTERY_FEATURES)
    report = drift_report(prof, battery, current_predictions=np.zeros(len(battery)))
    assert report.predictions is None and "no training predictions" in report.notes[0]


def test_report_dict_and_png(tmp_path: Path, profile: dict[str, Any]) -> None:
    hot = generate_battery_dataset(temperature_shift_c=10.0)
    report = drift_report(profile, hot, critical=["mean_temperature_c"],
                          current_predictions=hot["discharge_time_s"] / 60)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["features"][0]["feature"] == "mean_temperature_c"
    assert doc["critical_alerts"] == ["mean_temperature_c"] and doc["worst"] == "mean_temperature_c"
    assert doc["thresholds"] == {"warning": 0.1, "alert": 0.25} and doc["epsilon"] == 1e-4
    assert set(doc["predictions"]) >= {"ks_stat", "ks_p", "psi"}
    png = tmp_path / "out" / "drift.png"
    report.write_png(png)
    assert png.read_bytes().startswith(PNG_MAGIC)


# --- the command ---------------------------------------------------------------------------


def add_drift_reference(root: Path, version: str, profile: dict[str, Any]) -> None:
    """Store `profile` in a registry version as training does: the artifact file plus its
    SHA-256 in the manifest's artifacts (what `Registry.read_artifact` checks)."""
    vdir = root / version
    data = json.dumps(profile).encode()
    (vdir / P.PROFILE_FILE).write_bytes(data)
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["artifacts"][P.PROFILE_FILE] = hashlib.sha256(data).hexdigest()
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=1))


@pytest.fixture
def drift_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   profile: dict[str, Any]) -> Path:
    """v0001: the fixture version (no profile: trained before them); v0002: its copy with
    the bundled data's profile. The working folder is empty (no tinyship.toml)."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(FIXTURE_REGISTRY / "v0001", root / "v0001")
    add_version(root, "v0002")
    add_drift_reference(root, "v0002", profile)
    monkeypatch.chdir(tmp_path)
    return root


def _csv(path: Path, df: pd.DataFrame) -> str:
    df.to_csv(path, index=False)
    return str(path)


def test_cli_json_report(capsys: pytest.CaptureFixture[str], drift_registry: Path,
                         tmp_path: Path) -> None:
    hot = generate_battery_dataset(temperature_shift_c=10.0)
    hot["prediction"] = hot["discharge_time_s"] / 60
    csv = _csv(tmp_path / "hot.csv", hot)
    png = tmp_path / "drift.png"
    code, doc = run_cli_json(capsys, "drift", "--reference", "v0002", "--current", csv,
                             "--critical", "mean_temperature_c", "--png", str(png),
                             "--predictions-column", "prediction",
                             "--registry", str(drift_registry))
    assert code == 0 and doc["ok"] is True
    assert doc["reference"] == "v0002" and doc["rows"] == len(hot)
    assert doc["features"][0]["feature"] == "mean_temperature_c"
    assert doc["features"][0]["critical"] is True
    assert doc["critical_alerts"] == ["mean_temperature_c"]
    assert doc["predictions"]["ks_p"] is not None
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cli_human_report(capsys: pytest.CaptureFixture[str], drift_registry: Path,
                          tmp_path: Path, battery: pd.DataFrame) -> None:
    csv = _csv(tmp_path / "same.csv", battery)
    code, out, _ = run_cli(capsys, "drift", "--reference", "v0002", "--current", csv,
                           "--registry", str(drift_registry))
    assert code == 0
    assert "mean_temperature_c" in out and "0 alert(s), 0 warning(s)" in out
    hot = _csv(tmp_path / "hot.csv", generate_battery_dataset(temperature_shift_c=10.0))
    code, out, _ = run_cli(capsys, "drift", "--reference", "v0002", "--current", hot,
                           "--registry", str(drift_registry))
    assert code == 0  # a report: alerts do not fail it
    table = out[out.index("feature"):]
    assert table.index("mean_temperature_c") < table.index("mean_current_a")
    assert "alert" in out


def test_cli_fail_on(capsys: pytest.CaptureFixture[str], drift_registry: Path,
                     tmp_path: Path) -> None:
    hot = _csv(tmp_path / "hot.csv", generate_battery_dataset(temperature_shift_c=10.0))
    base = ["drift", "--reference", "v0002", "--current", hot, "--registry",
            str(drift_registry)]
    code, doc = run_cli_json(capsys, *base, "--fail-on", "alert")
    assert code == ExitCode.VALIDATION == 9
    assert doc["ok"] is False and doc["error"]["type"] == "ValidationFailed"
    assert "mean_temperature_c" in doc["error"]["message"] and doc["features"]
    # only the critical features are watched when some are marked
    code, _ = run_cli_json(capsys, *base, "--fail-on", "alert", "--critical", "mean_current_a")
    assert code == 0
    code, _, err = run_cli(capsys, *base, "--fail-on", "warning", "--critical",
                           "max_temperature_c")
    assert code == 9 and "max_temperature_c" in err


def test_cli_refuses_with_the_right_codes(capsys: pytest.CaptureFixture[str],
                                          drift_registry: Path, tmp_path: Path,
                                          battery: pd.DataFrame) -> None:
    csv = _csv(tmp_path / "same.csv", battery)
    reg = ["--registry", str(drift_registry)]
    code, doc = run_cli_json(capsys, "drift", "--reference", "v0001", "--current", csv, *reg)
    assert code == ExitCode.REGISTRY
    assert "trained before drift profiles were stored" in doc["error"]["message"]
    assert "retrain" in doc["error"]["hint"]
    code, doc = run_cli_json(capsys, "drift", "--reference", "v0002", "--current",
                             _csv(tmp_path / "short.csv", battery.drop(columns="cycle_index")),
                             *reg)
    assert code == ExitCode.DATA and "'cycle_index'" in doc["error"]["message"]
    code, _, err = run_cli(capsys, "drift", "--reference", "v0002", "--current", csv,
                           "--critical", "voltage", *reg)
    assert code == ExitCode.USAGE and "voltage" in err
    (drift_registry / "v0002" / P.PROFILE_FILE).write_text("{}")  # edited after training
    code, doc = run_cli_json(capsys, "drift", "--reference", "v0002", "--current", csv, *reg)
    assert code == ExitCode.REGISTRY and "damaged" in doc["error"]["message"]
    add_drift_reference(drift_registry, "v0002", {"format": "tinyship-drift-reference/9"})
    code, doc = run_cli_json(capsys, "drift", "--reference", "v0002", "--current", csv, *reg)
    assert code == ExitCode.REGISTRY and "unusable" in doc["error"]["message"]


def test_cli_critical_features_from_the_config(capsys: pytest.CaptureFixture[str],
                                               drift_registry: Path, tmp_path: Path) -> None:
    (tmp_path / "tinyship.toml").write_text(
        '[project]\nregistry = "models"\n'
        '[data]\npath = "data.csv"\ntarget = "soh_pct"\n'
        f"features = {json.dumps(BATTERY_FEATURES)}\n"
        '[retrain]\ncritical_features = ["max_temperature_c"]\npsi_alert = 0.5\n')
    hot = _csv(tmp_path / "hot.csv", generate_battery_dataset(temperature_shift_c=10.0))
    code, doc = run_cli_json(capsys, "drift", "--current", hot)  # production else latest
    assert code == 0 and doc["reference"] == "v0002"
    assert doc["critical_alerts"] == ["max_temperature_c"]
    assert doc["thresholds"]["alert"] == 0.5
