"""The retrain-and-reflash job end to end (issue 13's seven scenarios), on the bundled
battery generator and virtual boards: real training, conversion, comparison, HIL and fleet
reflash, asserting the exit code, the report, the audit log, the registry's aliases and
what the boards run.

One champion is trained per module (`project`) and each test works on a copy of it.
Fault injection is the virtual board's own (`wrong_prediction`: its answers fail the smoke
check while its boot self-test passes).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from tinyship.audit import AuditLog, default_audit_path
from tinyship.config import load_config
from tinyship.data.generate import generate_battery_dataset
from tinyship.device.client import DeviceClient
from tinyship.device.virtual import Faults, VirtualBoard
from tinyship.errors import ExitCode
from tinyship.registry import Registry

FEATURES = ["cycle_index", "discharge_time_s", "voltage_drop_time_s", "mean_temperature_c",
            "max_temperature_c", "mean_current_a", "internal_resistance_mohm",
            "charge_time_s"]

CONFIG = """
[project]
name = "retrain-test"
registry = "models"

[data]
path = "data/base.csv"
features = {features}
target = "soh_pct"
task = "regression"
group = "cell_id"
min_rows = 200
max_duplicate_fraction = 0.01

[data.ranges]
mean_temperature_c = [-30.0, 80.0]
soh_pct = [0.0, 110.0]

[data.long_tail]
side = "lower"
quantile = 0.9

[model]
hidden = [24, 12]

[training]
seed = 42
epochs = 120
batch_size = 64
learning_rate = 0.01
patience = 12

[gates]
min_r2 = 0.8
max_int8_degradation = 0.2
max_parity_lsb = 1

