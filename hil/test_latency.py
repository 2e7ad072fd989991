"""Device-measured inference latency (p99) is within the board's budget."""

from __future__ import annotations

from tinyship.hil import Report


def test_latency_budget(report: Report, record_property: object) -> None:
    for k, v in report.latency_us.items():
        record_property(f"latency_{k}_us", v)  # type: ignore[operator]
    assert report.latency_us.get("p99") is not None, "no latencies reported"
    c = report.check("latency")
    assert c.passed, f"{c.name}: {c.detail}"


def test_no_reset_or_hang(report: Report) -> None:
    c = report.check("no_reset")
    assert c.passed, f"{c.name}: {c.detail}"
