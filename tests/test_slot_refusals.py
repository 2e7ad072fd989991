"""Every refusal of a slot install leaves the slots as they were (issue 11).

On a headless virtual board (the core the boards run, over simulated NOR flash) whose slot A
holds a confirmed model: an image the firmware cannot run (profile, operator, arena, input,
output, size), a bad header, a stale sequence number, an install while a trial runs, chunks
out of order or past the end, and a model whose CRC fails at SLOT_END are each answered with
their own code; the flash is byte for byte unchanged where the protocol says nothing is
written (everything refused at SLOT_BEGIN), and in every case the board still boots the
confirmed model afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tinyship.device.slot_image import build_slot_image
from tinyship.device.virtual import _core
from tinyship.device.virtual.board import VirtualBoard
from tinyship.device.virtual.powerloss import (
    CMD_BEGIN,
    CMD_CONFIRM,
    CMD_END,
    CMD_REBOOT,
    CMD_REVERT,
    CMD_WRITE,
    PowerLossSweep,
    SweepBoard,
    firmware_model,
    variant_model,
)

REPO = Path(__file__).resolve().parents[1]
#: A copy of the bundled model's registry version (tests/fixtures/registry/README.md).
MODELS = REPO / "tests" / "fixtures" / "registry"
ERR = {"header": 17, "profile": 18, "op": 19, "arena": 20, "shape": 21, "size": 22,
       "sequence": 23, "order": 24, "range": 25, "verify": 26, "state": 27}


@pytest.fixture
def board(tmp_path: Path) -> tuple[VirtualBoard, SweepBoard]:
    vb = VirtualBoard(MODELS, "v0001", baud=0, boot_delay_s=0, state_dir=tmp_path)
    vb.power_on_headless()
    sb = SweepBoard(vb)
    old = firmware_model(vb.firmware)
    assert sb.install(old.image(5)) and sb.ok(CMD_REBOOT) and sb.ok(CMD_CONFIRM)
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_A, _core.TS_RUNNING_CONFIRMED)
    return vb, sb


def _image(vb: VirtualBoard, seq: int = 9, model: bytes | None = None,
           **changes: Any) -> bytes:
    m = copy.deepcopy(vb.firmware.manifest)
    model = vb.firmware.model if model is None else model
    m["model"].update(sha256=hashlib.sha256(model).hexdigest(), crc32=zlib.crc32(model),
                      bytes=len(model))
    for key, value in changes.items():
        if key == "profile":
            m["profile"] = value
        elif key in ("input", "output"):
            m["model"][key]["shape"] = value
        else:
            m["model"][key] = value
    return build_slot_image(model, m, seq)


def _begin_error(sb: SweepBoard, image: bytes) -> int | None:
    h = struct.unpack_from("<H", image, 6)[0]
    r = sb.request(CMD_BEGIN, image[:h])
    assert r is not None
    return r.error


@pytest.mark.parametrize(("what", "changes"), [
    ("profile", {"profile": "tflm-current"}),
    ("op", {"ops": ["FULLY_CONNECTED", "MEAN"]}),
    ("arena", {"arena_bytes": 1 << 20}),
    ("shape", {"input": [1, 27649]}),
    ("shape", {"output": [1, 1019]}),
])
def test_an_image_the_firmware_cannot_run_is_refused_before_anything_is_erased(
        board: tuple[VirtualBoard, SweepBoard], what: str, changes: dict[str, Any]) -> None:
    vb, sb = board
    assert vb.flash is not None
    before = vb.flash.nor.image
    assert _begin_error(sb, _image(vb, **changes)) == ERR[what]
    assert vb.flash.nor.image == before


def test_a_model_larger_than_a_slot_is_refused_before_anything_is_erased(
        board: tuple[VirtualBoard, SweepBoard]) -> None:
    vb, sb = board
    assert vb.flash is not None
    before = vb.flash.nor.image
    big = vb.firmware.model + bytes(vb.flash.slot_bytes)  # past the slot's capacity
    assert _begin_error(sb, _image(vb, model=big)) == ERR["size"]
    assert vb.flash.nor.image == before


def test_bad_header_and_stale_sequence_and_trial_running_change_nothing(
        board: tuple[VirtualBoard, SweepBoard]) -> None:
    vb, sb = board
    assert vb.flash is not None
    before = vb.flash.nor.image
    bad = bytearray(_image(vb))
    bad[60] ^= 0x01  # inside the version string: the header CRC no longer matches
    assert _begin_error(sb, bytes(bad)) == ERR["header"]
    assert _begin_error(sb, _image(vb, seq=5)) == ERR["sequence"]  # slot A holds 5
    r = sb.request(CMD_BEGIN, b"TSMH")
    assert r is not None and r.error == ERR["header"]
    assert vb.flash.nor.image == before
    # A trial running: the other slot may be the last confirmed one, so no install.
    new = variant_model(vb.firmware, "v9002", seed=4)
    assert sb.install(new.image(6)) and sb.ok(CMD_REBOOT)
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_TRIAL)
    during_trial = vb.flash.nor.image
    assert _begin_error(sb, _image(vb, seq=7)) == ERR["state"]
    assert vb.flash.nor.image == during_trial


def test_chunks_out_of_order_or_past_the_end_write_nothing(
        board: tuple[VirtualBoard, SweepBoard]) -> None:
    vb, sb = board
    assert vb.flash is not None
    image = _image(vb)
    h = struct.unpack_from("<H", image, 6)[0]
    assert sb.ok(CMD_BEGIN, image[:h])
    erased = vb.flash.nor.image
    last_page = len(image) // 256 * 256
    for payload, code in (
        (struct.pack("<I", 768) + image[768:1536], ERR["order"]),  # skips offset 0
        (struct.pack("<I", last_page) + bytes(512), ERR["range"]),  # runs past the end
        (struct.pack("<I", 100) + image[100:200], 8),  # not on a 256-byte boundary
        (struct.pack("<I", 0) + image[:300], 8),  # a partial unit that does not end the image
    ):
        r = sb.request(CMD_WRITE, payload)
        assert r is not None and r.error == code, payload[:4].hex()
        assert vb.flash.nor.image == erased
    r = sb.request(CMD_END)
    assert r is not None and r.error == ERR["order"]  # nothing written yet
    assert sb.ok(CMD_WRITE, struct.pack("<I", 0) + image[:768])
    written = vb.flash.nor.image
    r = sb.request(CMD_WRITE, struct.pack("<I", 0) + bytes(768))  # rewrite with other bytes
    assert r is not None and r.error == ERR["order"]
    assert vb.flash.nor.image == written
    vb.power_cycle_headless()  # an abandoned install: slot A still runs
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_A, _core.TS_RUNNING_CONFIRMED)


def test_a_model_whose_crc_fails_is_never_committed(
        board: tuple[VirtualBoard, SweepBoard]) -> None:
    vb, sb = board
    assert vb.flash is not None
    image = bytearray(_image(vb))
    image[-10] ^= 0x40  # a model byte changed after the header was made
    h = struct.unpack_from("<H", image, 6)[0]
    assert sb.ok(CMD_BEGIN, bytes(image[:h]))
    for off in range(0, len(image), 768):
        assert sb.ok(CMD_WRITE, struct.pack("<I", off) + bytes(image[off:off + 768]))
    r = sb.request(CMD_END)
    assert r is not None and r.error == ERR["verify"]
    vb.power_cycle_headless()
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_A, _core.TS_RUNNING_CONFIRMED)
    sweep = PowerLossSweep(vb, variant_model(vb.firmware, "v9003", seed=5))
    # slot A holds the factory model's bytes here: the sweep's check names it "factory"
    assert sweep.check("after a refused END") == "factory"
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_A, _core.TS_RUNNING_CONFIRMED)


def test_confirm_names_the_model_it_means(board: tuple[VirtualBoard, SweepBoard]) -> None:
    """SLOT_CONFIRM with a sequence number confirms only that model: after an unnoticed
    reset the board refuses instead of confirming whatever runs."""
    vb, sb = board
    new = variant_model(vb.firmware, "v9002", seed=4)
    assert sb.install(new.image(6)) and sb.ok(CMD_REBOOT)
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_TRIAL)
    r = sb.request(CMD_CONFIRM, struct.pack("<I", 5))  # slot A's, not the trial's
    assert r is not None and r.error == ERR["state"]
    r = sb.request(CMD_CONFIRM, b"\x06\x00")  # neither empty nor 4 bytes
    assert r is not None and r.error == 8
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_TRIAL)
    assert sb.ok(CMD_CONFIRM, struct.pack("<I", 6))
    assert sb.ok(CMD_CONFIRM, struct.pack("<I", 6))  # a resent frame is harmless
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_CONFIRMED)


def test_a_superseded_untried_model_never_runs(tmp_path: Path) -> None:
    """Two installs without a reboot between them: the older one is revoked at the newer
    one's SLOT_END, and if power is cut just before that revoke, the boot revokes it; when
    the newer one is then reverted, the factory model runs, never the older one."""
    vb = VirtualBoard(MODELS, "v0001", baud=0, boot_delay_s=0, state_dir=tmp_path)
    vb.power_on_headless()
    assert vb.flash is not None
    sb = SweepBoard(vb)
    one = variant_model(vb.firmware, "v9001", seed=1)
    two = variant_model(vb.firmware, "v9002", seed=2)
    assert sb.install(one.image(1))  # slot A, pending; no reboot
    image = two.image(2)
    start = vb.flash.total_ops
    assert sb.install(image)  # count its flash operations: the last one revokes slot A
    n = vb.flash.total_ops - start
    vb.flash.restore(b"\xff" * len(vb.flash.nor.image))
    vb.power_cycle_headless()
    assert sb.install(one.image(1))
    vb.flash.cut_at = vb.flash.total_ops + n  # before the revoke of A
    vb.flash.nor.cut_mode = "before"
    sb.install(image)
    vb.flash.cut_at = 0
    assert vb.flash.cuts == 1
    # Powered on again: B (newer) runs as a trial, A (stale) was revoked by the boot.
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_TRIAL)
    vb.power_cycle_headless()  # a reset before confirm
    assert vb.running_model() == (_core.TS_RUNNING_FACTORY, _core.TS_RUNNING_CONFIRMED)


def test_revert_never_starts_a_trial(board: tuple[VirtualBoard, SweepBoard]) -> None:
    """Slot A confirmed runs, slot B holds a newer model not yet tried (load-model
    --no-reboot): a revert goes back to the factory model and takes B's model too."""
    vb, sb = board
    new = variant_model(vb.firmware, "v9002", seed=4)
    assert sb.install(new.image(6))
    assert sb.ok(CMD_REVERT)
    assert vb.running_model() == (_core.TS_RUNNING_FACTORY, _core.TS_RUNNING_CONFIRMED)
    vb.power_cycle_headless()
    assert vb.running_model() == (_core.TS_RUNNING_FACTORY, _core.TS_RUNNING_CONFIRMED)


