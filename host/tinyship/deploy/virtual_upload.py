"""Upload a full firmware image to a virtual board through its ROM bootloader (issue 12):
the virtual board's counterpart of bossac / esptool, so the full image path runs in CI.

The steps, each with a deadline: open the port, send the touch
(`tinyship.device.bootloader_protocol.TOUCH`) and HELLO until the bootloader answers (the
board resets into it first), ERASE what the image needs, WRITE it in chunks, VERIFY by
reading back its CRC-32 and SHA-256 (as bossac --verify and esptool's MD5 check), BOOT.
Any failure is an `UploadError` (exit 8) naming the step and the port. The images come from
`tinyship.device.virtual.fwimage.build_virtual_image`; this module imports neither the
virtual board nor TensorFlow.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable

from tinyship.deploy.image import UploadError, UploadResult
from tinyship.device.bootloader_protocol import (
    BOOTLOADER_ID,
    HELLO_REPLY,
    REPLY_FLAG,
    TOUCH,
    U32,
    VERIFY_REPLY,
    Cmd,
    Packet,
    PacketReader,
    Status,
    encode,
)
from tinyship.device.transport import Timeout, Transport
from tinyship.errors import DeviceError

TOOL = "virtual-bootloader"
VERIFIES = "CRC-32/SHA-256 readback"
#: From the touch to the bootloader's answer (the board resets, with its boot delay).
SYNC_TIMEOUT_S = 5.0
#: HELLO is repeated this often while syncing (one sent during the reset is lost).
HELLO_EVERY_S = 0.25
#: Any reply, on top of the time its bytes take on the wire and the flash is busy.
REPLY_TIMEOUT_S = 5.0
#: Margin over the wire time of a request and its reply at the given baud rate.
WIRE_MARGIN = 3.0
#: Erase time per 4 KiB sector (nRF52840 NVMC maximum 85 ms, rounded up).
ERASE_SECTOR_S = 0.1


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"status {status}"


class _Session:
    """One conversation with the bootloader: a request out, its reply back, bounded."""

    def __init__(self, transport: Transport, baud: int, deadline: Timeout) -> None:
        self.transport = transport
        self.baud = baud
        self.deadline = deadline
        self._reader = PacketReader()

    def fail(self, step: str, why: str, hint: str | None = None) -> UploadError:
        return UploadError(f"virtual upload to {self.transport.url}: {step}: {why}", hint=hint)

    def _write(self, step: str, data: bytes) -> None:
        try:
            self.transport.write(data)
        except DeviceError as e:
            raise self.fail(step, f"the link dropped ({e})") from None

    def _read(self, step: str) -> list[Packet]:
        try:
            return self._reader.feed(self.transport.read())
        except DeviceError as e:
            raise self.fail(step, f"the link dropped ({e})") from None

    def _wait(self, seconds: float) -> Timeout:
        return Timeout(min(seconds, self.deadline.remaining()))

    def sync(self) -> tuple[int, int, str]:
        """Touch, then HELLO until the bootloader answers: (region bytes, largest WRITE
        data, its id)."""
        self._write("touch", TOUCH)
        wait = self._wait(SYNC_TIMEOUT_S)
        next_hello = 0.0
        while not wait.expired:
            if wait.elapsed() >= next_hello:
                self._write("sync", encode(Cmd.HELLO))
                next_hello = wait.elapsed() + HELLO_EVERY_S
            for p in self._read("sync"):
                if (p.cmd == Cmd.HELLO | REPLY_FLAG and p.status == Status.OK and p.intact
                        and len(p.payload) >= HELLO_REPLY.size):
                    region, max_data, _unit = HELLO_REPLY.unpack_from(p.payload)
                    ident = p.payload[HELLO_REPLY.size:].decode("ascii", errors="replace")
                    return int(region), int(max_data), ident
        raise self.fail("sync", f"no answer from a virtual bootloader within "
                                f"{wait.timeout_s:.2g} s of the touch",
                        hint="is it a tinyship virtual board (`tinyship emulator`)?")

    def request(self, step: str, cmd: Cmd, payload: bytes = b"", *,
                busy_s: float = 0.0, reply_bytes: int = 64) -> bytes:
        """Send one request and return its reply's payload; UploadError on a refusal, a
        damaged reply or silence past the step's deadline."""
        self._write(step, encode(cmd, payload))
        wire_s = (len(payload) + reply_bytes + 24) * 10 / self.baud if self.baud else 0.0
        wait = self._wait(REPLY_TIMEOUT_S + WIRE_MARGIN * wire_s + busy_s)
        while not wait.expired:
            for p in self._read(step):
                if p.cmd != cmd | REPLY_FLAG:
                    continue  # a late answer to a HELLO of the sync
                if not p.intact:
                    raise self.fail(step, "the reply arrived damaged (CRC-32 mismatch)")
                if p.status != Status.OK:
                    raise self.fail(step, f"refused ({_status_name(p.status)}): "
                                          f"{p.payload.decode('ascii', errors='replace')}")
                return p.payload
        raise self.fail(step, f"no reply within {wait.timeout_s:.2g} s")


