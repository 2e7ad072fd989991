"""Model slots, host side: the protocol-2 codec (commands 0x10-0x16, SLOT_INFO, INFO tags
0x1F-0x21) against the C headers, and `tinyship.device.slots` against a scripted board:
refusals before anything is sent, pipelined chunks on a small receive window, retried
chunks, and REBOOT / SLOT_REVERT never sent twice.

The same client against the real core (the virtual board) is tests/test_device_slots.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FakeSerial
from tinyship.device import protocol as P
from tinyship.device import slot_image as SI
from tinyship.device.client import DeviceClient, ReplyLost
from tinyship.device.slots import (
    IncompatibleModel,
    SlotClient,
    SlotError,
    image_from_registry,
    incompatibility,
)
from tinyship.device.transport import Transport
from tinyship.errors import ExitCode, ModelError, ProtocolError
from tinyship.registry import Registry

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "firmware" / "lib" / "tinyship_core" / "src"
MODELS = REPO / "tests" / "fixtures" / "registry"


def _defines(*names: str) -> dict[str, int]:
    text = "\n".join((SRC / n).read_text() for n in names)
    return {k: int(v, 0) for k, v in
            re.findall(r"#define (TS_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", text)}


def _enum(header: str, prefix: str) -> dict[str, int]:
    text = (SRC / header).read_text()
    return {k: int(v) for k, v in re.findall(rf"\b({prefix}\w+) = (\d+)\b", text)}


# --- constants and enums agree with the C headers ------------------------------------------


def test_slot_constants_match_the_c_headers() -> None:
    d = _defines("tinyship_core.h", "ts_flash.h", "ts_slot_store.h")
    assert d["TS_PROTOCOL_VERSION"] == P.PROTOCOL_VERSION == P.SLOTS_PROTOCOL_VERSION
    assert d["TS_SLOT_CHUNK_ALIGN"] == P.SLOT_CHUNK_ALIGN
    assert d["TS_SLOT_MAX_CHUNK"] == P.SLOT_MAX_CHUNK
    assert d["TS_MAX_DEVICE_ID"] == P.MAX_DEVICE_ID
    assert d["TS_SLOT_EMPTY"] == P.SlotState.EMPTY
    assert d["TS_SLOT_TRIAL"] == P.SlotState.TRIAL
    # offset:u32 + the largest chunk fit one payload
    assert 4 + P.SLOT_MAX_CHUNK <= P.MAX_PAYLOAD
    assert _enum("tinyship_core.h", "TS_RUNNING_") == {
        **{f"TS_RUNNING_{m.name}": int(m) for m in P.RunningSource},
        **{f"TS_RUNNING_{m.name}": int(m) for m in P.RunningMode}}
    classes = _enum("ts_slot_state.h", "TS_SLOT_")
    for m in P.SlotState:
        if m not in (P.SlotState.EMPTY, P.SlotState.TRIAL):
            assert classes[f"TS_SLOT_{m.name}"] == m, m
    flags = _enum("ts_slot_state.h", "TS_FLAG_")
    assert {k: v for k, v in flags.items() if k != "TS_FLAG_SET_BYTE"} == {
        f"TS_FLAG_{m.name}": int(m) for m in P.FlagState}


def _layout(table: str) -> list[tuple[int, int]]:
    """(offset, size) of each `| offset | type |` row of a PROTOCOL.md layout table."""
    sizes = {"u8": 1, "u16": 2, "u32": 4}
    rows = re.findall(r"^\| (\d+) \| (u8|u16|u32|\d+) \|", table, re.M)
    return [(int(o), sizes.get(t) or int(t)) for o, t in rows]


def test_protocol_md_documents_slot_info_as_the_codec_reads_it() -> None:
    """The SLOT_INFO and slot-record tables of PROTOCOL.md section 9 have the offsets and
    sizes of the codec's structs, field after field without gaps."""
    text = (REPO / "firmware" / "PROTOCOL.md").read_text()
    sec = text[text.index("## 9. Model slots"):]
    info_table, record_table = sec.split("Slot record:", 1)
    info_table = info_table[info_table.index("**SLOT_INFO** response"):]
    assert f"`{P.SLOT_INFO_FIXED} + 1 + P + 1 + 2·n` bytes" in info_table
    for table, total in ((info_table, P.SLOT_INFO_FIXED + 1),
                         (record_table.split("**SLOT_BEGIN.**")[0], P.SLOT_RECORD_SIZE)):
        layout = _layout(table)
        assert all(o + n == layout[i + 1][0] for i, (o, n) in enumerate(layout[:-1])), layout
        assert layout[-1][0] + layout[-1][1] == total, layout
    head = _layout(info_table)[:15]
    fmt = "<" + "".join({1: "B", 2: "H", 4: "I"}[n] for _, n in head)
    assert fmt == "<BBBBIIHHIIIIIII" and struct.calcsize(fmt) == 44
    assert [n for _, n in _layout(info_table)[15:17]] == [P.SLOT_RECORD_SIZE] * 2


