"""Benchmark: the drift report on 1,000,000 rows x 20 features (issue 13: <= 2 s on the
2-core CI machine), plus the predictions' KS, as `tinyship drift` and the retrain job run it.

The suite runs with `--benchmark-disable`, so it executes once as a test (checking the
shifted features alert); `scripts/bench.sh` (or `pytest tests/test_bench_drift.py
--benchmark-enable`) times it. Wall-clock speed is never asserted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tinyship.data.profile import reference_profile
from tinyship.monitor.drift import drift_report

ROWS, FEATURES = 1_000_000, 20
#: Columns moved by half a standard deviation: PSI about 0.25, at the alert line or near it.
SHIFTED = (3, 11)


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, Any], pd.DataFrame, np.ndarray]:
    """A profile of 200,000 training rows and 1e6 current rows: 16 continuous features, 4
    discrete ones (5 values), two continuous ones shifted; predictions a mix of inputs."""
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(FEATURES)]

    def rows(n: int) -> np.ndarray:
        x = rng.normal(size=(n, FEATURES))
        x[:, -4:] = rng.integers(0, 5, size=(n, 4))
        return x

    train = rows(200_000)
    profile = reference_profile(train, names, predictions=train[:, :4].sum(axis=1))
    cur = rows(ROWS)
    cur[:, SHIFTED] += 0.5
    return profile, pd.DataFrame(cur, columns=names), cur[:, :4].sum(axis=1)


def test_bench_drift_report_1e6_rows_20_features(
        benchmark: Any, data: tuple[dict[str, Any], pd.DataFrame, np.ndarray]) -> None:
    profile, frame, pred = data
    report = benchmark.pedantic(drift_report, args=(profile, frame),
                                kwargs={"current_predictions": pred}, rounds=5, iterations=1,
                                warmup_rounds=1)
    shifted = {f"f{i:02d}" for i in SHIFTED}
    assert {r.feature for r in report.features[:2]} == shifted
    assert all(r.psi is not None and r.psi > 0.2 for r in report.features[:2])
    assert all(r.band == "ok" for r in report.features[2:])
    assert report.predictions is not None and report.predictions.ks_stat is not None
    benchmark.extra_info.update(rows=ROWS, features=FEATURES)