def test_a_header_longer_than_one_payload_installs_and_its_self_test_runs(
        board: tuple[VirtualBoard, SweepBoard]) -> None:
    """SLOT_BEGIN carries the first 1024 bytes of a longer header (many or large golden
    vectors); SLOT_END checks the whole header's CRC from flash; the trial runs every
    golden vector. Any other BEGIN length is refused, and a header whose tail was changed
    in flash is never committed."""
    vb, sb = board
    new = variant_model(vb.firmware, "v9002", seed=4)
    reps = 5  # 160 golden vectors of 8 + 1 bytes: a 1,600-byte header
    image = build_slot_image(new.model, new.manifest, 6,
                             golden_inputs=new.golden_inputs * reps,
                             golden_outputs=new.golden_outputs * reps)
    h = struct.unpack_from("<H", image, 6)[0]
    assert h > 1024
    r = sb.request(CMD_BEGIN, image[:1000])  # not the first min(H, 1024) bytes
    assert r is not None and r.error == ERR["header"]
    # A changed golden byte beyond the first 1024: BEGIN cannot see it, END refuses it.
    bad = bytearray(image)
    bad[1100] ^= 0x01
    assert sb.ok(CMD_BEGIN, bytes(bad[:1024]))
    for off in range(0, len(bad), 768):
        assert sb.ok(CMD_WRITE, struct.pack("<I", off) + bytes(bad[off:off + 768]))
    r = sb.request(CMD_END)
    assert r is not None and r.error == ERR["verify"]
    assert sb.install(image) and sb.ok(CMD_REBOOT)
    assert vb.running_model() == (_core.TS_RUNNING_SLOT_B, _core.TS_RUNNING_TRIAL)
    st = vb.self_test()
    assert st["status"] == 0 and st["vectors"] == len(new.golden_inputs) * reps
