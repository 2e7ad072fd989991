"""The virtual board's model-slot flash: the core's `ts_flash_t` over the NOR simulation.

Two slots of `slot_bytes` each, back to back in one simulated NOR region with the board's
sector and program-unit sizes (`nor.GEOMETRIES`). The core programs, erases and reads
(through `map`, a pointer into the simulated chip's memory: TFLM-in-place as on a board)
exactly as it does on hardware; nothing here knows about slots' meaning.

Power cuts (`--faults power_cut_at=N`, `power_cut=P`): operation N since the board was
started (or each operation with probability P) loses power before or in the middle of its
work (`power_cut_mode` before / torn / random). Operations are counted by the board's
`PowerRail`, over this region and the application region (`bootloader`) together. From
that moment every flash operation fails and the rail's `cut` is set; the board drops its
output and powers on again, as after a brown-out. The flash image persists in `flash.bin`
of the state folder after every operation (atomically), so a restarted emulator finds what
the last one wrote.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinyship.device.virtual import _core
from tinyship.device.virtual.nor import (
    GEOMETRIES,
    CutMode,
    NorError,
    NorFlash,
    NorGeometry,
    PowerCut,
)

log = logging.getLogger(__name__)

FLASH_FILE = "flash.bin"
#: Slot size of the virtual board (platformio.ini sets the boards'; 128 KiB is their
#: default too).
DEFAULT_SLOT_BYTES = 128 * 1024
#: Nominal times reported in SLOT_INFO: the NOR model's (nRF52840 maxima).
ERASE_SECTOR_US = 85_000
PROGRAM_CHUNK_US = 41 * (768 // 4)


def board_geometry(board_name: str) -> NorGeometry:
    """A board's flash geometry (nano33ble's for a board the simulator does not know)."""
    return GEOMETRIES.get(board_name, GEOMETRIES["nano33ble"])


class PowerRail:
    """The board's supply as its flash sees it: one count of erase/program operations over
    every region (model slots, application), so `power_cut_at=N` names one operation of a
    whole update, whichever region it touches."""

    def __init__(self, *, cut_at: int = 0, cut_probability: float = 0.0, seed: int = 0
                 ) -> None:
        self.cut_at = cut_at
        self.cut_probability = cut_probability
        self._rng = np.random.default_rng([seed, 0x5EED])
        #: Operations since `start` (power cuts counted across boots).
        self.total_ops = 0
        #: Set when power was cut; cleared by `power_on`.
        self.cut: PowerCut | None = None
        self.cuts = 0

    def power_on(self) -> None:
        self.cut = None

    def due(self) -> bool:
        """Count one operation; True when power is lost during it."""
        self.total_ops += 1
        if self.cut_at and self.total_ops == self.cut_at:
            return True
        return self.cut_probability > 0.0 and bool(self._rng.random() < self.cut_probability)


class NorRegion:
    """A simulated NOR chip on the board's `PowerRail`, written through to `path` (if any)
    after every operation, atomically; a cut leaves its operation as `cut_mode` says."""

    def __init__(self, geometry: NorGeometry, power: PowerRail, *, path: Path | None = None,
                 cut_mode: CutMode = "random", seed: int = 0,
                 on_busy: Callable[[float], None] | None = None) -> None:
        self.power = power
        self.path = path
        kw: dict[str, Any] = {"seed": seed, "clock": on_busy, "cut_mode": cut_mode}
        self.nor = NorFlash.load(path, geometry, **kw) if path is not None else \
            NorFlash(geometry, **kw)

    def power_on(self) -> None:
        """Power back on after a cut (or at boot): the chip works again."""
        self.nor.power_on()

    # The rail's counters and cut settings, as seen from any of its regions (the power-loss
    # sweep and tests drive them through the slot flash).
    @property
    def total_ops(self) -> int:
        return self.power.total_ops

    @property
    def cut(self) -> PowerCut | None:
        return self.power.cut

    @property
    def cuts(self) -> int:
        return self.power.cuts

    @cuts.setter
    def cuts(self, value: int) -> None:
        self.power.cuts = value

    @property
    def cut_at(self) -> int:
        return self.power.cut_at

    @cut_at.setter
    def cut_at(self, value: int) -> None:
        self.power.cut_at = value

    @property
    def cut_probability(self) -> float:
        return self.power.cut_probability

    @cut_probability.setter
    def cut_probability(self, value: float) -> None:
        self.power.cut_probability = value

    def run(self, op: Callable[[], None]) -> str | None:
        """Run one erase/program; None when it completed, else why not (a power cut, or
        the chip refused it)."""
        power = self.power
        if power.cut is not None:
            return "no power"  # nothing happens, the caller sees a failure (and is gone)
        if power.due():
            self.nor.cut_at = self.nor.stats.ops + 1
        try:
            op()
        except PowerCut as cut:
            power.cut = cut
            power.cuts += 1
            log.info("virtual board: %s", cut)
            self.save()
            return str(cut)
        except NorError as e:
            log.error("virtual board flash: %s", e)
            return str(e)
        finally:
            self.nor.cut_at = 0
        self.save()
        return None

    def save(self) -> None:
        if self.path is not None:
            self.nor.save(self.path)


class SlotFlash(NorRegion):
    """`ts_flash_t` callbacks over the model slots' `NorRegion`."""

    def __init__(
        self,
        board_name: str,
        power: PowerRail,
        *,
        slot_bytes: int = DEFAULT_SLOT_BYTES,
        path: Path | None = None,
        cut_mode: CutMode = "random",
        seed: int = 0,
        on_busy: Callable[[float], None] | None = None,
    ) -> None:
        base = board_geometry(board_name)
        if slot_bytes <= 0 or slot_bytes % base.sector_size or slot_bytes < 2 * base.sector_size:
            raise ValueError(f"slot_bytes {slot_bytes}: expected a multiple of "
                             f"{base.sector_size} of at least two sectors")
        geometry = base.with_size(2 * slot_bytes)
        super().__init__(geometry, power, path=path, cut_mode=cut_mode, seed=seed,
                         on_busy=on_busy)
        self.slot_bytes = slot_bytes
        # The chip's memory as the CPU sees it: a stable pointer (the bytearray is never
        # resized while this view exists).
        self._view = (ctypes.c_uint8 * geometry.size).from_buffer(self.nor._mem)
        self._base = ctypes.addressof(self._view)
        self._erase_fn = _core.FlashEraseFn(self._cb_erase)
        self._program_fn = _core.FlashProgramFn(self._cb_program)
        self._map_fn = _core.FlashMapFn(self._cb_map)
        self.struct = _core.Flash(
            user=None, sector_size=geometry.sector_size, program_unit=geometry.program_unit,
            slot_size=slot_bytes, erase_sector_us=ERASE_SECTOR_US,
            program_chunk_us=PROGRAM_CHUNK_US, erase=self._erase_fn,
            program=self._program_fn, map=self._map_fn)

    # --- ts_flash_t callbacks (must not raise into C) ---------------------------------------
    def _cb_erase(self, _user: Any, slot: int, offset: int) -> int:
        try:
            addr = slot * self.slot_bytes + offset
            return 0 if self.run(lambda: self.nor.erase(addr)) is None else 1
        except Exception:
            log.exception("virtual board flash erase failed")
            return 1

    def _cb_program(self, _user: Any, slot: int, offset: int, data: Any, n: int) -> int:
        try:
            addr = slot * self.slot_bytes + offset
            raw = ctypes.string_at(data, n)
            return 0 if self.run(lambda: self.nor.program(addr, raw)) is None else 1
        except Exception:
            log.exception("virtual board flash program failed")
            return 1

    def _cb_map(self, _user: Any, slot: int) -> int:
        if slot > 1:
            return 0
        return self._base + slot * self.slot_bytes

    def restore(self, image: bytes) -> None:
        """Put the whole chip back to `image` (a `nor.image` taken earlier): tests set up a
        flash state without replaying the operations that made it."""
        if len(image) != len(self.nor._mem):
            raise ValueError("flash image size differs")
        self.nor._mem[:] = image
        self.power.cut = None
        self.save()

    # --- inspection (tests, tools) ------------------------------------------------------------
    def slot_bytes_of(self, slot: int) -> bytes:
        """The raw bytes of slot 0 (A) or 1 (B)."""
        return self.nor.read(slot * self.slot_bytes, self.slot_bytes)