def upload_virtual(url: str, image: bytes, *, baud: int = 115200,
                   progress: Callable[[str, int, int], None] | None = None,
                   timeout_s: float = 60.0) -> UploadResult:
    """Write `image` (a virtual firmware image) into the application region of the virtual
    board at `url` through its bootloader, verify it by readback and boot it. `progress`
    gets (step, bytes done, bytes total) at each step and after each chunk written."""
    def report(step: str, done: int = 0) -> None:
        if progress is not None:
            progress(step, done, len(image))

    started = time.monotonic()
    transport = Transport(url, baud=baud)
    session = _Session(transport, baud, Timeout(timeout_s))
    try:
        transport.open()
    except DeviceError as e:
        raise session.fail("open", str(e)) from None
    lines: list[str] = []
    try:
        report("sync")
        region, max_data, ident = session.sync()
        lines.append(f"{ident}: application region of {region} bytes")
        if ident != BOOTLOADER_ID:
            raise session.fail("sync", f"bootloader '{ident}', expected '{BOOTLOADER_ID}'")
        if not 0 < len(image) <= region:
            raise session.fail("erase", f"the image is {len(image)} bytes, the application "
                                        f"region {region}")
        report("erase")
        session.request("erase", Cmd.ERASE, U32.pack(len(image)),
                        busy_s=ERASE_SECTOR_S * -(-len(image) // 4096))
        lines.append(f"erased {len(image)} bytes")
        for off in range(0, len(image), max_data):
            chunk = image[off:off + max_data]
            session.request(f"write at 0x{off:x}", Cmd.WRITE, U32.pack(off) + chunk)
            report("write", off + len(chunk))
        lines.append(f"wrote {len(image)} bytes in chunks of {max_data}")
        report("verify")
        reply = session.request("verify", Cmd.VERIFY, U32.pack(len(image)))
        if len(reply) != VERIFY_REPLY.size:
            raise session.fail("verify", f"a reply of {len(reply)} bytes, expected "
                                         f"{VERIFY_REPLY.size}")
        got = VERIFY_REPLY.unpack(reply)
        want = (zlib.crc32(image), hashlib.sha256(image).digest())
        if got != want:
            raise session.fail("verify", f"read back CRC-32 {got[0]:08x} SHA-256 "
                                         f"{got[1].hex()[:16]}…, the image has {want[0]:08x} "
                                         f"{want[1].hex()[:16]}…")
        lines.append(f"verified: CRC-32 {want[0]:08x}, SHA-256 {want[1].hex()}")
        report("boot")
        session.request("boot", Cmd.BOOT)
        lines.append("booted")
    finally:
        transport.close(quick=True)  # the virtual board needs no pause before a reconnect
    return UploadResult("virtual", TOOL, [TOOL, "--port", url], url, 0,
                        time.monotonic() - started, lines, VERIFIES)
