"""Metrics, baselines, splits and standardisation (scikit-learn, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from tinyship.train.metrics import (
    baseline_metrics,
    baseline_skill,
    classification_metrics,
    regression_metrics,
    relative_degradation,
)
from tinyship.train.split import Standardizer, split_indices


def test_regression_metrics_known_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 6.0])
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)
    # ss_res = 4, ss_tot = 5 -> r2 = 0.2
    assert m["r2"] == pytest.approx(0.2)


def test_regression_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal non-empty"):
        regression_metrics(np.zeros(3), np.zeros(4))


def test_classification_metrics_confusion_and_macro_f1() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, p, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    f1 = [2 * 1 / (2 + 1 + 1), 2 * 2 / (4 + 1 + 0), 2 * 1 / (2 + 0 + 1)]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_relative_degradation_direction() -> None:
    assert relative_degradation("regression", {"mae": 1.0}, {"mae": 1.1}) == pytest.approx(0.1)
    assert relative_degradation("regression", {"mae": 1.0}, {"mae": 0.9}) < 0
    assert relative_degradation(
        "classification", {"accuracy": 0.9}, {"accuracy": 0.81}
    ) == pytest.approx(0.1)


def test_split_is_deterministic_disjoint_and_complete() -> None:
    a = split_indices(100, test_fraction=0.2, val_fraction=0.1, seed=3)
    b = split_indices(100, test_fraction=0.2, val_fraction=0.1, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test),
                                                   (b.train, b.val, b.test), strict=True))
    everything = np.concatenate([a.train, a.val, a.test])
    assert sorted(everything.tolist()) == list(range(100))
    assert len(a.test) == 20 and len(a.val) == 10


def test_split_stratified_keeps_every_class_in_test() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    s = split_indices(100, test_fraction=0.2, val_fraction=0.1, seed=0,
                      stratify=labels)
    assert set(labels[s.test]) == {0, 1}
    assert (labels[s.test] == 1).sum() == 2


def test_standardizer_handles_constant_column() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    st = Standardizer.fit(x)
    z = st.transform(x)
    assert np.allclose(z[:, 0], [-1, 1])
    assert np.allclose(z[:, 1], 0)


def test_group_split_keeps_groups_whole() -> None:
    groups = np.repeat(np.arange(20), 5)
    s = split_indices(100, test_fraction=0.2, val_fraction=0.1, seed=1,
                      groups=groups)
    sets = [set(groups[s.train]), set(groups[s.val]), set(groups[s.test])]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2])
    assert sets[1].isdisjoint(sets[2])
    assert len(sets[2]) == 4 and len(sets[1]) == 2
    assert len(s.train) + len(s.val) + len(s.test) == 100


def test_group_split_needs_enough_groups() -> None:
    with pytest.raises(ValueError, match="at least 3 groups"):
        split_indices(10, test_fraction=0.2, val_fraction=0.1, seed=0,
                      groups=np.array([0] * 5 + [1] * 5))


def test_split_val_fraction_is_a_share_of_all_rows() -> None:
    s = split_indices(1000, test_fraction=0.25, val_fraction=0.15, seed=7)
    assert (len(s.test), len(s.val), len(s.train)) == (250, 150, 600)


def test_stratified_split_names_the_class_that_is_too_small() -> None:
    labels = np.array([0] * 50 + [1])
    with pytest.raises(ValueError, match="least populated class"):
        split_indices(51, test_fraction=0.2, val_fraction=0.1, seed=0, stratify=labels)


def test_baseline_is_the_training_mean_or_majority_class() -> None:
    b = baseline_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0]), 0)
    assert b["strategy"] == "mean" and b["mae"] == pytest.approx(1.0)  # predicts 2.0
    c = baseline_metrics("classification", np.array([0, 1, 1, 1]), np.array([0, 1, 1, 2]), 3)
    assert c["strategy"] == "most_frequent" and c["accuracy"] == pytest.approx(0.5)


def test_baseline_skill_scale() -> None:
    base = {"mae": 4.0, "accuracy": 0.4}
    assert baseline_skill("regression", {"mae": 1.0}, base) == pytest.approx(0.75)
    assert baseline_skill("regression", {"mae": 4.4}, base) == pytest.approx(-0.1)
    assert baseline_skill("classification", {"accuracy": 0.7}, base) == pytest.approx(0.5)
    # shuffled labels: below the majority class
    assert baseline_skill("classification", {"accuracy": 0.36}, base) < 0
