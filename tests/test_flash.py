"""`tinyship flash` / `tinyship rollback` end to end on virtual boards (the firmware's own
core over simulated NOR flash, served on a socket): the whole flash -> verify -> smoke ->
confirm -> log flow, and each failure the issue lists, asserting the exit code, the model
the board runs at the end (read back over the protocol, not from tinyship's report) and
the deployment log's row.

Fault injection is the virtual board's own (`Faults`: wrong predictions, a wrong reported
version, power cuts at flash operation N); "the board does not come back" and "the link
drops" are done at the boundary: the board's boot delay raised past the timeout, the
board-side socket closed mid-transfer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from conftest import run_cli_json as cli
from tinyship.deploy.flash import (
    DeployContext,
    FlashOutcome,
    FlashRequest,
    RollbackRequest,
    flash_device,
    rollback_device,
)
from tinyship.deploy.log import DeploymentLog
from tinyship.device.client import DeviceClient
from tinyship.device.virtual import Faults, VirtualBoard
from tinyship.errors import ExitCode
from tinyship.registry import Registry

SMOKE = 8  # vectors: enough to catch a wrong model, quick on an unpaced board


@contextlib.contextmanager
def board(registry: Path, state: Path, **kw: Any) -> Iterator[VirtualBoard]:
    """A USB-like board (no reset on open) flashed with v0001 at the factory."""
    kw.setdefault("baud", 0)
    kw.setdefault("boot_delay_s", 0.05)
    with VirtualBoard(registry, "v0001", state_dir=state, reset_on_open=False, **kw) as vb:
        yield vb


def context(registry: Path, **kw: Any) -> DeployContext:
    log = registry / "deployments.sqlite"
    return DeployContext(registry_root=registry, log_path=log, lock_dir=registry / "locks",
                         latency_budget_us=20_000, **kw)


def flash(vb: VirtualBoard, ctx: DeployContext, model: str, **kw: Any) -> FlashOutcome:
    kw.setdefault("smoke_vectors", SMOKE)
    kw.setdefault("reboot_timeout_s", 5.0)
    return flash_device(FlashRequest(vb.url, model, **kw), ctx)


def reads(vb: VirtualBoard) -> tuple[str | None, str | None, str | None]:
    """What the board itself says it runs: (model version, running, self-test)."""
    with DeviceClient.open(vb.url, baud=0) as c:
        info = c.hello()
    run = info.running
    return (info.model_version, f"{run.source_name} ({run.mode_name})" if run else None,
            info.self_test.status_name if info.self_test else None)


def row(ctx: DeployContext, attempt_id: int | None) -> Any:
    assert attempt_id is not None
    return DeploymentLog(ctx.log_path).get(attempt_id)


# --- the whole flow ------------------------------------------------------------------------


def test_flash_slot_verify_smoke_confirm_and_log(versions_registry: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    reg = versions_registry
    with board(reg, tmp_path / "s") as vb:
        code, doc = cli(capsys, "flash", "--device", vb.url, "--model", "v0003",
                        "--registry", str(reg), "--smoke-vectors", str(SMOKE))
        assert code == 0 and doc["ok"] and doc["result"] == "ok", doc
        assert (doc["from_version"], doc["to_version"], doc["path"]) == ("v0001", "v0003",
                                                                        "slot")
        assert doc["details"]["smoke"]["vectors"] == SMOKE
        assert doc["details"]["smoke"]["passed"] is True
        assert reads(vb) == ("v0003", "slot A (confirmed)", "pass")
        # the confirmed model survives a reset (a trial would not)
        with DeviceClient.open(vb.url, baud=0) as c:
            from tinyship.device.slots import SlotClient

            SlotClient(c).reboot_and_wait()
        assert reads(vb)[:2] == ("v0003", "slot A (confirmed)")
        a = DeploymentLog(reg / "deployments.sqlite").get(doc["attempt_id"])
        assert (a.result, a.path, a.from_model, a.to_model) == ("ok", "slot", "v0001", "v0003")
        assert a.device_id == doc["device_id"] and a.board == "virtual-nano33ble"
        assert [s.name for s in a.steps] == ["install", "reboot", "verify", "smoke", "confirm"]
        assert all(s.ok for s in a.steps)
        # again: the board already runs it, nothing is sent, and the log says so
        code, doc = cli(capsys, "flash", "--device", vb.url, "--model", "v0003",
                        "--registry", str(reg))
        assert code == 0 and doc["path"] is None and "already runs" in doc["message"]
        code, doc = cli(capsys, "deployments", "--registry", str(reg))
        assert [a["result"] for a in doc["attempts"]] == ["ok", "ok"]


def test_rollback_from_the_other_slot_and_from_the_log(versions_registry: Path,
                                                       tmp_path: Path) -> None:
    reg = versions_registry
    ctx = context(reg)
    with board(reg, tmp_path / "s") as vb:
        assert flash(vb, ctx, "v0002").result == "ok"
        assert flash(vb, ctx, "v0003").result == "ok"
        assert reads(vb)[:2] == ("v0003", "slot B (confirmed)")
        # instant: slot A holds the confirmed v0002
        o = rollback_device(RollbackRequest(vb.url, smoke_vectors=SMOKE), ctx)
        assert (o.result, o.to_version, o.path) == ("ok", "v0002", "slot"), o.message
        assert reads(vb)[:2] == ("v0002", "slot A (confirmed)")
        # then back to the factory model: nothing confirmed in the other slot, the slot revert
        o = rollback_device(RollbackRequest(vb.url, smoke_vectors=SMOKE), ctx)
        assert (o.result, o.to_version) == ("ok", "v0001"), o.message
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
        # the factory model runs: the log names v0003 as the last good flash -> refuse? no:
        # --to picks it explicitly, flashed again (a downgrade is fine for rollback)
        o = rollback_device(RollbackRequest(vb.url, to="v0003", smoke_vectors=SMOKE), ctx)
        assert (o.result, o.to_version) == ("ok", "v0003"), o.message
        assert reads(vb)[0] == "v0003"
        results = [(a.command, a.result) for a in DeploymentLog(ctx.log_path).list_attempts()]
        assert results == [("rollback", "ok")] * 3 + [("flash", "ok")] * 2


# --- failures: exit code, the board's final model, the log row ------------------------------


def _failed(o: FlashOutcome, result: str, step: str, code: int) -> None:
    assert (o.result, o.failed_step, o.exit_code) == (result, step, code), o.message


def test_failed_self_test_is_reverted_by_the_board_and_reported(
        versions_registry: Path, tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0004")  # v0003's model with v0001's golden outputs
        _failed(o, "rolled_back", "verify", ExitCode.ROLLED_BACK)
        assert "trial boot failed the health check" in (o.message or "")
        assert reads(vb) == ("v0001", "factory (confirmed)", "pass")
        a = row(ctx, o.attempt_id)
        assert (a.result, a.failed_step, a.rollback_performed) == ("rolled_back", "verify",
                                                                   True)
        assert a.board_after.model_version == "v0001"


def test_failed_smoke_check_reverts_the_trial(versions_registry: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Every INFER answer perturbed; the boot self-test (inside the core's init) is not.
    with board(versions_registry, tmp_path / "s", faults=Faults(wrong_prediction=1.0)) as vb:
        code, doc = cli(capsys, "flash", "--device", vb.url, "--model", "v0003",
                        "--registry", str(versions_registry), "--smoke-vectors", "4")
        assert code == ExitCode.ROLLED_BACK and doc["result"] == "rolled_back"
        assert doc["failed_step"] == "smoke" and "parity" in doc["message"]
        assert doc["rollback"] == "reverted slot A"
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
        assert doc["board"]["model_version"] == "v0001"


def test_no_rollback_leaves_the_failed_trial_for_inspection(
        versions_registry: Path, tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s", faults=Faults(wrong_prediction=1.0)) as vb:
        o = flash(vb, ctx, "v0003", rollback=False, smoke_vectors=4)
        _failed(o, "failed", "smoke", ExitCode.VALIDATION)
        assert reads(vb)[:2] == ("v0003", "slot A (trial)")


def test_wrong_version_reported_rolls_back(versions_registry: Path, tmp_path: Path) -> None:
    # The fault renames the firmware's own (factory) model, so it shows on the full-image
    # path: the uploaded image's factory model reports "v0003-bad"; a slot model's version
    # comes from its slot header, which the fault cannot touch.
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s", faults=Faults(wrong_version="-bad")) as vb:
        assert reads(vb)[0] == "v0001-bad"
        o = flash(vb, ctx, "v0003", path="image")
        _failed(o, "rolled_back", "verify", ExitCode.ROLLED_BACK)
        assert "reports model v0003-bad, expected v0003" in (o.message or "")
        assert o.rollback == "re-uploaded the v0001 image"
        assert reads(vb) == ("v0001-bad", "factory (confirmed)", "pass")
        assert o.board is not None and o.board.model_sha256 == Registry(
            versions_registry).manifest("v0001")["model"]["sha256"]


def test_board_that_comes_back_late_is_rolled_back(versions_registry: Path,
                                                  tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        def slow_boot(step: str, done: int, total: int) -> None:
            if step == "reboot":
                vb.boot_delay_s = 2.0  # longer than the flash waits, shorter than rollback

        ctx.progress = slow_boot
        o = flash(vb, ctx, "v0003", reboot_timeout_s=1.0)
        _failed(o, "rolled_back", "reboot", ExitCode.ROLLED_BACK)
        assert o.rollback == "reverted slot A"
        vb.boot_delay_s = 0.05
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
        assert row(ctx, o.attempt_id).result == "rolled_back"


def test_board_that_never_comes_back_is_rollback_failed(versions_registry: Path,
                                                       tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        def die(step: str, done: int, total: int) -> None:
            if step == "reboot":
                vb.stop()  # the board is gone (unplugged, dead): nothing answers

        ctx.progress = die
        o = flash(vb, ctx, "v0003", reboot_timeout_s=0.5)
    _failed(o, "rollback_failed", "reboot", ExitCode.ROLLBACK_FAILED)
    assert o.board is not None and not o.board.reachable
    assert "does not answer" in (o.message or "")
    a = row(ctx, o.attempt_id)
    assert (a.result, a.rollback_performed) == ("rollback_failed", True)


def test_link_dropped_mid_transfer(versions_registry: Path, tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        dropped: list[int] = []

        def unplug(step: str, done: int, total: int) -> None:
            if step == "install:write" and done and not dropped:
                dropped.append(done)
                vb._close_conn()  # the cable, board side: the host's socket dies

        ctx.progress = unplug
        o = flash(vb, ctx, "v0003")
        assert dropped
        # Either the client's reconnect carried the transfer through (then everything was
        # verified) or the flash failed and rolled back: never anything in between.
        if o.result == "ok":
            assert reads(vb)[:2] == ("v0003", "slot A (confirmed)")
        else:
            _failed(o, "rolled_back", "install", ExitCode.ROLLED_BACK)
            assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
        assert row(ctx, o.attempt_id).result == o.result


def test_interrupted_attempt_is_reconciled_by_the_next_command(versions_registry: Path,
                                                              tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        def ctrl_c(step: str, done: int, total: int) -> None:
            if step == "smoke":
                raise KeyboardInterrupt

        ctx.progress = ctrl_c
        with pytest.raises(KeyboardInterrupt):
            flash(vb, ctx, "v0003")
        (a,) = DeploymentLog(ctx.log_path).list_attempts()
        assert a.result == "in_progress"
        ctx.progress = None
        assert reads(vb)[:2] == ("v0003", "slot A (trial)")  # left as the crash left it
        # the next flash closes the row with what the board reports, then resumes the trial
        o = flash(vb, ctx, "v0003")
        assert o.result == "ok" and o.details["reconciled"] == [a.id], o.message
        assert o.details["resumed_trial"] == "slot A (trial)"
        old = DeploymentLog(ctx.log_path).get(a.id)
        assert (old.result, old.failed_step) == ("interrupted", "smoke")
        assert "model v0003, slot state slot A (trial)" in (old.message or "")
        assert [s.name for s in row(ctx, o.attempt_id).steps] == ["verify", "smoke", "confirm"]
        assert reads(vb)[:2] == ("v0003", "slot A (confirmed)")


# --- power cut at every step of the update ---------------------------------------------------


def _ops_per_step(reg: Path, state: Path) -> dict[str, tuple[int, int]]:
    """A clean flash, counting the board's flash operations: step -> (first op, last op)."""
    ctx = context(reg)
    marks: list[tuple[str, int]] = []
    with board(reg, state) as vb:
        assert vb.flash is not None

        def flash_ops() -> int:
            return vb.flash.total_ops  # type: ignore[union-attr]

        def mark(step: str, done: int, total: int) -> None:
            name = step.split(":")[0]
            if not marks or marks[-1][0] != name:
                marks.append((name, flash_ops()))

        ctx.progress = mark
        assert flash(vb, ctx, "v0003").result == "ok"
        end = flash_ops()
    spans: dict[str, tuple[int, int]] = {}
    for (name, start), nxt in zip(marks, [*marks[1:], ("end", end)], strict=True):
        if nxt[1] > start:
            first, last = spans.get(name, (start + 1, nxt[1]))
            spans[name] = (min(first, start + 1), max(last, nxt[1]))
    return spans