# --- codec round trips ---------------------------------------------------------------------


def _record(rng: np.random.Generator, *, empty: bool = False) -> P.SlotRecord:
    if empty:
        return P.SlotRecord(P.SlotState.EMPTY, 0, 0, 0, 0, False, 3)
    commit, tried, confirmed, revoked = (int(v) for v in rng.integers(0, 3, 4))
    return P.SlotRecord(
        int(rng.integers(0, 5)), commit, tried, confirmed, revoked, bool(rng.random() < 0.5), 0,
        int(rng.integers(0, 2**32)), int(rng.integers(1, 2**20)), int(rng.integers(0, 2**32)),
        rng.bytes(32).hex(), f"v{int(rng.integers(1, 9999)):04d}")


def _slot_info(rng: np.random.Generator, *, profile: str = "tflm-arduino-2023",
               ops: tuple[int, ...] = (9, 25), empty: bool = False) -> P.SlotInfo:
    return P.SlotInfo(
        running=P.Running(int(rng.integers(0, 3)), int(rng.integers(0, 2))),
        install_in_progress=bool(rng.random() < 0.5),
        install_slot=None if rng.random() < 0.5 else int(rng.integers(0, 2)),
        install_image_len=int(rng.integers(0, 2**20)), install_next=int(rng.integers(0, 2**20)),
        geometry=P.FlashGeometry(126_976, 4096, 4, 768, 85_000, 7_872),
        firmware=P.FirmwareCaps(8192, 27_648, 1018, profile, ops),
        slots=(_record(rng, empty=empty), _record(rng, empty=empty)))


def test_slot_info_round_trips_and_is_strict_about_its_length() -> None:
    rng = np.random.default_rng(11)
    for i in range(200):
        ops = tuple(int(v) for v in rng.integers(0, 200, int(rng.integers(0, 65))))
        info = _slot_info(rng, profile="p" * int(rng.integers(0, 33)), ops=ops,
                          empty=i % 7 == 0)
        raw = P.encode_slot_info(info)
        assert len(raw) == P.SLOT_INFO_FIXED + 1 + len(info.firmware.profile) + 1 + 2 * len(ops)
        assert P.parse_slot_info(raw) == info
        json.dumps(info.to_dict())  # a JSON document as the CLI prints it
    raw = P.encode_slot_info(_slot_info(rng))
    for bad in (raw[:-1], raw + b"\x00", raw[:P.SLOT_INFO_FIXED], b""):
        with pytest.raises(ProtocolError, match="SLOT_INFO"):
            P.parse_slot_info(bad)


def test_slot_info_sequence_and_names() -> None:
    rng = np.random.default_rng(12)
    info = _slot_info(rng)
    a, b = info.slots
    info = replace(info, slots=(replace(a, sequence=7), replace(b, sequence=3)))
    assert info.next_sequence == 8
    d = info.to_dict()
    assert d["slots"]["A"]["sequence"] == 7 and d["next_sequence"] == 8
    empty = P.SlotRecord(P.SlotState.EMPTY, 0, 0, 0, 0, False, 3)
    assert not empty.has_image and empty.to_dict()["header_status_name"] == "magic"
    assert empty.to_dict()["state_name"] == "empty"
    assert P.Running(2, 1).to_dict() == {"source": 2, "mode": 1, "source_name": "slot B",
                                         "mode_name": "trial"}
    assert P.Running(0, 0).slot is None and P.Running(1, 0).slot == 0
    assert P.source_name(9) == "unknown(9)" and P.slot_letter(5) == "?5"


