"""Data checks, the CSV loader, and `tinyship data check`: each rule fails on a crafted bad
frame with a message naming the column and rule, and everything passes on the bundled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tinyship.cli import cli, main
from tinyship.config import DataSection, bundled_dataset
from tinyship.data.checks import CheckReport, model_features, run_checks
from tinyship.data.generate import BATTERY_FEATURES, BATTERY_TARGET
from tinyship.data.load import fingerprint, load_dataset
from tinyship.errors import DataError, ExitCode

BUNDLED = bundled_dataset("battery_soh.csv")


def _cfg(**overrides: object) -> DataSection:
    base: dict[str, object] = {
        "path": "bundled:battery_soh.csv",
        "features": BATTERY_FEATURES,
        "target": BATTERY_TARGET,
        "ranges": {"mean_temperature_c": (-30, 80), "soh_pct": (0, 110)},
    }
    return DataSection.model_validate({**base, **overrides})


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return load_dataset(BUNDLED, _cfg())


@pytest.fixture
def good(bundled: pd.DataFrame) -> pd.DataFrame:
    return bundled.copy()


def _failing(report: CheckReport, rule: str) -> list[str]:
    return [r.message for r in report.failures if r.rule == rule]


def _only_failure(report: CheckReport, rule: str, column: str | None) -> str:
    assert {(r.rule, r.column) for r in report.failures} == {(rule, column)}, report.failures
    (message,) = _failing(report, rule)
    return message


# --- checks -------------------------------------------------------------------------------


def test_bundled_data_passes_every_check(bundled: pd.DataFrame) -> None:
    report = run_checks(bundled, _cfg())
    assert report.passed, [r.message for r in report.failures]
    rules = {r.rule for r in report.results}
    assert {
        "missing",
        "non_numeric",
        "non_finite",
        "range",
        "duplicates",
        "outliers",
        "min_rows",
        "constant_target",
        "constant_feature",
    } <= rules
    report.raise_for_failures()  # no-op
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["passed"] is True
    assert payload["failed"] == 0
    assert payload["rows"] == len(bundled)


def test_range_failure_names_column_and_rule(good: pd.DataFrame) -> None:
    good.loc[:11, "mean_temperature_c"] = 95.0
    report = run_checks(good, _cfg())
    message = _only_failure(report, "range", "mean_temperature_c")
    assert message == (
        "column 'mean_temperature_c': 12 values outside declared range [-30, 80] (rule: range)"
    )
    with pytest.raises(DataError) as exc:
        report.raise_for_failures()
    assert message in str(exc.value)
    assert exc.value.failures[0]["column"] == "mean_temperature_c"
    assert exc.value.failures[0]["rule"] == "range"
    assert exc.value.failures[0]["value"] == 12
    assert exc.value.exit_code == ExitCode.DATA


def test_range_for_unknown_column_fails(good: pd.DataFrame) -> None:
    report = run_checks(good, _cfg(ranges={"voltage_v": (2.5, 4.2)}))
    assert "not in the dataset" in _only_failure(report, "range", "voltage_v")


def test_missing_values(good: pd.DataFrame) -> None:
    good.loc[[3, 50, 70], "charge_time_s"] = np.nan
    message = _only_failure(run_checks(good, _cfg()), "missing", "charge_time_s")
    assert "column 'charge_time_s'" in message and "3 missing values" in message
    assert "(rule: missing)" in message
    # A tolerated share passes.
    assert run_checks(good, _cfg(max_missing_fraction=0.01)).passed


def test_infinite_values(good: pd.DataFrame) -> None:
    good.loc[4, "internal_resistance_mohm"] = np.inf
    good.loc[5, "internal_resistance_mohm"] = -np.inf
    message = _only_failure(run_checks(good, _cfg()), "non_finite", "internal_resistance_mohm")
    assert "2 infinite values" in message and "(rule: non_finite)" in message


def test_non_numeric_feature(good: pd.DataFrame) -> None:
    good["mean_current_a"] = good["mean_current_a"].astype(object)
    good.loc[7, "mean_current_a"] = "n/a"
    report = run_checks(good, _cfg())
    message = _only_failure(report, "non_numeric", "mean_current_a")
    assert "1 non-numeric value" in message and "'n/a'" in message


def test_non_numeric_regression_target(good: pd.DataFrame) -> None:
    good[BATTERY_TARGET] = good[BATTERY_TARGET].astype(object)
    good.loc[0, BATTERY_TARGET] = "healthy"
    assert "'soh_pct'" in _only_failure(run_checks(good, _cfg()), "non_numeric", "soh_pct")


def test_duplicate_rows(good: pd.DataFrame) -> None:
    dup = pd.concat([good, good.iloc[:100]], ignore_index=True)
    message = _only_failure(run_checks(dup, _cfg()), "duplicates", None)
    assert message.startswith("dataset: 100 duplicate rows")
    assert "(rule: duplicates)" in message
    assert run_checks(dup, _cfg(max_duplicate_fraction=0.05)).passed


def test_outlier_share(good: pd.DataFrame) -> None:
    n = int(0.05 * len(good))
    good.loc[: n - 1, "discharge_time_s"] = good["discharge_time_s"].median() * 40
    message = _only_failure(run_checks(good, _cfg()), "outliers", "discharge_time_s")
    assert f"{n} values" in message and "robust z 8" in message
    assert "(rule: outliers)" in message
    assert run_checks(good, _cfg(max_outlier_fraction=0.1)).passed


def test_too_few_rows(good: pd.DataFrame) -> None:
    message = _only_failure(run_checks(good.iloc[:50], _cfg()), "min_rows", None)
    assert message == "dataset: 50 rows, fewer than min_rows 100 (rule: min_rows)"


def test_constant_target(good: pd.DataFrame) -> None:
    good[BATTERY_TARGET] = 90.0
    message = _only_failure(run_checks(good, _cfg()), "constant_target", BATTERY_TARGET)
    assert "column 'soh_pct'" in message


def test_constant_feature(good: pd.DataFrame) -> None:
    good["mean_current_a"] = 2.0
    message = _only_failure(run_checks(good, _cfg()), "constant_feature", "mean_current_a")
    assert "1 distinct value" in message
    # The failure says which key turns it into a drop or an allowed input.
    assert 'data.constant_features = "drop"' in message and '"allow"' in message
    assert model_features(good, _cfg()) == (BATTERY_FEATURES, [])


def _constant_result(report: CheckReport, column: str) -> tuple[bool, str]:
    (r,) = [r for r in report.results if r.rule == "constant_feature" and r.column == column]
    return r.passed, r.message


def test_constant_feature_allowed_stays_an_input(good: pd.DataFrame) -> None:
    good["mean_current_a"] = 2.0
    cfg = _cfg(constant_features="allow")
    report = run_checks(good, cfg)
    assert report.passed, report.failures
    passed, message = _constant_result(report, "mean_current_a")
    assert passed and "kept as a model input" in message  # reported, not failed
    assert model_features(good, cfg) == (BATTERY_FEATURES, [])


def test_constant_feature_dropped_from_inputs(good: pd.DataFrame) -> None:
    good["mean_current_a"] = 2.0
    good["charge_time_s"] = np.nan  # no finite value at all: also constant
    cfg = _cfg(constant_features="drop", max_missing_fraction=1.0)
    report = run_checks(good, cfg)
    assert report.passed, report.failures
    passed, message = _constant_result(report, "mean_current_a")
    assert passed and "dropped from the model inputs" in message
    kept, dropped = model_features(good, cfg)
    assert dropped == ["mean_current_a", "charge_time_s"]  # config order
    assert kept == [c for c in BATTERY_FEATURES if c not in dropped]


def test_dropping_every_feature_fails() -> None:
    df = pd.DataFrame({"a": [1.0] * 200, "b": [0] * 200, "y": np.arange(200.0)})
    cfg = DataSection(path="x.csv", features=["a", "b"], target="y", constant_features="drop")
    report = run_checks(df, cfg)
    assert {(r.rule, r.column) for r in report.failures} == {
        ("constant_feature", "a"), ("constant_feature", "b")}
    assert "leaves the model no input" in report.failures[0].message
    with pytest.raises(DataError, match="every feature is constant"):
        model_features(df, cfg)


def test_digits_constant_pixels_dropped() -> None:
    """scikit-learn's digits: three pixels are 0 in every image."""
    datasets = pytest.importorskip("sklearn.datasets")
    frame = datasets.load_digits(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    base = {"path": "digits.csv", "features": features, "target": "target",
            "task": "classification", "max_outlier_fraction": 1.0}
    failed = run_checks(frame, DataSection.model_validate(base))
    assert {(r.rule, r.column) for r in failed.failures} == {
        ("constant_feature", c) for c in ("pixel_0_0", "pixel_4_0", "pixel_4_7")}
    cfg = DataSection.model_validate({**base, "constant_features": "drop"})
    assert run_checks(frame, cfg).passed
    kept, dropped = model_features(frame, cfg)
    assert dropped == ["pixel_0_0", "pixel_4_0", "pixel_4_7"]
    assert len(kept) == 61 and not set(kept) & set(dropped)


def test_missing_configured_column(good: pd.DataFrame) -> None:
    report = run_checks(good.drop(columns=["charge_time_s"]), _cfg())
    assert _failing(report, "column_present") == [
        "column 'charge_time_s': configured column not in the dataset (rule: column_present)"
    ]


def _classification_frame(counts: dict[object, int]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame(
        {"a": rng.normal(size=len(labels)), "b": rng.normal(size=len(labels)), "label": labels}
    )


def test_classification_string_labels_pass() -> None:
    df = _classification_frame({"ok": 80, "worn": 40, "failed": 20})
    cfg = DataSection(path="x.csv", features=["a", "b"], target="label", task="classification")
    report = run_checks(df, cfg)
    assert report.passed, report.failures
    assert not [r for r in report.results if r.column == "label" and r.rule == "non_numeric"]


def test_rare_class_is_named() -> None:
    df = _classification_frame({"ok": 100, "worn": 40, "failed": 3})
    cfg = DataSection(path="x.csv", features=["a", "b"], target="label", task="classification")
    message = _only_failure(run_checks(df, cfg), "min_class_samples", "label")
    assert message == (
        "column 'label': class 'failed' has 3 samples, fewer than min_class_samples 10 "
        "(rule: min_class_samples)"
    )


def test_several_failures_all_named(good: pd.DataFrame) -> None:
    good.loc[0, "mean_temperature_c"] = 500.0
    good.loc[1, "charge_time_s"] = np.nan
    with pytest.raises(DataError) as exc:
        run_checks(good, _cfg()).raise_for_failures()
    text = str(exc.value)
    assert "2 data check(s) failed" in text
    assert "column 'mean_temperature_c'" in text and "(rule: range)" in text
    assert "column 'charge_time_s'" in text and "(rule: missing)" in text
    assert {f["rule"] for f in exc.value.failures} == {"range", "missing"}


# --- loader -------------------------------------------------------------------------------


def test_load_keeps_config_columns_in_order(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("c,y,extra,a\n1,2,3,4\n5,6,7,8\n")
    df = load_dataset(path, DataSection(path="d.csv", features=["a", "c"], target="y"))
    assert list(df.columns) == ["a", "c", "y"]
    assert df["a"].tolist() == [4, 8]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset not found: .*nope\.csv"):
        load_dataset(tmp_path / "nope.csv", _cfg())


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty: .*empty\.csv"):
        load_dataset(path, _cfg())
    path.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty"):
        load_dataset(path, _cfg())


def test_load_header_only(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text(",".join([*BATTERY_FEATURES, BATTERY_TARGET]) + "\n")
    with pytest.raises(DataError, match="no data rows"):
        load_dataset(path, _cfg())


def test_load_unparseable(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,2\n3,4,5,6\n"unterminated\n')
    with pytest.raises(DataError, match=r"bad\.csv is not a readable CSV"):
        load_dataset(path, DataSection(path="bad.csv", features=["a"], target="b"))


def test_load_names_all_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    cfg = DataSection(path="d.csv", features=["a", "temp", "volt"], target="soh")
    with pytest.raises(DataError) as exc:
        load_dataset(path, cfg)
    text = str(exc.value)
    assert "d.csv" in text
    assert "'temp', 'volt', 'soh'" in text
    assert "(available: a, b)" in text


def _missing_column_hint(tmp_path: Path, header: str, cfg: DataSection) -> str:
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + ",".join("1" for _ in header.split(",")) + "\n")
    with pytest.raises(DataError) as exc:
        load_dataset(path, cfg)
    assert exc.value.hint is not None
    return exc.value.hint


def test_missing_column_hint_names_the_key_that_asked_for_it(tmp_path: Path) -> None:
    grouped = DataSection(path="d.csv", features=["a", "b"], target="y", group="unit")
    hint = _missing_column_hint(tmp_path, "a,b,y", grouped)
    assert hint == "fix data.group in the config or the CSV header"
    hint = _missing_column_hint(tmp_path, "a,y", grouped)
    assert hint == "fix data.features / data.group in the config or the CSV header"
    hint = _missing_column_hint(tmp_path, "a,b,unit", grouped)
    assert hint == "fix data.target in the config or the CSV header"
    assert list(load_dataset(tmp_path / "d.csv", DataSection(
        path="d.csv", features=["a", "b"], target="unit")).columns) == ["a", "b", "unit"]


def test_load_non_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    text = "a,name,y\n1,x,2\n3,y,4\n5,z,6\n7,Café,8\n9,w,10\n"
    path.write_bytes(text.encode("latin-1"))  # é is the single byte 0xe9 on line 5
    with pytest.raises(DataError) as exc:
        load_dataset(path, DataSection(path="latin1.csv", features=["a"], target="y"))
    message = str(exc.value)
    assert "latin1.csv is not UTF-8" in message
    assert "(0xe9) is on line 5, byte 6 of that line" in message
    assert "position" not in message
    assert exc.value.hint is not None and "re-save the CSV as UTF-8" in exc.value.hint
    # Windows line ends and a bad byte in the header: still the right line and byte.
    path.write_bytes(b"a,\xb5m,y\r\n1,2,3\r\n")
    with pytest.raises(DataError, match=r"\(0xb5\) is on line 1, byte 3 of that line"):
        load_dataset(path, DataSection(path="latin1.csv", features=["a"], target="y"))


def test_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('a,b\n1,"x\ny"\n2,z\n')
    fp = fingerprint(path)
    assert fp["rows"] == 2
    import hashlib

    assert fp["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fingerprint(BUNDLED)["rows"] == len(pd.read_csv(BUNDLED))
    with pytest.raises(DataError, match="cannot read dataset"):
        fingerprint(tmp_path / "missing.csv")


# --- CLI ----------------------------------------------------------------------------------

_CONFIG = """
[data]
path = "{path}"
features = {features}
target = "soh_pct"
ranges = {{ mean_temperature_c = [-30, 80] }}
"""


def _write_config(folder: Path, data_path: str) -> Path:
    cfg = folder / "tinyship.toml"
    cfg.write_text(_CONFIG.format(path=data_path, features=json.dumps(BATTERY_FEATURES)))
    return cfg


@pytest.fixture
def bad_csv(tmp_path: Path, bundled: pd.DataFrame) -> Path:
    df = bundled.copy()
    df.loc[:11, "mean_temperature_c"] = 120.0
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_check_good_bundled(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, "bundled:battery_soh.csv")
    result = CliRunner().invoke(cli, ["data", "check", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    assert "mean_temperature_c" in result.output


def test_cli_check_json_good(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, "bundled:battery_soh.csv")
    result = CliRunner().invoke(cli, ["data", "check", "--config", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["passed"] is True
    assert payload["path"] == str(BUNDLED)


def _main_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run `tinyship ARGS` as a script would: (exit code, the one JSON document on stdout)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    code = exc.value.code
    return (code if isinstance(code, int) else 1), json.loads(out)


def test_cli_check_bad_data_override_json(
    tmp_path: Path, bad_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write_config(tmp_path, "bundled:battery_soh.csv")
    code, payload = _main_json(
        capsys, "data", "check", "--config", str(cfg), "--data", str(bad_csv), "--json"
    )
    assert code == ExitCode.DATA
    # One document: the full report, with the error in it.
    assert payload["ok"] is False and payload["passed"] is False
    assert payload["path"] == str(bad_csv)
    assert [(f["column"], f["rule"]) for f in payload["results"] if not f["passed"]] == [
        ("mean_temperature_c", "range")
    ]
    error = payload["error"]
    assert (error["type"], error["exit_code"]) == ("DataError", 4)
    assert "12 values outside declared range" in error["message"]
    assert error["hint"] == "fix the CSV or adjust the thresholds in [data] of the config"
    assert [(f["column"], f["rule"], f["value"]) for f in error["failures"]] == [
        ("mean_temperature_c", "range", 12)
    ]


def test_cli_json_errors_before_any_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Config, loader and usage errors still give a script one JSON document on stdout."""
    for command in (["data", "check"], ["train"]):
        code, payload = _main_json(
            capsys, *command, "--config", str(tmp_path / "missing.toml"), "--json")
        assert code == ExitCode.CONFIG
        assert payload == {"ok": False, "error": {
            "type": "ConfigError", "exit_code": 3,
            "message": f"config file not found: {tmp_path / 'missing.toml'}",
            "hint": "run from the project folder or pass --config PATH"}}

        cfg = _write_config(tmp_path, "none.csv")
        code, payload = _main_json(capsys, *command, "--config", str(cfg), "--json")
        assert code == ExitCode.DATA
        assert payload["error"]["type"] == "DataError"
        assert payload["error"]["message"] == f"dataset not found: {tmp_path / 'none.csv'}"
        assert payload["error"]["failures"] == []

    code, payload = _main_json(capsys, "data", "check", "--json", "--bogus")
    assert code == ExitCode.USAGE
    assert payload["error"]["type"] == "UsageError" and "--bogus" in payload["error"]["message"]


def test_cli_train_json_data_error_matches_data_check(
    tmp_path: Path, bad_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same failed checks give the same error from `train --json` as from `data check`."""
    cfg = _write_config(tmp_path, bad_csv.name)
    code, trained = _main_json(capsys, "train", "--config", str(cfg), "--json")
    assert code == ExitCode.DATA
    code, checked = _main_json(capsys, "data", "check", "--config", str(cfg), "--json")
    assert code == ExitCode.DATA
    assert set(trained) == {"ok", "error"}  # train stops before it has a result
    assert trained["error"] == checked["error"]
    assert [f["rule"] for f in trained["error"]["failures"]] == ["range"]
