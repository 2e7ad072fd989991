"""The deployment log: committed before the device is touched, append-only (enforced by the
schema), crash rows reconciled by an appended outcome, several writers at once, `tinyship
deployments`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli as _cli
from tinyship.deploy.log import (
    SCHEMA_VERSION,
    BoardReport,
    DeployLogError,
    DeploymentLog,
    default_log_path,
)
from tinyship.errors import ExitCode
from tinyship.registry import Registry

SHA = "ab" * 32


def _raw(path: Path) -> sqlite3.Connection:
    """A separate connection, as another process (or a person with `sqlite3`) would open."""
    con = sqlite3.connect(path, isolation_level=None)
    con.row_factory = sqlite3.Row
    return con


def _start(log: DeploymentLog, device: str = "dev-1", **kw: str) -> int:
    return log.start_attempt(device_id=device, port="/dev/ttyACM0", env="nano33ble",
                             board="nano33ble", from_firmware="0.1.0", from_model="v0001",
                             to_firmware="0.1.0", to_model="v0002", path="slot", **kw)


def test_attempt_and_step_start_are_committed_before_the_device_action(tmp_path: Path) -> None:
    log = DeploymentLog(tmp_path / "deployments.sqlite")
    aid = _start(log)
    with log.step(aid, "upload"):
        # The "device action": by now another process already sees the attempt and the step.
        con = _raw(log.path)
        row = con.execute("SELECT * FROM attempt_log WHERE id = ?", (aid,)).fetchone()
        assert row["result"] == "in_progress"
        assert row["device_id"] == "dev-1"
        assert row["operator"] and row["host"] and row["tinyship_version"]
        steps = con.execute("SELECT * FROM steps WHERE attempt_id = ?", (aid,)).fetchall()
        assert [(s["step"], s["ok"]) for s in steps] == [("upload", None)]
        con.close()
    with pytest.raises(RuntimeError), log.step(aid, "verify"):
        raise RuntimeError("board reports v0001")
    log.finish_attempt(aid, "rolled_back", failed_step="verify", message="wrong version",
                       rollback_performed=True, rollback_result="ok",
                       board=BoardReport("v0001", SHA, "confirmed"))
    a = log.get(aid)
    assert a.result == "rolled_back" and a.failed_step == "verify"
    assert a.rollback_performed is True and a.rollback_result == "ok"
    assert a.board_after == BoardReport("v0001", SHA, "confirmed")
    assert [(s.name, s.ok, s.message) for s in a.steps] == [
        ("upload", True, None), ("verify", False, "board reports v0001")]
    assert all(s.duration_s is not None and s.duration_s >= 0 for s in a.steps)
    assert log.open_attempts("dev-1") == []
    # An outcome is final: a second one, or a step after it, is refused.
    with pytest.raises(DeployLogError, match="already ended"):
        log.finish_attempt(aid, "ok")
    with pytest.raises(DeployLogError, match="already ended"):
        log.step_started(aid, "smoke")


def test_schema_forbids_update_and_delete_of_past_rows(tmp_path: Path) -> None:
    log = DeploymentLog(tmp_path / "deployments.sqlite")
    aid = _start(log)
    with log.step(aid, "upload"):
        pass
    log.finish_attempt(aid, "ok", board=BoardReport("v0002", SHA, "confirmed"))
    con = _raw(log.path)
    for sql in ("UPDATE attempts SET to_model = 'v0009'", "DELETE FROM attempts",
                "UPDATE step_events SET ok = 0", "DELETE FROM step_events",
                "UPDATE outcomes SET result = 'failed'", "DELETE FROM outcomes"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    con.close()
    assert log.get(aid).result == "ok"


def test_the_api_never_updates_or_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection the log opens gets an authorizer that denies (and records) UPDATE or
    DELETE on a fact table; a whole flash, failure, crash and reconcile never trips it."""
    denied: list[tuple[int, str | None]] = []
    real_connect = DeploymentLog._connect

    def authorizer(action: int, arg1: str | None, *_: object) -> int:
        if action in (sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) and arg1 in (
                "attempts", "step_events", "outcomes"):
            denied.append((action, arg1))
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def connect(self: DeploymentLog) -> sqlite3.Connection:
        con = real_connect(self)
        con.set_authorizer(authorizer)
        return con

    monkeypatch.setattr(DeploymentLog, "_connect", connect)
    log = DeploymentLog(tmp_path / "deployments.sqlite")
    ok = _start(log)
    with log.step(ok, "upload") as s:
        s.message = "3 chunks"
    log.finish_attempt(ok, "ok")
    crashed = _start(log)
    log.step_started(crashed, "confirm")
    assert [a.id for a in log.reconcile("dev-1", "v0002", SHA, "trial")] == [crashed]
    assert [a.result for a in log.list_attempts()] == ["interrupted", "ok"]
    assert denied == []


_CRASHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tinyship.deploy.log import DeploymentLog
    log = DeploymentLog(Path(sys.argv[1]))
    aid = log.start_attempt(device_id="dev-9", port="virtual://a", to_model="v0003",
                            path="image")
    with log.step(aid, "upload"):
        pass
    log.step_started(aid, "wait_reboot")
    print(aid, flush=True)
    time.sleep(60)
""")


def test_killed_attempt_stays_in_progress_until_reconciled(tmp_path: Path) -> None:
    path = tmp_path / "deployments.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        aid = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    log = DeploymentLog(path)
    (open_,) = log.open_attempts("dev-9")
    assert open_.id == aid and open_.result == "in_progress" and open_.pid == proc.pid
    assert [(s.name, s.ok) for s in open_.steps] == [("upload", True), ("wait_reboot", None)]
    assert log.open_attempts("other") == []

    (closed,) = log.reconcile("dev-9", "v0002", SHA, "confirmed")
    assert closed.id == aid and closed.result == "interrupted"
    assert closed.failed_step == "wait_reboot"
    assert closed.board_after == BoardReport("v0002", SHA, "confirmed")
    assert "v0002" in (closed.message or "") and "wait_reboot" in (closed.message or "")
    assert log.open_attempts("dev-9") == []
    assert log.reconcile("dev-9", "v0002", SHA, "confirmed") == []
    # Reconciling appended an outcome row; the attempt row itself is as it was written.
    con = _raw(path)
    assert con.execute("SELECT count(*) FROM attempts").fetchone()[0] == 1
    assert con.execute("SELECT result FROM outcomes").fetchall()[0][0] == "interrupted"
    con.close()


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tinyship.deploy.log import DeploymentLog
    log = DeploymentLog(Path(sys.argv[1]))
    for i in range(int(sys.argv[3])):
        aid = log.start_attempt(device_id=sys.argv[2], port="p", to_model=f"v{i:04d}")
        with log.step(aid, "upload"):
            pass
        log.finish_attempt(aid, "ok")
""")


