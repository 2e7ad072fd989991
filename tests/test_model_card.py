"""Model cards describe the project they were trained for: everything about intended use and
limits comes from the manifest and its config, so a non-battery dataset gets no battery text."""

from __future__ import annotations

import re
from typing import Any

from conftest import REPO
from tinyship.config import Config, load_config, parse_config
from tinyship.model_card import render_model_card

WINE_FEATURES = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280_od315", "proline",
]


def _manifest(cfg: Config, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A manifest as `run_pipeline` writes it, without training anything."""
    return {
        "version": "v0003",
        "parent": "v0002",
        "created": "2025-01-01T00:00:00+00:00",
        "tinyship_version": "0.1.0",
        "git_commit": None,
        "profile": cfg.quantization.profile,
        "task": cfg.data.task,
        "features": list(cfg.data.features),
        "target": cfg.data.target,
        "classes": [],
        "model": {"type": "mlp", "bytes": 4096, "arena_bytes": 2048,
                  "ops": ["FULLY_CONNECTED", "SOFTMAX"]},
        "data": {"path": cfg.data.path, "rows": 178, "sha256": "ab" * 32},
        "metrics": {"test_rows": 36, "int8_degradation": 0.0, "parity_max_lsb": 0, **metrics},
        "gates": [{"name": "accuracy_int8", "value": 0.94, "op": ">=", "threshold": 0.9,
                   "passed": True}],
        "config": cfg.to_dict(),
        **extra,
    }


def _wine_card() -> str:
    cfg = parse_config(
        {
            "project": {"name": "wine-cultivar"},
            "data": {
                "path": "wine.csv", "features": WINE_FEATURES, "target": "cultivar",
                "task": "classification", "constant_features": "drop",
                "ranges": {"alcohol": [10.0, 15.5], "hue": [0.4, 1.8]},
            },
            "quantization": {"profile": "tflm-current"},
            "board": {"name": "esp32s3"},
        },
        base_dir=REPO,
    )
    kept = [f for f in WINE_FEATURES if f != "ash"]
    scores = {"accuracy": 0.94, "macro_f1": 0.93}
    return render_model_card(_manifest(
        cfg, {"float": scores, "int8": scores}, features=kept, dropped_features=["ash"],
        classes=["barolo", "grignolino", "barbera"],
    ))


def test_non_battery_card_has_no_battery_words() -> None:
    card = _wine_card().lower()
    for word in ("battery", "batteries", "chemistr", "temperature", "cell", "state of health",
                 "soh", "end-of-life", "long-tail", "long tail"):
        assert word not in card, word


def test_card_intended_use_comes_from_the_config() -> None:
    card = _wine_card()
    assert card.startswith("# Model card: wine-cultivar v0003")
    intended = card.split("## Intended use")[1].split("## Data")[0]
    assert "Classifies `cultivar` into one of the 3 classes" in intended
    assert "from the 12 input features" in intended
    assert "`tflm-current` target-runtime profile within the budgets of board `esp32s3`" \
        in intended
    assert "`alcohol` [10, 15.5], `hue` [0.4, 1.8]" in intended  # declared ranges: the scope
    assert "random sample of rows (no `data.group`)" in intended
    for feature in WINE_FEATURES:
        if feature != "ash":
            assert f"`{feature}`" in card.split("## Intended use")[0], feature
    assert "- Classes: `barolo`, `grignolino`, `barbera`" in card
    assert "- Dropped constant features: `ash`" in card
    limits = card.split("## Limitations")[1]
    assert "`wine.csv`" in limits
    assert "3 classes seen in training (`barolo`, `grignolino`, `barbera`)" in limits
    assert "`ash` had a single value in the whole dataset, so it is not a model input" in limits


def test_dropped_features_are_not_counted_as_inputs() -> None:
    """Whether the manifest's `features` lists the dropped ones too or not, the card lists
    only the model's inputs."""
    cfg = parse_config({"data": {"path": "d.csv", "features": ["a", "b", "c"], "target": "y",
                                 "constant_features": "drop"}}, base_dir=REPO)
    m = _manifest(cfg, {"float": {"mae": 1.0}, "int8": {"mae": 1.0}},
                  dropped_features=["b", "c"])
    card = render_model_card(m)
    assert "from 1 feature: `a`\n" in card and "from the 1 input feature listed" in card
    assert "`b`, `c` had a single value in the whole dataset, so they are not model" in card


def test_bundled_config_card_names_its_group_ranges_and_long_tail() -> None:
    cfg = load_config(REPO / "tinyship.toml")
    tail = {"slice": "soh_pct <= 78.3 (bottom 10%)", "rows": 31, "mae": 2.1}
    metrics = {"float": {"mae": 1.2, "r2": 0.97, "long_tail": tail},
               "int8": {"mae": 1.3, "r2": 0.96, "long_tail": tail}}
    card = render_model_card(_manifest(cfg, metrics))
    assert card.startswith("# Model card: battery-soh v0003")
    assert "Estimates `soh_pct` from the 8 input features" in card
    assert "held-out test set holds whole `cell_id` values never seen in training" in card
    assert "`mean_temperature_c` [-30, 80]" in card
    assert "Other declared ranges: `soh_pct` [0, 110]" in card  # the target is not an input
    limits = card.split("## Limitations")[1]
    assert re.search(r"long-tail slice, the bottom 10% of `soh_pct` \(test set: "
                     r"soh_pct <= 78\.3 \(bottom 10%\), 31 rows\)", limits)
    assert "Classes" not in card and "Dropped" not in card


def test_long_tail_range_and_missing_ranges_described() -> None:
    cfg = parse_config(
        {"data": {"path": "d.csv", "features": ["x"], "target": "y", "group": "site",
                  "long_tail": {"range": [None, 5.0]}}},
        base_dir=REPO,
    )
    card = render_model_card(_manifest(cfg, {"float": {"mae": 1.0}, "int8": {"mae": 1.0}}))
    assert "long-tail slice, `y` <= 5, is rare" in card
    assert "No input ranges are declared (`data.ranges`)" in card
    assert "unseen `site` values only" in card
