"""Deterministic train/validation/test splits and feature standardisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Splits:
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray


def split_indices(
    n: int,
    *,
    test_fraction: float,
    val_fraction: float,
    rng: np.random.Generator,
    stratify: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Splits:
    """Shuffle-split row indices; stratified per class when `stratify` labels are given;
    whole groups (e.g. one battery cell each) per split when `groups` are given."""
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    if groups is not None:
        return _split_groups(groups, test_fraction, val_fraction, rng)
    strata = [np.arange(n)] if stratify is None else [
        np.flatnonzero(stratify == c) for c in np.unique(stratify)
    ]
    tr, va, te = [], [], []
    for stratum in strata:
        g = rng.permutation(stratum)
        n_test = max(1, round(len(g) * test_fraction))
        n_val = max(1, round(len(g) * val_fraction))
        te.append(g[:n_test])
        va.append(g[n_test : n_test + n_val])
        tr.append(g[n_test + n_val :])
    train = np.sort(np.concatenate(tr))
    if train.size == 0:
        raise ValueError("no rows left for training after the test and validation split")
    return Splits(train, np.sort(np.concatenate(va)), np.sort(np.concatenate(te)))


def _split_groups(
    groups: np.ndarray, test_fraction: float, val_fraction: float, rng: np.random.Generator
) -> Splits:
    uniq = rng.permutation(np.unique(groups))
    if len(uniq) < 3:
        raise ValueError(f"need at least 3 groups to split by group, got {len(uniq)}")
    n_test = max(1, round(len(uniq) * test_fraction))
    n_val = max(1, round(len(uniq) * val_fraction))
    if n_test + n_val >= len(uniq):
        raise ValueError(f"too few groups ({len(uniq)}) for the test and validation split")
    test_g, val_g = uniq[:n_test], uniq[n_test : n_test + n_val]
    in_test, in_val = np.isin(groups, test_g), np.isin(groups, val_g)
    idx = np.arange(len(groups))
    return Splits(idx[~in_test & ~in_val], idx[in_val], idx[in_test])


@dataclass(frozen=True)
class Standardizer:
    """z-score per feature; the device applies the same mean/std before quantizing."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        std[std == 0] = 1.0
        return cls(x.mean(axis=0), std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z: np.ndarray = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return z.astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
