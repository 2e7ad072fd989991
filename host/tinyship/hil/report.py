"""The HIL validation report: JSON, JUnit XML (one testcase per check), per-vector CSV, PNG."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyship.errors import TinyshipError

#: Top-level keys of the JSON report, in order (a contract with CI scripts).
REPORT_KEYS = (
    "passed", "device", "expected", "vectors", "mismatches", "max_lsb_diff", "metric",
    "latency_us", "round_trip_ms", "throughput_vps", "link", "retries", "errors",
    "checks",
)
#: `link` figures written as JUnit properties (`link_<name>`), in this order.
_JUNIT_LINK = (
    ("kind", ("kind",)), ("physical", ("physical",)), ("baud", ("baud",)),
    ("byte_rate", ("byte_rate",)), ("vectors_per_s", ("vectors_per_s",)),
    ("host_to_device_bytes_per_s", ("host_to_device", "bytes_per_s")),
    ("host_to_device_utilization", ("host_to_device", "utilization")),
    ("device_to_host_bytes_per_s", ("device_to_host", "bytes_per_s")),
    ("device_to_host_utilization", ("device_to_host", "utilization")),
    ("input_payload_bytes_per_s", ("input_payload", "bytes_per_s")),
    ("input_payload_utilization", ("input_payload", "utilization")),
)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Report:
    device: dict[str, Any]
    expected: dict[str, Any]
    vectors: int = 0
    mismatches: int = 0
    max_lsb_diff: int = 0
    metric: dict[str, Any] = field(default_factory=dict)
    latency_us: dict[str, float | None] = field(default_factory=dict)
    round_trip_ms: dict[str, float | None] = field(default_factory=dict)
    throughput_vps: float | None = None
    #: Link figures per direction (`tinyship.hil.linkrate.link_figures`); empty if none ran.
    link: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    errors: int = 0
    checks: list[Check] = field(default_factory=list)
    duration_s: float = 0.0
    # per-vector data (CSV, plot), not in the JSON
    inputs: np.ndarray | None = None
    device_outputs: np.ndarray | None = None
    reference_outputs: np.ndarray | None = None
    latencies: np.ndarray | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "passed": self.passed, "device": self.device, "expected": self.expected,
            "vectors": self.vectors, "mismatches": self.mismatches,
            "max_lsb_diff": self.max_lsb_diff, "metric": self.metric,
            "latency_us": self.latency_us, "round_trip_ms": self.round_trip_ms,
            "throughput_vps": self.throughput_vps, "link": self.link,
            "retries": self.retries, "errors": self.errors,
            "checks": [c.to_dict() for c in self.checks],
        }
        assert tuple(d) == REPORT_KEYS
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable)

    # --- files ----------------------------------------------------------------------------

    def write_json(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def write_junit(self, path: Path, *, suite: str = "tinyship.hil") -> None:
        """JUnit XML: one testcase per check, failures carry the check's detail."""
        failures = len(self.failed_checks)
        ts = ET.Element("testsuite", name=suite, tests=str(len(self.checks)),
                        failures=str(failures), errors="0", time=f"{self.duration_s:.3f}")
        props = ET.SubElement(ts, "properties")
        for k in ("model_version", "model_sha256", "board", "firmware_version"):
            ET.SubElement(props, "property", name=k, value=str(self.device.get(k)))
        # The JSON `link` figures, same names and units; utilisations only on a physical link.
        for name, keys in _JUNIT_LINK if self.link else ():
            value: Any = self.link
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                ET.SubElement(props, "property", name=f"link_{name}", value=str(value))
        for c in self.checks:
            tc = ET.SubElement(ts, "testcase", classname=suite, name=c.name, time="0")
            if c.passed:
                ET.SubElement(tc, "system-out").text = c.detail
            else:
                ET.SubElement(tc, "failure", message=c.detail[:200]).text = c.detail
        ET.ElementTree(ts).write(path, encoding="utf-8", xml_declaration=True)

    def write_csv(self, path: Path, *, include_inputs: bool = True) -> None:
        """One row per vector: index, inputs, device outputs, reference outputs, diff, latency."""
        if self.device_outputs is None or self.reference_outputs is None:
            raise TinyshipError("no per-vector data: the validation did not run inference")
        dev = self.device_outputs.reshape(len(self.device_outputs), -1).astype(int)
        ref = self.reference_outputs.reshape(len(self.reference_outputs), -1).astype(int)
        n_in = 0 if self.inputs is None or not include_inputs else self.inputs.shape[1]
        header = ["index", *(f"in{i}" for i in range(n_in)),
                  *(f"device{j}" for j in range(dev.shape[1])),
                  *(f"reference{j}" for j in range(ref.shape[1])), "max_abs_diff_lsb",
                  "latency_us"]
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i in range(len(dev)):
                ins = self.inputs[i].tolist() if n_in and self.inputs is not None else []
                lat = int(self.latencies[i]) if self.latencies is not None else ""
                w.writerow([i, *ins, *dev[i].tolist(), *ref[i].tolist(),
                            int(np.abs(dev[i] - ref[i]).max()), lat])

    def write_plot(self, path: Path) -> None:
        """PNG: device vs reference outputs (scatter) and the latency histogram."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise TinyshipError("--plot needs matplotlib",
                                hint="pip install matplotlib (or drop --plot)") from None
        if self.device_outputs is None or self.reference_outputs is None:
            raise TinyshipError("no per-vector data to plot")
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        ref = self.reference_outputs.reshape(-1).astype(int)
        dev = self.device_outputs.reshape(-1).astype(int)
        a.scatter(ref, dev, s=6, alpha=0.6)
        lo, hi = min(ref.min(), dev.min()), max(ref.max(), dev.max())
        a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        a.set(xlabel="reference int8 (host TFLM)", ylabel="device int8",
              title=f"{self.mismatches} mismatching vectors, max diff {self.max_lsb_diff} LSB")
        if self.latencies is not None and len(self.latencies):
            b.hist(self.latencies, bins=40)
        b.set(xlabel="device latency (µs)", ylabel="vectors", title="inference latency")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
