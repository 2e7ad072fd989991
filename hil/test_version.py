"""The board reports the protocol, model version, SHA-256 and CRC the registry expects."""

from __future__ import annotations

import pytest

from tinyship.hil import Report


@pytest.mark.parametrize("check", ["protocol_version", "model_version", "model_sha256",
                                   "model_crc", "self_test", "io_contract"])
def test_identity(report: Report, check: str) -> None:
    c = report.check(check)
    assert c.passed, f"{c.name}: {c.detail}"


def test_device_info_is_complete(report: Report) -> None:
    missing = [k for k in ("firmware_version", "board", "profile", "max_payload",
                           "input_size", "output_size") if report.device.get(k) is None]
    assert not missing, f"device INFO lacks {missing}"
