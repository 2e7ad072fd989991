"""Serve a local serial port over RFC 2217 (`rfc2217://host:port`), for a rig host without
ser2net: `tinyship device serve`, and tests that reach a virtual board the way a rig does.

    with Rfc2217Bridge("/dev/ttyACM0", host="0.0.0.0", port=2217) as bridge:
        client = DeviceClient.open(bridge.url)

The Telnet and RFC 2217 negotiation (baud rate, DTR/RTS, purge) is pyserial's own
`serial.rfc2217.PortManager`, wired as in pyserial's `examples/rfc2217_server.py`, with two
differences tinyship needs:

* The serial port is opened when a client connects and closed when it leaves, as ser2net
  does, so a client reconnecting after a board reset is a port reopen on the rig: a board
  that resets when its port opens resets as it would on a local port, a hung board is
  cleared the same way, and a USB board that re-enumerated is opened again (the open is
  retried for `open_timeout_s`: keep it below the client's RFC 2217 negotiation timeout,
  3 s unless the URL says `?timeout=S`).
* Clients are served one at a time, in turn: one that connects while another is served
  waits in the listen backlog until the first leaves (tinyship closes before reconnecting;
  a client whose host vanished is dropped by TCP keepalive within a minute).

RFC 2217 has no authentication: listen on 127.0.0.1 (the default) unless the rig's network
is trusted. Background threads only; `stop()` ends them within a bound.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tinyship.device.transport import WRITE_TIMEOUT_S
from tinyship.errors import DeviceError

log = logging.getLogger(__name__)

#: How long a client's arrival may wait for its serial port to open (USB re-enumeration).
PORT_OPEN_TIMEOUT_S = 2.0
#: Pause between two attempts to open a port that is not there (yet).
PORT_OPEN_POLL_S = 0.1
#: Longest a serving thread blocks before looking at the stop flag again.
POLL_S = 0.05
#: Modem-line notifications to the client (CTS/DSR/RI/CD changes), as the pyserial example.
MODEM_POLL_S = 1.0
#: Bytes read from the network at once.
NET_CHUNK = 4096
#: Silence after which a client's host is probed (TCP keepalive); gone after 3 probes 5 s apart.
KEEPALIVE_IDLE_S = 30
#: Bound on joining a thread at `stop()` / the end of a session.
JOIN_TIMEOUT_S = 5.0
_WILDCARDS = ("", "0.0.0.0", "::")


def _open_serial(url: str, baud: int) -> Any:
    """The port behind `url`, opened with tinyship's line defaults (DTR on, RTS off: RTS
    holds an ESP32 in reset) until the client sets its own over RFC 2217."""
    import serial

    port = serial.serial_for_url(url, do_not_open=True)
    port.baudrate = baud
    port.timeout = POLL_S  # the serial -> network thread must see the stop flag
    port.write_timeout = WRITE_TIMEOUT_S  # a stuck port ends the session, not the bridge
    port.dtr = True
    port.rts = False
    port.open()
    return port


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive with short timers where the OS has them: a client host that vanished
    (crashed, unplugged) must not hold the port, and the clients waiting, for hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", 5),
                        ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class _Connection:
    """The client socket as `PortManager` wants it: a thread-safe `write` (the negotiation
    answers and the board's bytes come from two threads)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)


class Rfc2217Bridge:
    """One serial port (any pyserial URL) served over RFC 2217 on `host:port` (0: any free
    port); `url` is what a client opens. Errors opening the listener or, at `start()`, the
    port are `DeviceError`s naming it."""

    def __init__(self, serial_url: str, host: str = "127.0.0.1", port: int = 0, *,
                 baud: int = 115_200, open_timeout_s: float = PORT_OPEN_TIMEOUT_S,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.serial_url = serial_url
        self.host = host
        self.port = port
        self.baud = baud
        self.open_timeout_s = open_timeout_s
        #: Called (from the serving thread) with a line per client arriving or leaving and
        #: per serial failure; the CLI prints them, the library only logs.
        self.on_event = on_event
        #: Clients served so far (a reconnect is one more).
        self.sessions = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._client: socket.socket | None = None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`rfc2217://host:port`; a wildcard listen address gives this machine's host name,
        what another machine would open."""
        if self._listener is None:
            raise DeviceError("RFC 2217 bridge not started")
        host, port = self._listener.getsockname()[:2]
        if self.host in _WILDCARDS:
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"rfc2217://{host}:{port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Check the serial port opens (once, then closed: a board that resets on open
        resets), listen, and serve in a background thread; returns `url`."""
        if self._thread is not None:
            raise DeviceError("RFC 2217 bridge already started")
        self._open_port(timeout_s=0.0).close()
        try:
            self._listener = socket.create_server(
                (self.host, self.port), family=socket.AF_INET6 if ":" in self.host
                else socket.AF_INET, backlog=4)
        except OSError as e:
            raise DeviceError(f"cannot listen on {self.host}:{self.port}: {e}") from None
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"tinyship-rfc2217 {self.serial_url}")
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Drop the client, close the port and the listener; safe to call twice."""
        self._stop.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("RFC 2217 bridge thread did not stop within %.1f s", JOIN_TIMEOUT_S)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the bridge stops (or `timeout_s`); True when it stopped. Ctrl-C
        interrupts it, so a command can serve until then."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.running and (deadline is None or time.monotonic() < deadline):
            self._stop.wait(POLL_S * 4)
        return not self.running

    def __enter__(self) -> Rfc2217Bridge:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- serving ------------------------------------------------------------------------

    def _event(self, text: str) -> None:
        log.info("%s", text)
        if self.on_event is not None:
            try:
                self.on_event(text)
            except Exception:  # a printing callback must not end the service
                log.exception("RFC 2217 bridge event callback failed")

    def _open_port(self, timeout_s: float) -> Any:
        """The serial port, retried until `timeout_s` while it is missing; DeviceError
        naming it after that."""
        import serial

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return _open_serial(self.serial_url, self.baud)
            except (serial.SerialException, OSError, ValueError) as e:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise DeviceError(f"cannot open serial port {self.serial_url}: {e}"
                                      ) from None
            time.sleep(PORT_OPEN_POLL_S)

    def _serve(self) -> None:
        """Accept clients one at a time until stopped."""
        assert self._listener is not None
        listener = self._listener
        while not self._stop.is_set():
            ready, _, _ = select.select([listener], [], [], POLL_S)
            if not ready:
                continue
            try:
                sock, addr = listener.accept()
            except OSError:
                continue
            peer = f"{addr[0]}:{addr[1]}"
            try:
                self._session(sock, peer)
            except Exception:  # one client's failure must not end the service
                log.exception("RFC 2217 session with %s failed", peer)
            finally:
                with contextlib.suppress(OSError):
                    sock.close()

    def _session(self, sock: socket.socket, peer: str) -> None:
        """Serve one client: open the port, pump bytes both ways until either side ends."""
        try:
            port = self._open_port(self.open_timeout_s)
        except DeviceError as e:
            self._event(f"refused {peer}: {e}")
            return
        import serial.rfc2217 as rfc

        self.sessions += 1
        self._client = sock
        conn = _Connection(sock)
        alive = threading.Event()
        alive.set()
        pump = threading.Thread(target=self._serial_to_net, args=(port, conn, alive),
                                daemon=True, name=f"tinyship-rfc2217 {peer}")
        self._event(f"client {peer} connected")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(sock)
            manager = rfc.PortManager(port, conn)  # sends the server's option requests
            pump.start()
            self._net_to_serial(sock, port, manager, alive)
        except OSError as e:  # the client left during the negotiation
            log.debug("client connection ended: %s", e)
        finally:
            alive.clear()
            if pump.is_alive():
                pump.join(JOIN_TIMEOUT_S)
            self._client = None
            with contextlib.suppress(Exception):
                port.close()
            self._event(f"client {peer} disconnected")

    def _net_to_serial(self, sock: socket.socket, port: Any, manager: Any,
                       alive: threading.Event) -> None:
        """Network -> serial, through `PortManager.filter` (it answers the Telnet/RFC 2217
        requests and yields the data bytes), until the client leaves, the serial side
        fails (`alive` cleared) or the bridge stops."""
        import serial

        next_modem = time.monotonic() + MODEM_POLL_S
        while alive.is_set() and not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], POLL_S)
                if ready:
                    data = sock.recv(NET_CHUNK)
                    if not data:
                        return
                    payload = b"".join(manager.filter(data))
                    if payload:
                        port.write(payload)
                if time.monotonic() >= next_modem:
                    next_modem = time.monotonic() + MODEM_POLL_S
                    manager.check_modem_lines()
            except OSError as e:  # the client's connection (socket.error)
                log.debug("client connection ended: %s", e)
                return
            except serial.SerialException as e:
                self._event(f"serial port {self.serial_url} failed: {e}")
                return

    def _serial_to_net(self, port: Any, conn: _Connection, alive: threading.Event) -> None:
        """Serial -> network, Telnet IAC bytes doubled. A failed port ends the session (the
        client sees its connection close and reconnects, which reopens the port)."""
        import serial
        from serial.rfc2217 import IAC, IAC_DOUBLED

        try:
            while alive.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    conn.write(bytes(data).replace(IAC, IAC_DOUBLED))
        except serial.SerialException as e:
            if alive.is_set():
                self._event(f"serial port {self.serial_url} failed: {e}")
        except OSError as e:
            log.debug("client connection ended: %s", e)
        finally:
            alive.clear()
