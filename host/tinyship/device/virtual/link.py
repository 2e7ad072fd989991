"""The virtual board's UART: a full-duplex 8N1 link with a small receive buffer, modelled.

A board on a UART receives in an interrupt into a fixed ring buffer while its main loop is
busy, and its main loop is busy while it runs a request: the inferences (their modelled
latency), then `Serial.write` of the reply, which returns only when the bytes have left
(ArduinoCore-mbed `UART::write` blocks on `UnbufferedSerial`; arduino-esp32 with its
default `_txBufferSize(0)` returns when the last bytes are in the 128-byte FIFO). A byte
that arrives while the ring is full is lost (ArduinoCore-mbed `UART::on_rx` stores it only
`if (rx_buffer.availableForStore())`). Both Arduino cores size that ring at 256 bytes
(`RingBufferN<256> rx_buffer` in ArduinoCore-mbed `cores/arduino/Serial.h`; `_rxBufferSize
(256)` in arduino-esp32's `HardwareSerial` constructor), hence `DEFAULT_RX_BUFFER`.

`UartLink` is that, on a modelled clock (seconds, the board's `time.monotonic` base):

* host -> device: bytes the host wrote start on the wire when they are seen, or when the
  previous byte has crossed; each takes `10 / baud` s and arrives at the end of its time;
* the receive buffer holds `rx_buffer` bytes that arrived and were not yet read by the core;
  a byte arriving when it is full is lost (`LinkStats.overflow`);
* the core reads the buffer whenever it is not busy (instantly: an MCU is faster than the
  wire), one byte per `feed` call; a call that made the core run inferences (`core_busy`)
  or write (`device_wrote`) keeps it busy until the inferences' modelled latency has passed
  and its write has left the wire (all but `tx_fifo` bytes);
* device -> host: written bytes leave one per `10 / baud` s, after what is already queued.

Every event carries its modelled time, and `step(now)` processes the ones due by `now` in
time order, whenever the serving thread gets to it: a late thread delivers late but never
changes the modelled timeline, so overflow depends only on what the host sent and when, and
`LinkStats` measures the link on the modelled clock.

The modelled clock is the wall clock divided by `time_scale` (1: real time). A benchmark on
a loaded machine runs the link slower than real time (`time_scale=4`: a 115200-baud UART
takes four times longer in wall time) so that the host's scheduling delays, which are not
a property of the link, count a quarter on the modelled clock. Methods take and return wall
clock times (`time.monotonic`); `LinkStats` and `core_busy` are in modelled seconds.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tinyship.device.protocol import UART_BITS_PER_BYTE as BITS_PER_BYTE

#: Receive ring of the Arduino cores' Serial (ArduinoCore-mbed UART, arduino-esp32).
DEFAULT_RX_BUFFER = 256
#: Bytes of a write that may still be on their way when `Serial.write` returns.
DEFAULT_TX_FIFO = 0

_INF = float("inf")


@dataclass
class _TxChunk:
    """Device bytes queued on the wire: byte i leaves at `start + (i + 1) * byte_s`."""

    start: float
    data: bytearray


@dataclass
class LinkStats:
    """What crossed the modelled wire since the link was made (or since `mark`), in bytes
    and modelled seconds. `rx` is host -> device, `tx` device -> host."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    #: Host bytes lost because the receive buffer was full (the core was busy).
    overflow: int = 0
    #: Most bytes the receive buffer held at once.
    rx_buffer_peak: int = 0
    rx_first_start: float | None = None
    rx_last_end: float | None = None
    tx_first_start: float | None = None
    tx_last_end: float | None = None

    def span_s(self) -> float:
        """From the first byte starting on either wire to the last byte arriving: the
        modelled duration of the exchange."""
        starts = [t for t in (self.rx_first_start, self.tx_first_start) if t is not None]
        ends = [t for t in (self.rx_last_end, self.tx_last_end) if t is not None]
        return max(ends) - min(starts) if starts and ends else 0.0


