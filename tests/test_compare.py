"""Champion vs challenger (tinyship.retrain.compare): paired test, decision, guards, baseline.

Expected metrics are computed with scikit-learn directly, never with the module's output.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics

from tinyship.retrain.compare import (
    Comparison,
    compare,
    decide,
    guards,
    linear_baseline,
    paired_test,
)

N = 2000


def _json_roundtrip(c: Comparison) -> dict[str, Any]:
    doc = c.to_dict()
    out: dict[str, Any] = json.loads(json.dumps(doc, allow_nan=False))
    return out


def test_clearly_better_challenger_is_better() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10.0, 3.0, N)
    champ = y + rng.normal(0.0, 1.0, N)
    chal = y + rng.normal(0.0, 0.3, N)
    c = compare("regression", y, champ, chal)
    assert c.better and c.reasons == []
    assert c.loss == "absolute_error" and c.n == N
    assert c.paired.p_value < 1e-50
    assert c.paired.cohens_d is not None and c.paired.cohens_d > 0.5
    assert c.paired.rank_biserial > 0.5
    assert c.metrics_champion["mae"] == pytest.approx(metrics.mean_absolute_error(y, champ))
    assert c.metrics_challenger["rmse"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(y, chal)))
    doc = _json_roundtrip(c)
    assert doc["better"] is True and doc["p_value"] == c.paired.p_value


def test_identical_predictions_say_no_difference() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 1.0, N)
    pred = y + rng.normal(0.0, 0.5, N)
    c = compare("regression", y, pred, pred.copy())
    assert not c.better
    assert c.paired.p_value == 1.0 and c.paired.statistic is None
    assert c.paired.cohens_d == 0.0 and c.paired.rank_biserial == 0.0
    assert any(r.startswith("no difference") for r in c.reasons), c.reasons
    _json_roundtrip(c)


def test_slightly_better_on_too_few_rows_is_refused_for_n() -> None:
    rng = np.random.default_rng(3)
    n = 200
    y = rng.normal(0.0, 1.0, n)
    c = compare("regression", y, y + rng.normal(0.0, 1.0, n), y + rng.normal(0.0, 0.8, n))
    assert not c.better
    assert "n = 200 < 500" in c.reasons
    assert c.paired.n == 200  # the test still runs overall, for the report


def test_better_by_noise_is_refused_on_effect_size_only() -> None:
    rng = np.random.default_rng(4)
    y = np.zeros(N)
    champ = 5.0 + rng.normal(0.0, 1.0, N)  # positive: the absolute error is the prediction
    chal = champ - 0.1 + rng.normal(0.0, 1.0, N)
    c = compare("regression", y, champ, chal)
    assert c.paired.p_value < 0.05
    assert c.paired.cohens_d is not None and 0 < c.paired.cohens_d <= 0.2
    assert len(c.reasons) == 1 and c.reasons[0].startswith("d = ")
    assert c.reasons[0].endswith("≤ 0.2")
    assert not c.better


def test_worse_challenger() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(0.0, 1.0, N)
    c = compare("regression", y, y + rng.normal(0.0, 0.3, N), y + rng.normal(0.0, 1.0, N))
    assert not c.better
    assert any(r.startswith("challenger worse") for r in c.reasons), c.reasons
    assert any(r.startswith("p = ") and r.endswith("≥ 0.05") for r in c.reasons)
    assert c.paired.mean_difference < 0 and c.paired.rank_biserial < 0


def test_thresholds_are_configurable_and_reasons_carry_values() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(0.0, 1.0, N)
    champ, chal = y + rng.normal(0.0, 1.0, N), y + rng.normal(0.0, 0.3, N)
    c = compare("regression", y, champ, chal, min_samples=5000, min_effect=50.0, alpha=1e-300)
    d = c.paired.cohens_d
    assert d is not None
    assert c.reasons == ["n = 2000 < 5000", f"p = {c.paired.p_value:.3g} ≥ 1e-300",
                         f"d = {d:.3g} ≤ 50"]


def test_constant_improvement_has_infinite_d_and_stays_json_safe() -> None:
    y = np.zeros(600)
    c = compare("regression", y, np.full(600, 2.0), np.full(600, 1.0))
    assert c.better and c.paired.cohens_d == math.inf
    doc = _json_roundtrip(c)
    assert doc["effect_size"] is None


def test_cohens_d_and_rank_biserial_by_hand() -> None:
    # y = 0, so the losses are the absolute predictions.
    # champion |e| = 3, 2, 1, 4; challenger |e| = 2, 0, 2, 1 -> differences 1, 2, -1, 3.
    y = np.zeros(4)
    c = compare("regression", y, np.array([3.0, -2.0, 1.0, 4.0]),
                np.array([2.0, 0.0, -2.0, 1.0]), min_samples=1)
    # mean = 5/4 = 1.25; deviations -0.25, 0.75, -2.25, 1.75; squares sum to 8.75;
    # sd (ddof 1) = sqrt(8.75 / 3); d = 1.25 / sqrt(2.91667) = 0.73193
    assert c.paired.mean_difference == pytest.approx(1.25)
    assert c.paired.cohens_d == pytest.approx(1.25 / math.sqrt(8.75 / 3))
    assert c.paired.cohens_d == pytest.approx(0.73193, abs=1e-5)
    # |differences| 1, 2, 1, 3 rank 1.5, 3, 1.5, 4; R+ = 1.5 + 3 + 4 = 8.5, R- = 1.5;
    # r = (8.5 - 1.5) / 10 = 0.7
    assert c.paired.rank_biserial == pytest.approx(0.7)
    assert c.paired.n_nonzero == 4


def test_paired_test_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="equal non-empty"):
        paired_test(np.zeros(3), np.zeros(4))


def test_classification_labels_zero_one_loss_with_accuracy_and_f1() -> None:
    rng = np.random.default_rng(7)
    k = 3
    y = rng.integers(0, k, N)
    champ = y.copy()
    chal = y.copy()
    w1 = rng.random(N) >= 0.7
    champ[w1] = (y[w1] + 1) % k
    w2 = rng.random(N) >= 0.9
    chal[w2] = (y[w2] + 2) % k
    c = compare("classification", y, champ, chal, n_classes=k)
    assert c.loss == "zero_one" and c.better
    assert c.metrics_champion["accuracy"] == pytest.approx(metrics.accuracy_score(y, champ))
    assert c.metrics_challenger["accuracy"] == pytest.approx(metrics.accuracy_score(y, chal))
    assert c.metrics_champion["macro_f1"] == pytest.approx(
        metrics.f1_score(y, champ, average="macro"))
    assert c.metrics_challenger["macro_f1"] == pytest.approx(
        metrics.f1_score(y, chal, average="macro"))
    assert c.paired.mean_loss_challenger == pytest.approx(1 - metrics.accuracy_score(y, chal))


def test_classification_probabilities_use_log_loss() -> None:
    rng = np.random.default_rng(8)
    k = 4
    y = rng.integers(0, k, N)
    onehot = np.eye(k)[y]

    def probs(sharpness: float) -> np.ndarray:
        logits = sharpness * onehot + rng.normal(0.0, 1.0, (N, k))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    champ, chal = probs(1.0), probs(3.0)
    c = compare("classification", y, champ, chal, n_classes=k)
    assert c.loss == "log_loss" and c.better
    labels = list(range(k))
    assert c.paired.mean_loss_champion == pytest.approx(metrics.log_loss(y, champ, labels=labels))
    assert c.paired.mean_loss_challenger == pytest.approx(metrics.log_loss(y, chal, labels=labels))
    assert c.metrics_challenger["accuracy"] == pytest.approx(
        metrics.accuracy_score(y, chal.argmax(axis=1)))
    with pytest.raises(ValueError, match="both as probabilities"):
        compare("classification", y, champ, chal.argmax(axis=1), n_classes=k)


def test_slices_including_one_too_small() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(0.0, 1.0, N)
    champ, chal = y + rng.normal(0.0, 1.0, N), y + rng.normal(0.0, 0.3, N)
    big = np.zeros(N, dtype=bool)
    big[:1500] = True
    tiny = np.zeros(N, dtype=bool)
    tiny[-50:] = True
    c = compare("regression", y, champ, chal, slices={"big": big, "tiny": tiny})
    by = {s.name: s for s in c.slices}
    assert by["big"].paired is not None and by["big"].n == 1500
    assert by["big"].paired.p_value < 1e-10 and by["big"].note == ""
    assert by["tiny"].paired is None and by["tiny"].n == 50
    assert by["tiny"].note == "n = 50 < 500: metrics only, no test"
    assert by["tiny"].metrics_champion["mae"] == pytest.approx(
        metrics.mean_absolute_error(y[tiny], champ[tiny]))
    assert by["tiny"].metrics_challenger["mae"] == pytest.approx(
        metrics.mean_absolute_error(y[tiny], chal[tiny]))
    doc = _json_roundtrip(c)
    assert [s["name"] for s in doc["slices"]] == ["big", "tiny"]
    with pytest.raises(ValueError, match="boolean mask"):
        compare("regression", y, champ, chal, slices={"idx": np.arange(10)})


def test_guards_latency_over_ratio_fails_and_missing_is_not_measured() -> None:
    champ = {"model_bytes": 10_000, "arena_bytes": 8_000, "latency_us": 1000.0}
    chal = {"model_bytes": 11_000, "arena_bytes": 9_000, "latency_us": 1300.0}
    gs = {g.name: g for g in guards(champ, chal, max_model_bytes=10_500,
                                    max_arena_bytes=16_000)}
    lat = gs["latency_us"]
    assert not lat.passed and lat.measured
    assert lat.value == 1300.0 and lat.limit == pytest.approx(1200.0)
    assert lat.growth == pytest.approx(0.3)
    assert not gs["model_bytes"].passed and gs["model_bytes"].limit == 10_500
    assert gs["model_bytes"].growth == pytest.approx(0.1)
    assert gs["arena_bytes"].passed and gs["arena_bytes"].growth == pytest.approx(0.125)

    missing = {g.name: g for g in guards(champ, {"model_bytes": 9_000, "latency_us": None})}
    assert missing["latency_us"].passed and not missing["latency_us"].measured
    assert "not measured" in missing["latency_us"].detail
    assert missing["arena_bytes"].passed and not missing["arena_bytes"].measured
    assert missing["model_bytes"].passed and missing["model_bytes"].limit is None
    assert "no limit" in missing["model_bytes"].detail
    json.dumps([g.to_dict() for g in missing.values()], allow_nan=False)


def test_decide_needs_better_and_every_measured_guard() -> None:
    rng = np.random.default_rng(10)
    y = rng.normal(0.0, 1.0, N)
    better = compare("regression", y, y + rng.normal(0.0, 1.0, N), y + rng.normal(0.0, 0.3, N))
    ok = decide(better, guards({"latency_us": 1000}, {"latency_us": 1100}))
    assert ok.promote
    assert ok.reasons[0].startswith("challenger better: n = 2000 ≥ 500, p = ")
    assert any("model_bytes" in r and "not measured" in r for r in ok.reasons)

    slow = decide(better, guards({"latency_us": 1000}, {"latency_us": 1300}))
    assert not slow.promote
    assert any(r.startswith("latency_us: 1300 > 1200") for r in slow.reasons), slow.reasons

    same = compare("regression", y, y + 1.0, y + 1.0)
    kept = decide(same, [])
    assert not kept.promote and kept.reasons == same.reasons


def test_linear_baseline_regression_matches_perfect_linear_predictor() -> None:
    rng = np.random.default_rng(11)
    w = np.array([1.5, -2.0, 0.5])
    x = rng.normal(0.0, 1.0, (2500, 3)) * np.array([1.0, 10.0, 0.1])
    y = x @ w + 2.0 + rng.normal(0.0, 0.1, 2500)
    x_tr, x_te, y_tr, y_te = x[:2000], x[2000:], y[:2000], y[2000:]
    perfect = x_te @ w + 2.0
    m = linear_baseline("regression", x_tr, y_tr, x_te, y_te)
    assert m["mae"] == pytest.approx(metrics.mean_absolute_error(y_te, perfect), rel=0.02)
    assert m["rmse"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(y_te, perfect)), rel=0.02)


def test_linear_baseline_classification_matches_perfect_linear_rule() -> None:
    rng = np.random.default_rng(12)
    w = np.array([1.0, -1.0])
    x = rng.normal(0.0, 1.0, (2500, 2))
    truth = (x @ w > 0).astype(int)
    flip = rng.random(2500) < 0.05  # label noise, so neither reaches 100 %
    y = np.where(flip, 1 - truth, truth)
    m = linear_baseline("classification", x[:2000], y[:2000], x[2000:], y[2000:], n_classes=2)
    perfect = truth[2000:]
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y[2000:], perfect), abs=0.01)
    assert m["macro_f1"] == pytest.approx(
        metrics.f1_score(y[2000:], perfect, average="macro"), abs=0.01)
    again = linear_baseline("classification", x[:2000], y[:2000], x[2000:], y[2000:])
    assert again == m  # deterministic


def test_unknown_task_and_bad_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        compare("ranking", np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="outside"):
        compare("classification", np.array([0, 1, 5]), np.zeros(3), np.zeros(3), n_classes=3)