def test_request_and_reply_codecs_round_trip() -> None:
    assert P.parse_slot_begin_reply(P.encode_slot_begin_reply(P.SlotBegun(1, 3616))) == \
        P.SlotBegun(1, 3616)
    assert P.parse_slot_end_reply(P.encode_slot_end_reply(P.SlotEnded(0, 9))) == \
        P.SlotEnded(0, 9)
    assert P.parse_slot_write_reply(P.encode_slot_write_reply(1536)) == 1536
    assert P.parse_slot_write(P.encode_slot_write(768, b"\x01" * 768)) == (768, b"\x01" * 768)
    assert P.parse_slot_confirm_reply(P.encode_slot_confirm_reply(2)) == 2
    assert P.parse_slot_revert_reply(P.encode_slot_revert_reply(P.SlotReverted(1, True))) == \
        P.SlotReverted(1, True)
    P.parse_empty_reply(b"")
    assert P.encode_slot_begin(b"h" * 1024) == b"h" * 1024
    bad_calls: list[Callable[[], bytes]] = [
        lambda: P.encode_slot_write(100, b"x"), lambda: P.encode_slot_write(0, b""),
        lambda: P.encode_slot_write(0, b"x" * 769), lambda: P.encode_slot_begin(b"h" * 1025)]
    for bad_call in bad_calls:
        with pytest.raises(ValueError):
            bad_call()
    parsers: tuple[tuple[Callable[[bytes], object], bytes], ...] = (
        (P.parse_slot_begin_reply, b"\x02\x00\x00\x00\x00"),
        (P.parse_slot_begin_reply, b"\x00"),
        (P.parse_slot_end_reply, b"\x00" * 6),
        (P.parse_slot_write_reply, b"\x00" * 3),
        (P.parse_slot_confirm_reply, b"\x00"),
        (P.parse_slot_confirm_reply, b"\x03"),
        (P.parse_slot_revert_reply, b"\x00\x01"),
        (P.parse_empty_reply, b"\x00"),
        (P.parse_slot_write, b"\x00" * 4))
    for parse, payload in parsers:
        with pytest.raises(ProtocolError):
            parse(payload)


def test_info_slot_tags_parse_and_version_1_info_has_no_slots() -> None:
    rec = P.encode_info([(0x01, b"\x02"), (0x1F, bytes.fromhex("0123456789abcdef")),
                         (0x20, P.encode_running(P.Running(2, 1))),
                         (0x21, struct.pack("<I", 126_976))])
    info = P.parse_info(rec)
    assert info.device_id == "0123456789abcdef" and info.running == P.Running(2, 1)
    assert info.slot_capacity == 126_976 and info.has_slots and not info.unknown
    d = info.to_dict()
    assert d["running"]["source_name"] == "slot B" and d["running"]["mode_name"] == "trial"
    old = P.parse_info(P.encode_info([(0x01, b"\x01"), (0x03, b"v0001")]))
    assert not old.has_slots and old.running is None and old.device_id is None
    for tag, value in ((0x1F, b""), (0x1F, b"\x01" * 17), (0x20, b"\x01"), (0x21, b"\x00")):
        with pytest.raises(ProtocolError):
            P.parse_info(P.encode_info([(tag, value)]))