class UartLink:
    """See the module docstring. Not thread-safe: one serving thread drives it."""

    def __init__(self, baud: int, *, rx_buffer: int = DEFAULT_RX_BUFFER,
                 tx_fifo: int = DEFAULT_TX_FIFO, time_scale: float = 1.0) -> None:
        if baud <= 0:
            raise ValueError("a UART needs baud > 0")
        if rx_buffer < 1 or tx_fifo < 0:
            raise ValueError("rx_buffer >= 1 and tx_fifo >= 0")
        if not time_scale >= 1.0:
            raise ValueError("time_scale must be >= 1 (1: real time)")
        self.baud = baud
        self.time_scale = time_scale
        self.rx_buffer = rx_buffer
        self.tx_fifo = tx_fifo
        self.byte_s = BITS_PER_BYTE / baud
        self.stats = LinkStats()
        self._rx_wire_free = -_INF         # when the host->device wire is next free
        self._pending: deque[tuple[float, int]] = deque()  # (arrival time, byte) on the wire
        self._ring: deque[tuple[float, int]] = deque()     # arrived, not yet read by the core
        self._core_free = -_INF            # the core reads again at this time
        self._tx_wire_free = -_INF
        self._tx: deque[_TxChunk] = deque()
        self._feeding = False
        self._core_now = 0.0               # the core's modelled time inside a feed
        self._overflow_taken = 0

    # --- host side ----------------------------------------------------------------------
    def host_wrote(self, data: bytes, now: float) -> None:
        """Bytes the host wrote, seen at `now`: they go on the wire after the ones before."""
        t = max(self._rx_wire_free, self._model(now))
        if self.stats.rx_first_start is None and data:
            self.stats.rx_first_start = t
        for b in data:
            t += self.byte_s
            self._pending.append((t, b))
        self._rx_wire_free = t

    # --- device side (called from inside `feed`, or at boot) ----------------------------
    def _model(self, now: float) -> float:
        return now / self.time_scale

    def core_time(self, now: float) -> float:
        """The core's modelled time: inside a feed, when the byte was read plus what the
        core has done since; otherwise `now` on the modelled clock."""
        return self._core_now if self._feeding else self._model(now)

    def core_busy(self, seconds: float) -> None:
        """The core computed for `seconds` (an inference's modelled latency)."""
        if self._feeding:
            self._core_now += seconds

    def device_wrote(self, data: bytes, now: float) -> None:
        """The core wrote `data`: it leaves after what is queued; the core is blocked until
        all but `tx_fifo` bytes have left."""
        if not data:
            return
        t0 = self.core_time(now)
        start = max(self._tx_wire_free, t0)
        self._tx_wire_free = start + len(data) * self.byte_s
        if self.stats.tx_first_start is None:
            self.stats.tx_first_start = start
        last = self._tx[-1] if self._tx else None
        if last is not None and last.start + len(last.data) * self.byte_s == start:
            last.data += data  # back to back with the queued bytes
        else:
            self._tx.append(_TxChunk(start, bytearray(data)))
        if self._feeding:
            self._core_now = max(self._core_now,
                                 self._tx_wire_free - self.tx_fifo * self.byte_s)

    def core_waits_for_tx(self) -> None:
        """The core blocks until everything written has left (a flush, `Serial.flush()`)."""
        if self._feeding:
            self._core_now = max(self._core_now, self._tx_wire_free)

    # --- driving ------------------------------------------------------------------------
    def step(self, now: float, feed: Callable[[int], None]) -> None:
        """Process arrivals and core reads due by `now`, in modelled-time order; `feed(b)`
        hands one byte to the core (which may call `core_busy` and `device_wrote`)."""
        now = self._model(now)
        while True:
            t_read = max(self._core_free, self._ring[0][0]) if self._ring else _INF
            t_arrive = self._pending[0][0] if self._pending else _INF
            if t_read <= t_arrive and t_read <= now:
                _, b = self._ring.popleft()
                self._feeding, self._core_now = True, t_read
                try:
                    feed(b)
                finally:
                    self._feeding = False
                self._core_free = self._core_now
            elif t_arrive <= now:
                t, b = self._pending.popleft()
                self.stats.rx_bytes += 1
                self.stats.rx_last_end = t
                if len(self._ring) >= self.rx_buffer:
                    self.stats.overflow += 1
                    continue
                self._ring.append((t, b))
                self.stats.rx_buffer_peak = max(self.stats.rx_buffer_peak, len(self._ring))
            else:
                return

    def take_tx(self, now: float) -> bytes:
        """Device bytes that have left the wire by `now` (to hand to the host)."""
        now = self._model(now)
        out = bytearray()
        while self._tx:
            chunk = self._tx[0]
            n = min(len(chunk.data), int((now - chunk.start) / self.byte_s + 1e-9))
            if n <= 0:
                break
            out += chunk.data[:n]
            del chunk.data[:n]
            chunk.start += n * self.byte_s
            self.stats.tx_bytes += n
            self.stats.tx_last_end = chunk.start
            if not chunk.data:
                self._tx.popleft()
        return bytes(out)

    def next_event(self) -> float | None:
        """Wall clock time of the next thing to do (None: nothing pending)."""
        times = []
        if self._ring:
            times.append(max(self._core_free, self._ring[0][0]))
        if self._pending:
            times.append(self._pending[0][0])
        if self._tx:
            times.append(self._tx[0].start + self.byte_s)
        return min(times) * self.time_scale if times else None

    def tx_idle_at(self) -> float:
        """Wall clock time at which the last byte written so far has left the wire."""
        return self._tx_wire_free * self.time_scale

    @property
    def idle(self) -> bool:
        return not (self._pending or self._ring or self._tx)

    def reset_device(self, now: float) -> int:
        """The board restarted at `now`: its receive buffer and transmitter are cleared and
        the bytes still on their way to it are lost (nobody reads the UART while it boots).
        Returns the number of host bytes lost."""
        lost = len(self._pending) + len(self._ring)
        now = self._model(now)
        self._pending.clear()
        self._ring.clear()
        self._tx.clear()
        self._rx_wire_free = min(self._rx_wire_free, now)
        self._tx_wire_free = min(self._tx_wire_free, now)
        self._core_free = now
        return lost

    def take_overflow(self) -> int:
        """Bytes lost to overflow since the last call."""
        n = self.stats.overflow - self._overflow_taken
        self._overflow_taken = self.stats.overflow
        return n

    def mark(self) -> LinkStats:
        """Start a new measurement window; returns the statistics of the one that ends."""
        old = dataclasses.replace(self.stats)
        self.stats = LinkStats()
        self._overflow_taken = 0
        return old
