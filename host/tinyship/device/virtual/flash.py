"""The virtual board's model-slot flash: the core's `ts_flash_t` over the NOR simulation.

Two slots of `slot_bytes` each, back to back in one simulated NOR region with the board's
sector and program-unit sizes (`nor.GEOMETRIES`). The core programs, erases and reads
(through `map`, a pointer into the simulated chip's memory: TFLM-in-place as on a board)
exactly as it does on hardware; nothing here knows about slots' meaning.

Power cuts (`--faults power_cut_at=N`, `power_cut=P`): operation N since the board was
started (or each operation with probability P) loses power before or in the middle of its
work (`power_cut_mode` before / torn / random). From that moment every flash operation
fails and `cut` is set; the board drops its output and powers on again, as after a
brown-out. The flash image persists in `flash.bin` of the state folder after every
operation (atomically), so a restarted emulator finds what the last one wrote.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinyship.device.virtual import _core
from tinyship.device.virtual.nor import GEOMETRIES, CutMode, NorError, NorFlash, PowerCut

log = logging.getLogger(__name__)

FLASH_FILE = "flash.bin"
#: Slot size of the virtual board (platformio.ini sets the boards'; 128 KiB is their
#: default too).
DEFAULT_SLOT_BYTES = 128 * 1024
#: Nominal times reported in SLOT_INFO: the NOR model's (nRF52840 maxima).
ERASE_SECTOR_US = 85_000
PROGRAM_CHUNK_US = 41 * (768 // 4)


class SlotFlash:
    """`ts_flash_t` callbacks over a `NorFlash`, with power-cut injection and persistence."""

    def __init__(
        self,
        board_name: str,
        *,
        slot_bytes: int = DEFAULT_SLOT_BYTES,
        path: Path | None = None,
        cut_at: int = 0,
        cut_probability: float = 0.0,
        cut_mode: CutMode = "random",
        seed: int = 0,
        on_busy: Callable[[float], None] | None = None,
    ) -> None:
        base = GEOMETRIES.get(board_name, GEOMETRIES["nano33ble"])
        if slot_bytes <= 0 or slot_bytes % base.sector_size or slot_bytes < 2 * base.sector_size:
            raise ValueError(f"slot_bytes {slot_bytes}: expected a multiple of "
                             f"{base.sector_size} of at least two sectors")
        geometry = base.with_size(2 * slot_bytes)
        self.slot_bytes = slot_bytes
        self.path = path
        kw: dict[str, Any] = {"seed": seed, "clock": on_busy, "cut_mode": cut_mode}
        self.nor = NorFlash.load(path, geometry, **kw) if path is not None else \
            NorFlash(geometry, **kw)
        self.cut_at = cut_at
        self.cut_probability = cut_probability
        self._rng = np.random.default_rng([seed, 0x5EED])
        #: Operations since `start` (power cuts counted across boots).
        self.total_ops = 0
        #: Set when power was cut; cleared by `power_on`.
        self.cut: PowerCut | None = None
        self.cuts = 0
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

    # --- power -------------------------------------------------------------------------
    def power_on(self) -> None:
        """Power back on after a cut (or at boot): flash works again."""
        self.cut = None
        self.nor.power_on(cut_mode=self.nor.cut_mode)

    def _due(self) -> bool:
        self.total_ops += 1
        if self.cut_at and self.total_ops == self.cut_at:
            return True
        return self.cut_probability > 0.0 and bool(self._rng.random() < self.cut_probability)

    def _run(self, op: Callable[[], None]) -> int:
        if self.cut is not None:
            return 1  # no power: nothing happens, the core sees a failure (and is gone)
        if self._due():
            self.nor.cut_at = self.nor.stats.ops + 1
        try:
            op()
        except PowerCut as cut:
            self.cut = cut
            self.cuts += 1
            log.info("virtual board: %s", cut)
            self._save()
            return 1
        except NorError as e:
            log.error("virtual board flash: %s", e)
            return 1
        finally:
            self.nor.cut_at = 0
        self._save()
        return 0

    def _save(self) -> None:
        if self.path is not None:
            self.nor.save(self.path)

    # --- ts_flash_t callbacks (must not raise into C) ---------------------------------------
    def _cb_erase(self, _user: Any, slot: int, offset: int) -> int:
        try:
            addr = slot * self.slot_bytes + offset
            return self._run(lambda: self.nor.erase(addr))
        except Exception:
            log.exception("virtual board flash erase failed")
            return 1

    def _cb_program(self, _user: Any, slot: int, offset: int, data: Any, n: int) -> int:
        try:
            addr = slot * self.slot_bytes + offset
            raw = ctypes.string_at(data, n)
            return self._run(lambda: self.nor.program(addr, raw))
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
        self.cut = None
        self._save()

    # --- inspection (tests, tools) ------------------------------------------------------------
    def slot_bytes_of(self, slot: int) -> bytes:
        """The raw bytes of slot 0 (A) or 1 (B)."""
        return self.nor.read(slot * self.slot_bytes, self.slot_bytes)
