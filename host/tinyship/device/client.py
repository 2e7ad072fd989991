"""Request/reply client for a tinyship board: sequence numbers, retries, pipelining.

* A reply is accepted only if it passed COBS + CRC (`FrameReader`) and its `seq` matches a
  request in flight; a late reply to a retired `seq` is ignored.
* A request whose reply is lost, corrupted or answered with a transient error (bad CRC,
  bad framing, frame timeout) is sent again with a new `seq`, at most `max_retries` times.
  The device answers in order, so a reply to a later request means every earlier request
  still in flight was lost and is resent at once, without waiting for its timeout.
* After `REOPEN_AFTER_TIMEOUTS` timeouts in a row the port is reopened (a reset that clears
  a hung board; on USB the board is found again by VID/PID/serial number).
* Every frame starts with 0x00, so the device resynchronises after garbage.
* `infer` splits a test set into batches and keeps up to `window` requests in flight, so
  throughput is bound by the link, not by round trips. On a UART the board can buffer only
  `rx_window` bytes while it is busy (INFO `TS_TLV_LINK`; more are lost): the frames sent
  after the oldest unanswered request then stay within that many bytes (PROTOCOL.md
  section 8), and batches are sized so that this window keeps the wire busy
  (`windowed_batch`). A request whose busy time on the board is known (`Request.busy_s`:
  programming a flash chunk) may also be sent behind another when the bytes that can arrive
  while the board is busy with one request (busy time x byte rate) fit in the window, even
  if its frame alone is larger: the board reads its buffer whenever it is not busy, faster
  than the wire fills it.
* A request that must not reach the board twice (`Request.resend=False`: REBOOT, SLOT_REVERT,
  which reset the board; a second one would reset or revert again) is never resent: a lost
  reply raises `ReplyLost`, and the caller finds out from the board what happened.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from tinyship.device import protocol as P
from tinyship.device.transport import BANNER_TIMEOUT_S, Timeout, Transport
from tinyship.errors import DeviceError, DeviceTimeout, ProtocolError

if TYPE_CHECKING:  # numpy is imported where INFER runs: `device info` starts without it
    import numpy as np

#: Base wait for a reply, before adding wire time for the bytes in flight.
REPLY_TIMEOUT_S = 1.0
#: Wire time is multiplied by this margin when scaling reply timeouts (esptool style).
WIRE_TIME_MARGIN = 2.0
#: Sends of one request after the first, before giving up.
MAX_RETRIES = 5
#: Requests in flight at once while streaming INFER batches.
PIPELINE_WINDOW = 3
#: Byte times allowed, when sizing batches for a receive window, for what happens between
#: a request's last byte and its reply's first: the device computing, the host reacting.
WINDOW_SLACK_BYTES = 32
#: Consecutive reply timeouts after which the port is reopened (resets a hung board).
REOPEN_AFTER_TIMEOUTS = 2
#: Failed sends of an INFER batch after which it is split in two (halving until 1 vector).
SPLIT_AFTER_ATTEMPTS = 2
#: Port reopens allowed during one streamed run (after timeouts or a vanished port).
MAX_RECONNECTS = 3
#: Silence after opening before probing with PING in case no banner comes: a USB board is
#: not reset by opening its port and answers at once. A probe sent while a board that does
#: reset is still booting may be lost, so another follows every PROBE_EVERY_S; a probe's
#: late answer (after the banner) is recognised and dropped.
PROBE_AFTER_S = 0.15
PROBE_EVERY_S = 0.5
#: Pause between attempts to open a port that vanished after a reset (USB re-enumeration).
REOPEN_POLL_S = 0.1


class DeviceReplyError(ProtocolError):
    """The device answered a request with an error frame that resending will not fix."""

    def __init__(self, message: str, error: P.ErrorReply) -> None:
        super().__init__(message)
        self.error = error


class ReplyLost(DeviceTimeout):
    """No valid reply to a request that must not be sent twice (`Request.resend=False`): the
    board may or may not have acted on it; ask it (HELLO, SLOT_INFO) before going on."""

    def __init__(self, message: str, cmd: int) -> None:
        super().__init__(message)
        self.cmd = cmd


@dataclass(frozen=True)
class Request:
    """One request for `DeviceClient.run`: what to send, how to read the reply, and what the
    engine may assume about it."""

    cmd: int
    payload: bytes
    parse: Callable[[bytes], Any]
    #: Seconds the board reads nothing while it handles this request, its reply included
    #: (flash erase or program time), if known: added to the reply timeout, and lets a
    #: request go behind another on a small receive window (module docstring).
    busy_s: float | None = None
    #: Error codes that mean "send again" for this request, besides the transient framing
    #: errors (a pipelined SLOT_WRITE whose predecessor was lost: TS_ERR_SLOT_ORDER).
    retry_codes: frozenset[int] = frozenset()
    #: False: never send twice (the request resets the board); a lost reply is `ReplyLost`.
    resend: bool = True


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    error_replies: int = 0
    bad_replies: int = 0
    stale_replies: int = 0
    reconnects: int = 0
    resets_seen: int = 0
    splits: int = 0
    max_in_flight: int = 0
    #: Most wire bytes of requests in flight behind the oldest one (kept <= rx_window, unless
    #: the requests' busy time bounds what can arrive while the board is busy).
    max_behind_bytes: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        """Everything that went wrong and was recovered from (or not)."""
        return self.timeouts + self.error_replies + self.bad_replies

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "retries": self.retries, "timeouts": self.timeouts,
                "error_replies": self.error_replies, "bad_replies": self.bad_replies,
                "stale_replies": self.stale_replies, "reconnects": self.reconnects,
                "resets_seen": self.resets_seen, "splits": self.splits,
                "max_in_flight": self.max_in_flight,
                "max_behind_bytes": self.max_behind_bytes,
                "error_codes": dict(self.error_codes)}


@dataclass
class _Job:
    index: tuple[int, ...]
    cmd: int
    payload: bytes
    parse: Callable[[bytes], Any]
    attempts: int = 0
    sent_at: float = 0.0
    first_sent_at: float = 0.0
    wire_tx: int = 0
    #: Splits the request in two smaller ones (INFER batches), or None.
    split: Callable[[_Job], list[_Job]] | None = None
    busy_s: float | None = None
    retry_codes: frozenset[int] = frozenset()
    resend: bool = True
    #: The last error reply that made the engine send it again (named when giving up).
    last_error: P.ErrorReply | None = None


@dataclass
class _Done:
    value: Any
    rtt_s: float
    wire_tx: int
    wire_rx: int


@dataclass
class InferResult:
    outputs: np.ndarray          # int8 [n, output_size]
    latencies_us: np.ndarray     # uint32 [n], device-measured
    round_trips_s: list[float]   # host send -> reply, per INFER request
    batch_sizes: list[int]
    wire_bytes: int              # bytes on the wire for the accepted exchanges, both ways
    elapsed_s: float
    #: Bytes the transport actually wrote / read while streaming (resends, noise included).
    bytes_tx: int = 0
    bytes_rx: int = 0


def windowed_batch(input_size: int, output_size: int, rx_window: int, *,
                   max_payload: int = P.MAX_PAYLOAD, max_in_flight: int = PIPELINE_WINDOW,
                   slack_bytes: int = WINDOW_SLACK_BYTES) -> int:
    """Vectors per INFER that move the most input bytes per second through a UART whose
    board buffers `rx_window` bytes while busy.

    In wire byte times (the same on both directions): a request of `c` vectors takes
    `f(c)` on the way in, its reply `r(c)` on the way out, and stays unanswered about
    `f + r + slack_bytes`. The frames sent after the oldest unanswered one must fit in
    `rx_window` (and `max_in_flight` caps them), so `k = 1 + min(rx_window // f,
    max_in_flight - 1)` are in flight; requests complete at most every `max(f, r,
    (f + r + slack) / k)`. The result maximises `c * input_size` over that, the input
    payload rate; when no request fits behind another, stop-and-wait favours the largest.

    >>> windowed_batch(8, 1, 256)   # the bundled model on a 256-byte Arduino buffer
    30
    """
    best, best_rate = 1, -1.0
    for c in range(1, _max_batch(input_size, output_size, max_payload) + 1):
        f = P.wire_frame_size(2 + c * input_size)
        r = P.wire_frame_size(2 + c * (4 + output_size))
        k = 1 + min(rx_window // f, max(0, max_in_flight - 1))
        rate = c * input_size / max(f, r, (f + r + slack_bytes) / k)
        if rate >= best_rate:
            best, best_rate = c, rate
    return best


def _max_batch(input_size: int, output_size: int, max_payload: int) -> int:
    n = P.max_batch(input_size, output_size, max_payload)
    if n < 1:
        raise ProtocolError(f"one vector ({input_size} in, {output_size} out) does not fit "
                            f"the device's {max_payload}-byte payload")
    return n


def _splitter(chunk: np.ndarray, output_size: int) -> Callable[[_Job], list[_Job]] | None:
    if len(chunk) < 2:
        return None

    def split(job: _Job) -> list[_Job]:
        half = len(chunk) // 2
        return [_Job((*job.index, i), job.cmd, P.encode_infer(part),
                     _infer_parser(output_size, len(part)), split=_splitter(part, output_size))
                for i, part in enumerate((chunk[:half], chunk[half:]))]
    return split


def _infer_parser(output_size: int, count: int) -> Callable[[bytes], Any]:
    def parse(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
        return P.parse_infer_reply(payload, output_size, expected_count=count)
    return parse


def _cmd_name(cmd: int) -> str:
    try:
        return P.Command(cmd).name
    except ValueError:
        return f"command 0x{cmd:02X}"


class DeviceClient:
    """Talks the protocol (versions 1 and 2) to one board over a `Transport`."""

    def __init__(
        self,
        transport: Transport,
        *,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        max_retries: int = MAX_RETRIES,
        window: int = PIPELINE_WINDOW,
        rx_window: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if rx_window is not None and rx_window < 0:
            raise ValueError("rx_window must be >= 0 (0: no limit)")
        self.transport = transport
        self.reply_timeout_s = reply_timeout_s
        self.max_retries = max_retries
        #: Most requests in flight at once.
        self.window = window
        self._rx_window = rx_window
        self._clock = clock
        self._reader = P.FrameReader()
        self._seq = 0
        self.counters = Counters()
        self.info: P.DeviceInfo | None = None
        self.banner: str | None = None
        #: Sequence numbers of readiness PINGs (`_wait_ready`) whose answers may come late.
        self._probes: set[int] = set()

    # --- connection ---------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, baud: int = 115_200, banner_timeout_s: float = BANNER_TIMEOUT_S,
             **kwargs: Any) -> DeviceClient:
        client = cls(Transport(url, baud=baud), **kwargs)
        client.connect(banner_timeout_s=banner_timeout_s)
        return client

    def connect(self, *, banner_timeout_s: float = BANNER_TIMEOUT_S) -> str | None:
        """Open the port and wait until the board is ready: the boot banner, or (a board
        that was not reset by opening) an answer to PING. Returns the banner, if seen."""
        if not self.transport.is_open:
            self.transport.open()
        self._reader.reset()
        self.banner = self._wait_ready(banner_timeout_s, probe_every_s=PROBE_EVERY_S)
        return self.banner

    def _wait_ready(self, timeout_s: float, *, probe_after_s: float = PROBE_AFTER_S,
                    probe_every_s: float | None = None) -> str | None:
        """The banner, or None once a PING probe is answered. The first probe goes out after
        `probe_after_s` (at most half the timeout); with `probe_every_s`, another one each
        time that passes unanswered (a probe sent while a UART board boots is lost)."""
        deadline = Timeout(timeout_s, clock=self._clock)
        probes = self._probes
        next_probe = min(probe_after_s, timeout_s / 2)
        while not deadline.expired:
            answered = False
            for frame in self._reader.feed(self.transport.read()):
                if frame.seq in probes and frame.cmd == P.Command.PING | P.RESPONSE_FLAG:
                    probes.discard(frame.seq)
                    answered = True
            # The banner first: a board that reset answers a probe sent during its boot
            # right after the banner, often in the same read; the banner must not be left
            # behind for a later reader to take for a reset.
            for line in self._reader.take_lines():
                if line.startswith(P.BANNER_PREFIX):
                    return line
            if answered:
                return None
            if deadline.elapsed() >= next_probe and (not probes or probe_every_s is not None):
                seq = self._next_seq()
                probes.add(seq)
                self.transport.write(P.encode_frame(P.Command.PING, seq, b"ready?"))
                next_probe = deadline.elapsed() + (probe_every_s or 0.0)
        raise DeviceTimeout(
            f"{self.transport.url}: no 'tinyship ready' banner and no answer to PING within "
            f"{timeout_s:g} s",
            hint="is the tinyship firmware flashed, the baud rate right and the port free?")

    def reconnect(self) -> None:
        """Reopen the port after timeouts; no banner is not fatal here: the request's own
        retries decide whether the board is gone."""
        self.counters.reconnects += 1
        self.transport.reopen()
        self._reader.reset()
        with contextlib.suppress(DeviceTimeout):
            self.banner = self._wait_ready(BANNER_TIMEOUT_S)

    def reconnect_after_reset(self, timeout_s: float, *, probe_after_s: float = 0.25,
                              probe_every_s: float = 0.5) -> str | None:
        """After a reset the host asked for (REBOOT): reopen the port, finding a USB board
        that re-enumerated under a new name, and wait for the banner or a PING answer;
        while the port keeps vanishing (re-enumeration in progress) open it again. Returns
        the banner if seen; DeviceTimeout (or the port's DeviceError) after `timeout_s`."""
        deadline = Timeout(timeout_s, clock=self._clock)
        self.counters.reconnects += 1
        while True:
            try:
                self.transport.reopen(timeout_s=max(0.1, deadline.remaining()))
                self._reader.reset()
                self.banner = self._wait_ready(max(0.1, deadline.remaining()),
                                               probe_after_s=probe_after_s,
                                               probe_every_s=probe_every_s)
                return self.banner
            except DeviceTimeout:
                raise
            except DeviceError:
                if deadline.expired:
                    raise
                time.sleep(REOPEN_POLL_S)  # the port is gone for now: re-enumeration

    def close(self, *, quick: bool = False) -> None:
        """Close the port; `quick` (for a process about to exit): see `Transport.close`."""
        self.transport.close(quick=quick)

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -----------------------------------------------------------------------

    def hello(self) -> P.DeviceInfo:
        self.info = self.request(P.Command.HELLO, b"", P.parse_info)
        return self.info

    def ping(self, payload: bytes = b"") -> float:
        """Round trip of one PING in seconds (the echo is checked)."""
        def check(reply: bytes) -> bytes:
            if reply != payload:
                raise ProtocolError(f"PING echoed {reply!r}, sent {payload!r}")
            return reply
        t0 = self._clock()
        self.request(P.Command.PING, payload, check)
        return self._clock() - t0

    def stats(self) -> P.Stats:
        result: P.Stats = self.request(P.Command.STATS, b"", P.parse_stats)
        return result

    def reset_stats(self) -> None:
        self.request(P.Command.RESET_STATS, b"", lambda b: None)

    def request(self, cmd: int, payload: bytes, parse: Callable[[bytes], Any], *,
                busy_s: float | None = None, resend: bool = True) -> Any:
        """One request with retries; returns `parse(reply payload)`."""
        return self.run([Request(int(cmd), payload, parse, busy_s=busy_s, resend=resend)])[0]

    def run(self, requests: list[Request], *, window: int | None = None,
            on_reply: Callable[[int], None] | None = None) -> list[Any]:
        """Several requests, pipelined within `window` (default: the client's) and the
        board's receive window, answered in order; returns each `parse(reply)` in request
        order. `on_reply(i)` is called when request `i` has its reply."""
        jobs = [_Job((i,), int(r.cmd), r.payload, r.parse, busy_s=r.busy_s,
                     retry_codes=r.retry_codes, resend=r.resend)
                for i, r in enumerate(requests)]

        def done(job: _Job) -> None:
            if on_reply is not None:
                on_reply(job.index[0])

        return [d.value for d in self._run(jobs, on_done=done, window=window)]

    @property
    def rx_window(self) -> int | None:
        """Bytes the frames sent after the oldest unanswered request may take (None: no
        limit): the constructor's `rx_window`, else what the device advertised in INFO."""
        if self._rx_window is not None:
            return self._rx_window or None
        link = self.info.link if self.info is not None else None
        return link.rx_window if link is not None and link.rx_window > 0 else None

    def batch_size(self) -> int:
        """Vectors per INFER: the most that fit the payload, or on a receive window the
        size that keeps the wire busiest within it (`windowed_batch`)."""
        info = self.info or self.hello()
        if not info.input_size or not info.output_size:
            raise ProtocolError("device INFO lacks input/output size")
        max_payload = info.max_payload or P.MAX_PAYLOAD
        n = _max_batch(info.input_size, info.output_size, max_payload)
        w = self.rx_window
        if w is None:
            return n
        return windowed_batch(info.input_size, info.output_size, w, max_payload=max_payload,
                              max_in_flight=self.window)

    def infer(self, x: np.ndarray, *, batch_size: int | None = None,
              on_progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """int8 inputs [n, input_size] -> (outputs int8 [n, output_size], latencies_us)."""
        r = self.infer_stream(x, batch_size=batch_size, on_progress=on_progress)
        return r.outputs, r.latencies_us

    def infer_stream(self, x: np.ndarray, *, batch_size: int | None = None,
                     on_progress: Callable[[int], None] | None = None) -> InferResult:
        import numpy as np

        info = self.info or self.hello()
        assert info.input_size is not None and info.output_size is not None
        x = np.asarray(x)
        if x.dtype != np.int8:
            raise ValueError(f"inputs must be int8, got {x.dtype}")
        x = x.reshape(len(x), -1)
        if x.shape[1] != info.input_size:
            raise ValueError(f"inputs have {x.shape[1]} values, the device expects "
                             f"{info.input_size}")
        bs = min(batch_size or self.batch_size(), self.batch_size())
        out_size = info.output_size
        jobs = []
        for k, start in enumerate(range(0, len(x), bs)):
            chunk = x[start : start + bs]
            n = len(chunk)
            jobs.append(_Job((k,), P.Command.INFER, P.encode_infer(chunk),
                             _infer_parser(out_size, n), split=_splitter(chunk, out_size)))
        done_vectors = 0

        def progress(job: _Job) -> None:
            nonlocal done_vectors
            done_vectors += int.from_bytes(job.payload[:2], "little")
            if on_progress is not None:
                on_progress(done_vectors)

        tx0, rx0 = self.transport.bytes_tx, self.transport.bytes_rx
        t0 = self._clock()
        results = self._run(jobs, on_done=progress)
        elapsed = self._clock() - t0
        moved = {"bytes_tx": self.transport.bytes_tx - tx0,
                 "bytes_rx": self.transport.bytes_rx - rx0}
        if not results:
            return InferResult(np.zeros((0, out_size), np.int8), np.zeros(0, np.uint32), [],
                               [], 0, elapsed, **moved)
        return InferResult(
            outputs=np.concatenate([r.value[0] for r in results]),
            latencies_us=np.concatenate([r.value[1] for r in results]),
            round_trips_s=[r.rtt_s for r in results],
            batch_sizes=[len(r.value[1]) for r in results],
            wire_bytes=sum(r.wire_tx + r.wire_rx for r in results),
            elapsed_s=elapsed,
            **moved,
        )

    # --- raw access (tests, error-handling checks) ----------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.transport.write(data)

    def read_frames(self, timeout_s: float) -> list[P.Frame]:
        """Frames arriving within `timeout_s` (for tests that send raw bytes)."""
        deadline = Timeout(timeout_s, clock=self._clock)
        frames: list[P.Frame] = []
        while not deadline.expired:
            frames += self._reader.feed(self.transport.read())
        return frames

    # --- engine -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % P.SEQ_UNKNOWN  # never 0xFFFF
        return self._seq

    def _timeout_for(self, job: _Job) -> float:
        """Base timeout plus wire time of everything that may be queued ahead of it, plus
        the board's busy time for it when known (a flash erase can take seconds)."""
        per_request = P.MAX_WIRE_FRAME * 2 if job.cmd == P.Command.INFER else job.wire_tx * 2
        return self.reply_timeout_s + WIRE_TIME_MARGIN * self.window * \
            self.transport.wire_time_s(per_request) + WIRE_TIME_MARGIN * (job.busy_s or 0.0)

    def _may_send(self, job: _Job, inflight: OrderedDict[int, _Job],
                  window: int | None = None) -> bool:
        """Within the window: nothing in flight, or fewer than `window` requests and either
        the ones sent after the oldest, with this one, within `rx_window` bytes, or the
        bytes that can arrive while the board is busy with any of them within it."""
        if not inflight:
            return True
        if len(inflight) >= (window or self.window):
            return False
        w = self.rx_window
        if w is None:
            return True
        behind = sum(j.wire_tx for j in islice(inflight.values(), 1, None))
        if behind + P.wire_frame_size(len(job.payload)) <= w:
            return True
        busy = self._busy_bytes([*inflight.values(), job])
        return busy is not None and busy <= w

    def _busy_bytes(self, jobs: list[_Job]) -> int | None:
        """Most bytes that can reach the board's receive buffer while it is busy with one of
        `jobs` (longest busy time x the link's byte rate, plus slack for the host's
        reaction), or None when a busy time or the byte rate is unknown."""
        link = self.info.link if self.info is not None else None
        rate = link.byte_rate if link is not None else None
        if rate is None or any(j.busy_s is None for j in jobs):
            return None
        longest = max(j.busy_s or 0.0 for j in jobs)
        return math.ceil(longest * rate) + WINDOW_SLACK_BYTES

    def _send(self, job: _Job, inflight: OrderedDict[int, _Job], queue: deque[_Job]) -> None:
        if job.attempts >= SPLIT_AFTER_ATTEMPTS and job.split is not None:
            # A noisy link loses long frames far more often than short ones: halve the batch.
            self.counters.splits += 1
            self.counters.retries += 1
            for part in reversed(job.split(job)):
                queue.appendleft(part)
            job = queue.popleft()
        if job.attempts > 0 and not job.resend:
            raise ReplyLost(
                f"{self.transport.url}: no valid reply to {_cmd_name(job.cmd)}, which is not "
                "sent twice (the board may have acted on it)", job.cmd)
        if job.attempts > self.max_retries:
            last = f"; last error {job.last_error}" if job.last_error is not None else ""
            raise DeviceTimeout(
                f"{self.transport.url}: no valid reply to {_cmd_name(job.cmd)} after "
                f"{job.attempts} attempts ({self.counters.timeouts} timeouts, "
                f"{self.counters.error_replies} error replies, {self.counters.bad_replies} "
                f"bad replies so far{last})")
        if job.attempts > 0:
            self.counters.retries += 1
        seq = self._next_seq()
        wire = P.encode_frame(job.cmd, seq, job.payload)
        job.attempts += 1
        job.sent_at = self._clock()
        if job.attempts == 1:
            job.first_sent_at = job.sent_at
            self.counters.requests += 1
        job.wire_tx = len(wire)
        inflight[seq] = job
        self.counters.max_in_flight = max(self.counters.max_in_flight, len(inflight))
        behind = sum(j.wire_tx for j in islice(inflight.values(), 1, None))
        self.counters.max_behind_bytes = max(self.counters.max_behind_bytes, behind)
        self.transport.write(wire)

    def _run(self, jobs: list[_Job], on_done: Callable[[_Job], None] | None = None,
             window: int | None = None) -> list[_Done]:
        queue: deque[_Job] = deque(jobs)
        inflight: OrderedDict[int, _Job] = OrderedDict()
        results: dict[tuple[int, ...], _Done] = {}
        consecutive_timeouts = 0
        reconnects = 0

        def retry_front(js: list[_Job]) -> None:
            for j in reversed(js):
                queue.appendleft(j)

        while queue or inflight:
            while queue and self._may_send(queue[0], inflight, window):
                self._send(queue.popleft(), inflight, queue)
            try:
                data = self.transport.read()
            except DeviceError:
                # The port died (USB re-enumeration, board reset): find it again, resend.
                if reconnects >= MAX_RECONNECTS:
                    raise
                reconnects += 1
                self.reconnect()
                retry_front(list(inflight.values()))
                inflight.clear()
                continue
            damaged = self._reader.damaged_frames
            frames = self._reader.feed(data)
            if self._reader.damaged_frames > damaged and inflight:
                # A reply arrived damaged; replies come in order, so it was most likely the
                # oldest request's: resend that now instead of waiting for its timeout.
                self.counters.bad_replies += self._reader.damaged_frames - damaged
                retry_front([inflight.pop(next(iter(inflight)))])
            for frame in frames:
                if frame.seq not in inflight:
                    self._on_unmatched(frame, inflight, retry_front)
                    continue
                consecutive_timeouts = 0
                # The device answers in order: requests sent earlier and still in flight
                # were lost on the way (or their replies were); resend them now.
                keys = list(inflight)
                older = [inflight.pop(k) for k in keys[: keys.index(frame.seq)]]
                job = inflight.pop(frame.seq)
                accepted = self._accept(job, frame)
                if accepted is None:
                    retry_front([*older, job])  # in their order: a chunk after its predecessor
                    continue
                retry_front(older)
                results[job.index] = accepted
                if on_done is not None:
                    on_done(job)
            if any(line.startswith(P.BANNER_PREFIX) for line in self._reader.pop_lines()):
                # The board rebooted: whatever was in flight is gone.
                self.counters.resets_seen += 1
                retry_front(list(inflight.values()))
                inflight.clear()
                continue
            if inflight:
                oldest = next(iter(inflight.values()))
                if self._clock() - oldest.sent_at > self._timeout_for(oldest):
                    self.counters.timeouts += 1
                    consecutive_timeouts += 1
                    retry_front(list(inflight.values()))
                    inflight.clear()
                    if consecutive_timeouts >= REOPEN_AFTER_TIMEOUTS and \
                            oldest.attempts <= self.max_retries and reconnects < MAX_RECONNECTS:
                        consecutive_timeouts = 0
                        reconnects += 1
                        self.reconnect()
        return [results[k] for k in sorted(results)]

    def _on_unmatched(self, frame: P.Frame, inflight: OrderedDict[int, _Job],
                      retry_front: Callable[[list[_Job]], None]) -> None:
        if frame.is_error and frame.seq == P.SEQ_UNKNOWN:
            # A request arrived damaged; the device answers in order, so it is most likely
            # the oldest one in flight. Resend it now (a wrong guess only costs a duplicate).
            self._count_error(frame)
            if inflight:
                seq = next(iter(inflight))
                retry_front([inflight.pop(seq)])
        else:
            if frame.cmd == P.Command.PING | P.RESPONSE_FLAG and frame.seq in self._probes:
                self._probes.discard(frame.seq)  # a readiness probe answered after the banner
                return
            self.counters.stale_replies += 1

    def _count_error(self, frame: P.Frame) -> P.ErrorReply | None:
        self.counters.error_replies += 1
        try:
            err = P.parse_error(frame.payload)
        except ProtocolError:
            self.counters.error_codes["malformed"] += 1
            return None
        self.counters.error_codes[err.name] += 1
        return err

    def _accept(self, job: _Job, frame: P.Frame) -> _Done | None:
        """The reply's value, None to resend, or raise for a permanent device error."""
        if frame.is_error:
            err = self._count_error(frame)
            if err is None or err.transient or err.code in job.retry_codes:
                job.last_error = err
                return None
            raise DeviceReplyError(
                f"{self.transport.url}: device refused {_cmd_name(job.cmd)}: {err}", err)
        if frame.cmd != job.cmd | P.RESPONSE_FLAG:
            self.counters.bad_replies += 1
            return None
        try:
            value = job.parse(frame.payload)
        except ProtocolError:
            self.counters.bad_replies += 1
            return None
        wire_rx = len(P.encode_frame(frame.cmd, frame.seq, frame.payload))
        return _Done(value, self._clock() - job.sent_at, job.wire_tx, wire_rx)
