"""Device int8 outputs equal the host TFLM reference; the task metric matches the registry."""

from __future__ import annotations

from tinyship.hil import Report


def test_parity(report: Report, record_property: object) -> None:
    record_property("mismatches", report.mismatches)  # type: ignore[operator]
    record_property("max_lsb_diff", report.max_lsb_diff)  # type: ignore[operator]
    assert report.vectors > 0, "no test vectors were run"
    c = report.check("parity")
    assert c.passed, f"{c.name}: {c.detail}"


def test_metric(report: Report) -> None:
    c = report.check("metric")
    assert c.passed, f"{c.name}: {c.detail}"
