"""Model slots over serial: install a model into a board's inactive flash slot, boot it as a
trial, confirm or revert it (firmware/PROTOCOL.md section 9, firmware/SLOTS.md).

`SlotClient` wraps a connected `DeviceClient`; the CLI (`tinyship device load-model`,
`slots`, `confirm`, `revert`) is a thin layer over it and the next issue's deploy flow
calls the same methods. What it guarantees:

* An image the board cannot run (profile, operators, arena, input/output bytes, slot
  capacity) is refused **before anything is sent**, from SLOT_INFO's firmware limits and
  `slot_image.check_slot_header` (the firmware's own checks, in its order), with a message
  naming the limit: `IncompatibleModel`, a `ModelError` (exit 7). The board checks again on
  SLOT_BEGIN; its refusals and every other board-side failure are `SlotError`, a
  `DeviceError` (exit 8).
* SLOT_BEGIN waits for the erase (`sectors x erase time`); SLOT_WRITE chunks of 768 bytes
  are retried freely (a repeated chunk is harmless on the board) and, when the board's busy
  time per chunk fits its UART receive window, two are kept in flight so the link stays
  busy (`DeviceClient` module docstring).
* REBOOT and SLOT_REVERT reset the board and are never sent twice (a second reset before
  SLOT_CONFIRM would revert the trial; a second revert would revoke the previous model too):
  when their reply is lost, the board is asked what happened instead.

No TensorFlow anywhere here: images come from registry bytes and the manifest.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyship.convert.golden import EMBEDDED_GOLDEN_CC, parse_embedded_golden
from tinyship.device import protocol as P
from tinyship.device import slot_image as SI
from tinyship.device.client import DeviceClient, DeviceReplyError, ReplyLost, Request
from tinyship.errors import DeviceError, ModelError, ProtocolError, RegistryError
from tinyship.registry import Registry

#: Data bytes per SLOT_WRITE (TS_SLOT_MAX_CHUNK): three 256-byte pages, one payload.
WRITE_CHUNK = P.SLOT_MAX_CHUNK
#: SLOT_WRITE requests kept in flight: two keep the wire busy while the board programs one.
WRITE_PIPELINE = 2
#: Erase time assumed per sector when SLOT_INFO says 0 (unknown): the slowest datasheet
#: maximum among the boards' flash chips (W25Q-class QSPI NOR, tSE max 400 ms).
UNKNOWN_ERASE_S = 0.4
#: How long a board may take to come back after REBOOT / SLOT_REVERT: USB re-enumeration
#: (several seconds on some hosts), boot, the trial's health check.
REBOOT_TIMEOUT_S = 15.0
#: A board whose INFO uptime exceeds the time since REBOOT by more than this did not reset.
UPTIME_SLACK_S = 1.0

#: progress(phase, done_bytes, total_bytes); phase is "erase", "write" or "verify".
Progress = Callable[[str, int, int], None]



class IncompatibleModel(ModelError):
    """The image cannot run on this board's firmware; nothing was sent. `limit` names what
    it exceeds (profile, operators, arena, input, output, slot), `need` / `have` the two
    sides, `status` the board's code for the same refusal (TS_ERR_SLOT_*)."""

    def __init__(self, message: str, *, limit: str, need: Any, have: Any,
                 status: P.Status) -> None:
        super().__init__(message, hint="retrain for this board's profile and limits, or "
                         "build and flash firmware that can run it (tinyship build)")
        self.limit = limit
        self.need = need
        self.have = have
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "need": self.need, "have": self.have,
                "status": P.status_name(self.status)}


