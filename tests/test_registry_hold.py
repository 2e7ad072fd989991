"""Holding automatic promotion: `registry hold` / `release`, the retrain job's automatic
promotion refused while `production` is held, a person's promotion as the override, and
every one of them in the audit log with its author."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli as _cli
from tinyship.audit import AUTHOR_ENV, AuditLog, default_audit_path
from tinyship.errors import ExitCode, RegistryError
from tinyship.registry import HOLDS, PRODUCTION, PromotionHeld, Registry


def _registry(tmp_path: Path, n: int = 3) -> Registry:
    reg = Registry(tmp_path / "models")
    for i in range(n):
        with reg.stage() as st:
            (st.dir / "model_int8.tflite").write_text(f"model {i}")
            st.manifest = {"model": {"bytes": 7}}
    return reg


def test_hold_refuses_automatic_promotion_and_a_person_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTHOR_ENV, "alice")
    reg = _registry(tmp_path)
    audit = AuditLog(default_audit_path(reg.root))
    reg.promote("v0001", automatic=True, audit=audit, run_id="r0")
    assert reg.held() is None  # nothing held: "may I promote automatically?" -> yes

    h = reg.hold(PRODUCTION, "  field trial, ask Bob  ", audit=audit)
    assert (h.alias, h.reason, h.author) == ("production", "field trial, ask Bob", "alice")
    assert reg.holds() == {"production": h} and reg.held() == h
    assert (reg.root / HOLDS).is_file() and reg.versions() == ["v0001", "v0002", "v0003"]

    with pytest.raises(PromotionHeld, match="production is held by alice") as e:
        reg.promote("v0002", automatic=True, audit=audit, run_id="r1",
                    details={"comparison": {"p": 0.01}})
    assert e.value.exit_code == ExitCode.POLICY and e.value.hold == h
    assert "tinyship registry promote v0002" in (e.value.hint or "")
    assert reg.aliases() == {"production": "v0001"}

    monkeypatch.setenv(AUTHOR_ENV, "bob")
    aliases = reg.promote("v0002", audit=audit, reason="approved after the trial")
    assert aliases == {"production": "v0002", "last_known_good": "v0001"}
    assert reg.held() == h  # the override promotes once; the hold stays until released

    assert reg.release(PRODUCTION, audit=audit) == h
    assert reg.holds() == {} and reg.release(PRODUCTION, audit=audit) is None
    reg.promote("v0003", automatic=True, audit=audit, run_id="r2")
    assert reg.aliases()["production"] == "v0003"

    events = list(reversed(audit.list()))
    assert [(e.kind, e.decision, e.author) for e in events] == [
        ("promotion", "automatic", "alice"),
        ("hold", "held", "alice"),
        ("hold", "awaiting_approval", "alice"),
        ("promotion", "manual_override", "bob"),
        ("release", "released", "bob"),
        ("promotion", "automatic", "bob"),
    ]
    met = events[2]
    assert (met.run_id, met.champion, met.challenger) == ("r1", "v0001", "v0002")
    assert met.details["comparison"] == {"p": 0.01} and met.details["automatic"] is True
    assert met.details["hold"]["reason"] == "field trial, ask Bob"
    override = events[3]
    assert (override.champion, override.challenger) == ("v0001", "v0002")
    assert override.reason == "approved after the trial"
    assert override.details["hold"]["author"] == "alice"
    assert events[4].details["hold"]["since"] == h.since


def test_hold_again_replaces_the_reason_and_release_of_nothing_changes_nothing(
        tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    assert reg.release(PRODUCTION) is None
    assert not reg.root.exists()  # nothing held, nothing written
    first = reg.hold(PRODUCTION, "trial", author="carol")  # before any version: allowed
    second = reg.hold(PRODUCTION, "trial, extended", author="dave")
    assert reg.holds() == {"production": second} and first != second
    reg.hold("staging", "keep", author="dave")
    assert set(reg.holds()) == {"production", "staging"}
    assert reg.release("staging") is not None and set(reg.holds()) == {"production"}


def test_bad_hold_requests_are_refused(tmp_path: Path) -> None:
    reg = _registry(tmp_path, 1)
    for alias in ("v0001", "latest", "Prod!"):
        with pytest.raises(RegistryError, match="invalid alias name"):
            reg.hold(alias, "x")
    with pytest.raises(RegistryError, match="needs a reason"):
        reg.hold(PRODUCTION, "   ")
    assert reg.holds() == {}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"production": {"x": 1}}'])
def test_a_damaged_holds_file_fails_closed(tmp_path: Path, content: bytes) -> None:
    reg = _registry(tmp_path, 2)
    (reg.root / HOLDS).write_bytes(content)
    with pytest.raises(RegistryError, match="corrupt holds file"):
        reg.holds()
    with pytest.raises(RegistryError, match="corrupt holds file"):
        reg.promote("v0002", automatic=True)
    assert reg.aliases() == {}


def test_hold_release_and_promote_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = _registry(tmp_path, 2)
    r = str(reg.root)
    monkeypatch.setenv(AUTHOR_ENV, "ci-person")
    code, out, err = _cli(capsys, "registry", "promote", "v0001", "--registry", r)
    assert code == 0, err
    code, out, err = _cli(capsys, "registry", "hold", "production", "--reason",
                          "field trial", "--registry", r, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["held"] is True and doc["author"] == "ci-person"
    assert doc["reason"] == "field trial"
    code, out, err = _cli(capsys, "registry", "hold", "production", "--registry", r)
    assert code == ExitCode.USAGE and "--reason" in err

    with pytest.raises(PromotionHeld):
        reg.promote("v0002", automatic=True)
    code, out, err = _cli(capsys, "registry", "promote", "v0002", "--reason", "approved",
                          "--registry", r)
    assert code == 0, err
    assert "production -> v0002" in out and "manual override" in err and "field trial" in err

    code, out, err = _cli(capsys, "registry", "release", "production", "--registry", r)
    assert code == 0 and "production released" in out and "field trial" in out
    code, out, err = _cli(capsys, "registry", "release", "production", "--registry", r,
                          "--json")
    assert code == 0 and json.loads(out) == {"released": False, "alias": "production",
                                             "hold": None}
    code, out, _ = _cli(capsys, "registry", "release", "production", "--registry", r)
    assert "was not held" in out

    code, out, err = _cli(capsys, "audit", "--registry", r, "--json")
    events = list(reversed(json.loads(out)["events"]))
    assert [(e["kind"], e["decision"]) for e in events] == [
        ("promotion", "manual"), ("hold", "held"), ("promotion", "manual_override"),
        ("release", "released")]
    assert {e["author"] for e in events} == {"ci-person"}
    assert events[2]["reason"] == "approved"
