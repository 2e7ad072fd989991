"""The slot code's C++ tests, run through make: the boot decision
(firmware/lib/tinyship_core/src/ts_slot_state.*: table and exhaustive invariants,
`make slot-test`) and the slot image header (ts_slot_image.*: every field and refusal,
truncated and garbage headers, fuzzed bytes, `make slot-image-test`), both under the
sanitizers, and their Cortex-M0+/M4 builds (`make slot-arm`, `make slot-image-arm`); the
core's slot commands and boot end to end over a strict write-once NOR simulator
(firmware/test/host/test_core_slots.cpp: install, every refusal with the flash unchanged,
trial / confirm / revert, health check, factory model, flash failures, power-cut sweep,
`make slot-core-test`).

Skips with a reason when make or a compiler is missing; TINYSHIP_REQUIRE_ARM=1 turns the
arm skip into a failure, as in tests/test_firmware.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["make", "-C", str(FIRMWARE), *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"make {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _need(compiler: str, *, arm: bool = False) -> None:
    if shutil.which("make") is None or shutil.which(compiler) is None:
        if arm and os.environ.get("TINYSHIP_REQUIRE_ARM") == "1":
            pytest.fail("arm-none-eabi-g++ is required (TINYSHIP_REQUIRE_ARM=1)")
        pytest.skip(f"make or {compiler} is not installed")


def test_slot_state_table_and_exhaustive_invariants() -> None:
    _need(os.environ.get("CXX", "g++"))
    proc = _make("slot-test")
    m = re.search(r"test_slot_state: (\d+) checks, (\d+) failures", proc.stdout)
    assert m, proc.stdout
    # 162 x 162 x 3 flag combinations, each with several invariant checks.
    assert int(m.group(1)) > 500_000 and m.group(2) == "0"


def test_slot_image_parse_check_and_fuzz() -> None:
    _need(os.environ.get("CXX", "g++"))
    proc = _make("slot-image-test", "SLOT_IMG_FUZZ=100000")
    m = re.search(r"test_slot_image: (\d+) checks, (\d+) failures \((\d+) fuzz", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) > 100_000 and m.group(2) == "0" and int(m.group(3)) >= 100_000


def test_core_slot_commands_boot_and_power_cuts() -> None:
    _need(os.environ.get("CXX", "g++"))
    proc = _make("slot-core-test")
    m = re.search(r"test_core_slots: (\d+) checks, (\d+) failures \((\d+) power cuts\)",
                  proc.stdout)
    assert m, proc.stdout
    # Every scenario with the three program units; an exhaustive sweep (before and torn at
    # each flash operation of install, trial boot, confirm and revert) and 1,000 random cuts.
    assert int(m.group(1)) > 10_000 and m.group(2) == "0" and int(m.group(3)) >= 1_000


@pytest.mark.parametrize(("target", "stem"), [("slot-arm", "ts_slot_state"),
                                              ("slot-image-arm", "ts_slot_image")])
def test_slot_code_compiles_for_cortex_m(target: str, stem: str) -> None:
    _need("arm-none-eabi-g++", arm=True)
    proc = _make(target)
    assert f"{stem}_m0plus.o" in proc.stdout and f"{stem}_m4.o" in proc.stdout