def test_power_cut_at_every_step_leaves_a_verified_model(versions_registry: Path,
                                                        tmp_path: Path) -> None:
    reg = versions_registry
    spans = _ops_per_step(reg, tmp_path / "count")
    assert {"install", "reboot", "confirm"} <= set(spans), spans
    cuts = sorted({n for first, last in spans.values() for n in (first, (first + last) // 2,
                                                                 last)})
    seen: dict[str, set[str]] = {}
    for n in cuts:
        ctx = context(reg, )
        ctx.log_path = tmp_path / f"log{n}.sqlite"
        with board(reg, tmp_path / f"s{n}",
                   faults=Faults(power_cut_at=n, power_cut_mode="torn", seed=n)) as vb:
            o = flash(vb, ctx, "v0003")
            model, running, test = reads(vb)
        assert o.result in ("ok", "rolled_back"), (n, o.result, o.message)
        want = ("v0003", "slot A (confirmed)") if o.result == "ok" else \
            ("v0001", "factory (confirmed)")
        assert (model, running, test) == (*want, "pass"), (n, o.message)
        a = row(ctx, o.attempt_id)
        assert a.result == o.result and a.board_after.model_version == model
        seen.setdefault(o.failed_step or "ok", set()).add(str(n))
    assert len(seen) >= 2, seen  # cuts landed in different steps with different endings


