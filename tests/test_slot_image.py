"""The slot image header parser (firmware/lib/tinyship_core/src/ts_slot_image.*): every
field and refusal, truncated and garbage headers and fuzzed bytes under the sanitizers
(`make slot-image-test`), and its Cortex-M0+/M4 build (`make slot-image-arm`).

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
    return subprocess.run(["make", "-C", str(FIRMWARE), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_slot_image_parse_check_and_fuzz() -> None:
    if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("make or a host C++ compiler is not installed")
    proc = _make("slot-image-test", "SLOT_IMG_FUZZ=100000")
    assert proc.returncode == 0, f"make slot-image-test failed:\n{proc.stdout}\n{proc.stderr}"
    m = re.search(r"test_slot_image: (\d+) checks, (\d+) failures \((\d+) fuzz", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) > 100_000 and m.group(2) == "0" and int(m.group(3)) >= 100_000


def test_slot_image_compiles_for_cortex_m() -> None:
    if shutil.which("make") is None or shutil.which("arm-none-eabi-g++") is None:
        if os.environ.get("TINYSHIP_REQUIRE_ARM") == "1":
            pytest.fail("arm-none-eabi-g++ is required (TINYSHIP_REQUIRE_ARM=1)")
        pytest.skip("make or arm-none-eabi-g++ is not installed")
    proc = _make("slot-image-arm")
    assert proc.returncode == 0, f"make slot-image-arm failed:\n{proc.stdout}\n{proc.stderr}"
    assert "ts_slot_image_m0plus.o" in proc.stdout and "ts_slot_image_m4.o" in proc.stdout