def test_stats_of_a_version_1_board_still_parse() -> None:
    """A protocol-1 board sends 16 error counters (85 bytes); version 2 sends 29."""
    v1 = struct.pack("<IIIIIB", 3, 1, 2, 3, 9, 16) + struct.pack("<16I", *([0] * 4 + [2] +
                                                                             [0] * 11))
    assert len(v1) == 85 and P.parse_stats(v1).errors == {"TS_ERR_UNKNOWN_COMMAND": 2}
    v2 = struct.pack("<IIIIIB", 0, 0, 0, 0, 0, 29) + struct.pack("<29I", *([0] * 27 + [1, 0]))
    assert len(v2) == P.STATS_SIZE and P.parse_stats(v2).errors == {"TS_ERR_SLOT_STATE": 1}


# --- a scripted board ----------------------------------------------------------------------


def _manifest() -> dict[str, Any]:
    return Registry(MODELS).manifest("v0001")


def _model() -> bytes:
    return Registry(MODELS).read_artifact("v0001", "model_int8.tflite")


def _image(sequence: int = 1, **model_changes: Any) -> bytes:
    m = json.loads(json.dumps(_manifest()))
    profile = model_changes.pop("profile", None)
    if profile is not None:
        m["profile"] = profile
    m["model"].update(model_changes)
    return SI.build_slot_image(_model(), m, sequence)


LINK_UART = P.LinkInfo(P.LinkKind.UART, 115_200, 256)
FACTORY = P.Running(P.RunningSource.FACTORY, P.RunningMode.CONFIRMED)


