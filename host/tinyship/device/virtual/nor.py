"""A NOR flash simulator for the virtual board's model slots (groundwork for issue 11).

Why: the slot state machine must be proven against what real flash does, not against a
Python dict. This model refuses what the chips refuse and can lose power mid-operation:

- Erase works on whole sectors and sets every byte to 0xFF.
- Program works on whole, aligned program units. **Strict rule (default, as MCUboot's
  simulator):** every byte programmed must still be 0xFF; writing to un-erased flash is a
  `NorError` even when it would only clear bits, because a firmware that relies on
  re-programming is not portable (the nRF52840 allows only nWRITE writes per word; a
  torn unit can never be re-programmed cleanly). `strict=False` gives the physical rule
  instead: programming ANDs the data in, and setting a 0 bit back to 1 is an error.
- Every erase/program is counted (`stats`) and its duration, from the nRF52840 product
  specification (NVMC electrical specification, maximum values: tERASEPAGE 85 ms,
  tWRITE 41 µs per 32-bit word; approximate, not re-verified here), accumulates in
  `stats.modelled_s` (and goes to an optional clock callback).
- Power cut: `cut_at=N` (1-based, counted over erase+program operations since power-on)
  raises `PowerCut` at the Nth operation, either before it changes anything or as a torn
  operation: a torn program writes a prefix of its units, then one unit partly (some of
  its 0 bits cleared, chosen by a seeded generator); a torn erase leaves the sector with
  random bits set (old | random). `cut_probability` cuts each operation with that
  probability instead (seeded). After a cut the flash refuses work until `power_on()`.
- Persistence: `save(path)` writes the raw image atomically; `load(path, geometry)` reads
  it back (a flash dump other tools can read too). Counters are per power session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tinyship.atomic import write_bytes_atomic
from tinyship.errors import DeviceError

ERASED = 0xFF
# nRF52840 PS, NVMC electrical specification (max). Used for every simulated board, as
# issue 11 asks: the time model is the slowest supported board's.
T_ERASE_SECTOR_S = 85e-3
T_WRITE_WORD_S = 41e-6
WORD_BYTES = 4

CutMode = Literal["before", "torn", "random"]


@dataclass(frozen=True)
class NorGeometry:
    """Erase and program granularity of one board's slot flash."""

    name: str
    size: int          # bytes simulated (the slot region, not necessarily the whole chip)
    sector_size: int   # erase unit
    program_unit: int  # program size and alignment

    def __post_init__(self) -> None:
        if self.sector_size <= 0 or self.program_unit <= 0:
            raise ValueError(f"{self.name}: sector and program unit must be > 0")
        if self.sector_size % self.program_unit:
            raise ValueError(f"{self.name}: sector size is not a multiple of the program unit")
        if self.size <= 0 or self.size % self.sector_size:
            raise ValueError(f"{self.name}: size {self.size} is not a whole number of sectors")

    def with_size(self, size: int) -> NorGeometry:
        """The same chip with another simulated region size (e.g. just the two slots)."""
        return NorGeometry(self.name, size, self.sector_size, self.program_unit)


# Default sizes are a 256 KiB slot region; pass `.with_size()` for another layout.
GEOMETRIES: dict[str, NorGeometry] = {
    # nRF52840 NVMC: 4 KiB pages, 32-bit word writes (word-aligned only).
    "nano33ble": NorGeometry("nano33ble", 256 * 1024, 4096, 4),
    # RP2040 + QSPI NOR via pico-sdk flash_range_program: 4 KiB sectors, 256-byte pages.
    "nanorp2040connect": NorGeometry("nanorp2040connect", 256 * 1024, 4096, 256),
    # ESP32-S3 SPI NOR via esp_partition_*: 4 KiB sectors; writes of any byte alignment
    # (without flash encryption), so the unit is 1 byte.
    "esp32s3": NorGeometry("esp32s3", 256 * 1024, 4096, 1),
}


