"""The virtual board's bootloader protocol: shared by its ROM
(`tinyship.device.virtual.bootloader`) and the host's uploader
(`tinyship.deploy.virtual_upload`), so it stays standard library only and outside the
`virtual` package (whose import loads the board).

Entering it: `TOUCH` written to the port at any time resets a running application into the
bootloader (the virtual board's "1200-baud touch": a socket has no baud rate or DTR line).
It is `0x00`, a block claiming 254 bytes (`0xFF`) and 19 bytes, then `0x00`: between two
frame delimiters, a COBS body whose first block runs past its delimiter, which no valid
frame of the application protocol (firmware/PROTOCOL.md section 1) and no text line (never
`0x00`) can contain.

Packets, both directions, integers little endian:

    SYNC (A5 C3) | cmd u8 | status u8 | len u16 | hcrc u16 | payload | crc32 u32

`hcrc` is the low 16 bits of the CRC-32 of `cmd..len`, so a receiver that locks onto a
false SYNC in other traffic drops it at once instead of waiting for `len` bytes that never
come; `crc32` covers `cmd..payload`. A reply has `cmd | 0x80` and a `Status`; a refusal's
payload is an ASCII reason. The host sends one request and waits for its reply.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

TOUCH = b"\x00\xfftinyship:bootloader\x00"
SYNC = b"\xa5\xc3"
REPLY_FLAG = 0x80
#: Largest WRITE data (a sector of the boards' flash).
MAX_DATA = 4096
#: Largest payload: WRITE's offset and data.
MAX_PAYLOAD = 4 + MAX_DATA
#: What HELLO names the bootloader (and its protocol version).
BOOTLOADER_ID = "tinyship-vboot/1"

_HEADER = struct.Struct("<2sBBHH")
_CRC = struct.Struct("<I")
#: HELLO reply: application region bytes, largest WRITE data, program unit; then the id.
HELLO_REPLY = struct.Struct("<IHH")
#: ERASE and VERIFY take a length from offset 0; WRITE an offset before its data.
U32 = struct.Struct("<I")
#: VERIFY reply: CRC-32 and SHA-256 of the bytes asked for.
VERIFY_REPLY = struct.Struct("<I32s")


class Cmd(IntEnum):
    HELLO = 0x01
    ERASE = 0x02  # u32 length: erase the sectors covering region[0:length]
    WRITE = 0x03  # u32 offset + data: program (erased flash only)
    VERIFY = 0x04  # u32 length: CRC-32 and SHA-256 of region[0:length]
    BOOT = 0x05  # reply, then reset into the application (refused if there is none)


class Status(IntEnum):
    OK = 0
    BAD_CRC = 1  # the payload arrived damaged
    BAD_REQUEST = 2  # unknown command or wrong payload size
    OUT_OF_RANGE = 3  # beyond the region, or not on a program unit
    FLASH_FAILED = 4  # the chip refused (not erased) or lost power
    NO_APPLICATION = 5  # BOOT: the region holds no application the ROM would run


@dataclass(frozen=True)
class Packet:
    cmd: int
    status: int
    payload: bytes
    #: False: the header was good but the payload's CRC-32 did not match.
    intact: bool = True


def _hcrc(head: bytes) -> int:
    return zlib.crc32(head) & 0xFFFF


def encode(cmd: int, payload: bytes = b"", status: int = Status.OK) -> bytes:
    """One packet on the wire."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = bytes([cmd, status]) + len(payload).to_bytes(2, "little")
    return (_HEADER.pack(SYNC, cmd, status, len(payload), _hcrc(head)) + payload
            + _CRC.pack(zlib.crc32(head + payload)))


class PacketReader:
    """Packets out of a byte stream that may hold anything else (text, other protocols)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 0  # bytes of the packet whose header checked out, 0 while hunting

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while True:
            if not self._need:
                at = self._buf.find(SYNC)
                if at < 0:  # keep a last byte that may start a SYNC
                    del self._buf[:max(0, len(self._buf) - 1)]
                    return out
                del self._buf[:at]
                if len(self._buf) < _HEADER.size:
                    return out
                *_, n, hcrc = _HEADER.unpack_from(self._buf)
                if hcrc != _hcrc(bytes(self._buf[2:6])) or n > MAX_PAYLOAD:
                    del self._buf[:1]  # a false SYNC: hunt on from the next byte
                    continue
                self._need = _HEADER.size + n + _CRC.size
            if len(self._buf) < self._need:
                return out
            raw = bytes(self._buf[:self._need])
            del self._buf[:self._need]
            self._need = 0
            payload = raw[_HEADER.size:-_CRC.size]
            (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
            out.append(Packet(raw[2], raw[3], payload,
                              crc == zlib.crc32(raw[2:6] + payload)))