class SlotError(DeviceError):
    """The board refused a slot command, is in a state that forbids it, or did not do what
    it was asked; `status` is the board's error code when it sent one."""

    def __init__(self, message: str, *, status: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass
class InstallResult:
    """What `SlotClient.install` did, with the transfer's measured rate."""

    slot: int
    sequence: int
    model_version: str
    model_sha256: str
    image_bytes: int
    header_bytes: int
    chunks: int
    erase_s: float
    write_s: float
    verify_s: float
    #: Image bytes per second during the SLOT_WRITE phase.
    write_bytes_per_s: float
    #: That rate over the link's byte rate (baud / 10), on a UART; None otherwise.
    link_utilization: float | None
    retries: int
    #: Most SLOT_WRITE requests in flight at once (2 when pipelined).
    max_in_flight: int

    @property
    def slot_name(self) -> str:
        return f"slot {P.slot_letter(self.slot)}"

    def to_dict(self) -> dict[str, Any]:
        return {"slot": P.slot_letter(self.slot), "sequence": self.sequence,
                "model_version": self.model_version, "model_sha256": self.model_sha256,
                "image_bytes": self.image_bytes, "header_bytes": self.header_bytes,
                "chunks": self.chunks, "erase_s": round(self.erase_s, 4),
                "write_s": round(self.write_s, 4), "verify_s": round(self.verify_s, 4),
                "write_bytes_per_s": round(self.write_bytes_per_s, 1),
                "link_utilization": None if self.link_utilization is None
                else round(self.link_utilization, 4),
                "retries": self.retries, "max_in_flight": self.max_in_flight}


@dataclass
class BootResult:
    """The board after a reset the host asked for: what it reports and how long it took."""

    info: P.DeviceInfo
    #: The ready banner, if it arrived (a reopened port may miss it; PING answered then).
    banner: str | None
    elapsed_s: float

    @property
    def running(self) -> P.Running:
        """What runs; a board without the RUNNING tag runs its factory model, confirmed."""
        return self.info.running or P.Running(P.RunningSource.FACTORY,
                                              P.RunningMode.CONFIRMED)

    def to_dict(self) -> dict[str, Any]:
        st = self.info.self_test
        return {"running": self.running.to_dict(), "model_version": self.info.model_version,
                "model_sha256": self.info.model_sha256,
                "self_test": None if st is None else {
                    "status_name": st.status_name, "vectors": st.vectors,
                    "failed_vector": st.failed_vector, "max_diff_lsb": st.max_diff_lsb},
                "banner": self.banner, "elapsed_s": round(self.elapsed_s, 3)}


@dataclass
class RevertResult:
    """SLOT_REVERT: the revoked model, and the board after its reset (None if it did not
    reset: it runs the reverted model until it does)."""

    reverted: P.Running
    boot: BootResult | None

    def to_dict(self) -> dict[str, Any]:
        return {"reverted": self.reverted.source_name,
                "rebooted": self.boot is not None,
                "after": None if self.boot is None else self.boot.to_dict()}


def _fmt(n: int) -> str:
    return f"{n:,}"


def _op_list(ops: list[int]) -> str:
    return ", ".join(f"{SI.OP_NAMES.get(o, 'op')} ({o})" for o in ops)


def incompatibility(h: SI.SlotHeader, caps: P.FirmwareCaps, capacity: int
                    ) -> IncompatibleModel | None:
    """Why the board's firmware cannot run the image with header `h` (None: it can). The
    decision and its order are `slot_image.check_slot_header`'s, the firmware's own."""
    limits = SI.FirmwareLimits(profile=caps.profile, ops=frozenset(caps.ops),
                               arena_bytes=caps.arena_bytes, input_bytes=caps.input_bytes,
                               output_bytes=caps.output_bytes, slot_bytes=capacity)
    try:
        SI.check_slot_header(h, limits)
    except SI.SlotImageError as e:
        status = e.status
    else:
        return None
    S = SI.SlotImageStatus
    image = h.header_len + h.model_len
    if status == S.PROFILE:
        return IncompatibleModel(
            f"model is built for profile {h.profile!r}, the firmware runs {caps.profile!r}",
            limit="profile", need=h.profile, have=caps.profile, status=P.Status.SLOT_PROFILE)
    if status == S.OP:
        missing = [o for o in h.ops if o not in caps.ops]
        return IncompatibleModel(
            f"model needs operators the firmware does not register: {_op_list(missing)}",
            limit="operators", need=missing, have=list(caps.ops), status=P.Status.SLOT_OP)
    if status == S.ARENA:
        return IncompatibleModel(
            f"model needs a {_fmt(h.arena_bytes)}-byte arena, the firmware has "
            f"{_fmt(caps.arena_bytes)}", limit="arena", need=h.arena_bytes,
            have=caps.arena_bytes, status=P.Status.SLOT_ARENA)
    if status == S.INPUT:
        return IncompatibleModel(
            f"model input is {_fmt(h.input_bytes)} bytes, the firmware's input buffer holds "
            f"{_fmt(caps.input_bytes)}", limit="input", need=h.input_bytes,
            have=caps.input_bytes, status=P.Status.SLOT_SHAPE)
    if status == S.OUTPUT:
        return IncompatibleModel(
            f"model output is {_fmt(h.output_bytes)} bytes, the firmware's output buffer "
            f"holds {_fmt(caps.output_bytes)}", limit="output", need=h.output_bytes,
            have=caps.output_bytes, status=P.Status.SLOT_SHAPE)
    return IncompatibleModel(
        f"slot image is {_fmt(image)} bytes (header {_fmt(h.header_len)} + model "
        f"{_fmt(h.model_len)}), a slot holds {_fmt(capacity)}", limit="slot", need=image,
        have=capacity, status=P.Status.SLOT_SIZE)


def _golden_vectors(reg: Registry, version: str, n_in: int, n_out: int
                    ) -> tuple[list[bytes], list[bytes]]:
    """The golden vectors the version's generated firmware embeds, as raw tensors; none
    when it has no such file."""
    if EMBEDDED_GOLDEN_CC not in reg.artifacts(version) or n_in < 1 or n_out < 1:
        return [], []
    text = reg.read_artifact(version, EMBEDDED_GOLDEN_CC).decode("utf-8", errors="replace")
    try:
        gi, go = parse_embedded_golden(text, n_in, n_out)
    except ValueError as e:
        raise RegistryError(f"{version}/{EMBEDDED_GOLDEN_CC}: {e}") from None
    return [r.tobytes() for r in gi], [r.tobytes() for r in go]


def image_from_registry(reg: Registry, ref: str | None, sequence: int) -> bytes:
    """The slot image of a registry version: its int8 model, manifest fields and as many of
    its golden vectors as the header holds (a header may exceed one SLOT_BEGIN payload: the
    board then checks its CRC when SLOT_END reads it back). ModelError when
    the version cannot go into a slot (e.g. an operator without a slot id)."""
    version = reg.resolve(ref)
    manifest = reg.manifest(version)
    model = reg.read_artifact(version, "model_int8.tflite")  # hash-checked
    try:
        max_golden = SI.max_golden_for_begin(manifest, limit=SI.MAX_HEADER_LEN)
        m = manifest["model"]
        n_in = n_out = 1
        for d in m["input"]["shape"]:
            n_in *= int(d)
        for d in m["output"]["shape"]:
            n_out *= int(d)
        int8 = m["input"].get("dtype") == "int8" and m["output"].get("dtype") == "int8"
        gin, gout = _golden_vectors(reg, version, n_in, n_out) if int8 else ([], [])
        return SI.build_slot_image(model, manifest, sequence, golden_inputs=gin,
                                   golden_outputs=gout, max_golden=max_golden)
    except SI.SlotImageError as e:
        raise ModelError(f"{version} cannot go into a model slot: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(f"{version}/manifest.json does not describe the model: {e}"
                            ) from None


class SlotClient:
    """The model-slot commands of one connected board (see the module docstring)."""

    def __init__(self, client: DeviceClient, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.client = client
        self._clock = clock

    # --- reading --------------------------------------------------------------------------

    def info(self) -> P.DeviceInfo:
        """HELLO (cached by the client), refusing boards whose protocol has no slots."""
        info = self.client.info or self.client.hello()
        v = info.protocol_version
        if v is None or v < P.SLOTS_PROTOCOL_VERSION:
            raise SlotError(
                f"{self.client.transport.url} speaks protocol {v}: model slots need "
                f"protocol {P.SLOTS_PROTOCOL_VERSION} firmware",
                hint="build and flash current firmware (tinyship build --upload) once; "
                "later models then go over serial")
        if v > P.PROTOCOL_VERSION:
            raise SlotError(
                f"{self.client.transport.url} speaks protocol {v}, newer than this host's "
                f"{P.PROTOCOL_VERSION}", hint="update tinyship on this computer")
        return info

    def slot_info(self) -> P.SlotInfo:
        """SLOT_INFO: what runs, both slots, the flash geometry and the firmware's limits."""
        self.info()
        result: P.SlotInfo = self._request(P.Command.SLOT_INFO, b"", P.parse_slot_info)
        return result

    # --- checks (nothing is sent) ---------------------------------------------------------

    def check_image(self, image: bytes, slots: P.SlotInfo) -> SI.SlotHeader:
        """Parse and verify `image` and check it against the board's firmware and slots:
        IncompatibleModel (or ModelError for a malformed image) before anything is sent;
        SlotError when the board's state forbids an install now."""
        try:
            h = SI.parse_slot_image(image)
            SI.verify_body(h)
        except SI.SlotImageError as e:
            raise ModelError(f"not a valid slot image: {e}") from None
        bad = incompatibility(h, slots.firmware, slots.geometry.slot_capacity)
        if bad is not None:
            raise bad
        if slots.running.trial:
            raise SlotError(
                f"the board runs a trial of {slots.running.source_name}"
                f"{self._version_of(slots, slots.running)}: confirm or revert it before "
                "installing another model", status=P.Status.SLOT_STATE,
                hint="tinyship device confirm (keep it) or tinyship device revert")
        newest = max(r.sequence for r in slots.slots)
        if h.sequence <= newest:
            raise SlotError(
                f"image sequence {h.sequence} is not newer than the slots' {newest}: build "
                f"it with sequence {slots.next_sequence}", status=P.Status.SLOT_SEQUENCE)
        return h

    # --- install --------------------------------------------------------------------------

    def install(self, image: bytes, *, progress: Progress | None = None,
                slots: P.SlotInfo | None = None) -> InstallResult:
        """SLOT_BEGIN, SLOT_WRITE x n, SLOT_END: `image` becomes the pending model of the
        board's inactive slot (it runs as a trial at the next reset). Checks everything it
        can first (`check_image`); `slots` is a SLOT_INFO already read (else it reads one)."""
        slots = slots or self.slot_info()
        h = self.check_image(image, slots)
        counters = self.client.counters
        retries0, inflight0 = counters.retries, counters.max_in_flight
        counters.max_in_flight = 0  # this install's own figure, restored below
        try:
            return self._install(image, h, slots.geometry, progress, retries0)
        finally:
            counters.max_in_flight = max(counters.max_in_flight, inflight0)

    def _install(self, image: bytes, h: SI.SlotHeader, geo: P.FlashGeometry,
                 progress: Progress | None, retries0: int) -> InstallResult:
        total = len(image)

        def tell(phase: str, done: int) -> None:
            if progress is not None:
                progress(phase, done, total)

        # SLOT_BEGIN: the board checks the header again, then erases before it answers.
        tell("erase", 0)
        erase_s = geo.erase_sector_us / 1e6 if geo.erase_sector_us else UNKNOWN_ERASE_S
        t0 = self._clock()
        begun: P.SlotBegun = self._request(
            P.Command.SLOT_BEGIN, P.encode_slot_begin(image[:min(h.header_len, P.MAX_PAYLOAD)]),
            P.parse_slot_begin_reply, busy_s=geo.sectors_for(total) * erase_s)
        if begun.image_len != total:
            raise SlotError(f"board expects a {_fmt(begun.image_len)}-byte image, the image "
                            f"has {_fmt(total)}")
        t1 = self._clock()

        # SLOT_WRITE: the whole image from offset 0, pipelined when the board's busy time
        # per chunk fits its receive window.
        chunk = max(P.SLOT_CHUNK_ALIGN,
                    min(WRITE_CHUNK, geo.max_chunk or WRITE_CHUNK)
                    // P.SLOT_CHUNK_ALIGN * P.SLOT_CHUNK_ALIGN)
        offsets = list(range(0, total, chunk))
        requests = [self._write_request(off, image[off:off + chunk], geo)
                    for off in offsets]

        def written(i: int) -> None:
            tell("write", min(total, offsets[i] + chunk))

        tell("write", 0)
        self._run(requests, window=WRITE_PIPELINE, on_reply=written)
        t2 = self._clock()

        # SLOT_END: read back, verify, commit marker last.
        tell("verify", total)
        ended = self._end(h, begun.slot)
        t3 = self._clock()

        rate = total / max(t2 - t1, 1e-9)
        link = self.client.info.link if self.client.info is not None else None
        byte_rate = link.byte_rate if link is not None else None
        counters = self.client.counters
        return InstallResult(
            slot=ended.slot, sequence=ended.sequence, model_version=h.model_version,
            model_sha256=h.sha256.hex(), image_bytes=total, header_bytes=h.header_len,
            chunks=len(offsets), erase_s=t1 - t0, write_s=t2 - t1, verify_s=t3 - t2,
            write_bytes_per_s=rate,
            link_utilization=None if byte_rate is None else rate / byte_rate,
            retries=counters.retries - retries0, max_in_flight=counters.max_in_flight)

    def _write_request(self, offset: int, data: bytes, geo: P.FlashGeometry) -> Request:
        """One SLOT_WRITE; its busy time (programming, then the short reply on the wire)
        lets the client pipeline it on a small receive window."""
        busy: float | None = None
        if geo.program_chunk_us:
            busy = geo.program_chunk_us * len(data) / P.SLOT_MAX_CHUNK / 1e6
            busy += self.client.transport.wire_time_s(P.wire_frame_size(4))
        end = offset + len(data)

        def parse(payload: bytes) -> int:
            nxt = P.parse_slot_write_reply(payload)
            if nxt < end:
                raise ProtocolError(f"SLOT_WRITE at {offset} answered next={nxt}")
            return nxt

        return Request(P.Command.SLOT_WRITE, P.encode_slot_write(offset, data), parse,
                       busy_s=busy, retry_codes=frozenset({P.Status.SLOT_ORDER}))

    def _end(self, h: SI.SlotHeader, slot: int) -> P.SlotEnded:
        """SLOT_END; a repeat after a lost reply finds no install in progress, so then the
        board's slots say whether the first one committed."""
        try:
            ended: P.SlotEnded = self._request(P.Command.SLOT_END, b"",
                                               P.parse_slot_end_reply)
        except SlotError as e:
            if e.status != P.Status.SLOT_STATE:
                raise
            rec = self.slot_info().slots[slot]
            if (rec.state == P.SlotState.PENDING and rec.sequence == h.sequence
                    and rec.model_sha256 == h.sha256.hex()):
                return P.SlotEnded(slot, h.sequence)
            raise
        if ended.sequence != h.sequence:
            raise SlotError(f"board committed sequence {ended.sequence}, the image has "
                            f"{h.sequence}")
        return ended

    # --- boot, confirm, revert ------------------------------------------------------------

    def reboot_and_wait(self, *, timeout_s: float = REBOOT_TIMEOUT_S) -> BootResult:
        """REBOOT, then reopen the port (a USB board re-enumerates), wait for the banner or
        a PING answer, and HELLO: the board's state after its boot decision (a pending slot
        now runs as a trial). REBOOT is never sent twice: a second reset before
        SLOT_CONFIRM would revert the trial."""
        self.info()
        for _ in range(2):
            t0 = self._clock()
            try:
                self._request(P.Command.REBOOT, b"", P.parse_empty_reply, resend=False)
                lost = False
            except ReplyLost:
                lost = True  # it may have reset: its uptime tells
            except SlotError as e:
                if e.status == P.Status.UNKNOWN_COMMAND:
                    raise SlotError("the board cannot reset itself (its glue has no reset)",
                                    status=e.status, hint="press its reset button, then "
                                    "run tinyship device slots") from None
                raise
            boot = self._after_reset(t0, timeout_s)
            if boot is not None:
                return boot
            if not lost:
                break
            # No reply and no reset: the board never saw REBOOT, so sending it again is safe.
        raise SlotError(f"{self.client.transport.url} did not reset after REBOOT")

    def _after_reset(self, t0: float, timeout_s: float) -> BootResult | None:
        """Reconnect and HELLO; None when the board's uptime shows it never reset."""
        banner = self.client.reconnect_after_reset(timeout_s)
        info = self.client.hello()
        elapsed = self._clock() - t0
        if banner is None and info.uptime_us is not None and \
                info.uptime_us / 1e6 > elapsed + UPTIME_SLACK_S:
            return None
        return BootResult(info, banner, elapsed)

    def confirm(self, *, expect_sha256: str | None = None) -> P.Running:
        """SLOT_CONFIRM: the running trial becomes permanent (a confirmed slot: no-op).
        The request names the running slot's sequence number (read from SLOT_INFO just
        before), so after an unnoticed reset the board refuses rather than confirm another
        model; with `expect_sha256`, a board running another model is refused here.
        SlotError when the factory model runs."""
        slots = self.slot_info()
        running = slots.running
        if running.slot is None:
            raise SlotError("the board runs its factory model: there is no slot model to "
                            "confirm", status=P.Status.SLOT_STATE,
                            hint="tinyship device load-model installs one as a trial")
        rec = slots.slots[running.slot]
        if expect_sha256 is not None and rec.model_sha256 != expect_sha256.lower():
            raise SlotError(
                f"the board runs {running.source_name} ({rec.model_version or '?'}, SHA-256 "
                f"{rec.model_sha256[:12]}), not the model to confirm ({expect_sha256[:12]})",
                status=P.Status.SLOT_STATE, hint="it reset and went back: load the model again")
        source = self._request(P.Command.SLOT_CONFIRM, struct.pack("<I", rec.sequence),
                               P.parse_slot_confirm_reply)
        self.client.info = None  # RUNNING changed: the next HELLO reads it again
        if source != running.source:
            raise SlotError(f"SLOT_CONFIRM answered for slot {source}, expected "
                            f"{running.source_name}", status=P.Status.SLOT_STATE)
        return P.Running(source, P.RunningMode.CONFIRMED)

    def revert(self, *, timeout_s: float = REBOOT_TIMEOUT_S) -> RevertResult:
        """SLOT_REVERT: revoke the running slot (trial or confirmed); the board resets and
        runs the previous confirmed slot, else the factory model. Never sent twice (a
        second one would revoke that model too): a lost reply is settled from SLOT_INFO."""
        before = self.slot_info()
        if before.running.slot is None:
            raise SlotError("the board runs its factory model: there is no slot model to "
                            "revert", status=P.Status.SLOT_STATE,
                            hint="nothing to undo; tinyship device slots shows both slots")
        t0 = self._clock()
        try:
            reply: P.SlotReverted = self._request(P.Command.SLOT_REVERT, b"",
                                                  P.parse_slot_revert_reply, resend=False)
        except ReplyLost:
            boot = self._after_reset(t0, timeout_s)
            rec = self.slot_info().slots[before.running.slot]
            if rec.state != P.SlotState.REVOKED:
                raise SlotError("SLOT_REVERT got no reply and the slot is not revoked: "
                                "run revert again") from None
            return RevertResult(before.running, boot)
        if not reply.rebooting:
            self.client.info = None
            return RevertResult(P.Running(reply.reverted, before.running.mode), None)
        boot = self._after_reset(t0, timeout_s)
        return RevertResult(P.Running(reply.reverted, before.running.mode), boot)

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _version_of(slots: P.SlotInfo, running: P.Running) -> str:
        i = running.slot
        if i is None or not slots.slots[i].has_image:
            return ""
        return f" ({slots.slots[i].model_version})"

    def _request(self, cmd: int, payload: bytes, parse: Callable[[bytes], Any], *,
                 busy_s: float | None = None, resend: bool = True) -> Any:
        try:
            return self.client.request(cmd, payload, parse, busy_s=busy_s, resend=resend)
        except DeviceReplyError as e:
            raise _slot_error(cmd, e) from None

    def _run(self, requests: list[Request], *, window: int,
             on_reply: Callable[[int], None]) -> list[Any]:
        try:
            return self.client.run(requests, window=window, on_reply=on_reply)
        except DeviceReplyError as e:
            raise _slot_error(requests[0].cmd, e) from None


_HINTS: dict[int, str] = {
    P.Status.NO_SLOTS: "this firmware was built without model slots; build and flash "
    "firmware with slots for this board (tinyship build --upload)",
    P.Status.SLOT_STATE: "tinyship device slots shows what runs; confirm or revert a trial "
    "first",
    P.Status.FLASH: "the board's flash failed; run the command again, and if it keeps "
    "failing, re-flash the firmware",
    P.Status.SLOT_VERIFY: "the slot read back differently from what was sent; run "
    "load-model again",
}
#: SLOT_STATE in the middle of an install: the board lost it (a reset, another host).
_INSTALL_LOST = ("the board no longer has the install in progress (it reset, or another host "
                 "started one); run load-model again")


def _cmd_name(cmd: int) -> str:
    try:
        return P.Command(cmd).name
    except ValueError:
        return f"command 0x{cmd:02X}"


def _slot_error(cmd: int, e: DeviceReplyError) -> SlotError:
    """A board's refusal as a SlotError naming the command, the code and its reason."""
    err = e.error
    msg = ("the board has no model slots" if err.code == P.Status.NO_SLOTS
           else f"board refused {_cmd_name(cmd)}: {err.name} ({err.reason})")
    hint = _HINTS.get(err.code)
    if err.code == P.Status.SLOT_STATE and cmd in (P.Command.SLOT_WRITE, P.Command.SLOT_END):
        hint = _INSTALL_LOST
    return SlotError(msg, status=err.code, hint=hint)
