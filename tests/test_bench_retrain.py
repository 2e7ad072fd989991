"""Benchmark of the whole retrain job, scenario 2 of issue 13 (drifted data -> challenger
trained, better with significance, HIL-validated, promoted, a fleet of two virtual boards
reflashed and verified); goal <= 60 s on this 2-core machine. The suite runs it once as a
test (`--benchmark-disable`); `scripts/bench.sh` times it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from test_retrain import _boards, _csv, base_project  # noqa: F401  (a fixture)
from tinyship.config import load_config
from tinyship.device.virtual import Faults
from tinyship.retrain.job import RetrainOptions, run_retrain


def test_bench_retrain_drift_promote_reflash(benchmark: Any, base_project: Path,  # noqa: F811
                                             tmp_path: Path) -> None:
    runs: list[str] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        project = tmp_path / f"p{len(runs)}"
        shutil.copytree(base_project, project)
        new = _csv(project / "in" / "hot.csv", cells=40, seed=21, temperature_shift_c=18.0)
        return (project, new), {}

    def job(project: Path, new: Path) -> str:
        with _boards(project, Faults(), Faults()):
            r = run_retrain(load_config(project / "tinyship.toml"),
                            RetrainOptions(new, fleet=project / "fleet.toml"))
        runs.append(r.outcome)
        return r.outcome

    outcome = benchmark.pedantic(job, setup=setup, rounds=1, iterations=1)
    assert outcome == "deployed"