[retrain]
min_new_rows = 1000
min_samples = 150
smoke_vectors = 8
"""


def _csv(path: Path, *, rows: int | None = None, **kw: Any) -> Path:
    """Generator data; `rows`: that many rows drawn across all its cells (a small batch
    that still represents the distribution, as rows arriving from a fleet do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df = generate_battery_dataset(**kw)
    if rows is not None:
        df = df.sample(n=rows, random_state=0).sort_index()
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose production version was trained on 40 cells of the generator."""
    from tinyship.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("retrain")
    _csv(root / "data" / "base.csv", cells=40, seed=7)
    (root / "tinyship.toml").write_text(CONFIG.format(features=json.dumps(FEATURES)))
    cfg = load_config(root / "tinyship.toml")
    result = run_pipeline(cfg)
    assert result.version is not None
    Registry(cfg.registry_path).promote(result.version)
    return root


@pytest.fixture
def project(base_project: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "project"
    shutil.copytree(base_project, dst)
    return dst


def _retrain(capsys: pytest.CaptureFixture[str], project: Path, new_data: Path,
             *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(capsys, "retrain", "--config", str(project / "tinyship.toml"),
                             "--new-data", str(new_data), "--json", *args)
    assert "Traceback" not in err, err
    return code, json.loads(out)


def _aliases(project: Path) -> dict[str, str]:
    return Registry(project / "models").aliases()


def _audit_kinds(project: Path, run_id: str) -> list[str]:
    log = AuditLog(default_audit_path(project / "models"))
    return [e.kind for e in reversed(log.list(run_id=run_id))]


@contextlib.contextmanager
def _boards(project: Path, *faults: Faults) -> Iterator[list[VirtualBoard]]:
    """Virtual boards flashed with production, one per `faults`, and a fleet file."""
    reg = project / "models"
    prod = Registry(reg).aliases()["production"]
    with contextlib.ExitStack() as stack:
        vbs = [stack.enter_context(VirtualBoard(
            reg, prod, state_dir=project / f"board{i}", reset_on_open=False,
            boot_delay_s=0.05, baud=0, faults=f)) for i, f in enumerate(faults)]
        lines = [f'[[board]]\ndevice = "{vb.url}"\nlabel = "b{i}"\n'
                 for i, vb in enumerate(vbs)]
        (project / "fleet.toml").write_text("\n".join(lines))
        yield vbs


def _runs(vb: VirtualBoard) -> str | None:
    with DeviceClient.open(vb.url, baud=0) as c:
        return c.hello().model_version


# --- the seven scenarios ----------------------------------------------------------------


def test_1_no_drift_few_rows_nothing_due(project: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = _aliases(project)
    # the same cells at other cycles: the distribution production was trained on
    new = _csv(project / "in" / "same.csv", rows=200, cells=40, seed=7, sample_every=7)
    code, doc = _retrain(capsys, project, new)
    assert code == ExitCode.NOTHING_DUE and doc["outcome"] == "nothing_due", doc["reasons"]
    fired = {t["name"]: t["fired"] for t in doc["triggers"]}
    assert fired == {"schedule": False, "volume": False, "performance": False,
                     "data_drift": False, "prediction_drift": False, "manual": False}
    assert _aliases(project) == before and doc["challenger"] is None
    report = Path(doc["report_dir"])
    assert "nothing due" in (report / "report.md").read_text()
    assert json.loads((report / "report.json").read_text())["outcome"] == "nothing_due"
    kinds = _audit_kinds(project, doc["run_id"])
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("trigger") == 6 and "ingest" in kinds


def test_2_drift_promotes_and_reflashes_two_boards(project: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    champion = _aliases(project)["production"]
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    with _boards(project, Faults(), Faults()) as (a, b):
        code, doc = _retrain(capsys, project, new, "--fleet", str(project / "fleet.toml"))
        assert code == 0 and doc["outcome"] == "deployed", doc["reasons"]
        fired = {t["name"] for t in doc["triggers"] if t["fired"]}
        assert "data_drift" in fired
        assert doc["comparison"]["better"] is True
        new_version = doc["challenger"]
        assert _aliases(project)["production"] == new_version
        assert _aliases(project)["last_known_good"] == champion
        assert _runs(a) == _runs(b) == new_version
    lineage = Registry(project / "models").manifest(new_version)["lineage"]
    assert lineage["parent"] == champion and lineage["data_snapshot"] == doc["snapshot"]["id"]
    manifest = Registry(project / "models").manifest(new_version)
    assert manifest["data"]["snapshot"] == doc["snapshot"]["id"]
    card = (project / "models" / new_version / "MODEL_CARD.md").read_text()
    assert f"Data snapshot: {doc['snapshot']['id']}" in card
    assert f"retrained from {champion} on data snapshot {doc['snapshot']['id']}" in card
    kinds = _audit_kinds(project, doc["run_id"])
    for k in ("comparison", "register", "promotion", "reflash"):
        assert k in kinds, kinds
    assert (Path(doc["report_dir"]) / "drift.png").is_file()
    # the Prometheus textfile parses and says what happened
    from prometheus_client.parser import text_string_to_metric_families

    text = Path(doc["metrics_file"]).read_text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("tinyship_last_retrain_outcome", (("outcome", "deployed"),))] == 1
    assert samples[("tinyship_last_retrain_outcome", (("outcome", "not_better"),))] == 0
    assert ("tinyship_last_retrain_timestamp_seconds", ()) in samples


def test_3_challenger_not_better_keeps_everything(project: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = _aliases(project)
    # a challenger cut short (3 epochs; gates relaxed so that it gets to the comparison)
    cfg = (project / "tinyship.toml").read_text()
    for old, new in (("epochs = 120", "epochs = 3"), ("min_r2 = 0.8", "min_r2 = -10.0"),
                     ("max_int8_degradation = 0.2", "max_int8_degradation = 10.0")):
        cfg = cfg.replace(old, new)
    (project / "tinyship.toml").write_text(cfg)
    new = _csv(project / "in" / "few.csv", rows=200, cells=40, seed=7, sample_every=7)
    with _boards(project, Faults()) as (a,):
        code, doc = _retrain(capsys, project, new, "--force",
                             "--fleet", str(project / "fleet.toml"))
        assert code == ExitCode.NOT_BETTER and doc["outcome"] == "not_better", doc["reasons"]
        assert doc["comparison"]["better"] is False and doc["comparison"]["reasons"]
        assert _aliases(project) == before
        assert _runs(a) == before["production"]
    assert doc["challenger"] is None  # never registered


def test_4_challenger_failing_hil_is_never_promoted(project: Path,
                                                   capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    before = _aliases(project)
    # A latency budget no board meets: offline gates pass, the HIL latency check fails.
    cfg = (project / "tinyship.toml").read_text() + "\n[board]\nlatency_budget_us = 1\n"
    (project / "tinyship.toml").write_text(cfg)
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    with _boards(project, Faults()) as (a,):
        code, doc = _retrain(capsys, project, new, "--fleet", str(project / "fleet.toml"))
        assert code == ExitCode.RETRAIN_REFUSED, doc["reasons"]
        assert "failed HIL validation" in " ".join(doc["reasons"])
        assert doc["hil"]["passed"] is False
        assert _aliases(project) == before and _runs(a) == before["production"]


def test_5_a_board_failing_its_smoke_check_is_rolled_back(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    champion = _aliases(project)["production"]
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    with _boards(project, Faults(), Faults(wrong_prediction=1.0)) as (good, bad):
        code, doc = _retrain(capsys, project, new, "--fleet", str(project / "fleet.toml"))
        assert code == ExitCode.DEPLOYED_WITH_FAILURES, doc["reasons"]
        results = {b["label"]: b["result"]
                   for b in doc["fleet"]["boards"]}
        assert results == {"b0": "ok", "b1": "rolled_back"}
        assert _runs(good) == doc["challenger"] and _runs(bad) == champion
    md = (Path(doc["report_dir"]) / "report.md").read_text()
    assert "rolled_back" in md
    log = AuditLog(default_audit_path(project / "models"))
    reflash = [e for e in log.list(run_id=doc["run_id"]) if e.kind == "reflash"]
    assert sorted(e.decision or "" for e in reflash) == ["ok", "rolled_back"]


def test_6_bad_batch_is_quarantined(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _aliases(project)
    bad = _csv(project / "in" / "bad.csv", cells=5, seed=13)
    text = bad.read_text().splitlines()
    cols = text[0].split(",")
    row = text[1].split(",")
    row[cols.index("soh_pct")] = "250.0"  # outside [0, 110]
    bad.write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    code, doc = _retrain(capsys, project, bad, "--force")
    assert code == ExitCode.RETRAIN_REFUSED and "quarantined" in " ".join(doc["reasons"])
    assert _aliases(project) == before
    assert list((project / "models" / "datasets" / "quarantine").iterdir())
    assert "quarantine" in _audit_kinds(project, doc["run_id"])


def test_7_a_hold_stops_at_awaiting_approval(project: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = _aliases(project)
    code, _, err = run_cli(capsys, "registry", "hold", "production", "--reason",
                           "field trial", "--registry", str(project / "models"))
    assert code == 0, err
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    code, doc = _retrain(capsys, project, new)
    assert code == ExitCode.AWAITING_APPROVAL, doc["reasons"]
    assert "held" in " ".join(doc["reasons"]) and doc["challenger"]
    assert _aliases(project) == before
    assert "hold" in _audit_kinds(project, doc["run_id"])


def test_a_challenger_that_does_not_build_for_a_fleet_env_is_refused(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Boards whose firmware is built with PlatformIO get the challenger built for their
    env before anything is promoted; here the project has no platformio.ini (no toolchain
    in CI), so the build fails and nothing changes."""
    before = _aliases(project)
    (project / "fleet.toml").write_text('[[board]]\ndevice = "/dev/ttyACM9"\n'
                                        'env = "nano33ble"\n')
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    code, doc = _retrain(capsys, project, new, "--fleet", str(project / "fleet.toml"))
    assert code == ExitCode.RETRAIN_REFUSED, doc["reasons"]
    assert "does not build for nano33ble" in " ".join(doc["reasons"])
    assert _aliases(project) == before
    log = AuditLog(default_audit_path(project / "models"))
    assert [e.decision for e in log.list(run_id=doc["run_id"], kind="refusal")] == [
        "build_failed"]


def test_warm_start_continues_the_champion_and_is_compared_the_same_way(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    code, doc = _retrain(capsys, project, new, "--warm-start")
    assert doc["warm_start"] is True
    assert code in (0, ExitCode.NOT_BETTER), doc["reasons"]
    assert doc["comparison"]["n"] >= 150 and doc["baseline"]


def test_the_same_batch_again_is_judged_against_what_production_learned(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch already in the store adds no snapshot, but production has still not been
    trained on it: its triggers are evaluated again (here: still nothing due). After a
    refused run the same batch can be retried and is not mistaken for old data."""
    new = _csv(project / "in" / "same.csv", rows=200, cells=40, seed=7, sample_every=7)
    code, first = _retrain(capsys, project, new)
    assert code == ExitCode.NOTHING_DUE, first["reasons"]
    code, doc = _retrain(capsys, project, new)
    assert code == ExitCode.NOTHING_DUE and doc["snapshot"]["id"] == first["snapshot"]["id"]
    assert doc["snapshot"]["new_rows_this_run"] is False
    assert len(doc["triggers"]) == 6  # evaluated on the 200 rows production never saw

    cfg = project / "tinyship.toml"
    original = cfg.read_text()
    cfg.write_text(original + "\n[board]\nlatency_budget_us = 1\n")
    hot = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
    code, doc = _retrain(capsys, project, hot)
    assert code == ExitCode.RETRAIN_REFUSED
    assert any("registered but not promoted" in r for r in doc["reasons"])
    cfg.write_text(original)
    code, doc = _retrain(capsys, project, hot)  # the same file, retried
    assert code == 0, doc["reasons"]
    assert doc["champion"] == "v0001"  # not the refused challenger


def test_drift_triggers_without_a_profile_say_unavailable() -> None:
    from tinyship.config import RetrainSection
    from tinyship.retrain import triggers as T

    cfg = RetrainSection()
    for t in (T.data_drift(cfg, {}), T.prediction_drift(cfg, {})):
        assert not t.fired and t.detail.startswith("unavailable: production has no drift")
    shifted = {"features": [{"feature": "a", "psi": 0.4}], "predictions": {"ks_p": 0.5}}
    assert T.data_drift(cfg, shifted).fired and not T.prediction_drift(cfg, shifted).fired
