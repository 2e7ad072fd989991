"""Streaming the test set: vectors per second and the share of the link it uses."""

from __future__ import annotations

from tinyship.hil import Report


def test_throughput(report: Report, record_property: object,
                    capsys: object) -> None:
    record_property("throughput_vps", report.throughput_vps)  # type: ignore[operator]
    record_property("link_utilization", report.link_utilization)  # type: ignore[operator]
    assert report.throughput_vps and report.throughput_vps > 0, "no throughput measured"
    util = ("unpaced" if report.link_utilization is None
            else f"{report.link_utilization:.0%} of the link")
    with capsys.disabled():  # type: ignore[attr-defined]
        print(f"\nHIL throughput: {report.throughput_vps:.0f} vectors/s ({util}), "
              f"round trip p50 {report.round_trip_ms.get('p50')} ms, "
              f"{report.retries} retries, {report.errors} errors")
