"""The MLPerf Tiny DUT text protocol (PROTOCOL.md section 7), driven the way its runner does:
per vector `db load N%`, the input as hex in `db HEX%` chunks, then `infer 1 0%`, reading
`m-results-[...]`. Used to compare its throughput with the binary protocol on one link.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from tinyship.device.transport import Timeout, Transport
from tinyship.errors import DeviceTimeout, ProtocolError

#: Input bytes per `db` command (64 hex digits, well under the 256-character line limit).
MLPERF_HEX_CHUNK_BYTES = 32
#: Wait for `m-ready` after one command.
MLPERF_COMMAND_TIMEOUT_S = 2.0
READY = "m-ready"
_RESULTS = re.compile(r"m-results-\[([^\]]*)\]")


@dataclass
class MlperfRun:
    outputs: np.ndarray  # float32 [n, output_size], in target units as printed (3 decimals)
    elapsed_s: float
    bytes_tx: int
    bytes_rx: int


def command(transport: Transport, cmd: str, *, timeout_s: float = MLPERF_COMMAND_TIMEOUT_S
            ) -> list[str]:
    """Send `cmd%` and return the reply lines before `m-ready`; `e-[...]` is an error."""
    transport.write(cmd.encode("ascii") + b"%")
    lines: list[str] = []
    deadline = Timeout(timeout_s)
    while True:
        line = transport.read_until_line(lambda s: True, deadline.remaining())
        if line is None:
            raise DeviceTimeout(f"{transport.url}: no '{READY}' after '{cmd}%' within "
                                f"{timeout_s:g} s (got {lines})")
        if line == READY:
            break
        if line.startswith("e-["):
            raise ProtocolError(f"{transport.url}: '{cmd}%' answered {line}")
        lines.append(line)
    return lines


def run(transport: Transport, x_int8: np.ndarray) -> MlperfRun:
    """Infer each int8 vector through the MLPerf text commands."""
    x = np.asarray(x_int8, dtype=np.int8).reshape(len(x_int8), -1)
    tx0, rx0 = transport.bytes_tx, transport.bytes_rx
    outputs = []
    t0 = time.monotonic()
    for vec in x:
        raw = vec.tobytes()
        command(transport, f"db load {len(raw)}")
        for i in range(0, len(raw), MLPERF_HEX_CHUNK_BYTES):
            command(transport, "db " + raw[i : i + MLPERF_HEX_CHUNK_BYTES].hex())
        lines = command(transport, "infer 1 0")
        found = [m.group(1) for s in lines if (m := _RESULTS.search(s))]
        if not found:
            raise ProtocolError(f"{transport.url}: no m-results in reply to infer: {lines}")
        outputs.append([float(v) for v in found[-1].split(",") if v.strip()])
    return MlperfRun(np.asarray(outputs, dtype=np.float32), time.monotonic() - t0,
                     transport.bytes_tx - tx0, transport.bytes_rx - rx0)
