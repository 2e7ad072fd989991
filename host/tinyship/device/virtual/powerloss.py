"""Power-loss sweep of the model slots (MCUboot simulator style), on the virtual board.

For each operation of the slot life cycle — *install* (BEGIN, WRITE×n, END), *trial boot*
(the boot that marks a new slot tried), *confirm*, *revert* (of a trial and of a confirmed
slot) — the sweep first runs it once to count its flash operations, then, for every one of
them, restores the flash to the state before the operation, cuts the power before that
operation or in the middle of it (torn), lets the board power on again and checks:

* the board boots and answers INFO;
* the model it runs passes its CRC check and its self-test;
* that model is the old or the new one (by SHA-256), never a mix: the running slot's
  bytes, parsed independently here, hash to what INFO reports;
* INFO says which slot runs, as the core's own state does;
* the operation, repeated, completes.

A random sweep then cycles install / reboot / confirm / revert with a power cut at each
flash operation with probability `p`, checking the same after every cut, until `cuts`
cuts happened. Everything runs headless (no port, no thread, no boot delay), the same core
and flash code the boards run. The second model is a variant of the board's own: the same
graph with perturbed weights and golden outputs recomputed by TFLM, as a retrain of the
same family would give.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyship.device.slot_image import build_slot_image, max_golden_for_begin, parse_slot_image
from tinyship.device.virtual import _core
from tinyship.device.virtual.board import VirtualBoard
from tinyship.device.virtual.fwimage import Firmware

CMD_HELLO = 0x02
CMD_SLOT_INFO, CMD_BEGIN, CMD_WRITE, CMD_END = 0x10, 0x11, 0x12, 0x13
CMD_REBOOT, CMD_CONFIRM, CMD_REVERT = 0x14, 0x15, 0x16
CHUNK = 768
TAG_SHA, TAG_CRC_OK, TAG_SELF_TEST, TAG_RUNNING = 0x04, 0x05, 0x16, 0x20


class SweepFailure(AssertionError):
    """An invariant did not hold; the message names the case."""


@dataclass(frozen=True)
class SlotModel:
    """A model version as the host sends it: bytes, manifest, golden vectors."""

    version: str
    model: bytes
    manifest: dict[str, Any]
    golden_inputs: tuple[bytes, ...]
    golden_outputs: tuple[bytes, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()

    def image(self, sequence: int) -> bytes:
        return build_slot_image(self.model, self.manifest, sequence,
                                golden_inputs=self.golden_inputs,
                                golden_outputs=self.golden_outputs,
                                max_golden=max_golden_for_begin(self.manifest))


def firmware_model(fw: Firmware) -> SlotModel:
    """The board's factory model as a slot model."""
    return SlotModel(fw.version, fw.model, fw.manifest,
                     tuple(r.tobytes() for r in fw.golden_inputs),
                     tuple(r.tobytes() for r in fw.golden_outputs))


