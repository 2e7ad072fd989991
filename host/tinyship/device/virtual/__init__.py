"""The virtual board: the firmware's portable core on the host, behind a serial URL.

    from tinyship.device.virtual import VirtualBoard, parse_faults

    with VirtualBoard(registry_root, "v0003", faults=parse_faults("drop_tx=0.01,seed=1")) as b:
        port = serial.serial_for_url(b.url, timeout=2)

See `board` (serving, resets, pacing), `fwimage` and `bootloader` (full firmware images,
the ROM and its bootloader), `latency` (the modelled latency), `faults` (fault
injection and the `--faults` spec) and `state` (persistent state, A/B slot layout).
"""

from tinyship.device.virtual.board import (
    DEFAULT_BAUD,
    DEFAULT_BOOT_DELAY_S,
    BoardStats,
    VirtualBoard,
)
from tinyship.device.virtual.faults import Faults, parse_faults
from tinyship.device.virtual.fwimage import Firmware, load_firmware
from tinyship.device.virtual.latency import LatencyModel
from tinyship.device.virtual.state import BoardState

__all__ = [
    "DEFAULT_BAUD",
    "DEFAULT_BOOT_DELAY_S",
    "BoardState",
    "BoardStats",
    "Faults",
    "Firmware",
    "LatencyModel",
    "VirtualBoard",
    "load_firmware",
    "parse_faults",
]
