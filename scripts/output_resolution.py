"""Before/after of the standardized regression output, on one trained network and one split.

Trains the bundled state-of-health model once (tinyship.toml), then quantizes the same float
network two ways: as trained (predicting the standardized target, mean/scale exported) and
with the scale folded into the last Dense layer (predicting target units, as tinyship did
before: the int8 range must then include 0). Prints the output step and the int8 MAE of each.

    .venv/bin/python scripts/output_resolution.py [--config tinyship.toml] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tinyship.config import load_config
from tinyship.convert import quantize, runtimes, tflite_info
from tinyship.data.load import load_dataset
from tinyship.train import model as train_model
from tinyship.train.split import Standardizer, split_indices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path(__file__).parents[1] / "tinyship.toml")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = load_config(args.config)
    if cfg.data.task != "regression":
        raise SystemExit("output resolution applies to regression configs")
    df = load_dataset(cfg.dataset_path, cfg.data)
    x = df[cfg.data.features].to_numpy(np.float64)
    y = df[cfg.data.target].to_numpy(np.float64)
    sp = split_indices(len(df), test_fraction=cfg.training.test_fraction,
                       val_fraction=cfg.training.val_fraction, seed=cfg.training.seed,
                       groups=df[cfg.data.group].to_numpy() if cfg.data.group else None)
    xs = Standardizer.fit(x[sp.train]).transform(x)
    trained = train_model.fit(xs[sp.train], y[sp.train], xs[sp.val], y[sp.val],
                              task="regression", n_classes=0, spec=cfg.model,
                              training=cfg.training)
    rng = np.random.default_rng(cfg.training.seed)
    rep = xs[sp.train][np.sort(rng.choice(len(sp.train), size=min(
        cfg.quantization.representative_samples, len(sp.train)), replace=False))]
    rows = {}
    # standardized first: folding changes the network's last layer in place
    for name, fold in (("standardized (after)", False), ("target units (before)", True)):
        mean, scale = trained.target_mean, trained.target_scale
        if fold:
            last = trained.model.layers[-1]
            w, b = last.get_weights()
            last.set_weights([w * scale, b * scale + mean])
            mean, scale = 0.0, 1.0
        model = quantize.to_int8_tflite(trained.model, rep, cfg.quantization.profile)
        out = tflite_info.inspect_model(model).outputs[0]
        xq = runtimes.quantize(xs[sp.test], tflite_info.inspect_model(model).inputs[0])
        q = runtimes.run_tflm(model, xq, 64 * 1024)
        record = {**out.to_dict(), "target_mean": mean, "target_scale": scale}
        pred = runtimes.to_target_units(q, record).reshape(-1)
        rows[name] = {"output_step": out.scale * scale,
                      "int8_mae": float(np.mean(np.abs(pred - y[sp.test])))}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'int8 output':24} {'step':>8} {'int8 MAE':>9}  ({cfg.data.target}, "
          f"{len(sp.test)} test rows)")
    for name, r in rows.items():
        print(f"{name:24} {r['output_step']:8.4f} {r['int8_mae']:9.4f}")


if __name__ == "__main__":
    main()