def variant_model(fw: Firmware, version: str, seed: int) -> SlotModel:
    """The factory model's graph with the weights of its largest int8 buffer perturbed
    (seeded), golden outputs recomputed by TFLM: a distinct, valid model of the same
    family, arena and operators."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from tinyship.convert.runtimes import TflmRunner

    m = schema.ModelT.InitFromPackedBuf(fw.model, 0)
    sizes = [0 if b.data is None else len(b.data) for b in m.buffers]
    big = int(np.argmax(sizes))
    rng = np.random.default_rng(seed)
    w = np.asarray(m.buffers[big].data, dtype=np.uint8).view(np.int8).astype(np.int16)
    w = np.clip(w + rng.integers(-9, 10, size=w.shape), -127, 127).astype(np.int8)
    m.buffers[big].data = w.view(np.uint8)
    b = flatbuffers.Builder(len(fw.model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    model = bytes(b.Output())
    arena = int(fw.manifest["model"].get("arena_bytes", 0)) or 16 * 1024
    runner = TflmRunner(model, arena)
    outs = tuple(runner.invoke(x).astype(np.int8).tobytes() for x in fw.golden_inputs)
    manifest = {**fw.manifest, "version": version,
                "model": {**fw.manifest["model"], "sha256": hashlib.sha256(model).hexdigest(),
                          "crc32": zlib.crc32(model), "bytes": len(model)}}
    return SlotModel(version, model, manifest,
                     tuple(r.tobytes() for r in fw.golden_inputs), outs)


@dataclass
class Reply:
    cmd: int
    payload: bytes

    @property
    def error(self) -> int | None:
        return self.payload[0] if self.cmd == 0xFF and self.payload else None


def _frames(out: bytes) -> list[Reply]:
    replies = []
    for part in out.split(b"\0"):
        if part:
            st, cmd, _seq, pl = _core.frame_decode(part)
            if st == _core.TS_OK:
                replies.append(Reply(cmd, pl))
    return replies


def _tlvs(payload: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 2 <= len(payload):
        tag, n = payload[i], payload[i + 1]
        out[tag] = payload[i + 2:i + 2 + n]
        i += 2 + n
    return out


@dataclass
class SweepBoard:
    """A headless virtual board with the slot commands as methods."""

    board: VirtualBoard
    seq: int = 0

    def request(self, cmd: int, payload: bytes = b"") -> Reply | None:
        """The board's reply, or None when it lost power (or reset) before answering."""
        self.seq = (self.seq + 1) % 0xFFFF
        replies = _frames(self.board.feed_headless(_core.frame_encode(cmd, self.seq, payload)))
        return replies[0] if replies else None

    def ok(self, cmd: int, payload: bytes = b"") -> bool:
        r = self.request(cmd, payload)
        return r is not None and r.cmd == (cmd | 0x80)

    def install(self, image: bytes) -> bool:
        """BEGIN, WRITE×n, END; False as soon as a step gets no good reply."""
        h = struct.unpack_from("<H", image, 6)[0]
        if not self.ok(CMD_BEGIN, image[:min(h, 1024)]):  # a long header: its first 1024
            return False
        for off in range(0, len(image), CHUNK):
            if not self.ok(CMD_WRITE, struct.pack("<I", off) + image[off:off + CHUNK]):
                return False
        return self.ok(CMD_END)

    def next_sequence(self) -> int:
        r = self.request(CMD_SLOT_INFO)
        assert r is not None and r.cmd == 0x90, "SLOT_INFO failed"
        seqs = [struct.unpack_from("<I", r.payload, 44 + 68 * s + 8)[0] for s in (0, 1)]
        return int(max(seqs)) + 1

    def info(self) -> dict[int, bytes]:
        r = self.request(CMD_HELLO)
        if r is None or r.cmd != 0x82:
            raise SweepFailure("the board does not answer HELLO after power-on")
        return _tlvs(r.payload)


@dataclass
class SweepReport:
    """What the sweep did: cases run per operation and cut mode, random cuts, flash ops."""

    cases: dict[str, int] = field(default_factory=dict)
    random_cuts: int = 0
    flash_ops: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, bucket: dict[str, int] | None = None) -> None:
        d = self.cases if bucket is None else bucket
        d[key] = d.get(key, 0) + 1