class FakeSlotBoard(FakeSerial):
    """A pyserial stand-in that speaks the slot commands from an in-memory flash, with hooks
    to lose replies. Not the firmware (that is the virtual board): enough to pin down what
    the host sends, in what order, and what it does when a reply is lost."""

    def __init__(self, *, protocol: int = 2, slots: bool = True,
                 link: P.LinkInfo | None = LINK_UART, program_chunk_us: int = 7_872,
                 running: P.Running = FACTORY, sequences: tuple[int, int] = (0, 0)
                 ) -> None:
        self.protocol, self.slots_on, self.link = protocol, slots, link
        self.program_chunk_us = program_chunk_us
        self.running = running
        self.sequences = list(sequences)
        super().__init__(f"tinyship ready proto={protocol} fw=test\r\n".encode())
        self.log: list[int] = []          # every request cmd received, in order
        self.writes: list[int] = []       # SLOT_WRITE offsets
        self.image = bytearray()
        self.image_len = 0
        self.next = 0
        self.target = 0
        self.committed: int | None = None
        self.reboots = 0
        self.uptime_us = 5_000_000
        self.drop: Callable[[P.Frame, int], bool] = lambda f, n: False  # lose this reply
        self.ignore: Callable[[P.Frame, int], bool] = lambda f, n: False  # lose the request

    def write(self, data: bytes) -> int:
        for f in self.reader.feed(data):
            self.log.append(f.cmd)
            n = len(self.log)
            if self.ignore(f, n):
                continue
            reply, then = self.handle(f)
            if not self.drop(f, n):
                self.rx += reply
            if then is not None:
                then()
        return len(data)

    # the board
    def info(self) -> bytes:
        items = [(0x01, bytes([self.protocol])), (0x03, b"v0001"),
                 (0x13, struct.pack("<Q", self.uptime_us))]
        if self.link is not None:
            items.append((0x1E, P.encode_link(self.link)))
        if self.protocol >= 2 and self.slots_on:
            items += [(0x20, P.encode_running(self.running)),
                      (0x21, struct.pack("<I", 126_976))]
        return P.encode_info(items)

    def slot_info(self) -> P.SlotInfo:
        def rec(i: int) -> P.SlotRecord:
            if self.committed == i:
                return P.SlotRecord(P.SlotState.PENDING, 1, 0, 0, 0, True, 0,
                                    self.sequences[i], 3168, 0, self.sha, "v0001")
            return P.SlotRecord(P.SlotState.EMPTY, 0, 0, 0, 0, False, 3, self.sequences[i])
        return P.SlotInfo(self.running, False, None, 0, 0,
                          P.FlashGeometry(126_976, 4096, 4, 768, 85_000, self.program_chunk_us),
                          P.FirmwareCaps(2432, 27_648, 1018, "tflm-arduino-2023", (9, 25)),
                          (rec(0), rec(1)))

    sha = hashlib.sha256(b"").hexdigest()

    def reboot(self) -> None:
        self.reboots += 1
        self.uptime_us = 100_000
        if self.committed is not None:
            self.running = P.Running(self.committed + 1, 1)
        self.rx += b"tinyship ready proto=2 fw=test\r\n"

    def handle(self, f: P.Frame) -> tuple[bytes, Callable[[], None] | None]:
        def ok(payload: bytes = b"") -> bytes:
            return P.encode_frame(f.cmd | 0x80, f.seq, payload)

        def err(code: P.Status) -> bytes:
            return P.encode_frame(0xFF, f.seq, P.encode_error(code, f.cmd))

        C = P.Command
        if f.cmd == C.PING:
            return ok(f.payload), None
        if f.cmd == C.HELLO:
            return ok(self.info()), None
        if self.protocol < 2:
            return err(P.Status.UNKNOWN_COMMAND), None
        if f.cmd == C.REBOOT:
            return ok(), self.reboot
        if not self.slots_on:
            return err(P.Status.NO_SLOTS), None
        if f.cmd == C.SLOT_INFO:
            return ok(P.encode_slot_info(self.slot_info())), None
        if f.cmd == C.SLOT_BEGIN:
            h = SI.parse_slot_image(f.payload, header_only=True)
            self.image_len, self.next, self.image = h.header_len + h.model_len, 0, bytearray()
            self.target = 1 if self.running.source == 1 else 0
            self.sequences[self.target] = h.sequence
            self.sha = h.sha256.hex()
            return ok(P.encode_slot_begin_reply(P.SlotBegun(self.target, self.image_len))), None
        if f.cmd == C.SLOT_WRITE:
            off, data = P.parse_slot_write(f.payload)
            self.writes.append(off)
            if off > self.next:
                return err(P.Status.SLOT_ORDER), None
            if off == self.next:
                self.image += data
                self.next += len(data)
            return ok(P.encode_slot_write_reply(self.next)), None
        if f.cmd == C.SLOT_END:
            if self.image_len == 0:
                return err(P.Status.SLOT_STATE), None
            if self.next != self.image_len:
                return err(P.Status.SLOT_ORDER), None
            self.committed, self.image_len = self.target, 0
            return ok(P.encode_slot_end_reply(P.SlotEnded(self.target,
                                                          self.sequences[self.target]))), None
        if f.cmd == C.SLOT_CONFIRM:
            if self.running.source == 0:
                return err(P.Status.SLOT_STATE), None
            self.running = P.Running(self.running.source, 0)
            return ok(P.encode_slot_confirm_reply(self.running.source)), None
        if f.cmd == C.SLOT_REVERT:
            if self.running.source == 0:
                return err(P.Status.SLOT_STATE), None
            src = self.running.source

            def revert() -> None:
                self.committed = None
                self.running = P.Running(0, 0)
                self.reboot()
            return ok(P.encode_slot_revert_reply(P.SlotReverted(src, True))), revert
        return err(P.Status.UNKNOWN_COMMAND), None


def _connect(board: FakeSlotBoard, **kw: Any) -> tuple[DeviceClient, SlotClient]:
    t = Transport("fake", baud=115_200, serial_factory=lambda *a, **k: board)
    c = DeviceClient(t, **kw)
    c.connect(banner_timeout_s=1.0)
    return c, SlotClient(c)


