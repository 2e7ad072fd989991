"""Bad frames get error replies and the device survives them (PING still answers)."""

from __future__ import annotations

import struct

import pytest

from tinyship.device import protocol as P
from tinyship.device.client import DeviceClient

WAIT_S = 1.0


def _errors_after(client: DeviceClient, data: bytes) -> list[P.ErrorReply]:
    client.send_raw(data)
    frames = client.read_frames(WAIT_S)
    return [P.parse_error(f.payload) for f in frames if f.is_error]


def _alive(client: DeviceClient, what: str) -> None:
    try:
        client.ping(b"still there?")
    except Exception as e:
        pytest.fail(f"the device stopped answering PING after {what}: {e}")


def _bad_crc() -> bytes:
    packet = bytearray(P.encode_packet(P.Command.PING, 7, b"crc"))
    packet[-1] ^= 0xFF
    return b"\x00" + P.cobs_encode(bytes(packet)) + b"\x00"


CASES = [
    ("corrupted CRC", _bad_crc(), P.Status.BAD_CRC),
    ("truncated packet", b"\x00" + P.cobs_encode(b"\x01\x02\x03") + b"\x00", P.Status.BAD_LENGTH),
    ("COBS overrun", b"\x00\x09\x01\x02\x00", P.Status.BAD_FRAMING),
    ("unknown command", P.encode_frame(0x42, 9), P.Status.UNKNOWN_COMMAND),
    ("INFER of wrong size", P.encode_frame(P.Command.INFER, 10, struct.pack("<H", 1) + b"\x01"),
     P.Status.WRONG_INPUT_SIZE),
    ("INFER count 0", P.encode_frame(P.Command.INFER, 11, b"\x00\x00"), P.Status.BAD_PAYLOAD),
]


@pytest.mark.parametrize(("what", "data", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_frame_gets_error_reply(client: DeviceClient, what: str, data: bytes,
                                    code: P.Status) -> None:
    errors = _errors_after(client, data)
    assert any(e.code == code for e in errors), (
        f"{what}: expected {P.status_name(code)}, got {[str(e) for e in errors] or 'nothing'}")
    _alive(client, what)


def test_garbage_then_frame(client: DeviceClient) -> None:
    client.send_raw(bytes(range(1, 200)) + b"\xff" * 50)
    _alive(client, "250 bytes of garbage")


def test_text_command_does_not_break_binary(client: DeviceClient) -> None:
    client.send_raw(b"ping\r\n")
    client.read_frames(0.3)
    _alive(client, "a text-mode command")
