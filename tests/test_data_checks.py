"""Data checks, the CSV loader, and `tinyship data check`: each rule fails on a crafted bad
frame with a message naming the column and rule, and everything passes on the bundled data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tinyship.cli import cli, main
from tinyship.config import DataSection, bundled_dataset
from tinyship.data.checks import CheckReport, run_checks
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


def test_cli_check_bad_data_override_json(tmp_path: Path, bad_csv: Path) -> None:
    cfg = _write_config(tmp_path, "bundled:battery_soh.csv")
    result = CliRunner().invoke(
        cli, ["data", "check", "--config", str(cfg), "--data", str(bad_csv), "--json"]
    )
    assert isinstance(result.exception, DataError)
    payload = json.loads(result.stdout)  # report printed before the error is raised
    assert payload["passed"] is False
    assert [(f["column"], f["rule"]) for f in payload["results"] if not f["passed"]] == [
        ("mean_temperature_c", "range")
    ]


def test_cli_check_exit_codes(
    tmp_path: Path, bad_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write_config(tmp_path, bad_csv.name)  # relative to the config's folder
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--config", str(cfg)])
    assert exc.value.code == ExitCode.DATA
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert "column 'mean_temperature_c': 12 values outside declared range" in captured.err

    good = _write_config(tmp_path, "bundled:battery_soh.csv")
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--config", str(good)])
    assert exc.value.code == 0

    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--config", str(good), "--data", str(tmp_path / "none.csv")])
    assert exc.value.code == ExitCode.DATA
    assert "dataset not found" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--config", str(tmp_path / "missing.toml")])
    assert exc.value.code == ExitCode.CONFIG
