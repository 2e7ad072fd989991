"""Benchmarks of the pipeline stages (pytest-benchmark).

The suite runs with `--benchmark-disable`, so each benchmark executes once as a test;
`scripts/bench.sh` (or `pytest tests/test_bench_pipeline.py --benchmark-enable`) times them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conftest import make_regression_csv, small_config
from tinyship.config import Config, load_config
from tinyship.convert import carray, runtimes, tflite_info
from tinyship.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def test_bench_data_checks_bundled(benchmark: Any) -> None:
    from tinyship.data.checks import run_checks
    from tinyship.data.load import load_dataset

    cfg = load_config(REPO / "tinyship.toml")

    def stage() -> bool:
        return run_checks(load_dataset(cfg.dataset_path, cfg.data), cfg.data).passed

    assert benchmark(stage)


def _model(trained_registry: tuple[Config, str]) -> tuple[bytes, dict[str, Any], Path]:
    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    return (reg.path(version) / "model_int8.tflite").read_bytes(), reg.manifest(version), \
        reg.path(version)


def test_bench_arena_sizing(benchmark: Any, trained_registry: tuple[Config, str]) -> None:
    model, manifest, _ = _model(trained_registry)
    arena = benchmark.pedantic(runtimes.find_min_arena, args=(model,), rounds=3, iterations=1)
    assert arena == manifest["model"]["arena_min_bytes"]


def test_bench_c_export(benchmark: Any, trained_registry: tuple[Config, str]) -> None:
    model, manifest, vdir = _model(trained_registry)
    info = tflite_info.inspect_model(model)
    ts = np.load(vdir / "test_set.npz")
    ex = carray.ExportInputs(
        version=manifest["version"], profile=manifest["profile"],
        arena_bytes=manifest["model"]["arena_bytes"],
        feature_mean=manifest["standardization"]["mean"],
        feature_std=manifest["standardization"]["std"],
        golden_inputs=ts["x_int8"][:4], golden_outputs=ts["reference_int8"][:4])
    files = benchmark(carray.render, model, info, ex)
    assert files[carray.DATA_CC].count("0x") >= len(model)


def test_bench_tflm_test_set(benchmark: Any, trained_registry: tuple[Config, str]) -> None:
    model, manifest, vdir = _model(trained_registry)
    ts = np.load(vdir / "test_set.npz")
    runner = runtimes.TflmRunner(model, manifest["model"]["arena_bytes"])
    out = benchmark(runner.run, ts["x_int8"])
    assert np.array_equal(out, ts["reference_int8"])
    benchmark.extra_info["vectors"] = len(ts["x_int8"])


def test_bench_full_pipeline_small(benchmark: Any, tmp_path: Path) -> None:
    from tinyship.pipeline import run_pipeline

    csv = make_regression_csv(tmp_path / "d.csv")
    runs = iter(range(100))

    def once() -> Any:
        sub = tmp_path / f"r{next(runs)}"
        return run_pipeline(small_config(sub, csv, training={"epochs": 20}))

    result = benchmark.pedantic(once, rounds=1, iterations=1)
    assert result.version == "v0001"
    benchmark.extra_info["timings_s"] = result.timings_s
