"""The virtual board's ROM: what it boots, and its bootloader (issue 12).

On real boards tinyship uploads a full firmware image with the vendor's uploader; on the
virtual board a full image (`fwimage`) goes into an application region of simulated NOR
flash (`APP_FILE` in a caller-given state folder, like the slots' `flash.bin`) through this
bootloader, so the whole flow (touch, erase, write, readback verify, boot) runs in CI. Every
erase and program goes through the board's `PowerRail`, counted with the slot flash's, so a
power cut can hit any step of an upload.

At every boot the ROM decides (`rom_choice`), from the region and the state's record of it:

| application region                          | runs                                    |
| ------------------------------------------- | --------------------------------------- |
| erased, never touched by an upload          | the firmware the board was built with  |
| a valid image (magic, lengths, CRC, SHA)    | that image's firmware                   |
| anything else: torn, partial, or erased by  | the bootloader: one text line, then    |
| an upload that did not finish               | only the bootloader protocol           |

An erased region counts as "never uploaded" only while the state has no record of an
upload (`BoardState.app`): the bootloader records one before its first erase, so a board
whose upload was cut after the erase stays in its bootloader, as a real board whose
application was erased does, instead of quietly running the firmware it was built with.

The trap, kept on purpose: a full image replaces the firmware and its factory model only.
The model slots (`flash.bin`) are a separate region the upload never touches, and the core
gives a confirmed slot precedence over the factory model at every boot, so after a full
image upload a confirmed slot model still runs. ESP32's esptool over serial does the same
(it writes the partitions it is given and leaves the others alone); a host that means to
replace the model must revert the slots too and check what HELLO reports.

The bootloader speaks `tinyship.device.bootloader_protocol`; it is entered by the touch
(the board module intercepts it) or when no valid application is found, and left by BOOT,
which it refuses (with the reason) while the region holds nothing the ROM would run.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

from tinyship.device.bootloader_protocol import (
    BOOTLOADER_ID,
    HELLO_REPLY,
    MAX_DATA,
    REPLY_FLAG,
    U32,
    VERIFY_REPLY,
    Cmd,
    PacketReader,
    Status,
    encode,
)
from tinyship.device.virtual.flash import NorRegion
from tinyship.device.virtual.fwimage import (
    HEADER_BYTES,
    VirtualImage,
    VirtualImageError,
    image_size,
    parse_virtual_image,
)

APP_FILE = "app.bin"
#: The application region (the nRF52840's whole flash: room for any image tinyship builds).
APP_REGION_BYTES = 1024 * 1024
_ERASED_HEADER = b"\xff" * HEADER_BYTES


def banner(reason: str) -> bytes:
    """The one line the bootloader prints when it starts."""
    return f"tinyship virtual bootloader: {reason}\r\n".encode()


def read_app(region: NorRegion) -> VirtualImage:
    """The image in the application region, verified; VirtualImageError says why not."""
    size = image_size(region.nor.read(0, HEADER_BYTES))
    if size > region.nor.geometry.size:
        raise VirtualImageError(f"its header says {size} bytes, more than the "
                                f"{region.nor.geometry.size}-byte region")
    return parse_virtual_image(region.nor.read(0, size))


def rom_choice(region: NorRegion, record: dict[str, Any] | None) -> VirtualImage | None:
    """What the ROM boots (the table in the module docstring): the region's image, or None
    for the firmware the board was built with; VirtualImageError: stay in the bootloader."""
    if record is None and region.nor.read(0, HEADER_BYTES) == _ERASED_HEADER:
        return None
    return read_app(region)


class RomBootloader:
    """The bootloader protocol over the application region. Replies go to `send`; BOOT
    calls `boot` after its reply, unless `rom_choice` over the region and `record()` (the
    state's record of it) would not run anything: then BOOT is refused with the reason, and
    the host learns at once that the upload did not take. `writing` runs before every erase
    and program (the board records that an upload is under way)."""

    def __init__(self, region: NorRegion, *, send: Callable[[bytes], None],
                 boot: Callable[[], None], writing: Callable[[], None],
                 record: Callable[[], dict[str, Any] | None]) -> None:
        self.region = region
        self._send = send
        self._boot = boot
        self._writing = writing
        self._record = record
        self._reader = PacketReader()

    def feed(self, data: bytes) -> None:
        for packet in self._reader.feed(data):
            status, payload = self._handle(packet.cmd, packet.payload, packet.intact)
            self._send(encode(packet.cmd | REPLY_FLAG, payload, status))
            if packet.cmd == Cmd.BOOT and status == Status.OK:
                self._boot()
                return

    def _handle(self, cmd: int, payload: bytes, intact: bool) -> tuple[Status, bytes]:
        g = self.region.nor.geometry
        if not intact:
            return Status.BAD_CRC, b"payload CRC-32 mismatch"
        if cmd == Cmd.HELLO:
            return Status.OK, (HELLO_REPLY.pack(g.size, MAX_DATA, g.program_unit)
                               + BOOTLOADER_ID.encode())
        if cmd == Cmd.BOOT:
            try:
                rom_choice(self.region, self._record())
            except VirtualImageError as e:
                return Status.NO_APPLICATION, f"no valid application: {e}".encode()
            return Status.OK, b""
        if cmd not in (Cmd.ERASE, Cmd.WRITE, Cmd.VERIFY):
            return Status.BAD_REQUEST, f"unknown command 0x{cmd:02x}".encode()
        if len(payload) < U32.size or (cmd != Cmd.WRITE and len(payload) != U32.size):
            return Status.BAD_REQUEST, f"payload of {len(payload)} bytes".encode()
        (arg,) = U32.unpack_from(payload)
        if cmd == Cmd.VERIFY:
            if arg > g.size:
                return Status.OUT_OF_RANGE, f"{arg} bytes: the region has {g.size}".encode()
            data = self.region.nor.read(0, arg)
            return Status.OK, VERIFY_REPLY.pack(zlib.crc32(data), hashlib.sha256(data).digest())
        if cmd == Cmd.ERASE:
            if not 0 < arg <= g.size:
                return Status.OUT_OF_RANGE, f"{arg} bytes: the region has {g.size}".encode()
            end = -(-arg // g.sector_size) * g.sector_size
            return self._flash([partial(self.region.nor.erase, a)
                                for a in range(0, end, g.sector_size)])
        data = payload[U32.size:]
        if not data or len(data) > MAX_DATA:
            return Status.BAD_REQUEST, f"{len(data)} bytes of data (1..{MAX_DATA})".encode()
        data += b"\xff" * (-len(data) % g.program_unit)  # the rest of the last unit: erased
        if arg % g.program_unit or arg + len(data) > g.size:
            return Status.OUT_OF_RANGE, (f"write at 0x{arg:x}+{len(data)}: not on a "
                                         f"{g.program_unit}-byte unit inside the "
                                         f"{g.size}-byte region").encode()
        return self._flash([partial(self.region.nor.program, arg, data)])

    def _flash(self, ops: list[Callable[[], None]]) -> tuple[Status, bytes]:
        self._writing()
        for op in ops:
            error = self.region.run(op)
            if error is not None:
                return Status.FLASH_FAILED, error.encode("ascii", errors="replace")
        return Status.OK, b""
