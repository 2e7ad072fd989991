"""A registry version's training-data profile for drift: per feature (and for the training
predictions) quantile bin edges and training fractions, min/max, mean/std and a compact
seeded sample for the two-sample KS test. Training writes it (`PROFILE_FILE`, an artifact
of every version) so that `tinyship.monitor.drift` needs no training data later; the
binning and the sample's encoding are documented in that module's docstring.

It lives in the data stage because training (below monitoring) writes it.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

#: The registry artifact that holds a version's profile.
PROFILE_FILE = "drift_reference.json"
PROFILE_FORMAT = "tinyship-drift-reference/1"
SAMPLE_ENCODING = "float32-m16-key-delta-zlib-base64"
#: Clears the 7 lowest of float32's 23 mantissa bits: the stored sample's precision.
_KEY_MASK = np.uint32(0xFFFF_FF80)
_SIGN = np.uint32(0x8000_0000)


# --- the reference profile ---------------------------------------------------------------


def reference_profile(x: np.ndarray, feature_names: list[str], *,
                      predictions: np.ndarray | None = None, bins: int = 10,
                      sample: int = 5000, seed: int = 0) -> dict[str, Any]:
    """What a version stores so that drift needs no training data later (module doc): per
    feature (and for the training predictions) quantile bin edges and training fractions,
    min/max, mean/std and a seeded KS sample. JSON-serialisable; at most ~9 KB a feature.

    Raises ValueError for a shape that does not match `feature_names`, no rows, or a
    non-finite value (training data has passed the data checks, so that is a caller bug).
    """
    data = np.asarray(x, dtype=np.float64)
    names = [str(f) for f in feature_names]
    if data.ndim != 2 or data.shape[1] != len(names):
        raise ValueError(f"x has shape {data.shape}, expected (rows, {len(names)}) for "
                         f"features {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature_names repeats a name: {names}")
    if data.shape[0] == 0:
        raise ValueError("no training rows")
    if bins < 2 or sample < 1:
        raise ValueError(f"bins must be >= 2 and sample >= 1, got {bins} and {sample}")
    bad = [f for j, f in enumerate(names) if not np.isfinite(data[:, j]).all()]
    if bad:
        raise ValueError(f"non-finite training values in feature(s) {bad}")
    n = data.shape[0]
    rows = np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)
    pred_profile = None
    if predictions is not None:
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if pred.size != n or not np.isfinite(pred).all():
            raise ValueError(f"predictions must be {n} finite values (one per row of x), "
                             f"got {pred.size}")
        pred_profile = _column_profile(pred, rows, bins)
    return {
        "format": PROFILE_FORMAT,
        "rows": n,
        "bins": bins,
        "seed": seed,
        "sample_size": int(rows.size),
        "sample_encoding": SAMPLE_ENCODING,
        "feature_names": names,
        "features": {f: _column_profile(data[:, j], rows, bins) for j, f in enumerate(names)},
        "predictions": pred_profile,
    }


def _column_profile(values: np.ndarray, rows: np.ndarray, bins: int) -> dict[str, Any]:
    s = np.sort(values)
    edges = _edges(s, bins)
    return {
        "edges": edges.tolist(),
        "fractions": (bin_counts(s, edges) / s.size).tolist(),
        "min": float(s[0]),
        "max": float(s[-1]),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "sample": _encode_keys(np.sort(ks_keys(values[rows]))),
    }


def _edges(s: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges of sorted training values `s` (rules in the module doc)."""
    lo, hi = s[0], s[-1]
    if lo == hi:  # constant: below / at / above
        return np.array([np.nextafter(hi, -np.inf), hi])
    edges = np.unique(np.quantile(s, np.arange(1, bins) / bins, method="inverted_cdf"))
    if edges[-1] == hi:  # would close an empty top bin
        below_max = s[np.searchsorted(s, hi, side="left") - 1]
        edges = np.unique(np.append(edges[:-1], below_max))
    return edges


def bin_counts(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Values of sorted `s` in each right-closed bin: one searchsorted of the few edges."""
    return np.diff(np.searchsorted(s, edges, side="right"), prepend=0, append=s.size)


def ks_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys in the order of `values` (float64, no NaN) at the stored sample's
    precision: float32, 7 low mantissa bits cleared. The map is monotone, so sorted values
    give sorted keys, and KS (which depends on order only) can run on the keys."""
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf, order kept
        f = values.astype(np.float32) + np.float32(0.0)  # -0.0 + 0.0 is +0.0: one zero
    u = f.view(np.uint32) & _KEY_MASK
    # sign-magnitude to an unsigned order: negatives inverted, positives above them
    flip = (np.uint32(0) - (u >> np.uint32(31))) | _SIGN
    keys: np.ndarray = u ^ flip
    return keys


def _encode_keys(keys: np.ndarray) -> str:
    """Sorted uint32 keys as text: deltas, byte planes (the high ones nearly all 0), zlib,
    base64."""
    deltas = np.diff(keys, prepend=np.uint32(0)).astype("<u4")
    planes = deltas.view(np.uint8).reshape(-1, 4).T
    return base64.b64encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")


def decode_keys(text: str, size: int) -> np.ndarray:
    """`_encode_keys` reversed; ValueError when the text does not hold `size` keys."""
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=True))
    except (zlib.error, ValueError) as e:
        raise ValueError(f"undecodable sample: {e}") from None
    if len(raw) != 4 * size:
        raise ValueError(f"sample holds {len(raw) // 4} values, expected {size}")
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, size)
    deltas = np.ascontiguousarray(planes.T).view("<u4").reshape(-1)
    keys: np.ndarray = np.cumsum(deltas, dtype=np.uint32)
    return keys


def validate_profile(profile: Any) -> None:
    """ValueError saying what is wrong when `profile` is not a usable reference profile (a
    hand-edited file, or one written by a newer tinyship)."""
    if not isinstance(profile, dict):
        raise ValueError(f"expected a JSON object, got {type(profile).__name__}")
    if profile.get("format") != PROFILE_FORMAT:
        raise ValueError(f"format {profile.get('format')!r}, this tinyship reads "
                         f"{PROFILE_FORMAT!r}")
    names, feats = profile.get("feature_names"), profile.get("features")
    if not isinstance(names, list) or not isinstance(feats, dict) or set(names) != set(feats):
        raise ValueError("'feature_names' and 'features' do not list the same features")
    if not isinstance(profile.get("sample_size"), int) or not isinstance(profile.get("rows"),
                                                                         int):
        raise ValueError("'rows' and 'sample_size' must be integers")
    columns = dict(feats)
    if profile.get("predictions") is not None:
        columns["predictions"] = profile["predictions"]
    for name, col in columns.items():
        try:
            edges = np.asarray(col["edges"], dtype=np.float64)
            fractions = np.asarray(col["fractions"], dtype=np.float64)
            stats = [float(col[k]) for k in ("mean", "min", "max")]
            ok = (edges.ndim == 1 and fractions.shape == (edges.size + 1,)
                  and bool(np.all(np.diff(edges) > 0)) and bool(np.isfinite(stats).all())
                  and isinstance(col["sample"], str))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name}: needs increasing 'edges', one more 'fractions', "
                             "'mean', 'min', 'max' and a 'sample'")
