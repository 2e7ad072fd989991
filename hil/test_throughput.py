"""Streaming the test set: vectors per second, bytes per second per direction, and the share
of the wire each direction uses when the link is a physical UART."""

from __future__ import annotations

from tinyship.hil import Report
from tinyship.hil.linkrate import describe


def test_throughput(report: Report, record_property: object,
                    capsys: object) -> None:
    link = report.link
    record_property("throughput_vps", report.throughput_vps)  # type: ignore[operator]
    for direction in ("host_to_device", "device_to_host", "input_payload"):
        for key in ("bytes_per_s", "utilization"):
            record_property(f"{direction}_{key}", link.get(direction, {}).get(key))  # type: ignore[operator]
    assert report.throughput_vps and report.throughput_vps > 0, "no throughput measured"
    with capsys.disabled():  # type: ignore[attr-defined]
        print(f"\nHIL throughput: {describe(link)}; round trip p50 "
              f"{report.round_trip_ms.get('p50')} ms, {report.retries} retries, "
              f"{report.errors} errors")
