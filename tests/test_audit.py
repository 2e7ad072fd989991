"""The audit log: append-only (enforced by the schema), several writers at once, the author
override for CI, filters, refusal of foreign files, `tinyship audit`; and the SQLite base
it shares with the deployment log."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli as _cli
from tinyship.audit import (
    AUTHOR_ENV,
    KINDS,
    SCHEMA_VERSION,
    AuditLog,
    AuditLogError,
    current_author,
    default_audit_path,
)
from tinyship.deploy.log import DeploymentLog
from tinyship.errors import ExitCode
from tinyship.registry import Registry
from tinyship.sqlite_log import SqliteLog, current_user


def _raw(path: Path) -> sqlite3.Connection:
    """A separate connection, as a person with `sqlite3` would open."""
    return sqlite3.connect(path, isolation_level=None)


def test_record_and_list_newest_first_with_filters(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTHOR_ENV, raising=False)
    log = AuditLog(tmp_path / "sub" / "audit.sqlite")
    assert log.list() == [] and not log.path.exists()  # reading creates nothing
    a = log.record("run_started", run_id="r1", details={"force": True})
    b = log.record("comparison", run_id="r1", snapshot="ds-0002", champion="v0001",
                   challenger="v0002", decision="better", reason="p=0.001, d=0.6",
                   details={"p": 0.001, "d": 0.6, "when": Path("x")})
    c = log.record("hold", decision="held", reason="field trial")
    assert (a.id, b.id, c.id) == (1, 2, 3)
    assert [e.id for e in log.list()] == [3, 2, 1]
    assert [e.id for e in log.list(run_id="r1")] == [2, 1]
    assert [e.id for e in log.list(kind="comparison")] == [2]
    assert [e.id for e in log.list(run_id="r1", kind="hold")] == []
    assert [e.id for e in log.list(limit=2)] == [3, 2]
    got = log.list(kind="comparison")[0]
    assert got == b  # what `record` returns is what was stored
    assert got.details == {"p": 0.001, "d": 0.6, "when": "x"}  # non-JSON values as text
    assert (got.snapshot, got.champion, got.challenger) == ("ds-0002", "v0001", "v0002")
    assert got.author == current_user() and got.host and got.pid and got.tinyship_version
    assert got.to_json()["details"]["p"] == 0.001
    with pytest.raises(AuditLogError, match="unknown audit event kind 'promoted'"):
        log.record("promoted")
    with pytest.raises(AuditLogError, match="unknown audit event kind"):
        log.list(kind="nope")
    with pytest.raises(AuditLogError, match="limit must be 0 or more"):
        log.list(limit=-1)
    assert log.list(limit=0) == []


def test_schema_forbids_update_and_delete(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite")
    log.record("promotion", champion="v0001", challenger="v0002", decision="manual")
    con = _raw(log.path)
    for sql in ("UPDATE events SET decision = 'automatic'", "DELETE FROM events",
                "UPDATE events SET details = '{}' WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="audit log is append-only"):
            con.execute(sql)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert log.list()[0].decision == "manual"


def test_author_comes_from_tinyship_author_then_the_login(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(tmp_path / "audit.sqlite")
    monkeypatch.setenv(AUTHOR_ENV, "ci:nightly-retrain")
    assert current_author() == "ci:nightly-retrain"
    assert log.record("run_started").author == "ci:nightly-retrain"
    assert log.record("hold", author="alice").author == "alice"  # explicit wins
    monkeypatch.setenv(AUTHOR_ENV, "   ")  # blank: as if unset
    assert log.record("release").author == current_user()
    assert [e.author for e in log.list()] == [current_user(), "alice", "ci:nightly-retrain"]


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tinyship.audit import AuditLog
    log = AuditLog(Path(sys.argv[1]))
    for i in range(int(sys.argv[3])):
        log.record("trigger", run_id=sys.argv[2], decision="fired", details={"i": i})
""")


def test_concurrent_writers_from_two_processes(tmp_path: Path) -> None:
    """Both processes create the file at once and then interleave: every event lands."""
    path = tmp_path / "audit.sqlite"
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), run, str(n)],
                              stderr=subprocess.PIPE, text=True) for run in ("ra", "rb")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    log = AuditLog(path)
    for run in ("ra", "rb"):
        events = log.list(run_id=run)
        assert sorted(e.details["i"] for e in events) == list(range(n))
        assert len({e.pid for e in events}) == 1
    assert len({e.id for e in log.list()}) == 2 * n


