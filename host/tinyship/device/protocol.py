"""Host side of the tinyship serial protocol v2 (`firmware/PROTOCOL.md`).

Pure codec, no I/O: COBS, CRC-32, frame encode/decode, command payloads, error replies,
the HELLO/INFO TLV record, STATS, the model-slot commands (section 9), and a streaming
`FrameReader` that pulls valid frames out of a byte stream that also carries text lines
and garbage.

Versions: this host speaks 2 and talks to boards of `MIN_PROTOCOL_VERSION` (1) on: version 2
only added commands, tags and status codes, so a version-1 board answers every version-1
command as before; the slot commands need `SLOTS_PROTOCOL_VERSION`.

Every number here mirrors `firmware/lib/tinyship_core/src/tinyship_core.h`;
`tests/test_protocol_codec.py` parses that header and fails if the two disagree.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from tinyship.errors import ProtocolError

if TYPE_CHECKING:  # numpy is imported where INFER payloads are built: `device info` skips it
    import numpy as np

# --- constants (tinyship_core.h) ----------------------------------------------------------

#: The version this host speaks (TS_PROTOCOL_VERSION).
PROTOCOL_VERSION = 2
#: Oldest board protocol the host still talks to (its commands are unchanged since).
MIN_PROTOCOL_VERSION = 1
#: First protocol version with model slots (commands 0x10-0x16, INFO tags 0x1F-0x21).
SLOTS_PROTOCOL_VERSION = 2
MAX_PAYLOAD = 1024
HEADER_SIZE = 5
CRC_SIZE = 4
MAX_PACKET = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
SEQ_UNKNOWN = 0xFFFF
RESPONSE_FLAG = 0x80
FRAME_TIMEOUT_US = 500_000
MAX_LINE = 256
MAX_REASON = 40
STATUS_COUNT = 29
DELIMITER = 0x00
#: Bytes in one STATS reply (version 2; a version-1 board sends 16 counters, 85 bytes).
STATS_SIZE = 21 + 4 * STATUS_COUNT
#: Boot banner prefix printed by `ts_core_init`.
BANNER_PREFIX = "tinyship ready"


def cobs_max_encoded(n: int) -> int:
    """Largest COBS encoding of `n` bytes (TS_COBS_MAX_ENCODED)."""
    return n + n // 254 + 1


MAX_WIRE_FRAME = cobs_max_encoded(MAX_PACKET) + 2


class Command(IntEnum):
    PING = 0x01
    HELLO = 0x02
    INFER = 0x03
    STATS = 0x04
    RESET_STATS = 0x05
    SLOT_INFO = 0x10
    SLOT_BEGIN = 0x11
    SLOT_WRITE = 0x12
    SLOT_END = 0x13
    REBOOT = 0x14
    SLOT_CONFIRM = 0x15
    SLOT_REVERT = 0x16
    ERROR = 0xFF


class Status(IntEnum):
    """`ts_status_t`: the `code` byte of an error reply."""

    OK = 0
    BAD_CRC = 1
    BAD_LENGTH = 2
    BAD_FRAMING = 3
    UNKNOWN_COMMAND = 4
    WRONG_INPUT_SIZE = 5
    INFERENCE_FAILED = 6
    BUSY = 7
    BAD_PAYLOAD = 8
    BATCH_TOO_LARGE = 9
    MODEL_INVALID = 10
    FRAME_TIMEOUT = 11
    INVALID_ARGUMENT = 12
    BUFFER_TOO_SMALL = 13
    IO = 14
    STORAGE = 15
    NO_SLOTS = 16
    SLOT_HEADER = 17
    SLOT_PROFILE = 18
    SLOT_OP = 19
    SLOT_ARENA = 20
    SLOT_SHAPE = 21
    SLOT_SIZE = 22
    SLOT_SEQUENCE = 23
    SLOT_ORDER = 24
    SLOT_RANGE = 25
    SLOT_VERIFY = 26
    SLOT_STATE = 27
    FLASH = 28


#: Short reasons, as in TS_STATUS_LIST (index = code).
STATUS_REASONS: dict[Status, str] = {
    Status.OK: "ok",
    Status.BAD_CRC: "bad crc",
    Status.BAD_LENGTH: "bad length",
    Status.BAD_FRAMING: "bad framing",
    Status.UNKNOWN_COMMAND: "unknown command",
    Status.WRONG_INPUT_SIZE: "wrong input size",
    Status.INFERENCE_FAILED: "inference failed",
    Status.BUSY: "busy",
    Status.BAD_PAYLOAD: "bad payload",
    Status.BATCH_TOO_LARGE: "batch too large",
    Status.MODEL_INVALID: "model invalid",
    Status.FRAME_TIMEOUT: "frame timeout",
    Status.INVALID_ARGUMENT: "invalid argument",
    Status.BUFFER_TOO_SMALL: "buffer too small",
    Status.IO: "write failed",
    Status.STORAGE: "storage failed",
    Status.NO_SLOTS: "no model slots",
    Status.SLOT_HEADER: "bad slot image header",
    Status.SLOT_PROFILE: "profile differs from firmware",
    Status.SLOT_OP: "operator not in firmware",
    Status.SLOT_ARENA: "arena need above firmware arena",
    Status.SLOT_SHAPE: "input/output above firmware buffers",
    Status.SLOT_SIZE: "image larger than a slot",
    Status.SLOT_SEQUENCE: "sequence not newer than slots",
    Status.SLOT_ORDER: "chunk out of order",
    Status.SLOT_RANGE: "write past the image end",
    Status.SLOT_VERIFY: "slot verify failed",
    Status.SLOT_STATE: "not allowed in this slot state",
    Status.FLASH: "flash operation failed",
}

#: Error codes that mean "the frame was damaged on the way", so resending may help.
TRANSIENT_ERRORS = frozenset(
    {Status.BAD_CRC, Status.BAD_LENGTH, Status.BAD_FRAMING, Status.FRAME_TIMEOUT}
)


def status_name(code: int) -> str:
    """`TS_ERR_BAD_CRC` for 1; `TS_OK` for 0; `?` when unknown (as `ts_status_name`)."""
    try:
        s = Status(code)
    except ValueError:
        return "?"
    return "TS_OK" if s is Status.OK else f"TS_ERR_{s.name}"


class Tag(IntEnum):
    """HELLO/INFO TLV tags (`ts_tlv_tag_t`)."""

    PROTOCOL_VERSION = 0x01
    FIRMWARE_VERSION = 0x02
    MODEL_VERSION = 0x03
    MODEL_SHA256 = 0x04
    MODEL_CRC_OK = 0x05
    MODEL_CRC32 = 0x06
    PROFILE = 0x07
    BOARD = 0x08
    ARENA_USED = 0x09
    ARENA_SIZE = 0x0A
    INPUT_SHAPE = 0x0B
    OUTPUT_SHAPE = 0x0C
    INPUT_DTYPE = 0x0D
    OUTPUT_DTYPE = 0x0E
    INPUT_SCALE = 0x0F
    INPUT_ZERO_POINT = 0x10
    OUTPUT_SCALE = 0x11
    OUTPUT_ZERO_POINT = 0x12
    UPTIME_US = 0x13
    BOOT_COUNT = 0x14
    RESET_REASON = 0x15
    SELF_TEST = 0x16
    MAX_PAYLOAD = 0x17
    GIT_COMMIT = 0x18
    BUILD_TIME = 0x19
    INPUT_SIZE = 0x1A
    OUTPUT_SIZE = 0x1B
    TARGET_MEAN = 0x1C
    TARGET_SCALE = 0x1D
    LINK = 0x1E
    DEVICE_ID = 0x1F
    RUNNING = 0x20
    SLOT_CAPACITY = 0x21


#: Value type of each tag, as in TS_TLV_LIST.
TAG_TYPES: dict[Tag, str] = {
    Tag.PROTOCOL_VERSION: "u8", Tag.FIRMWARE_VERSION: "str", Tag.MODEL_VERSION: "str",
    Tag.MODEL_SHA256: "str", Tag.MODEL_CRC_OK: "u8", Tag.MODEL_CRC32: "u32",
    Tag.PROFILE: "str", Tag.BOARD: "str", Tag.ARENA_USED: "u32", Tag.ARENA_SIZE: "u32",
    Tag.INPUT_SHAPE: "i32[]", Tag.OUTPUT_SHAPE: "i32[]", Tag.INPUT_DTYPE: "u8",
    Tag.OUTPUT_DTYPE: "u8", Tag.INPUT_SCALE: "f32", Tag.INPUT_ZERO_POINT: "i32",
    Tag.OUTPUT_SCALE: "f32", Tag.OUTPUT_ZERO_POINT: "i32", Tag.UPTIME_US: "u64",
    Tag.BOOT_COUNT: "u32", Tag.RESET_REASON: "u8", Tag.SELF_TEST: "selftest",
    Tag.MAX_PAYLOAD: "u16", Tag.GIT_COMMIT: "str", Tag.BUILD_TIME: "str",
    Tag.INPUT_SIZE: "u32", Tag.OUTPUT_SIZE: "u32", Tag.TARGET_MEAN: "f32",
    Tag.TARGET_SCALE: "f32", Tag.LINK: "link", Tag.DEVICE_ID: "bytes", Tag.RUNNING: "running",
    Tag.SLOT_CAPACITY: "u32",
}

DTYPE_FLOAT32 = 1
DTYPE_INT8 = 9


class CrcCheck(IntEnum):
    MISMATCH = 0
    OK = 1
    NOT_CHECKED = 2


class SelfTestStatus(IntEnum):
    PASS = 0
    FAIL = 1
    NOT_RUN = 2
    INFER_ERROR = 3


class LinkKind(IntEnum):
    """`ts_link_kind_t`: what carries the bytes (first field of the LINK tag)."""

    UNKNOWN = 0
    UART = 1
    USB_CDC = 2
    STREAM = 3


#: Bits on the wire per byte of an 8N1 UART: start bit, 8 data bits, stop bit.
UART_BITS_PER_BYTE = 10


class RunningSource(IntEnum):
    """`ts_running_source_t`: which model runs (TS_TLV_RUNNING, SLOT_INFO, SLOT_CONFIRM)."""

    FACTORY = 0
    SLOT_A = 1
    SLOT_B = 2


class RunningMode(IntEnum):
    """`ts_running_mode_t`: a confirmed model (or the factory model), or a trial."""

    CONFIRMED = 0
    TRIAL = 1


#: Slot letters by slot index (SLOT_BEGIN / SLOT_END / SLOT_INFO's install slot: 0 A, 1 B).
SLOT_LETTERS = ("A", "B")


def slot_letter(index: int) -> str:
    """`A` for slot index 0, `B` for 1 (`?n` otherwise, so a report never crashes)."""
    return SLOT_LETTERS[index] if 0 <= index < len(SLOT_LETTERS) else f"?{index}"


def source_name(source: int) -> str:
    """`factory`, `slot A`, `slot B` for a `RunningSource` value."""
    if source == RunningSource.FACTORY:
        return "factory"
    if source in (RunningSource.SLOT_A, RunningSource.SLOT_B):
        return f"slot {slot_letter(source - 1)}"
    return f"unknown({source})"


RESET_REASONS = ("unknown", "power-on", "reset-pin", "watchdog", "software", "brown-out",
                 "lockup", "wake-up", "other")


# --- CRC and COBS -------------------------------------------------------------------------


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32 IEEE 802.3, as zlib and `ts_crc32`."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


class FrameError(ProtocolError):
    """A frame body that fails COBS, length or CRC checks; `status` says which."""

    def __init__(self, status: Status, message: str, *, cmd: int | None = None,
                 seq: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.cmd = cmd
        self.seq = seq


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode `data` (no delimiters); the result holds no 0x00.

    A full 254-byte block at the very end is not followed by an empty block, as in
    Cheshire & Baker and the firmware core."""
    out = bytearray()
    i, n = 0, len(data)
    while True:
        z = data.find(0, i, i + 254)
        end = z if z >= 0 else min(n, i + 254)
        out.append(end - i + 1)
        out += data[i:end]
        if z >= 0:
            i = z + 1
            continue
        i = end
        if i >= n:
            return bytes(out)


