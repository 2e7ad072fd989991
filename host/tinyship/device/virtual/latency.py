"""The virtual board's latency model (the latency it reports is modelled, not measured).

    latency_us = round(overhead_us + macs * cycles_per_mac / clock_hz * 1e6) + jitter_us

where `jitter_us = crc32(input vector) % (2 * jitter_max_us + 1) - jitter_max_us`: small,
deterministic (the same input always gets the same latency) and centred on zero.
`macs` comes from the registry manifest (`model.macs`), `cycles_per_mac` and `clock_hz`
from the config's `[board]` section (defaults: 4 cycles per MAC at 64 MHz, an nRF52840
running TFLM reference kernels). The board reports itself as `virtual-<board>` so nobody
mistakes these numbers for a measurement.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_OVERHEAD_US = 50
DEFAULT_JITTER_MAX_US = 2


@dataclass(frozen=True)
class LatencyModel:
    macs: int
    clock_hz: int = 64_000_000
    cycles_per_mac: float = 4.0
    overhead_us: int = DEFAULT_OVERHEAD_US
    jitter_max_us: int = DEFAULT_JITTER_MAX_US

    def __post_init__(self) -> None:
        if self.macs < 0 or self.clock_hz <= 0 or self.cycles_per_mac <= 0:
            raise ValueError("latency model: macs >= 0, clock_hz > 0, cycles_per_mac > 0")
        if self.overhead_us < 0 or self.jitter_max_us < 0 or self.jitter_max_us > self.overhead_us:
            raise ValueError("latency model: 0 <= jitter_max_us <= overhead_us")

    @property
    def base_us(self) -> int:
        """Latency without jitter."""
        return round(self.overhead_us + self.macs * self.cycles_per_mac / self.clock_hz * 1e6)

    def jitter_us(self, input_bytes: bytes) -> int:
        span = 2 * self.jitter_max_us + 1
        return zlib.crc32(input_bytes) % span - self.jitter_max_us

    def latency_us(self, input_bytes: bytes) -> int:
        """Modelled latency of one inference on this input (int8 vector as bytes)."""
        return self.base_us + self.jitter_us(input_bytes)