def test_newer_schema_and_foreign_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    AuditLog(newer).record("run_started")
    con = _raw(newer)
    con.execute("PRAGMA user_version = 7")
    con.close()
    for call in (AuditLog(newer).list, lambda: AuditLog(newer).record("run_started")):
        with pytest.raises(AuditLogError, match=r"audit log .* has schema version 7") as e:
            call()
        assert e.value.exit_code == ExitCode.REGISTRY
    foreign = tmp_path / "foreign.sqlite"
    con = _raw(foreign)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(AuditLogError, match="not a tinyship audit log"):
        AuditLog(foreign).record("run_started")
    # The deployment log is an SQLite file too, but not an audit log: refused, not mixed.
    deploy = tmp_path / "deployments.sqlite"
    DeploymentLog(deploy).start_attempt(device_id="d", port="p")
    with pytest.raises(AuditLogError, match=r"not a tinyship audit log .*no 'events' table"):
        AuditLog(deploy).record("run_started")
    with pytest.raises(AuditLogError, match="not a tinyship audit log"):
        AuditLog(deploy).list()


def test_both_logs_share_one_base_and_sit_beside_the_registry(tmp_path: Path) -> None:
    assert issubclass(AuditLog, SqliteLog) and issubclass(DeploymentLog, SqliteLog)
    reg = Registry(tmp_path / "models")
    with reg.stage() as st:
        (st.dir / "model_int8.tflite").write_text("x")
    log = AuditLog(default_audit_path(reg.root))
    assert log.path == reg.root / "audit.sqlite"
    log.record("promotion", challenger="v0001")
    assert reg.versions() == ["v0001"] and reg.verify_all() == {"v0001": []}


def test_audit_command_table_json_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    reg = tmp_path / "models"
    code, out, _ = _cli(capsys, "audit", "--registry", str(reg))
    assert code == 0 and "no audit events" in out
    assert not reg.exists()
    monkeypatch.setenv(AUTHOR_ENV, "bob")
    log = AuditLog(default_audit_path(reg))
    log.record("run_started", run_id="run-1")
    log.record("comparison", run_id="run-1", champion="v0001", challenger="v0002",
               decision="not_better", reason="p = 0.41")
    log.record("hold", decision="held", reason="field trial")

    code, out, err = _cli(capsys, "audit", "--registry", str(reg), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["log"] == str(reg / "audit.sqlite")
    assert [e["kind"] for e in doc["events"]] == ["hold", "comparison", "run_started"]
    assert {e["author"] for e in doc["events"]} == {"bob"}

    code, out, _ = _cli(capsys, "audit", "--registry", str(reg), "--run", "run-1",
                        "--kind", "comparison", "--json")
    (e,) = json.loads(out)["events"]
    assert (e["champion"], e["challenger"], e["decision"]) == ("v0001", "v0002", "not_better")
    code, out, _ = _cli(capsys, "audit", "--registry", str(reg), "--limit", "1", "--json")
    assert [e["kind"] for e in json.loads(out)["events"]] == ["hold"]

    code, out, _ = _cli(capsys, "audit", "--registry", str(reg))
    assert code == 0
    assert "not_better" in out and "v0001 -> v0002" in out and "bob@" in out
    assert "field trial" in out

    code, _, err = _cli(capsys, "audit", "--registry", str(reg), "--kind", "bogus")
    assert code == ExitCode.USAGE
    assert set(KINDS) >= {"run_started", "trigger", "comparison", "promotion", "hold",
                          "release", "refusal", "reflash", "quarantine", "ingest",
                          "run_finished"}


def test_audit_command_refuses_a_newer_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "models"
    AuditLog(default_audit_path(reg)).record("run_started")
    con = _raw(default_audit_path(reg))
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    code, out, err = _cli(capsys, "audit", "--registry", str(reg), "--json")
    assert code == ExitCode.REGISTRY and "schema version" in err
    assert json.loads(out)["error"]["type"] == "AuditLogError"
