"""Serial transport: open any pyserial URL, wait for the board with deadlines, find it again.

`/dev/ttyACM0`, `COM5`, `socket://host:port`, `rfc2217://host:port` and `loop://` all go
through `serial.serial_for_url(url, do_not_open=True)`; DTR/RTS are set before opening
(opening toggles DTR and resets most Arduino boards). Nothing here sleeps a fixed time:
every wait is a `Timeout`, and a dead or vanished port is a `DeviceError` naming the port.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tinyship.errors import DeviceError, DeviceTimeout

#: Default line rate (ignored by USB CDC and sockets, which run as fast as they can).
DEFAULT_BAUD = 115_200
#: Largest read from a socket:// port in one call.
SOCKET_CHUNK = 65_536
#: How long one `read` call may block; short, so deadlines stay accurate.
READ_POLL_S = 0.01
#: A write that cannot complete in this long means the port is stuck.
WRITE_TIMEOUT_S = 5.0
#: Waiting for the `tinyship ready` banner after opening (a reset board boots in < 2 s).
BANNER_TIMEOUT_S = 3.0
#: After a USB re-enumeration, how long to look for the board under a new name.
REENUMERATION_TIMEOUT_S = 10.0
#: Pause between two scans of the port list while waiting for re-enumeration.
REENUMERATION_POLL_S = 0.25


class Clock(Protocol):
    def __call__(self) -> float: ...


class Timeout:
    """A deadline (pyOCD `Timeout` style), testable with a fake clock.

    >>> t = iter([0.0, 0.0, 0.4, 1.2]); d = Timeout(1.0, clock=lambda: next(t))
    >>> (d.expired, d.expired, d.expired)
    (False, False, True)
    """

    def __init__(self, timeout_s: float | None, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._clock = clock
        self.timeout_s = timeout_s
        self.start = clock()

    @property
    def expired(self) -> bool:
        return self.timeout_s is not None and self._clock() - self.start >= self.timeout_s

    def remaining(self) -> float:
        """Seconds left (never negative); infinity without a timeout."""
        if self.timeout_s is None:
            return float("inf")
        return max(0.0, self.timeout_s - (self._clock() - self.start))

    def elapsed(self) -> float:
        return self._clock() - self.start

    def restart(self) -> None:
        self.start = self._clock()


#: Another name for the same thing, as the brief and esptool call it.
Deadline = Timeout


@dataclass(frozen=True)
class PortIdentity:
    """What identifies a USB serial board across re-enumeration."""

    vid: int
    pid: int
    serial_number: str | None = None

    def matches(self, info: Any) -> bool:
        return (getattr(info, "vid", None) == self.vid and getattr(info, "pid", None) == self.pid
                and (self.serial_number is None
                     or getattr(info, "serial_number", None) == self.serial_number))


def _comports() -> Iterable[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def identify_port(port: str, *, lister: Callable[[], Iterable[Any]] = _comports
                  ) -> PortIdentity | None:
    """VID/PID/serial number of a local port name, or None (URL, or not a USB port)."""
    if "://" in port:
        return None
    for info in lister():
        if info.device == port and getattr(info, "vid", None) is not None:
            return PortIdentity(info.vid, info.pid, getattr(info, "serial_number", None))
    return None


def find_port(identity: PortIdentity, *, lister: Callable[[], Iterable[Any]] = _comports
              ) -> str | None:
    """Current name of the port with this identity, or None if it is not plugged in."""
    for info in lister():
        if identity.matches(info):
            return str(info.device)
    return None


def _is_plain_socket(port: Any) -> bool:
    """A `socket://` port (pyserial's `protocol_socket`), whose socket tinyship may use."""
    return type(port).__module__.endswith(".protocol_socket")


def _is_rfc2217(port: Any) -> bool:
    return type(port).__module__ == "serial.rfc2217"


def _default_factory(url: str, **kwargs: Any) -> Any:
    import serial

    return serial.serial_for_url(url, **kwargs)


class Transport:
    """One serial connection to a board. Raises `DeviceError` (naming the port) on failure."""

    def __init__(
        self,
        url: str,
        *,
        baud: int = DEFAULT_BAUD,
        dtr: bool | None = True,
        rts: bool | None = False,
        serial_factory: Callable[..., Any] = _default_factory,
        lister: Callable[[], Iterable[Any]] = _comports,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.baud = baud
        self.dtr = dtr
        self.rts = rts
        self._factory = serial_factory
        self._lister = lister
        self._clock = clock
        self._sleep = sleep
        self._port: Any = None
        self.identity: PortIdentity | None = None
        self.opens = 0
        self.bytes_tx = 0
        self.bytes_rx = 0
        self._line_buf = bytearray()

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        import serial

        try:
            port = self._factory(self.url, do_not_open=True)
            if self.baud > 0:
                port.baudrate = self.baud
            port.timeout = READ_POLL_S
            if not _is_rfc2217(port):  # pyserial's RFC 2217 client refuses write_timeout
                port.write_timeout = WRITE_TIMEOUT_S
            if self.dtr is not None:
                port.dtr = self.dtr
            if self.rts is not None:
                port.rts = self.rts
            port.open()
        except (serial.SerialException, OSError, ValueError) as e:
            raise DeviceError(f"cannot open serial port {self.url}: {e}") from None
        self._port = port
        self._line_buf.clear()
        self.opens += 1
        if self.identity is None:
            try:
                self.identity = identify_port(self.url, lister=self._lister)
            except Exception:  # port listing is best effort
                self.identity = None

    def close(self, *, quick: bool = False) -> None:
        """Close the port. pyserial's `socket://` close then sleeps 0.3 s ("in case of quick
        reconnects, give the server some time"); `quick` closes the socket without that
        pause, for a command whose process ends next (`device info`)."""
        port, self._port = self._port, None
        if port is not None:
            # closing a dead port must not mask the error that brought us here
            with contextlib.suppress(Exception):
                sock = getattr(port, "_socket", None) if quick and _is_plain_socket(port) \
                    else None
                if sock is not None:
                    sock.close()
                    port._socket = None
                    port.is_open = False
                port.close()

    def reopen(self, *, timeout_s: float = REENUMERATION_TIMEOUT_S) -> None:
        """Close and open again; if the port name vanished (USB re-enumeration), look for
        the same VID/PID/serial number under a new name until `timeout_s`."""
        self.close()
        deadline = Timeout(timeout_s, clock=self._clock)
        last: DeviceError | None = None
        while True:
            if self.identity is not None:
                name = find_port(self.identity, lister=self._lister)
                if name is not None:
                    self.url = name
            try:
                self.open()
                return
            except DeviceError as e:
                last = e
            if deadline.expired or self.identity is None:
                break
            self._sleep(min(REENUMERATION_POLL_S, deadline.remaining()))
        ident = (f" (USB {self.identity.vid:04x}:{self.identity.pid:04x}"
                 f" serial {self.identity.serial_number})" if self.identity else "")
        raise DeviceError(f"serial port {self.url}{ident} did not come back: {last}")

    def __enter__(self) -> Transport:
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- I/O ----------------------------------------------------------------------------

    def _require(self) -> Any:
        if self._port is None:
            raise DeviceError(f"serial port {self.url} is not open")
        return self._port

    def write(self, data: bytes) -> None:
        import serial

        port = self._require()
        try:
            port.write(data)
        except serial.SerialTimeoutException:
            raise DeviceTimeout(
                f"writing to {self.url} blocked for more than {WRITE_TIMEOUT_S} s") from None
        except (serial.SerialException, OSError) as e:
            self.close()
            raise DeviceError(f"serial port {self.url} failed while writing: {e}") from None
        self.bytes_tx += len(data)

    def read(self) -> bytes:
        """Whatever has arrived, waiting at most READ_POLL_S for the first byte."""
        import serial

        port = self._require()
        # only a plain socket:// port: an rfc2217:// port's socket belongs to its reader thread
        sock = getattr(port, "_socket", None) if _is_plain_socket(port) else None
        try:
            if sock is not None:
                # socket:// reports in_waiting as 0/1, so read(in_waiting) would cost a
                # system call per byte; take what the socket has in one go instead.
                ready, _, _ = select.select([sock], [], [], READ_POLL_S)
                data = sock.recv(SOCKET_CHUNK) if ready else b""
                if ready and not data:
                    raise serial.SerialException("connection closed by the other side")
            else:
                waiting = port.in_waiting
                data = bytes(port.read(max(1, waiting)))
        except (serial.SerialException, OSError, TypeError, AttributeError) as e:
            # pyserial raises TypeError/AttributeError from some drivers when the device
            # vanished under an open handle; all of them mean the port is gone.
            self.close()
            raise DeviceError(f"serial port {self.url} failed while reading: {e}") from None
        self.bytes_rx += len(data)
        return data

    def read_until_line(self, predicate: Callable[[str], bool], timeout_s: float,
                        *, on_byte: Callable[[bytes], None] | None = None) -> str | None:
        """Read text lines until one satisfies `predicate` or the deadline passes (None).
        Lines may end with \\n or \\r; a 0x00 ends a line too (binary frames are skipped)."""
        deadline = Timeout(timeout_s, clock=self._clock)
        buf = self._line_buf  # bytes after a returned line stay for the next call
        while True:
            while True:
                cut = next((i for i, b in enumerate(buf) if b in (0x0A, 0x0D, 0x00)), -1)
                if cut < 0:
                    break
                line = bytes(buf[:cut]).decode("ascii", errors="replace").strip()
                del buf[: cut + 1]
                if line and predicate(line):
                    return line
            if deadline.expired:
                return None
            data = self.read()
            if on_byte is not None and data:
                on_byte(data)
            buf += data

    def drain(self) -> bytes:
        """Everything already waiting, without blocking longer than one poll."""
        out = bytearray()
        while True:
            data = self.read()
            if not data:
                return bytes(out)
            out += data

    def wire_time_s(self, n_bytes: int) -> float:
        """Time `n_bytes` take on the wire at the configured baud (8N1 = 10 bits/byte)."""
        return n_bytes * 10 / self.baud if self.baud > 0 else 0.0
