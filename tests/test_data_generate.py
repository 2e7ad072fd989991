"""The battery generator: deterministic, validated, learnable, and its drift knobs do what
the module docstring says; the bundled CSV is exactly its default output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tinyship.cli import cli, main
from tinyship.config import bundled_dataset
from tinyship.data.generate import (
    BATTERY_COLUMNS,
    BATTERY_FEATURES,
    BATTERY_TARGET,
    EOL_SOH,
    generate_battery_dataset,
    to_csv_bytes,
)
from tinyship.errors import ExitCode

SMALL = {"cells": 20, "seed": 3}


@pytest.fixture(scope="module")
def default_df() -> pd.DataFrame:
    return generate_battery_dataset()


def test_columns_and_size(default_df: pd.DataFrame) -> None:
    assert list(default_df.columns) == BATTERY_COLUMNS
    assert BATTERY_TARGET == "soh_pct"
    assert "cell_id" not in BATTERY_FEATURES
    assert 3000 <= len(default_df) <= 5000
    assert default_df["cell_id"].nunique() == 60
    assert default_df.notna().all().all()
    assert np.isfinite(default_df.to_numpy(dtype=float)).all()


def test_physical_sanity(default_df: pd.DataFrame) -> None:
    df = default_df
    assert df["soh_pct"].between(55, 102).all()
    assert (df["max_temperature_c"] > df["mean_temperature_c"]).mean() > 0.99
    assert (df[["discharge_time_s", "charge_time_s", "internal_resistance_mohm"]] > 0).all().all()
    # Every cell starts near 100 % and fades, with cycles sampled every 5 from cycle 1.
    first = df.groupby("cell_id").first()
    assert (first["cycle_index"] == 1).all()
    assert (first["soh_pct"] > 98).all()
    assert set(df["cycle_index"] % 5) == {1}
    for _, cell in df.groupby("cell_id"):
        soh = cell["soh_pct"].to_numpy()
        assert soh[-1] < soh[0] - 10
        assert (
            cell["internal_resistance_mohm"].iloc[-3:].mean()
            > cell["internal_resistance_mohm"].iloc[:3].mean()
        )


def test_knee_fade_accelerates(default_df: pd.DataFrame) -> None:
    """Late life fades faster per cycle than early life (the knee)."""
    per_cell = []
    for _, cell in default_df.groupby("cell_id"):
        c, s = cell["cycle_index"].to_numpy(), cell["soh_pct"].to_numpy()
        early = (s > 93) & (s < 97)
        late = (s < 86) & (s > 80)
        if early.sum() > 3 and late.sum() > 3:
            slope_early = np.polyfit(c[early], s[early], 1)[0]
            slope_late = np.polyfit(c[late], s[late], 1)[0]
            per_cell.append(slope_late / slope_early)
    assert len(per_cell) > 30
    assert np.median(per_cell) > 2.0


def test_same_args_same_bytes() -> None:
    a = to_csv_bytes(generate_battery_dataset(**SMALL))
    b = to_csv_bytes(generate_battery_dataset(**SMALL))
    assert a == b
    other = to_csv_bytes(generate_battery_dataset(cells=20, seed=4))
    assert other != a


def test_bundled_csv_is_fresh_generation(default_df: pd.DataFrame) -> None:
    path = bundled_dataset("battery_soh.csv")
    assert path.read_bytes() == to_csv_bytes(default_df), (
        "bundled dataset drifted from the generator; regenerate with "
        "`tinyship data generate --out host/tinyship/datasets/battery_soh.csv`"
    )


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"cells": 1}, "cells"),
        ({"cells": 2.5}, "cells"),
        ({"cells": True}, "cells"),
        ({"seed": -1}, "seed"),
        ({"sample_every": 0}, "sample_every"),
        ({"temperature_shift_c": float("nan")}, "temperature_shift_c"),
        ({"temperature_shift_c": 100.0}, "temperature_shift_c"),
        ({"temperature_shift_c": "hot"}, "temperature_shift_c"),
        ({"chemistry": "lco"}, "chemistry"),
        ({"long_tail_fraction": 1.5}, "long_tail_fraction"),
        ({"long_tail_fraction": -0.1}, "long_tail_fraction"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        generate_battery_dataset(**kwargs)  # type: ignore[arg-type]


def test_sample_every_controls_density() -> None:
    dense = generate_battery_dataset(cells=10, seed=1, sample_every=1)
    sparse = generate_battery_dataset(cells=10, seed=1, sample_every=10)
    assert 8 < len(dense) / len(sparse) < 12
    assert set(sparse["cycle_index"] % 10) == {1}


def test_temperature_shift_moves_temperature_by_the_knob() -> None:
    base = generate_battery_dataset(**SMALL)
    hot = generate_battery_dataset(**SMALL, temperature_shift_c=10.0)
    shift = hot["mean_temperature_c"].mean() - base["mean_temperature_c"].mean()
    assert shift == pytest.approx(10.0, abs=1.0)
    # Hot cells age faster: fewer cycles to end of life, and warm cells show lower resistance.
    assert hot["cycle_index"].max() < base["cycle_index"].max()
    assert len(hot) < len(base)
    new = base["cycle_index"] == 1
    assert (
        hot.loc[hot["cycle_index"] == 1, "internal_resistance_mohm"].mean()
        < base.loc[new, "internal_resistance_mohm"].mean()
    )


def test_lfp_differs_from_nmc() -> None:
    nmc = generate_battery_dataset(**SMALL)
    lfp = generate_battery_dataset(**SMALL, chemistry="lfp")
    assert lfp["internal_resistance_mohm"].median() < 0.7 * nmc["internal_resistance_mohm"].median()
    # LFP's flat plateau leaves only a sliver of the 3.8->3.5 V window.
    assert lfp["voltage_drop_time_s"].median() < 0.1 * nmc["voltage_drop_time_s"].median()
    assert lfp["discharge_time_s"].median() < 0.7 * nmc["discharge_time_s"].median()
    assert list(lfp.columns) == BATTERY_COLUMNS


def test_long_tail_fraction_changes_end_of_life_share() -> None:
    def eol_share(fraction: float) -> float:
        df = generate_battery_dataset(cells=40, seed=5, long_tail_fraction=fraction)
        return float((df["soh_pct"] < EOL_SOH - 1).mean())

    none, default, many = eol_share(0.0), eol_share(0.15), eol_share(0.6)
    assert none == 0.0
    assert 0.0 < default < many
    assert many > 3 * default
    deep = generate_battery_dataset(cells=40, seed=5, long_tail_fraction=1.0)
    assert deep.groupby("cell_id")["soh_pct"].min().max() < 70  # sampled every 5 cycles


def test_learnable_without_tensorflow(default_df: pd.DataFrame) -> None:
    """Least squares on standardized features and their pairwise products, held-out cells:
    if this reaches R^2 > 0.95 a 2-layer MLP comfortably passes 0.9."""
    x = default_df[BATTERY_FEATURES].to_numpy(dtype=float)
    y = default_df[BATTERY_TARGET].to_numpy()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    k = z.shape[1]
    design = np.column_stack(
        [np.ones(len(z)), z, *[z[:, i] * z[:, j] for i in range(k) for j in range(i, k)]]
    )
    test = default_df["cell_id"].to_numpy() % 5 == 0
    w, *_ = np.linalg.lstsq(design[~test], y[~test], rcond=None)
    pred = design[test] @ w
    r2 = 1 - np.sum((y[test] - pred) ** 2) / np.sum((y[test] - y[test].mean()) ** 2)
    assert r2 > 0.95
    # The physics proxies alone carry most of the signal.
    capacity_proxy = default_df["discharge_time_s"] * default_df["mean_current_a"]
    assert np.corrcoef(capacity_proxy, y)[0, 1] > 0.9
    assert np.corrcoef(default_df["internal_resistance_mohm"], y)[0, 1] < -0.8


# --- `tinyship data generate` ------------------------------------------------------------


def test_cli_generate_json_and_atomic(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "fleet.csv"
    args = ["data", "generate", "--out", str(out), "--cells", "8", "--seed", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    expected = to_csv_bytes(generate_battery_dataset(cells=8, seed=2))
    assert out.read_bytes() == expected
    assert payload == {
        "path": str(out),
        "rows": len(pd.read_csv(out)),
        "sha256": hashlib.sha256(expected).hexdigest(),
    }
    assert [p.name for p in out.parent.iterdir()] == ["fleet.csv"]  # no temp file left
    # Same arguments again: same bytes, file replaced in place.
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert out.read_bytes() == expected


def test_cli_generate_drift_knobs(tmp_path: Path) -> None:
    out = tmp_path / "lfp.csv"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "generate",
            "--out",
            str(out),
            "--cells",
            "6",
            "--chemistry",
            "lfp",
            "--temperature-shift",
            "5",
            "--long-tail-fraction",
            "0.5",
            "--sample-every",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    expected = generate_battery_dataset(
        cells=6, chemistry="lfp", temperature_shift_c=5.0, long_tail_fraction=0.5, sample_every=3
    )
    assert out.read_bytes() == to_csv_bytes(expected)
    assert "wrote" in result.output


def test_cli_generate_default_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["data", "generate", "--cells", "3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "battery_soh.csv").is_file()


def test_cli_generate_bad_argument_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit) as exc:
        main(["data", "generate", "--out", str(out), "--long-tail-fraction", "2"])
    assert exc.value.code == ExitCode.USAGE
    assert "long_tail_fraction" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["data", "generate", "--out", str(out), "--chemistry", "lco"])
    assert exc.value.code == ExitCode.USAGE