def test_concurrent_writers_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "deployments.sqlite"
    n = 25
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), dev, str(n)],
                              stderr=subprocess.PIPE, text=True) for dev in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    log = DeploymentLog(path)
    for dev in ("a", "b"):
        got = log.list_attempts(device_id=dev)
        assert len(got) == n
        assert {a.result for a in got} == {"ok"}
        assert all(len(a.steps) == 1 for a in got)
    assert len(log.list_attempts(limit=7)) == 7
    con = _raw(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_list_order_filter_limit_and_no_file_created_by_reading(tmp_path: Path) -> None:
    log = DeploymentLog(tmp_path / "sub" / "deployments.sqlite")
    assert log.list_attempts() == [] and log.open_attempts("x") == []
    assert not log.path.exists()
    ids = [_start(log, device=d) for d in ("x", "y", "x")]
    assert [a.id for a in log.list_attempts()] == ids[::-1]
    assert [a.id for a in log.list_attempts(device_id="x")] == [ids[2], ids[0]]
    assert [a.id for a in log.list_attempts(device_id="x", limit=1)] == [ids[2]]
    assert [a.id for a in log.open_attempts("x")] == [ids[0], ids[2]]
    with pytest.raises(DeployLogError, match="no attempt 99"):
        log.get(99)
    with pytest.raises(DeployLogError, match="unknown result"):
        log.finish_attempt(ids[0], "great")
    with pytest.raises(DeployLogError, match="unknown deployment path"):
        log.start_attempt(device_id="x", port="p", path="usb")


def test_unknown_schema_versions_and_foreign_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    log = DeploymentLog(newer)
    _start(log)
    con = _raw(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    for call in (log.list_attempts, lambda: _start(log)):
        with pytest.raises(DeployLogError, match="schema version 99") as e:
            call()
        assert e.value.exit_code == ExitCode.REGISTRY
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(DeployLogError, match="not a tinyship deployment log"):
        _start(DeploymentLog(foreign))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DeployLogError, match=r"junk\.sqlite"):
        DeploymentLog(junk).list_attempts()


def test_registry_ignores_the_log_and_its_locks(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    with reg.stage() as st:
        (st.dir / "model_int8.tflite").write_text("x")
        st.manifest = {"model": {"bytes": 1}}
    log = DeploymentLog(default_log_path(reg.root))
    assert log.path == reg.root / "deployments.sqlite"
    _start(log)
    from tinyship.deploy.lock import DeviceLock, default_lock_dir

    reader = _raw(log.path)  # an open reader keeps the -wal and -shm files in place
    reader.execute("SELECT count(*) FROM attempts").fetchone()
    with DeviceLock(default_lock_dir(log.path), port="/dev/ttyACM0"):
        names = {p.name for p in reg.root.iterdir()}
        assert {"deployments.sqlite", "deployments.sqlite-wal", "deployments.sqlite-shm",
                "deploy-locks"} <= names
        assert reg.versions() == ["v0001"]
        assert reg.verify_all() == {"v0001": []}
    reader.close()


# --- `tinyship deployments` --------------------------------------------------------------


def test_deployments_command_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    reg_dir = tmp_path / "models"
    code, out, _ = _cli(capsys, "deployments", "--registry", str(reg_dir))
    assert code == 0 and "no deployments" in out
    assert not reg_dir.exists()  # reading created nothing

    log = DeploymentLog(default_log_path(reg_dir))
    good = _start(log, device="board-A")
    with log.step(good, "upload"):
        pass
    log.finish_attempt(good, "ok", board=BoardReport("v0002", SHA, "confirmed"))
    bad = _start(log, device="board-B")
    with pytest.raises(TimeoutError), log.step(bad, "wait_reboot"):
        raise TimeoutError("no banner within 10 s")
    log.finish_attempt(bad, "rolled_back", failed_step="wait_reboot",
                       message="no banner within 10 s", rollback_performed=True,
                       rollback_result="ok", board=BoardReport("v0001", SHA, "confirmed"))

    code, out, err = _cli(capsys, "deployments", "--registry", str(reg_dir), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["log"] == str(reg_dir / "deployments.sqlite")
    assert [a["id"] for a in doc["attempts"]] == [bad, good]
    b = doc["attempts"][0]
    assert b["result"] == "rolled_back" and b["failed_step"] == "wait_reboot"
    assert b["rollback_performed"] is True and b["board_after"]["model_version"] == "v0001"
    assert b["steps"][0]["name"] == "wait_reboot" and b["steps"][0]["ok"] is False

    code, out, _ = _cli(capsys, "deployments", "--registry", str(reg_dir), "--json",
                        "--device", "board-A", "--limit", "5")
    assert [a["device_id"] for a in json.loads(out)["attempts"]] == ["board-A"]

    code, out, _ = _cli(capsys, "deployments", "--log", str(log.path))
    assert code == 0
    assert "rolled_back" in out and "board-B" in out and "wait_reboot" in out
    assert "ok" in out and "board-A" in out

    code, out, err = _cli(capsys, "deployments", "--registry", str(reg_dir), "--limit", "0")
    assert code == ExitCode.USAGE


def test_deployments_command_refuses_a_newer_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deployments.sqlite"
    _start(DeploymentLog(path))
    con = _raw(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    code, out, err = _cli(capsys, "deployments", "--log", str(path), "--json")
    assert code == ExitCode.REGISTRY
    assert "schema version" in err
    assert json.loads(out)["error"]["type"] == "DeployLogError"


def test_deployments_command_reads_the_log_the_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[deploy] log` (relative to the config file) wins over the registry default."""
    cfg = tmp_path / "tinyship.toml"
    cfg.write_text(textwrap.dedent("""
        [project]
        registry = "models"
        [data]
        path = "data.csv"
        features = ["a"]
        target = "y"
        [deploy]
        log = "logs/deploy.sqlite"
    """))
    log = DeploymentLog(tmp_path / "logs" / "deploy.sqlite")
    log.finish_attempt(_start(log, device="board-C"), "ok",
                       board=BoardReport("v0002", SHA, "confirmed"))
    code, out, err = _cli(capsys, "deployments", "--config", str(cfg), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["log"] == str(tmp_path / "logs" / "deploy.sqlite")
    assert [a["device_id"] for a in doc["attempts"]] == ["board-C"]