def cobs_decode(data: bytes, limit: int | None = None) -> bytes:
    """Inverse of `cobs_encode`; FrameError(BAD_FRAMING) on a 0x00 or a block overrun.

    With `limit`, more than `limit` decoded bytes is FrameError(BAD_LENGTH), detected in
    stream order as the core's incremental decoder does (before a final block overrun)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError(Status.BAD_FRAMING, f"COBS code byte 0x00 at offset {i}")
        end = i + code
        block = data[i + 1 : min(end, n)]
        if 0 in block:
            raise FrameError(Status.BAD_FRAMING, "0x00 inside a COBS block")
        out += block
        if limit is not None and len(out) > limit:
            raise FrameError(Status.BAD_LENGTH, f"oversized frame (> {limit} decoded bytes)")
        if end > n:
            raise FrameError(Status.BAD_FRAMING, f"COBS block at offset {i} runs past the end")
        i = end
        if code < 0xFF and i < n:
            out.append(0)
            if limit is not None and len(out) > limit:
                raise FrameError(Status.BAD_LENGTH,
                                 f"oversized frame (> {limit} decoded bytes)")
    return bytes(out)


# --- frames -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    payload: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.cmd == Command.ERROR


def encode_packet(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """cmd, seq, len, payload, crc32: the packet before COBS."""
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFFFF:
        raise ValueError(f"cmd {cmd} or seq {seq} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BHH", cmd, seq, len(payload)) + bytes(payload)
    return body + struct.pack("<I", crc32(body))


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """A complete wire frame: 0x00 COBS(packet) 0x00."""
    return b"\x00" + cobs_encode(encode_packet(cmd, seq, payload)) + b"\x00"


def decode_packet(packet: bytes) -> Frame:
    """Check a decoded packet in the device's order: length, CRC, then `len` field."""
    if len(packet) > MAX_PACKET:
        raise FrameError(Status.BAD_LENGTH, f"oversized packet ({len(packet)} bytes)")
    if len(packet) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(Status.BAD_LENGTH, f"truncated packet ({len(packet)} bytes)")
    (crc,) = struct.unpack_from("<I", packet, len(packet) - CRC_SIZE)
    if crc32(packet[:-CRC_SIZE]) != crc:
        raise FrameError(Status.BAD_CRC, "CRC mismatch")
    cmd, seq, length = struct.unpack_from("<BHH", packet)
    payload = packet[HEADER_SIZE:-CRC_SIZE]
    if length != len(payload):
        raise FrameError(Status.BAD_LENGTH,
                         f"len field {length} but {len(payload)} payload bytes", cmd=cmd, seq=seq)
    return Frame(cmd, seq, bytes(payload))