def test_install_reboot_confirm_on_a_scripted_board() -> None:
    board = FakeSlotBoard(sequences=(4, 2))
    _, sc = _connect(board)
    slots = sc.slot_info()
    image = _image(slots.next_sequence)
    seen: list[tuple[str, int, int]] = []
    r = sc.install(image, progress=lambda *a: seen.append(a), slots=slots)
    assert (r.slot, r.sequence, r.image_bytes) == (0, 5, len(image)) and bytes(board.image) == image
    assert seen[0] == ("erase", 0, len(image)) and seen[-1] == ("verify", len(image), len(image))
    assert [s for s in seen if s[0] == "write"][-1][1] == len(image)
    assert r.chunks == -(-len(image) // 768) and r.max_in_flight == 2  # pipelined
    assert board.log[:4] == [P.Command.HELLO, P.Command.SLOT_INFO, P.Command.SLOT_BEGIN,
                             P.Command.SLOT_WRITE]
    boot = sc.reboot_and_wait(timeout_s=3.0)
    assert board.reboots == 1 and boot.running == P.Running(1, 1)
    assert sc.confirm() == P.Running(1, 0) and board.running == P.Running(1, 0)


@pytest.mark.parametrize(("program_chunk_us", "link", "in_flight"), [
    (7_872, LINK_UART, 2),                             # 8 ms x 11.5 kB/s = 91 B: fits 256
    (30_000, LINK_UART, 1),                            # 346 B while busy: stop and wait
    (0, LINK_UART, 1),                                 # unknown busy time: stop and wait
    (30_000, P.LinkInfo(P.LinkKind.USB_CDC, 0, 0), 2),  # flow controlled: no window
    (7_872, None, 2),                                  # no LINK tag: no window known
])
def test_chunks_are_pipelined_only_when_the_busy_time_fits_the_window(
        program_chunk_us: int, link: P.LinkInfo | None, in_flight: int) -> None:
    board = FakeSlotBoard(program_chunk_us=program_chunk_us, link=link)
    _, sc = _connect(board)
    r = sc.install(_image(1))
    assert r.max_in_flight == in_flight and bytes(board.image) == _image(1)
    assert board.writes == list(range(0, len(board.image), 768))  # each chunk once


def test_a_lost_chunk_is_resent_and_its_successor_after_it() -> None:
    """Chunk 2's request is lost: chunk 3 (already in flight) is refused as out of order and
    both are sent again, in order; the image ends up whole."""
    board = FakeSlotBoard()
    lost: list[int] = []

    def lose_first_chunk_2(f: P.Frame, n: int) -> bool:
        if f.cmd == P.Command.SLOT_WRITE and f.payload[:4] == struct.pack("<I", 768) \
                and not lost:
            lost.append(n)
            return True
        return False

    board.ignore = lose_first_chunk_2
    c, sc = _connect(board, reply_timeout_s=0.3)
    image = _image(1)
    r = sc.install(image)
    assert bytes(board.image) == image and r.retries >= 1
    assert c.counters.error_codes.get("TS_ERR_SLOT_ORDER", 0) >= 1


def test_lost_slot_end_reply_is_settled_from_slot_info() -> None:
    board = FakeSlotBoard()
    board.drop = lambda f, n: f.cmd == P.Command.SLOT_END and board.log.count(0x13) == 1
    _, sc = _connect(board, reply_timeout_s=0.2)
    r = sc.install(_image(1))
    assert r.slot == 0 and board.log.count(P.Command.SLOT_END) == 2


def test_reboot_is_never_sent_twice_when_its_reply_is_lost() -> None:
    board = FakeSlotBoard()
    board.drop = lambda f, n: f.cmd == P.Command.REBOOT
    _, sc = _connect(board, reply_timeout_s=0.2)
    sc.install(_image(1))
    boot = sc.reboot_and_wait(timeout_s=3.0)
    assert board.log.count(P.Command.REBOOT) == 1 and board.reboots == 1
    assert boot.running == P.Running(1, 1)  # the trial survived: no second reset


def test_reboot_lost_on_the_way_is_sent_again_once_the_board_proves_it_did_not_reset() -> None:
    board = FakeSlotBoard()
    board.ignore = lambda f, n: f.cmd == P.Command.REBOOT and board.log.count(0x14) == 1
    _, sc = _connect(board, reply_timeout_s=0.2)
    boot = sc.reboot_and_wait(timeout_s=3.0)
    assert board.log.count(P.Command.REBOOT) == 2 and board.reboots == 1
    assert boot.info.uptime_us == 100_000


def test_client_raises_reply_lost_for_requests_not_to_be_resent() -> None:
    board = FakeSlotBoard()
    board.drop = lambda f, n: f.cmd == P.Command.REBOOT
    c, _ = _connect(board, reply_timeout_s=0.1)
    c.reconnect = lambda: None  # type: ignore[method-assign]
    with pytest.raises(ReplyLost) as e:
        c.request(P.Command.REBOOT, b"", P.parse_empty_reply, resend=False)
    assert e.value.cmd == P.Command.REBOOT and board.log.count(P.Command.REBOOT) == 1
    assert e.value.exit_code == ExitCode.DEVICE


def test_revert_with_a_lost_reply_is_not_sent_again() -> None:
    board = FakeSlotBoard(running=P.Running(1, 0))
    board.committed = 0
    board.drop = lambda f, n: f.cmd == P.Command.SLOT_REVERT
    _, sc = _connect(board, reply_timeout_s=0.2)
    with pytest.raises(SlotError, match="not revoked"):
        sc.revert(timeout_s=3.0)  # the fake's records have no REVOKED state: not settled
    assert board.log.count(P.Command.SLOT_REVERT) == 1


def test_revert_reports_the_board_after_its_reset() -> None:
    board = FakeSlotBoard(running=P.Running(2, 1))
    board.committed = 1
    _, sc = _connect(board)
    r = sc.revert(timeout_s=3.0)
    assert r.reverted.source == 2 and r.boot is not None
    assert r.boot.running == P.Running(0, 0) and r.to_dict()["rebooted"] is True


# --- refusals before anything is sent ------------------------------------------------------


def _sent_after_slot_info(board: FakeSlotBoard) -> list[int]:
    i = board.log.index(P.Command.SLOT_INFO)
    return board.log[i + 1:]


CAPS = P.FirmwareCaps(8192, 1022, 1018, "tflm-arduino-2023", (9, 25))


@pytest.mark.parametrize(("changes", "limit", "status", "message"), [
    ({"profile": "tflm-current"}, "profile", P.Status.SLOT_PROFILE,
     "model is built for profile 'tflm-current', the firmware runs 'tflm-arduino-2023'"),
    ({"ops": ["FULLY_CONNECTED", "HARD_SWISH"]}, "operators", P.Status.SLOT_OP,
     "model needs operators the firmware does not register: HARD_SWISH (117)"),
    ({"arena_bytes": 9216}, "arena", P.Status.SLOT_ARENA,
     "model needs a 9,216-byte arena, the firmware has 8,192"),
    ({"input": {"shape": [1, 2048], "dtype": "int8", "scale": 0.1, "zero_point": 0}},
     "input", P.Status.SLOT_SHAPE,
     "model input is 2,048 bytes, the firmware's input buffer holds 1,022"),
    ({"output": {"shape": [1, 4096], "dtype": "int8", "scale": 0.1, "zero_point": 0}},
     "output", P.Status.SLOT_SHAPE,
     "model output is 4,096 bytes, the firmware's output buffer holds 1,018"),
])
def test_incompatible_images_are_refused_naming_the_limit(
        changes: dict[str, Any], limit: str, status: P.Status, message: str) -> None:
    h = SI.parse_slot_image(_image(1, **changes))
    bad = incompatibility(h, CAPS, 126_976)
    assert bad is not None and str(bad) == message
    assert (bad.limit, bad.status) == (limit, status)
    assert isinstance(bad, ModelError) and bad.exit_code == ExitCode.MODEL
    assert int(ExitCode.MODEL) == 7
    json.dumps(bad.to_dict())
    assert incompatibility(SI.parse_slot_image(_image(1)), CAPS, 126_976) is None


def test_an_image_larger_than_a_slot_is_refused() -> None:
    h = SI.parse_slot_image(_image(1))
    bad = incompatibility(h, CAPS, 2048)
    assert bad is not None and bad.status == P.Status.SLOT_SIZE and bad.limit == "slot"
    assert str(bad) == (f"slot image is {h.header_len + h.model_len:,} bytes (header "
                        f"{h.header_len} + model 3,168), a slot holds 2,048")


@pytest.mark.parametrize("case", ["arena", "profile", "trial", "sequence", "corrupt"])
def test_install_refuses_before_sending_anything(case: str) -> None:
    board = FakeSlotBoard(running=P.Running(1, 1) if case == "trial" else P.Running(0, 0),
                          sequences=(0, 6) if case == "sequence" else (0, 0))
    _, sc = _connect(board)
    image = {"arena": lambda: _image(1, arena_bytes=4096),
             "profile": lambda: _image(1, profile="tflm-current"),
             "trial": lambda: _image(1), "sequence": lambda: _image(6),
             "corrupt": lambda: _image(1)[:-1] + b"\x00",
             }[case]()
    expected: type[Exception] = SlotError if case in ("trial", "sequence") else ModelError
    with pytest.raises(expected) as e:
        sc.install(image)
    assert _sent_after_slot_info(board) == []
    if case == "trial":
        assert "confirm or revert it" in str(e.value)
    if case == "arena":
        assert isinstance(e.value, IncompatibleModel)
        assert str(e.value) == "model needs a 4,096-byte arena, the firmware has 2,432"


def test_protocol_1_and_slotless_boards_are_refused_with_a_hint() -> None:
    old = FakeSlotBoard(protocol=1)
    _, sc = _connect(old)
    with pytest.raises(SlotError, match="speaks protocol 1: model slots need protocol 2") as e:
        sc.slot_info()
    assert e.value.hint and "tinyship build" in e.value.hint
    assert old.log == [P.Command.HELLO]  # nothing else was sent
    none = FakeSlotBoard(slots=False)
    _, sc = _connect(none)
    with pytest.raises(SlotError, match="no model slots") as e:
        sc.slot_info()
    assert e.value.status == P.Status.NO_SLOTS and e.value.exit_code == ExitCode.DEVICE


def test_board_refusals_become_slot_errors_with_the_status() -> None:
    board = FakeSlotBoard()
    _, sc = _connect(board)
    for call in (sc.confirm, sc.revert):
        with pytest.raises(SlotError, match="runs its factory model") as e:
            call()
        assert e.value.status == P.Status.SLOT_STATE
    assert P.Command.SLOT_REVERT not in board.log and P.Command.SLOT_CONFIRM not in board.log


# --- images from the registry --------------------------------------------------------------


def test_image_from_registry_carries_the_golden_vectors_that_fit_one_begin() -> None:
    reg = Registry(MODELS)
    image = image_from_registry(reg, "v0001", 3)
    h = SI.parse_slot_image(image)
    SI.verify_body(h)
    m = reg.manifest("v0001")
    assert h.sequence == 3 and h.model_version == "v0001" and h.header_len <= P.MAX_PAYLOAD
    assert h.sha256.hex() == m["model"]["sha256"] and zlib.crc32(h.body) == h.model_crc32
    assert len(h.golden_inputs) == min(SI.max_golden_for_begin(m), 32) > 0
    assert (h.target_mean, h.target_scale) == pytest.approx(
        (m["model"]["output"]["target_mean"], m["model"]["output"]["target_scale"]))


def test_readme_tells_users_how_to_update_a_model_over_serial() -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("## Update a board's model over serial")
    sec = text[start:text.index("\n## ", start + 1)]
    for cmd in ("device slots", "device load-model", "device confirm", "device revert",
                "device reboot", "--no-reboot", "--json"):
        assert cmd in sec, cmd
    rows = dict(re.findall(r"^\| (\d+) \| (.*) \|$", sec, re.M))
    assert {int(k) for k in rows} == {ExitCode.OK, ExitCode.REGISTRY, ExitCode.MODEL,
                                      ExitCode.DEVICE, ExitCode.VALIDATION}
    assert "health check" in rows[str(int(ExitCode.VALIDATION))]
    assert "nothing was sent" in rows[str(int(ExitCode.MODEL))]
    # the set-up commands stay the first thing a reader meets
    assert text.index("scripts/run.sh") < text.index("scripts/test.sh") < text.index(
        "## What the main job does")