class NorError(DeviceError):
    """A flash operation the real chip would refuse (alignment, range, un-erased bytes)."""


class PowerCut(Exception):
    """Power was lost at operation `op` (1-based); `torn` tells whether flash changed.

    Not a `TinyshipError`: it is a simulated event for the harness to catch, and must never
    be swallowed by a handler that turns tool errors into exit codes.
    """

    def __init__(self, op: int, kind: str, addr: int, torn: bool) -> None:
        super().__init__(f"power cut at flash operation {op} ({kind} @0x{addr:x}, "
                         f"{'torn' if torn else 'before'})")
        self.op = op
        self.kind = kind
        self.addr = addr
        self.torn = torn


@dataclass
class NorStats:
    """Counters of one power session; `modelled_s` is flash busy time, not wall time."""

    erases: int = 0
    programs: int = 0
    program_bytes: int = 0
    modelled_s: float = 0.0

    @property
    def ops(self) -> int:
        return self.erases + self.programs


class NorFlash:
    """In-memory NOR flash with strict semantics, counters, modelled time and power cuts."""

    def __init__(
        self,
        geometry: NorGeometry,
        *,
        strict: bool = True,
        cut_at: int = 0,
        cut_mode: CutMode = "before",
        cut_probability: float = 0.0,
        seed: int = 0,
        clock: Callable[[float], None] | None = None,
        image: bytes | None = None,
    ) -> None:
        if cut_at < 0:
            raise ValueError("cut_at: expected an operation number >= 1, or 0 = off")
        if not 0.0 <= cut_probability <= 1.0:
            raise ValueError("cut_probability: expected a fraction in [0, 1]")
        self.geometry = geometry
        self.strict = strict
        self.cut_at = cut_at
        self.cut_mode: CutMode = cut_mode
        self.cut_probability = cut_probability
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        if image is None:
            self._mem = bytearray([ERASED]) * geometry.size
        else:
            if len(image) != geometry.size:
                raise NorError(f"{geometry.name}: image is {len(image)} bytes, "
                               f"expected {geometry.size}")
            self._mem = bytearray(image)
        self.stats = NorStats()
        self.powered = True

    # -- reading ---------------------------------------------------------------------
    def read(self, addr: int, length: int) -> bytes:
        """Bytes as the CPU would see them through the memory map (reads are free)."""
        self._check_range(addr, length)
        return bytes(self._mem[addr:addr + length])

    @property
    def image(self) -> bytes:
        return bytes(self._mem)

    # -- power -----------------------------------------------------------------------
    def power_on(self, *, cut_at: int = 0, cut_mode: CutMode | None = None) -> None:
        """Restore power: new session counters, and optionally arm the next cut."""
        self.powered = True
        self.stats = NorStats()
        self.cut_at = cut_at
        if cut_mode is not None:
            self.cut_mode = cut_mode

    # -- erase / program -------------------------------------------------------------
    def erase(self, addr: int, length: int | None = None) -> None:
        """Erase the sectors in `addr`..`addr+length` (default one); each is one operation."""
        g = self.geometry
        length = g.sector_size if length is None else length
        if addr % g.sector_size or length % g.sector_size or length <= 0:
            raise NorError(f"erase 0x{addr:x}+{length}: not whole {g.sector_size}-byte sectors")
        self._check_range(addr, length)
        for sector in range(addr, addr + length, g.sector_size):
            self._erase_sector(sector)

    def program(self, addr: int, data: bytes) -> None:
        """Program `data` at `addr`; both must be whole, aligned program units.

        One call is one operation for counting and cuts (a driver call), whatever its size.
        """
        g = self.geometry
        n = len(data)
        if addr % g.program_unit or n % g.program_unit or n == 0:
            raise NorError(f"program 0x{addr:x}+{n}: not whole aligned "
                           f"{g.program_unit}-byte units")
        self._check_range(addr, n)
        old = bytes(self._mem[addr:addr + n])
        for i, (o, d) in enumerate(zip(old, data, strict=True)):
            if self.strict and o != ERASED:
                raise NorError(f"program 0x{addr + i:x}: byte is 0x{o:02x}, not erased")
            if d & ~o & 0xFF:
                raise NorError(f"program 0x{addr + i:x}: 0x{d:02x} over 0x{o:02x} would "
                               "set a 0 bit to 1")
        new = bytes(o & d for o, d in zip(old, data, strict=True))
        self._operation("program", addr, lambda: self._tear_program(addr, old, new))
        self._mem[addr:addr + n] = new
        self.stats.programs += 1
        self.stats.program_bytes += n
        self._spend(T_WRITE_WORD_S * -(-n // WORD_BYTES))

    # -- internals -------------------------------------------------------------------
    def _erase_sector(self, addr: int) -> None:
        self._operation("erase", addr, lambda: self._tear_erase(addr))
        self._mem[addr:addr + self.geometry.sector_size] = (
            bytearray([ERASED]) * self.geometry.sector_size)
        self.stats.erases += 1
        self._spend(T_ERASE_SECTOR_S)

    def _operation(self, kind: str, addr: int, tear: Callable[[], None]) -> None:
        """Count the operation about to run, and cut power here if a cut is due."""
        if not self.powered:
            raise NorError("flash operation after a power cut: call power_on() first")
        op = self.stats.ops + 1
        due = (self.cut_at == op) or (
            self.cut_probability > 0.0 and self._rng.random() < self.cut_probability)
        if not due:
            return
        mode = self.cut_mode
        if mode == "random":
            mode = "torn" if self._rng.random() < 0.5 else "before"
        self.powered = False
        if mode == "torn":
            tear()
        raise PowerCut(op, kind, addr, mode == "torn")

    def _tear_program(self, addr: int, old: bytes, new: bytes) -> None:
        """Program a prefix of the units fully, then one unit partly (a random subset of
        its 0 bits cleared): what a brown-out in the middle of a page program leaves."""
        unit = self.geometry.program_unit
        units = len(new) // unit
        k = int(self._rng.integers(0, units))
        done = k * unit
        self._mem[addr:addr + done] = new[:done]
        mask = self._rng.integers(0, 256, size=unit, dtype=np.uint8).tobytes()
        part = bytes(o & (d | m) for o, d, m in
                     zip(old[done:done + unit], new[done:done + unit], mask, strict=True))
        self._mem[addr + done:addr + done + unit] = part

    def _tear_erase(self, addr: int) -> None:
        """Set a random subset of the sector's bits (old | random): a partial erase."""
        size = self.geometry.sector_size
        noise = self._rng.integers(0, 256, size=size, dtype=np.uint8)
        old = np.frombuffer(bytes(self._mem[addr:addr + size]), dtype=np.uint8)
        self._mem[addr:addr + size] = (old | noise).tobytes()

    def _spend(self, seconds: float) -> None:
        self.stats.modelled_s += seconds
        if self._clock is not None:
            self._clock(seconds)

    def _check_range(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.geometry.size:
            raise NorError(f"0x{addr:x}+{length} is outside the {self.geometry.size}-byte "
                           f"{self.geometry.name} flash")

    # -- persistence -----------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the raw image atomically (temp file, fsync, rename)."""
        write_bytes_atomic(Path(path), bytes(self._mem))

    @classmethod
    def load(cls, path: Path, geometry: NorGeometry, **kwargs: Any) -> NorFlash:
        """A flash whose content is the saved image (missing file: an erased chip)."""
        path = Path(path)
        try:
            image = path.read_bytes()
        except FileNotFoundError:
            image = None
        except OSError as e:
            raise NorError(f"{path}: unreadable flash image: {e}") from None
        return cls(geometry, image=image, **kwargs)