# --- the full-image path on the virtual board (its own bootloader and flash) ----------------


def test_full_image_flash_and_a_torn_upload_rolled_back(versions_registry: Path,
                                                        tmp_path: Path) -> None:
    reg = versions_registry
    ctx = context(reg)
    with board(reg, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0003", path="image")
        assert (o.result, o.path) == ("ok", "image"), o.message
        assert [s.name for s in row(ctx, o.attempt_id).steps] == ["upload", "reboot",
                                                                 "verify", "smoke"]
        assert reads(vb) == ("v0003", "factory (confirmed)", "pass")
        assert o.details["uploads"][0]["tool"] == "virtual-bootloader"
    # power lost in the middle of the next upload (its 3rd erase): the board stays in its
    # bootloader (no valid application); the rollback uploads v0003's image again
    with board(reg, tmp_path / "s", faults=Faults(power_cut_at=3, power_cut_mode="torn")) as vb:
        assert reads(vb)[0] == "v0003"
        o = flash(vb, ctx, "v0002", path="image", allow_downgrade=True, reboot_timeout_s=2.0)
        assert (o.result, o.failed_step) == ("rolled_back", "upload"), o.message
        assert o.rollback == "re-uploaded the v0003 image"
        assert reads(vb) == ("v0003", "factory (confirmed)", "pass")


def test_full_image_under_a_confirmed_slot_model_clears_the_slots(versions_registry: Path,
                                                                  tmp_path: Path) -> None:
    """The ESP32 trap: an image upload leaves the slots alone, so a confirmed slot model
    would keep running over the new factory model; flash reverts the slots."""
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        assert flash(vb, ctx, "v0002").result == "ok"
        assert reads(vb)[:2] == ("v0002", "slot A (confirmed)")
        o = flash(vb, ctx, "v0003", path="image")
        assert o.result == "ok", o.message
        assert "clear slots" in [s.name for s in row(ctx, o.attempt_id).steps]
        assert reads(vb) == ("v0003", "factory (confirmed)", "pass")


def test_cli_human_output_of_flash_rollback_and_deployments(
        versions_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    reg = str(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        code, out, err = run_cli(capsys, "flash", "--device", vb.url, "--model", "v0003",
                                 "--registry", reg, "--smoke-vectors", "4")
        assert code == 0, err
        assert "ok: " in out and "v0001 -> v0003 by slot" in out
        assert "board now: v0003 (slot A (confirmed), self-test pass)" in out
        code, out, err = run_cli(capsys, "rollback", "--device", vb.url, "--registry", reg,
                                 "--smoke-vectors", "4")
        assert code == 0, err
        assert "v0003 -> v0001 by slot" in out and "reverted slot A" in out
        code, out, err = run_cli(capsys, "flash", "--device", vb.url, "--model", "v0004",
                                 "--registry", reg)
        assert code == ExitCode.ROLLED_BACK
        assert "rolled_back" in out and "board now: v0001" in out
        assert "flash failed at verify" in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, "deployments", "--registry", reg)
    assert code == 0 and out.count("rolled_back") == 1 and "rollback" in out


def test_second_rollback_never_goes_forward_again(versions_registry: Path,
                                                  tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        assert flash(vb, ctx, "v0003").result == "ok"
        o = rollback_device(RollbackRequest(vb.url, smoke_vectors=SMOKE), ctx)
        assert (o.result, o.to_version) == ("ok", "v0001")
        # v0003 was rolled away from: a second rollback has nowhere older to go
        o = rollback_device(RollbackRequest(vb.url, smoke_vectors=SMOKE), ctx)
        assert o.result == "refused" and "no previous known-good version" in (o.message or "")
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")


def test_a_board_running_the_version_unhealthy_gets_it_again(versions_registry: Path,
                                                             tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s", faults=Faults(bad_model_crc=True)) as vb:
        o = flash(vb, ctx, "v0001")  # "already runs" would hide a corrupt factory model
        assert (o.result, o.path) == ("ok", "slot"), o.message
        assert reads(vb) == ("v0001", "slot A (confirmed)", "pass")


def test_rollback_whose_own_install_fails_exits_12_on_the_old_model(
        versions_registry: Path, tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        assert flash(vb, ctx, "v0003").result == "ok"
        o = rollback_device(RollbackRequest(vb.url, to="v0004", smoke_vectors=SMOKE), ctx)
        assert (o.result, o.exit_code) == ("rolled_back", ExitCode.ROLLED_BACK), o.message
        assert reads(vb)[:2] == ("v0003", "slot A (confirmed)")
