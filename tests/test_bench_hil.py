"""Benchmarks: HIL streaming throughput on the virtual board, binary vs MLPerf Tiny text mode.

The suite runs with `--benchmark-disable`, so each benchmark still runs once as a test; run
`pytest tests/test_bench_hil.py --benchmark-enable` for timings. Numbers land in
`benchmark.extra_info` (vectors/s, link utilisation, MLPerf/binary ratio); the assertions
only require correct outputs, never a speed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tinyship.config import Config
from tinyship.convert.runtimes import to_target_units
from tinyship.device.client import DeviceClient
from tinyship.hil import mlperf

PACED_BAUD = 115_200
#: MLPerf mode is ~20x slower per vector; a few dozen vectors keep the test short.
MLPERF_VECTORS = 30


def _test_set(cfg: Config, version: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from tinyship.registry import Registry

    reg = Registry(cfg.registry_path)
    with np.load(reg.path(version) / "test_set.npz") as z:
        x, ref = z["x_int8"], z["reference_int8"]
    return x.reshape(len(x), -1), ref.reshape(len(ref), -1), reg.manifest(version)


def _board(cfg: Config, version: str, baud: int) -> Any:
    from tinyship.device.virtual import VirtualBoard

    return VirtualBoard(cfg.registry_path, version, baud=baud, boot_delay_s=0.05)


@pytest.mark.parametrize("baud", [PACED_BAUD, 0], ids=["115200", "unpaced"])
def test_bench_binary_throughput(benchmark: Any, trained_registry: tuple[Config, str],
                                 baud: int) -> None:
    cfg, version = trained_registry
    x, ref, _ = _test_set(cfg, version)
    with _board(cfg, version, baud) as vb, DeviceClient.open(vb.url, baud=baud or PACED_BAUD
                                                             ) as client:
        client.hello()
        result = benchmark.pedantic(client.infer_stream, args=(x,), rounds=1, iterations=1)
    assert np.array_equal(result.outputs, ref)
    vps = len(x) / result.elapsed_s
    benchmark.extra_info["vectors"] = len(x)
    benchmark.extra_info["vectors_per_s"] = vps
    benchmark.extra_info["wire_bytes_per_vector"] = result.wire_bytes / len(x)
    if baud:
        link_vps = baud / (10 * result.wire_bytes / len(x))
        benchmark.extra_info["link_utilization"] = vps / link_vps


def test_bench_binary_vs_mlperf_at_115200(benchmark: Any,
                                          trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    x, ref, manifest = _test_set(cfg, version)
    x, ref = x[:MLPERF_VECTORS], ref[:MLPERF_VECTORS]
    out = manifest["model"]["output"]
    with _board(cfg, version, PACED_BAUD) as vb, DeviceClient.open(vb.url) as client:
        client.hello()
        binary = client.infer_stream(x)
        client.read_frames(0.05)  # idle: the core is back in text state
        ml = benchmark.pedantic(mlperf.run, args=(client.transport, x), rounds=1, iterations=1)
    assert np.array_equal(binary.outputs, ref), "binary mode gave wrong outputs"
    # the device prints target units, mean + tscale * (q - zero_point) * scale, with 3
    # decimals: requantize and compare (one LSB is far more than 0.001 in target units)
    lsb = float(out["scale"]) * float(out.get("target_scale", 1.0))
    z = (ml.outputs - float(out.get("target_mean", 0.0))) / lsb + float(out["zero_point"])
    q = np.round(z).clip(-128, 127).astype(np.int8)
    assert ml.outputs.shape == ref.shape and np.array_equal(q, ref), "MLPerf mode outputs wrong"
    assert np.allclose(ml.outputs, to_target_units(ref, out), rtol=1e-6, atol=1e-3)
    binary_vps = len(x) / binary.elapsed_s
    mlperf_vps = len(x) / ml.elapsed_s
    benchmark.extra_info.update({
        "vectors": len(x),
        "binary_vps": binary_vps,
        "mlperf_vps": mlperf_vps,
        "binary_over_mlperf": binary_vps / mlperf_vps,
        "binary_bytes_per_vector": binary.wire_bytes / len(x),
        "mlperf_bytes_per_vector": (ml.bytes_tx + ml.bytes_rx) / len(x),
    })
