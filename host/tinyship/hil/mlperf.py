"""The MLPerf Tiny DUT text protocol (PROTOCOL.md section 7), driven and read the way the
MLCommons tiny runner does (mlcommons/tiny `benchmark/runner`), so a board that passes here
passes there. Used to compare its throughput with the binary protocol on one link.

Sending, as the runner's `DUT`: a command is its text and `%`; an input is `db load N%`, then
`db HEX%` with 31 bytes (62 hex digits) per command; inference is `infer N W%`.

Reading, as the runner's `SerialDevice`: bytes are taken one at a time; `\\n` ends a line,
`\\r` and `\\0` are dropped and nothing is stripped; a reply ends with the first line that
*contains* `m-ready`; empty lines are skipped, and every other line is kept, so stray text
(a boot banner, `tinyship: ` diagnostics) never breaks a reply. Parsing, as the runner's `DUT`
and `_ScriptInferStep`: whole-line regexes (`m-results-[...]`, `m-lap-us-N`, `m-name-dut-[...]`,
`m-model-[...]`), results split on `,` skipping blank items, the last results line wins, the
first lap is the start and the last the end.

Two deliberate differences: a line starting with `e-[` raises `ProtocolError` at once (the
runner carries on and fails later on missing results), and a byte above 0x7F is dropped (the
runner's decode fails there and re-appends the previous character).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tinyship.device.transport import Timeout, Transport
from tinyship.errors import DeviceTimeout, ProtocolError

#: Input bytes per `db` command, as the runner sends them (`DUT._max_bytes` without a power
#: monitor; 62 hex digits, within the reference firmware's 80-character command buffer).
MLPERF_HEX_CHUNK_BYTES = 31
#: The runner waits this long for each reply line (`SerialDevice._timeout`) ...
MLPERF_LINE_TIMEOUT_S = 5.0
#: ... and this long for each line of an `infer` reply (`DUT.infer`).
MLPERF_INFER_LINE_TIMEOUT_S = 30.0
READY = "m-ready"
ERROR_PREFIX = "e-["
RESULTS_RE = re.compile(r"^m-results-\[([^]]+)\]$")
LAP_RE = re.compile(r"^m-lap-us-([0-9]+)$")
NAME_RE = re.compile(r"^m-(name)-dut-\[([^]]+)]$")
PROFILE_RE = re.compile(r"^m-(model|profile)-\[([^]]+)]$")


class LineSplitter:
    """Bytes to lines as the runner's `SerialDevice` read loop splits them."""

    def __init__(self) -> None:
        self._msg: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        for b in data:
            if b == 0x0A:
                lines.append("".join(self._msg))
                self._msg = []
            elif b not in (0x0D, 0x00) and b < 0x80:
                self._msg.append(chr(b))
        return lines


def reply_complete(line: str) -> bool:
    """The runner's end of a reply: `m-ready` anywhere in the line."""
    return READY in line


@dataclass(frozen=True)
class InferReply:
    """What the runner takes from an `infer` reply (`_ScriptInferStep._gather_infer_results`)."""

    results: list[float] | None
    start_us: int | None
    end_us: int | None

    @property
    def elapsed_us(self) -> int | None:
        if self.start_us is None or self.end_us is None:
            return None
        return self.end_us - self.start_us


def parse_infer(lines: Iterable[str]) -> InferReply:
    results: list[float] | None = None
    start: int | None = None
    end: int | None = None
    for line in lines:
        m = RESULTS_RE.match(line)
        if m:
            try:
                results = [float(x) for x in m.group(1).split(",") if x.strip()]
            except ValueError:
                results = []  # the runner records an empty vector and goes on
            continue
        m = LAP_RE.match(line)
        if m:
            if start is None:
                start = int(m.group(1))
            else:
                end = int(m.group(1))
    return InferReply(results, start, end)


def parse_identity(lines: Iterable[str]) -> dict[str, str]:
    """`name`, `model` and `profile` from `name%` / `profile%` replies, as `DUT` reads them."""
    found: dict[str, str] = {}
    for line in lines:
        m = NAME_RE.match(line) or PROFILE_RE.match(line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


class MlperfDut:
    """A board in MLPerf mode, spoken to as the runner's `DUT` speaks to it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._split = LineSplitter()
        self._lines: deque[str] = deque()

    def _read_line(self, timeout_s: float) -> str | None:
        deadline = Timeout(timeout_s)
        while not self._lines:
            if deadline.expired:
                return None
            self._lines.extend(self._split.feed(self.transport.read()))
        return self._lines.popleft()

    def command(self, cmd: str, *, line_timeout_s: float = MLPERF_LINE_TIMEOUT_S) -> list[str]:
        """Send `cmd%`; the reply's non-empty lines up to and including the one with
        `m-ready` (as the runner's `send_command`). An `e-[` line raises ProtocolError."""
        self.transport.write(cmd.encode("ascii") + b"%")
        lines: list[str] = []
        while True:
            line = self._read_line(line_timeout_s)
            if line is None:
                raise DeviceTimeout(f"{self.transport.url}: no '{READY}' after '{cmd}%' "
                                    f"({line_timeout_s:g} s without a line; got {lines})")
            if line:
                lines.append(line)
            if line.startswith(ERROR_PREFIX):
                raise ProtocolError(f"{self.transport.url}: '{cmd}%' answered {line}")
            if reply_complete(line):
                return lines

    def identity(self) -> dict[str, str]:
        return parse_identity([*self.command("name"), *self.command("profile")])

    def load(self, data: bytes) -> None:
        self.command(f"db load {len(data)}")
        for i in range(0, len(data), MLPERF_HEX_CHUNK_BYTES):
            self.command("db " + data[i : i + MLPERF_HEX_CHUNK_BYTES].hex())

    def infer(self, iterations: int, warmups: int) -> InferReply:
        lines = self.command(f"infer {iterations} {warmups}",
                             line_timeout_s=MLPERF_INFER_LINE_TIMEOUT_S)
        return parse_infer(lines)


@dataclass
class MlperfRun:
    outputs: np.ndarray  # float32 [n, output_size], in target units as printed (3 decimals)
    elapsed_s: float
    bytes_tx: int
    bytes_rx: int


def run(transport: Transport, x_int8: np.ndarray | Sequence[Sequence[int]]) -> MlperfRun:
    """Infer each int8 vector through the MLPerf text commands (`infer 1 0`, as the
    runner's accuracy mode does)."""
    x = np.asarray(x_int8, dtype=np.int8)
    x = x.reshape(len(x), -1)
    dut = MlperfDut(transport)
    tx0, rx0 = transport.bytes_tx, transport.bytes_rx
    outputs = []
    t0 = time.monotonic()
    for vec in x:
        dut.load(vec.tobytes())
        reply = dut.infer(1, 0)
        if not reply.results:
            raise ProtocolError(f"{transport.url}: no m-results in reply to infer")
        outputs.append(reply.results)
    return MlperfRun(np.asarray(outputs, dtype=np.float32), time.monotonic() - t0,
                     transport.bytes_tx - tx0, transport.bytes_rx - rx0)
