"""Deterministic train/validation/test splits and feature standardisation (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Splits:
    train: np.ndarray  # row indices, sorted
    val: np.ndarray
    test: np.ndarray


def split_indices(
    n: int,
    *,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    stratify: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Splits:
    """Shuffle-split row indices with scikit-learn: stratified per class when `stratify`
    labels are given; whole groups (e.g. one battery cell each) per split when `groups` are
    given, so the test set measures unseen units rather than unseen rows.

    `val_fraction` is a share of all rows (or groups), like `test_fraction`. Raises
    ValueError with scikit-learn's reason when the data cannot be split that way.
    """
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    idx = np.arange(n)
    val_share = val_fraction / (1.0 - test_fraction)
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n_groups < 3:
            raise ValueError(f"need at least 3 groups to split by group, got {n_groups}")

        def by_group(rows: np.ndarray, share: float, salt: int) -> tuple[np.ndarray, np.ndarray]:
            gss = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed + salt)
            keep, out = next(gss.split(rows, groups=groups[rows]))
            return rows[keep], rows[out]

        try:
            rest, test = by_group(idx, test_fraction, 0)
            train, val = by_group(rest, val_share, 1)
        except ValueError as e:
            raise ValueError(
                f"too few groups ({n_groups}) for the test and validation split: {e}"
            ) from None
    else:
        try:
            rest, test = train_test_split(
                idx, test_size=test_fraction, random_state=seed, stratify=stratify)
            train, val = train_test_split(
                rest, test_size=val_share, random_state=seed + 1,
                stratify=None if stratify is None else np.asarray(stratify)[rest])
        except ValueError as e:
            raise ValueError(f"cannot split {n} rows into train/validation/test: {e}") from None
    if train.size == 0 or val.size == 0 or test.size == 0:
        raise ValueError("a split is empty: too few rows (or groups) for the fractions set")
    return Splits(np.sort(train), np.sort(val), np.sort(test))


@dataclass(frozen=True)
class Standardizer:
    """z-score per feature; the device applies the same mean/std before quantizing."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Fit scikit-learn's StandardScaler (a constant column gets std 1, not 0)."""
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(np.asarray(x, dtype=np.float64))
        return cls(np.asarray(sc.mean_, dtype=np.float64), np.asarray(sc.scale_, dtype=np.float64))

    def transform(self, x: np.ndarray) -> np.ndarray:
        z: np.ndarray = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return z.astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