class PowerLossSweep:
    """The sweep over one virtual board: its factory model, an `old` model confirmed in
    slot A and a `new` one (three distinct models, so that losing the confirmed slot shows
    as the factory model running)."""

    def __init__(self, board: VirtualBoard, new: SlotModel, old: SlotModel | None = None
                 ) -> None:
        if board.flash is None:
            raise ValueError("the board has no model slots")
        self.vb = board
        self.flash = board.flash
        self.sb = SweepBoard(board)
        self.factory = firmware_model(board.firmware)
        self.old = old or variant_model(board.firmware, "v9001", seed=1001)
        self.new = new
        self.known = {self.factory.sha256: "factory", self.old.sha256: "old",
                      new.sha256: "new"}
        if len(self.known) != 3:
            raise ValueError("the factory, old and new models must differ")
        self.report = SweepReport()

    # --- invariants ----------------------------------------------------------------------
    def check(self, case: str) -> str:
        """Assert the invariants after a power-on; returns "factory", "old" or "new"."""
        t = self.sb.info()
        sha = t.get(TAG_SHA, b"").decode()
        if sha not in self.known:
            raise SweepFailure(f"{case}: the board runs an unknown model {sha[:12]}")
        if t.get(TAG_CRC_OK) != b"\x01":
            raise SweepFailure(f"{case}: model CRC check is not ok ({t.get(TAG_CRC_OK)!r})")
        st = t.get(TAG_SELF_TEST, b"")
        if not st or st[0] != 0:
            raise SweepFailure(f"{case}: self-test did not pass ({st.hex()})")
        running = t.get(TAG_RUNNING, b"")
        if len(running) != 2 or running[1] not in (0, 1):
            raise SweepFailure(f"{case}: INFO has no valid running tag ({running.hex()})")
        if running[0] == _core.TS_RUNNING_FACTORY:
            if sha != self.factory.sha256 or running[1] != 0:
                raise SweepFailure(f"{case}: factory model reported as {sha[:12]}")
            return "factory"
        # The slot's bytes, read and parsed here, are the model INFO names (no mix), and its
        # trailer says what INFO says: confirmed, or tried and not confirmed (a trial).
        slot = running[0] - 1
        raw = self.flash.slot_bytes_of(slot)
        cap = self.flash.slot_bytes - self.flash.nor.geometry.sector_size
        h = parse_slot_image(raw[:cap])
        body = raw[h.header_len:h.header_len + h.model_len]
        if hashlib.sha256(body).hexdigest() != sha or h.sha256.hex() != sha:
            raise SweepFailure(f"{case}: slot {running[0]} bytes are not model {sha[:12]}")
        unit = max(8, self.flash.nor.geometry.program_unit)
        flag = [raw[cap + k * unit] for k in range(4)]  # commit, tried, confirmed, revoked
        confirmed, tried, revoked = flag[2] == 0x01, flag[1] == 0x01, flag[3] != 0xFF
        if revoked or (running[1] == 0) != confirmed or (running[1] == 1 and not tried):
            raise SweepFailure(f"{case}: INFO says {running.hex()}, slot flags "
                               f"{[hex(f) for f in flag]}")
        return self.known[sha]

    # --- setup helpers -------------------------------------------------------------------
    def _boot_image(self, image: bytes) -> None:
        self.flash.restore(image)
        self.vb.power_cycle_headless()

    def _fresh(self) -> None:
        self.flash.restore(b"\xff" * len(self.flash.nor.image))
        self.vb.power_cycle_headless()

    def _states(self) -> dict[str, bytes]:
        """Flash images at the start of each operation: A = old confirmed (running A);
        + B = new pending; + B = new confirmed."""
        self._fresh()
        sb = self.sb
        if not (sb.install(self.old.image(sb.next_sequence())) and sb.ok(CMD_REBOOT)
                and sb.ok(CMD_CONFIRM)):
            raise SweepFailure("setup: installing the old model failed")
        a_confirmed = self.flash.nor.image
        if not sb.install(self.new.image(sb.next_sequence())):
            raise SweepFailure("setup: installing the new model failed")
        b_pending = self.flash.nor.image
        if not (sb.ok(CMD_REBOOT) and sb.ok(CMD_CONFIRM)):
            raise SweepFailure("setup: confirming the new model failed")
        b_confirmed = self.flash.nor.image
        return {"a_confirmed": a_confirmed, "b_pending": b_pending, "b_confirmed": b_confirmed}

    # --- the operations: (setup, operation, repeat) ----------------------------------------
    def _operations(self, s: dict[str, bytes]) -> dict[str, tuple[Callable[[], None],
                                                               Callable[[], object],
                                                               Callable[[], str]]]:
        sb = self.sb
        new_image = self.new.image(1000)  # newer than every slot of the setup

        def install() -> object:
            return sb.install(new_image)

        def repeat_install() -> str:
            if not sb.install(self.new.image(sb.next_sequence())):
                raise SweepFailure("install: repeated install failed")
            return "pending"

        def trial() -> object:
            return self.vb.power_cycle_headless()

        def repeat_trial() -> str:
            if self.check("trial repeat") == "new":
                return "new trial"
            repeat_install()
            sb.ok(CMD_REBOOT)
            return "new trial" if self.check("trial repeat") == "new" else "old"

        def confirm() -> object:
            return sb.ok(CMD_CONFIRM)

        def repeat_confirm() -> str:
            if self.check("confirm repeat") != "new":
                repeat_install()
                sb.ok(CMD_REBOOT)
            if not sb.ok(CMD_CONFIRM) or self.check("confirm repeat") != "new":
                raise SweepFailure("confirm: repeated confirm failed")
            return "new confirmed"

        def revert() -> object:
            return sb.ok(CMD_REVERT)

        def repeat_revert() -> str:
            if self.check("revert repeat") == "new":
                sb.ok(CMD_REVERT)
            if self.check("revert repeat") != "old":
                raise SweepFailure("revert: repeated revert did not bring back the old model")
            return "old"

        old_again = self.old.image(1001)

        def install_over() -> object:  # into A: old confirmed, not running (B runs)
            return sb.install(old_again)

        def repeat_install_over() -> str:
            if self.check("install over repeat") != "new":
                raise SweepFailure("install over: the running model changed")
            if not sb.install(self.old.image(sb.next_sequence())):
                raise SweepFailure("install over: repeated install failed")
            return "pending"

        return {
            "install": (lambda: self._boot_image(s["a_confirmed"]), install, repeat_install),
            "install_over_committed": (lambda: self._boot_image(s["b_confirmed"]),
                                       install_over, repeat_install_over),
            "trial": (lambda: self.flash.restore(s["b_pending"]), trial, repeat_trial),
            "confirm": (lambda: self._boot_image(s["b_pending"]), confirm, repeat_confirm),
            "revert_trial": (lambda: self._boot_image(s["b_pending"]), revert, repeat_revert),
            "revert_confirmed": (lambda: self._boot_image(s["b_confirmed"]), revert,
                                 repeat_revert),
        }

    def run_exhaustive(self) -> SweepReport:
        """Every operation, a cut before and a torn cut at each of its flash operations."""
        ops = self._operations(self._states())
        for name, (setup, operation, repeat) in ops.items():
            setup()
            start = self.flash.total_ops
            operation()
            n = self.flash.total_ops - start
            if n == 0:
                raise SweepFailure(f"{name}: no flash operation to cut")
            for k in range(1, n + 1):
                for mode in ("before", "torn"):
                    case = f"{name} cut {mode} op {k}/{n}"
                    setup()
                    self.flash.cut_at = self.flash.total_ops + k
                    self.flash.nor.cut_mode = mode
                    operation()
                    self.flash.cut_at = 0
                    if self.flash.cuts == 0:
                        raise SweepFailure(f"{case}: no power cut happened")
                    self.flash.cuts = 0
                    if self.check(case) == "factory":  # slot A (old) is confirmed throughout
                        raise SweepFailure(f"{case}: the confirmed model was lost")
                    self.report.count(f"{name}:{repeat()}", self.report.outcomes)
                    self.report.count(f"{name}/{mode}")
        self.report.flash_ops = self.flash.total_ops
        return self.report

    def run_random(self, cuts: int, probability: float, seed: int) -> SweepReport:
        """Cycle install / reboot / confirm-or-revert with random cuts until `cuts` cuts."""
        rng = np.random.default_rng(seed)
        self._fresh()
        self.flash.cuts = 0
        self.flash.cut_probability = probability
        self.flash.nor.cut_mode = "random"
        models = [self.old, self.new]
        steps = 0
        try:
            while self.flash.cuts < cuts:
                steps += 1
                before = self.flash.cuts
                model = models[int(rng.integers(0, 2))]
                action = int(rng.integers(0, 4))
                # A trial must be settled before an install (the board refuses otherwise).
                if action == 0:
                    if self.sb.request(CMD_CONFIRM) is not None:
                        self.sb.install(model.image(self.sb.next_sequence()))
                elif action == 1:
                    self.sb.request(CMD_REBOOT)
                elif action == 2:
                    self.sb.request(CMD_CONFIRM)
                else:
                    self.sb.request(CMD_REVERT)
                if self.flash.cuts != before:
                    self.check(f"random step {steps} (cut {self.flash.cuts})")
                if steps > 50 * cuts:
                    raise SweepFailure("random sweep: too few cuts happen")
        finally:
            self.flash.cut_probability = 0.0
        self.report.random_cuts = self.flash.cuts
        self.report.flash_ops = self.flash.total_ops
        return self.report