def decode_frame(body: bytes) -> Frame:
    """Decode the bytes between two 0x00 delimiters (as `ts_frame_decode`)."""
    return decode_packet(cobs_decode(body, MAX_PACKET))


# --- payloads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorReply:
    code: int
    request_cmd: int
    reason: str

    @property
    def name(self) -> str:
        return status_name(self.code)

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_ERRORS

    def __str__(self) -> str:
        return f"{self.name} ({self.reason!r}, request cmd 0x{self.request_cmd:02X})"


def encode_error(code: int, request_cmd: int, reason: str | None = None) -> bytes:
    if reason is None:
        reason = STATUS_REASONS.get(Status(code), "?")
    return bytes([code, request_cmd]) + reason.encode("ascii")[:MAX_REASON]


def parse_error(payload: bytes) -> ErrorReply:
    if len(payload) < 2:
        raise ProtocolError(f"error reply of {len(payload)} bytes (need at least 2)")
    return ErrorReply(payload[0], payload[1], payload[2:].decode("ascii", errors="replace"))


def wire_frame_size(payload_len: int) -> int:
    """Largest wire size of a frame carrying `payload_len` payload bytes (delimiters,
    COBS, header and CRC included): what it costs on the link."""
    return cobs_max_encoded(HEADER_SIZE + payload_len + CRC_SIZE) + 2


def max_batch(input_size: int, output_size: int, max_payload: int = MAX_PAYLOAD) -> int:
    """Most vectors one INFER may carry so that request and reply fit in `max_payload`."""
    if input_size < 1 or output_size < 1:
        raise ValueError("input and output sizes must be at least 1")
    n = min((max_payload - 2) // input_size, (max_payload - 2) // (4 + output_size))
    return max(0, min(n, 0xFFFF))


def encode_infer(batch: np.ndarray) -> bytes:
    """INFER payload: count:u16 then the int8 vectors, row by row."""
    import numpy as np

    a = np.asarray(batch)
    if a.dtype != np.int8:
        raise ValueError(f"INFER needs int8 inputs, got {a.dtype}")
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    if not 1 <= a.shape[0] <= 0xFFFF:
        raise ValueError(f"INFER batch of {a.shape[0]} vectors")
    return struct.pack("<H", a.shape[0]) + np.ascontiguousarray(a).tobytes()


def parse_infer_reply(payload: bytes, output_size: int,
                      expected_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """INFER response -> (outputs int8 [count, output_size], latencies_us uint32 [count])."""
    import numpy as np

    if len(payload) < 2:
        raise ProtocolError(f"INFER reply of {len(payload)} bytes")
    (count,) = struct.unpack_from("<H", payload)
    per = 4 + output_size
    if len(payload) != 2 + count * per:
        raise ProtocolError(f"INFER reply for {count} vectors of {output_size} outputs has "
                            f"{len(payload)} bytes, expected {2 + count * per}")
    if expected_count is not None and count != expected_count:
        raise ProtocolError(f"INFER reply has {count} vectors, expected {expected_count}")
    rec = np.frombuffer(payload, dtype=np.uint8, offset=2).reshape(count, per)
    lat = rec[:, :4].copy().view("<u4").reshape(count).astype(np.uint32)
    out = rec[:, 4:].copy().view(np.int8)
    return out, lat


# --- INFO record --------------------------------------------------------------------------


@dataclass
class SelfTest:
    status: int
    vectors: int
    failed_vector: int
    max_diff_lsb: int

    @property
    def status_name(self) -> str:
        try:
            return SelfTestStatus(self.status).name.lower().replace("_", "-")
        except ValueError:
            return f"unknown({self.status})"

    @property
    def passed(self) -> bool:
        return self.status == SelfTestStatus.PASS


@dataclass(frozen=True)
class LinkInfo:
    """The LINK tag: the board's serial link, as the board knows it (PROTOCOL.md section 8).

    >>> LinkInfo(LinkKind.UART, 115200, 256).byte_rate
    11520.0
    >>> LinkInfo(LinkKind.USB_CDC, 0, 0).byte_rate is None
    True
    """

    kind: int
    baud: int
    #: Bytes the board can receive while busy with a request; 0: no limit (flow controlled).
    rx_window: int

    @property
    def kind_name(self) -> str:
        try:
            return LinkKind(self.kind).name.lower().replace("_", "-")
        except ValueError:
            return f"unknown({self.kind})"

    @property
    def physical(self) -> bool:
        """A UART: `baud` is the physical bit rate of each direction."""
        return self.kind == LinkKind.UART and self.baud > 0

    @property
    def byte_rate(self) -> float | None:
        """Bytes per second each direction can carry (8N1), or None when not physical."""
        return self.baud / UART_BITS_PER_BYTE if self.physical else None


def encode_link(link: LinkInfo) -> bytes:
    """Value of the LINK tag: kind:u8, baud:u32, rx_window:u32."""
    return struct.pack("<BII", link.kind, link.baud, link.rx_window)


#: Longest hardware-unique device id (TS_MAX_DEVICE_ID), bytes.
MAX_DEVICE_ID = 16


@dataclass(frozen=True)
class Running:
    """Which model runs and in what state (TS_TLV_RUNNING; the first two SLOT_INFO bytes)."""

    source: int
    mode: int

    @property
    def source_name(self) -> str:
        return source_name(self.source)

    @property
    def mode_name(self) -> str:
        try:
            return RunningMode(self.mode).name.lower()
        except ValueError:
            return f"unknown({self.mode})"

    @property
    def slot(self) -> int | None:
        """Slot index (0 A, 1 B) of the running model, None for the factory model."""
        return self.source - 1 if self.source in (RunningSource.SLOT_A,
                                                   RunningSource.SLOT_B) else None

    @property
    def trial(self) -> bool:
        return self.mode == RunningMode.TRIAL

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "mode": self.mode, "source_name": self.source_name,
                "mode_name": self.mode_name}


def encode_running(running: Running) -> bytes:
    """Value of the RUNNING tag: source:u8, mode:u8."""
    return bytes([running.source, running.mode])


@dataclass
class DeviceInfo:
    """Everything HELLO returned; absent tags stay None; unknown tags kept raw."""

    protocol_version: int | None = None
    firmware_version: str | None = None
    model_version: str | None = None
    model_sha256: str | None = None
    model_crc_ok: int | None = None
    model_crc32: int | None = None
    profile: str | None = None
    board: str | None = None
    arena_used: int | None = None
    arena_size: int | None = None
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None
    input_dtype: int | None = None
    output_dtype: int | None = None
    input_scale: float | None = None
    input_zero_point: int | None = None
    output_scale: float | None = None
    output_zero_point: int | None = None
    uptime_us: int | None = None
    boot_count: int | None = None
    reset_reason: int | None = None
    self_test: SelfTest | None = None
    max_payload: int | None = None
    git_commit: str | None = None
    build_time: str | None = None
    input_size: int | None = None
    output_size: int | None = None
    #: Output in target units: target_mean + target_scale * (q - zero_point) * scale.
    #: None from firmware older than these tags (its results% has no target units).
    target_mean: float | None = None
    target_scale: float | None = None
    #: The serial link (kind, baud, receive window); None from firmware that does not say.
    link: LinkInfo | None = None
    #: Hardware-unique id, lowercase hex (None: the board cannot tell, or protocol 1).
    device_id: str | None = None
    #: Which model runs: None on boards without model slots (the factory model, confirmed).
    running: Running | None = None
    #: Image bytes one model slot holds (None without model slots).
    slot_capacity: int | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    @property
    def has_slots(self) -> bool:
        """The board reports model slots (protocol 2 firmware built with a flash HAL)."""
        return self.running is not None or self.slot_capacity is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unknown"] = {f"0x{k:02X}": v.hex() for k, v in self.unknown.items()}
        if self.self_test is not None:
            d["self_test"]["status_name"] = self.self_test.status_name
        if self.model_crc_ok is not None:
            d["model_crc_check"] = (CrcCheck(self.model_crc_ok).name.lower()
                                    if self.model_crc_ok in (0, 1, 2) else "?")
        if self.reset_reason is not None and self.reset_reason < len(RESET_REASONS):
            d["reset_reason_name"] = RESET_REASONS[self.reset_reason]
        if self.link is not None:
            d["link"]["kind_name"] = self.link.kind_name
        if self.running is not None:
            d["running"] = self.running.to_dict()
        return d


_SCALAR = {"u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q", "i32": "<i", "f32": "<f"}


def _tlv_value(kind: str, value: bytes) -> Any:
    if kind == "str":
        return value.decode("utf-8", errors="replace")
    if kind == "i32[]":
        if len(value) % 4:
            raise ProtocolError(f"shape TLV of {len(value)} bytes is not a multiple of 4")
        return list(struct.unpack(f"<{len(value) // 4}i", value))
    if kind == "selftest":
        if len(value) != 6:
            raise ProtocolError(f"self-test TLV of {len(value)} bytes, expected 6")
        return SelfTest(*struct.unpack("<BHHB", value))
    if kind == "link":
        if len(value) != 9:
            raise ProtocolError(f"link TLV of {len(value)} bytes, expected 9")
        return LinkInfo(*struct.unpack("<BII", value))
    if kind == "bytes":  # the device id, kept as lowercase hex
        if not 1 <= len(value) <= MAX_DEVICE_ID:
            raise ProtocolError(f"device id TLV of {len(value)} bytes, expected 1..{MAX_DEVICE_ID}")
        return value.hex()
    if kind == "running":
        if len(value) != 2:
            raise ProtocolError(f"running TLV of {len(value)} bytes, expected 2")
        return Running(value[0], value[1])
    fmt = _SCALAR[kind]
    if len(value) != struct.calcsize(fmt):
        raise ProtocolError(f"{kind} TLV of {len(value)} bytes")
    return struct.unpack(fmt, value)[0]


def parse_info(payload: bytes) -> DeviceInfo:
    """Parse the HELLO INFO record; unknown tags are skipped (kept in `unknown`)."""
    info = DeviceInfo()
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise ProtocolError(f"INFO record truncated at offset {i}")
        tag, length = payload[i], payload[i + 1]
        value = payload[i + 2 : i + 2 + length]
        if len(value) != length:
            raise ProtocolError(f"INFO TLV 0x{tag:02X} runs past the record")
        i += 2 + length
        try:
            t = Tag(tag)
        except ValueError:
            info.unknown[tag] = bytes(value)
            continue
        try:
            setattr(info, t.name.lower(), _tlv_value(TAG_TYPES[t], bytes(value)))
        except ProtocolError as e:
            raise ProtocolError(f"INFO tag {t.name}: {e}") from None
    return info


def encode_info(items: list[tuple[int, bytes]]) -> bytes:
    """Build an INFO record from (tag, raw value) pairs (for tests and fakes)."""
    return b"".join(bytes([t, len(v)]) + v for t, v in items)


@dataclass
class Stats:
    inference_count: int
    latency_min_us: int
    latency_mean_us: int
    latency_max_us: int
    frames_ok: int
    errors: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_stats(payload: bytes) -> Stats:
    if len(payload) < 21:
        raise ProtocolError(f"STATS reply of {len(payload)} bytes (need at least 21)")
    count, lmin, lmean, lmax, ok, n = struct.unpack_from("<IIIIIB", payload)
    if len(payload) < 21 + 4 * n:
        raise ProtocolError(f"STATS reply announces {n} counters but has {len(payload)} bytes")
    counters = struct.unpack_from(f"<{n}I", payload, 21)
    errors = {status_name(code): v for code, v in enumerate(counters) if code > 0 and v}
    return Stats(count, lmin, lmean, lmax, ok, errors)


# --- model slots (section 9) ------------------------------------------------------------

#: SLOT_WRITE chunks start at a multiple of this (TS_SLOT_CHUNK_ALIGN, ts_flash.h).
SLOT_CHUNK_ALIGN = 256
#: Largest data bytes of one SLOT_WRITE (TS_SLOT_MAX_CHUNK): offset + data fit one payload.
SLOT_MAX_CHUNK = 768
#: "No slot" in SLOT_INFO's install-slot byte.
SLOT_NONE = 0xFF
SLOT_RECORD_SIZE = 68
#: SLOT_INFO bytes before the profile string (fixed part and both slot records).
SLOT_INFO_FIXED = 180

_SLOT_HEAD = struct.Struct("<BBBBIIHHIIIIIII")
_SLOT_RECORD = struct.Struct("<BBBBBBBBIII32s16s")
assert _SLOT_HEAD.size + 2 * _SLOT_RECORD.size == SLOT_INFO_FIXED
assert _SLOT_RECORD.size == SLOT_RECORD_SIZE


class SlotState(IntEnum):
    """A slot's class in SLOT_INFO (`ts_slot_class`, plus EMPTY: erased, and TRIAL: the
    slot running now as a trial, whose flags alone read FAILED)."""

    INVALID = 0
    REVOKED = 1
    PENDING = 2
    FAILED = 3
    CONFIRMED = 4
    EMPTY = 5
    TRIAL = 6


class FlagState(IntEnum):
    """A trailer flag or commit marker as read back (firmware/SLOTS.md "Trailer")."""

    UNSET = 0
    SET = 1
    BAD = 2


def _enum_name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name.lower()
    except ValueError:
        return f"unknown({value})"


@dataclass(frozen=True)
class SlotRecord:
    """One slot as SLOT_INFO reports it; the header fields are zero when it does not parse."""

    state: int
    commit: int
    tried: int
    confirmed: int
    revoked: int
    crc_ok: bool
    #: 0 ok, else the `ts_slot_image_status` (slot_image.SlotImageStatus) that refused it.
    header_status: int
    sequence: int = 0
    model_bytes: int = 0
    model_crc32: int = 0
    #: Lowercase hex of the raw 32 bytes.
    model_sha256: str = "00" * 32
    model_version: str = ""

    @property
    def state_name(self) -> str:
        return _enum_name(SlotState, self.state)

    @property
    def has_image(self) -> bool:
        """A header parsed (the fields below `header_status` mean something)."""
        return self.header_status == 0 and self.state != SlotState.EMPTY

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state_name"] = self.state_name
        for k in ("commit", "tried", "confirmed", "revoked"):
            d[f"{k}_name"] = _enum_name(FlagState, getattr(self, k))
        if self.header_status:
            from tinyship.device.slot_image import SlotImageStatus

            d["header_status_name"] = _enum_name(SlotImageStatus, self.header_status)
        return d


@dataclass(frozen=True)
class FlashGeometry:
    """The slots' flash as SLOT_INFO reports it: what a host needs to size and pace writes."""

    #: Image bytes (header + model) one slot holds.
    slot_capacity: int
    sector_bytes: int
    program_unit: int
    #: Largest SLOT_WRITE data (768).
    max_chunk: int
    #: Nominal erase time of one sector, µs (0: unknown).
    erase_sector_us: int
    #: Nominal time to program one `SLOT_MAX_CHUNK`-byte chunk, µs (0: unknown).
    program_chunk_us: int

    def sectors_for(self, image_len: int) -> int:
        """Sectors SLOT_BEGIN erases for an image: the ones it covers plus the trailer."""
        return -(-image_len // max(1, self.sector_bytes)) + 1


@dataclass(frozen=True)
class FirmwareCaps:
    """What the firmware can run (SLOT_INFO): the limits a slot image is checked against."""

    arena_bytes: int
    input_bytes: int
    output_bytes: int
    profile: str
    #: Operator ids (TFLite BuiltinOperator numbers) the op resolver registers.
    ops: tuple[int, ...]


@dataclass(frozen=True)
class SlotInfo:
    """The SLOT_INFO response (PROTOCOL.md section 9)."""

    running: Running
    install_in_progress: bool
    #: Slot index being installed (0 A, 1 B), None when no install is in progress.
    install_slot: int | None
    install_image_len: int
    install_next: int
    geometry: FlashGeometry
    firmware: FirmwareCaps
    slots: tuple[SlotRecord, SlotRecord]

    @property
    def next_sequence(self) -> int:
        """The sequence number a new image takes: above every slot's (SLOT_BEGIN refuses
        one that is not newer than every committed slot's)."""
        return max(r.sequence for r in self.slots) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running.to_dict(),
            "install": {"in_progress": self.install_in_progress,
                        "slot": None if self.install_slot is None
                        else slot_letter(self.install_slot),
                        "image_len": self.install_image_len, "next": self.install_next},
            "geometry": asdict(self.geometry),
            "firmware": {**asdict(self.firmware), "ops": list(self.firmware.ops)},
            "slots": {slot_letter(i): r.to_dict() for i, r in enumerate(self.slots)},
            "next_sequence": self.next_sequence,
        }


def _parse_slot_record(raw: bytes) -> SlotRecord:
    (state, commit, tried, confirmed, revoked, crc_ok, status, _pad, seq, nbytes, crc, sha,
     version) = _SLOT_RECORD.unpack(raw)
    return SlotRecord(state, commit, tried, confirmed, revoked, bool(crc_ok), status, seq,
                      nbytes, crc, sha.hex(), version.rstrip(b"\0").decode("ascii", "replace"))


def encode_slot_record(r: SlotRecord) -> bytes:
    """A 68-byte slot record (for tests and fakes)."""
    return _SLOT_RECORD.pack(r.state, r.commit, r.tried, r.confirmed, r.revoked, int(r.crc_ok),
                             r.header_status, 0, r.sequence, r.model_bytes, r.model_crc32,
                             bytes.fromhex(r.model_sha256), r.model_version.encode("ascii"))


def parse_slot_info(payload: bytes) -> SlotInfo:
    """SLOT_INFO response -> SlotInfo; ProtocolError unless it is exactly
    `180 + 1 + P + 1 + 2n` bytes."""
    if len(payload) < SLOT_INFO_FIXED + 2:
        raise ProtocolError(f"SLOT_INFO reply of {len(payload)} bytes (need at least "
                            f"{SLOT_INFO_FIXED + 2})")
    (src, mode, busy, islot, cap, sector, unit, chunk, erase_us, prog_us, ilen, inext, arena,
     in_b, out_b) = _SLOT_HEAD.unpack_from(payload)
    a = _parse_slot_record(payload[44:112])
    b = _parse_slot_record(payload[112:180])
    plen = payload[SLOT_INFO_FIXED]
    at = SLOT_INFO_FIXED + 1 + plen
    if at >= len(payload):
        raise ProtocolError(f"SLOT_INFO profile of {plen} bytes runs past the reply")
    n = payload[at]
    if len(payload) != at + 1 + 2 * n:
        raise ProtocolError(f"SLOT_INFO reply with a {plen}-byte profile and {n} operators "
                            f"has {len(payload)} bytes, expected {at + 1 + 2 * n}")
    profile = payload[SLOT_INFO_FIXED + 1:at].decode("ascii", "replace")
    ops = struct.unpack_from(f"<{n}H", payload, at + 1)
    return SlotInfo(
        running=Running(src, mode), install_in_progress=bool(busy),
        install_slot=None if islot == SLOT_NONE else islot, install_image_len=ilen,
        install_next=inext,
        geometry=FlashGeometry(cap, sector, unit, chunk, erase_us, prog_us),
        firmware=FirmwareCaps(arena, in_b, out_b, profile, tuple(ops)), slots=(a, b))


def encode_slot_info(info: SlotInfo) -> bytes:
    """A SLOT_INFO response (for tests and fakes); inverse of `parse_slot_info`."""
    g, f = info.geometry, info.firmware
    head = _SLOT_HEAD.pack(
        info.running.source, info.running.mode, int(info.install_in_progress),
        SLOT_NONE if info.install_slot is None else info.install_slot, g.slot_capacity,
        g.sector_bytes, g.program_unit, g.max_chunk, g.erase_sector_us, g.program_chunk_us,
        info.install_image_len, info.install_next, f.arena_bytes, f.input_bytes, f.output_bytes)
    profile = f.profile.encode("ascii")
    return (head + b"".join(encode_slot_record(r) for r in info.slots)
            + bytes([len(profile)]) + profile + bytes([len(f.ops)])
            + struct.pack(f"<{len(f.ops)}H", *f.ops))


def _exact(payload: bytes, size: int, what: str) -> bytes:
    if len(payload) != size:
        raise ProtocolError(f"{what} reply of {len(payload)} bytes, expected {size}")
    return payload


def _slot_index(index: int, what: str) -> int:
    if index not in (0, 1):
        raise ProtocolError(f"{what} names slot {index}, expected 0 (A) or 1 (B)")
    return index


def _slot_source(source: int, what: str) -> int:
    if source not in (RunningSource.SLOT_A, RunningSource.SLOT_B):
        raise ProtocolError(f"{what} names model source {source}, expected 1 (A) or 2 (B)")
    return source


@dataclass(frozen=True)
class SlotBegun:
    """SLOT_BEGIN response: the slot the board erased for the image, and its length."""

    slot: int
    image_len: int


def encode_slot_begin(header: bytes) -> bytes:
    """SLOT_BEGIN payload: the image header, or its first MAX_PAYLOAD bytes when longer."""
    if not 0 < len(header) <= MAX_PAYLOAD:
        raise ValueError(f"a SLOT_BEGIN payload of {len(header)} bytes (1..{MAX_PAYLOAD}): "
                         "pass the header's first min(header length, 1024) bytes")
    return bytes(header)


def parse_slot_begin_reply(payload: bytes) -> SlotBegun:
    slot, length = struct.unpack("<BI", _exact(payload, 5, "SLOT_BEGIN"))
    return SlotBegun(_slot_index(slot, "SLOT_BEGIN"), length)


def encode_slot_begin_reply(r: SlotBegun) -> bytes:
    return struct.pack("<BI", r.slot, r.image_len)


def encode_slot_write(offset: int, data: bytes) -> bytes:
    """SLOT_WRITE payload: offset:u32 then 1..768 data bytes, offset a multiple of 256."""
    if offset % SLOT_CHUNK_ALIGN or not 0 <= offset <= 0xFFFFFFFF:
        raise ValueError(f"SLOT_WRITE offset {offset} is not a multiple of {SLOT_CHUNK_ALIGN}")
    if not 1 <= len(data) <= SLOT_MAX_CHUNK:
        raise ValueError(f"SLOT_WRITE of {len(data)} bytes (1..{SLOT_MAX_CHUNK})")
    return struct.pack("<I", offset) + bytes(data)


def parse_slot_write(payload: bytes) -> tuple[int, bytes]:
    """SLOT_WRITE payload -> (offset, data) (for tests and fakes)."""
    if len(payload) < 5:
        raise ProtocolError(f"SLOT_WRITE of {len(payload)} bytes (need at least 5)")
    return struct.unpack_from("<I", payload)[0], bytes(payload[4:])


def parse_slot_write_reply(payload: bytes) -> int:
    """SLOT_WRITE response: `next`, the image bytes written from offset 0 on."""
    (nxt,) = struct.unpack("<I", _exact(payload, 4, "SLOT_WRITE"))
    return int(nxt)


def encode_slot_write_reply(nxt: int) -> bytes:
    return struct.pack("<I", nxt)


@dataclass(frozen=True)
class SlotEnded:
    """SLOT_END response: the slot now pending, and its image's sequence number."""

    slot: int
    sequence: int


def parse_slot_end_reply(payload: bytes) -> SlotEnded:
    slot, seq = struct.unpack("<BI", _exact(payload, 5, "SLOT_END"))
    return SlotEnded(_slot_index(slot, "SLOT_END"), seq)


def encode_slot_end_reply(r: SlotEnded) -> bytes:
    return struct.pack("<BI", r.slot, r.sequence)


def parse_empty_reply(payload: bytes) -> None:
    """REBOOT (and RESET_STATS) answer with an empty payload."""
    _exact(payload, 0, "empty")


def parse_slot_confirm_reply(payload: bytes) -> int:
    """SLOT_CONFIRM response: the running (now confirmed) model, 1 slot A or 2 slot B."""
    return _slot_source(_exact(payload, 1, "SLOT_CONFIRM")[0], "SLOT_CONFIRM")


def encode_slot_confirm_reply(source: int) -> bytes:
    return bytes([source])


@dataclass(frozen=True)
class SlotReverted:
    """SLOT_REVERT response: the revoked model (1 A, 2 B) and whether the board resets now."""

    reverted: int
    rebooting: bool


def parse_slot_revert_reply(payload: bytes) -> SlotReverted:
    reverted, rebooting = _exact(payload, 2, "SLOT_REVERT")
    return SlotReverted(_slot_source(reverted, "SLOT_REVERT"), bool(rebooting))


def encode_slot_revert_reply(r: SlotReverted) -> bytes:
    return bytes([r.reverted, int(r.rebooting)])


# --- stream reader ------------------------------------------------------------------------


def _printable(line: bytes) -> bool:
    return all(32 <= b < 127 or b == 9 for b in line)


class FrameReader:
    """Split a byte stream on 0x00 into frames; keep only those passing COBS and CRC.

    Chunks that do not decode are text (banner, `info` output) or garbage; their
    printable lines are collected in `lines`. Counters say what was dropped.
    """

    #: Drop a chunk without a delimiter once it is this long (garbage, runaway text).
    MAX_PENDING = 4 * MAX_WIRE_FRAME

    def __init__(self) -> None:
        self._pending = bytearray()
        self.lines: list[str] = []
        self.frames_ok = 0
        self.bad_frames = 0
        self.damaged_frames = 0
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            z = data.find(0, start)
            if z < 0:
                self._pending += data[start:]
                if len(self._pending) > self.MAX_PENDING:
                    self.dropped_bytes += len(self._pending)
                    self._pending.clear()
                return frames
            self._pending += data[start:z]
            start = z + 1
            chunk = bytes(self._pending)
            self._pending.clear()
            if chunk:
                frame = self._decode(chunk)
                if frame is not None:
                    frames.append(frame)

    def _decode(self, chunk: bytes) -> Frame | None:
        try:
            frame = decode_frame(chunk)
        except FrameError as e:
            if e.status in (Status.BAD_CRC, Status.BAD_LENGTH) and len(chunk) >= HEADER_SIZE:
                # COBS-valid but failing CRC: a real frame damaged on the way
                self.damaged_frames += 1
            self._take_text(chunk)
            return None
        self.frames_ok += 1
        return frame

    def _take_text(self, chunk: bytes) -> None:
        parts = [p for p in chunk.replace(b"\r", b"\n").split(b"\n") if p]
        if not parts:
            return  # a bare line ending before a frame
        if all(_printable(p) for p in parts):
            self.lines += [p.decode("ascii") for p in parts]
        else:
            self.bad_frames += 1
            self.dropped_bytes += len(chunk)

    def pop_lines(self) -> list[str]:
        """Text lines completed by a 0x00 so far (safe while frames are in flight)."""
        out, self.lines = self.lines, []
        return out

    def take_lines(self) -> list[str]:
        """Like `pop_lines`, plus printable lines still pending (no 0x00 after them yet),
        e.g. a boot banner. Pending bytes that are not plain text are left alone."""
        cut = max(self._pending.rfind(b"\n"), self._pending.rfind(b"\r")) + 1
        head = bytes(self._pending[:cut])
        parts = [p for p in head.replace(b"\r", b"\n").split(b"\n") if p]
        if cut and all(_printable(p) for p in parts):
            del self._pending[:cut]
            self.lines += [p.decode("ascii") for p in parts]
        return self.pop_lines()

    def reset(self) -> None:
        self._pending.clear()
        self.lines.clear()
