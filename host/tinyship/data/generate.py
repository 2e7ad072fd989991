"""Synthetic battery state-of-health (SoH) dataset: the bundled predictive-maintenance example.

Why synthetic: a real cycling dataset is large, licensed and cannot be re-shaped on demand;
this generator is small, deterministic (same arguments -> byte-identical CSV) and has knobs
that shift its distributions in known ways, which the drift checks are tested against.

The model
---------
A fleet of ``cells`` lithium-ion cells is cycled (charge, then discharge) in a lab until end
of life. Each cell gets, from ``np.random.default_rng(seed)``:

* an ageing-rate multiplier, lognormal (median 1, sigma 0.3): manufacturing spread;
* an ambient temperature, normal (25 degC, sd 5) plus ``temperature_shift_c``;
* discharge and charge C-rates (uniform), and a beginning-of-life resistance (sd 5 %).

Per cycle, capacity fades by ``base_fade * rate * arrhenius(T) * stress(C-rate) * knee(SoH)``
percentage points, where

* ``arrhenius(T) = exp(Ea/R * (1/T_ref - 1/T))`` with the *cell* temperature (ambient plus
  self-heating), Ea = 35 kJ/mol, T_ref = 25 degC: +10 degC ages cells about 1.6x faster;
* ``stress`` grows with discharge and (more) with charge C-rate, as fast charging plates lithium;
* ``knee(SoH) = 1 + gain * max(0, knee_soh - SoH)``: past the knee the fade accelerates, the
  late-life "knee" seen in real cycling data;

plus an SEI-formation loss of about 1.5 % over the first ~50 cycles. Internal resistance grows
as SoH falls (quadratically, +70 % at 80 % SoH for NMC) and falls with temperature.

Features, one row per (cell, cycle) every ``sample_every`` cycles from cycle 1:

* ``discharge_time_s``: usable capacity / current; usable capacity = capacity * (1 - I*R/V),
  the IR drop reaching the cut-off voltage sooner;
* ``voltage_drop_time_s``: time for the loaded voltage to fall from 3.8 V to 3.5 V; this window
  shrinks faster than capacity as the electrodes degrade (a known strong SoH indicator). LFP is
  charged to 3.65 V and sits on a ~3.3 V plateau, so for LFP only the short drop onto the
  plateau falls in the window: tens of seconds, barely informative;
* ``mean_temperature_c``: ambient + I^2 R times the cell's thermal resistance (self-heating);
  ``max_temperature_c`` adds the end-of-discharge peak;
* ``mean_current_a``: the discharge current (per-cycle jitter 2 %);
* ``internal_resistance_mohm``: DC resistance at the cycle's temperature;
* ``charge_time_s``: CC-CV charge; a higher resistance reaches the CV voltage sooner and the
  slow CV phase takes a larger share, so aged cells charge *longer* despite a smaller capacity;
* ``cycle_index``: the cycle number (``cell_id`` identifies the cell and is not a feature).

The target ``soh_pct`` is the measured capacity relative to nominal, in %. Every measured
column carries sensor noise (temperature 0.3 degC, times 0.5 %, resistance 2 %, current 1 %,
capacity 0.3 % of nominal). SoH is close to a smooth function of (discharge time * current)
and resistance, so a small MLP learns it well (R^2 > 0.9 on standardized features).

Drift knobs
-----------
``temperature_shift_c``
    Shifts every cell's ambient temperature: the temperature columns move by about the knob,
    cells age faster (hot) or slower (cold), resistance drops (hot) or rises (cold).
``chemistry``
    ``"nmc"`` (default: 3.0 Ah 18650, 30 mOhm, knee near 88 %) or ``"lfp"`` (1.1 Ah fast-charged
    cell, 16 mOhm, flat voltage curve, slower fade with a sharper, later knee, higher C-rates).
``long_tail_fraction``
    Share of cells kept on test deep past the knee, down to 60 % SoH; the others retire at the
    usual 80 % end of life. Rows with SoH < 80 come only from these cells, so the knob makes
    rare end-of-life cycles rarer (0) or commoner (towards 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

BATTERY_FEATURES: list[str] = [
    "cycle_index",
    "discharge_time_s",
    "voltage_drop_time_s",
    "mean_temperature_c",
    "max_temperature_c",
    "mean_current_a",
    "internal_resistance_mohm",
    "charge_time_s",
]
BATTERY_TARGET = "soh_pct"
BATTERY_COLUMNS: list[str] = ["cell_id", *BATTERY_FEATURES, BATTERY_TARGET]
CHEMISTRIES = ("nmc", "lfp")

#: SoH at which an ordinary cell is retired, and where long-tail cells are stopped.
EOL_SOH = 80.0
LONG_TAIL_EOL_SOH = 60.0
#: Safety stop: a cell that has not reached end of life after this many cycles is a bug.
_MAX_CYCLES = 50_000

_GAS_CONSTANT = 8.314  # J/(mol K)
_KELVIN = 273.15
_T_REF_K = 25.0 + _KELVIN
_ACTIVATION_J_MOL = 35_000.0
#: Resistance falls with temperature: R(T) = R(25C) * exp(B * (1/T - 1/T_ref)).
_RESISTANCE_B_K = 2_000.0

#: Decimals kept per column (about each sensor's resolution); keeps the CSV small and stable.
_DECIMALS: dict[str, int] = {
    "discharge_time_s": 1,
    "voltage_drop_time_s": 1,
    "mean_temperature_c": 2,
    "max_temperature_c": 2,
    "mean_current_a": 4,
    "internal_resistance_mohm": 3,
    "charge_time_s": 1,
    "soh_pct": 3,
}


@dataclass(frozen=True)
class _Chemistry:
    capacity_ah: float
    resistance_mohm: float
    #: Percentage points of SoH lost per cycle at 25 degC, 1C, before the knee.
    base_fade: float
    knee_soh: float
    knee_gain: float
    sei_loss: float
    discharge_c: tuple[float, float]
    charge_c: tuple[float, float]
    #: Voltage the IR drop is compared against (lost usable capacity = I*R / this).
    sag_v: float
    #: Share of capacity inside the 3.8->3.5 V window when new, and its shrink exponent.
    window_share: float
    window_exp: float
    #: Overvoltage at which CC charge hands over to CV (larger = CV phase less sensitive to R).
    cv_margin_v: float
    thermal_k_per_w: float


_CHEMISTRY: dict[str, _Chemistry] = {
    "nmc": _Chemistry(
        capacity_ah=3.0,
        resistance_mohm=30.0,
        base_fade=0.05,
        knee_soh=88.0,
        knee_gain=0.35,
        sei_loss=1.5,
        discharge_c=(0.5, 1.5),
        charge_c=(0.5, 1.5),
        sag_v=1.5,
        window_share=0.32,
        window_exp=1.6,
        cv_margin_v=0.35,
        thermal_k_per_w=12.0,
    ),
    "lfp": _Chemistry(
        capacity_ah=1.1,
        resistance_mohm=16.0,
        base_fade=0.02,
        knee_soh=90.0,
        knee_gain=0.6,
        sei_loss=0.8,
        discharge_c=(1.0, 4.0),
        charge_c=(1.0, 4.0),
        sag_v=0.9,
        window_share=0.015,
        window_exp=0.5,
        cv_margin_v=0.25,
        thermal_k_per_w=18.0,
    ),
}


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def _check_float(name: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return v


def _arrhenius(temp_c: np.ndarray) -> np.ndarray:
    t_k = temp_c + _KELVIN
    return np.exp(_ACTIVATION_J_MOL / _GAS_CONSTANT * (1.0 / _T_REF_K - 1.0 / t_k))


def _resistance_mohm(r0: np.ndarray, soh: np.ndarray, temp_c: np.ndarray) -> np.ndarray:
    """Resistance grows as SoH falls (SEI growth, contact loss) and drops when warm."""
    lost = np.clip(1.0 - soh / 100.0, 0.0, None)
    growth = 1.0 + 2.5 * lost + 6.0 * lost**2
    temp = np.exp(_RESISTANCE_B_K * (1.0 / (temp_c + _KELVIN) - 1.0 / _T_REF_K))
    return r0 * growth * temp


def generate_battery_dataset(
    *,
    cells: int = 60,
    seed: int = 7,
    sample_every: int = 5,
    temperature_shift_c: float = 0.0,
    chemistry: str = "nmc",
    long_tail_fraction: float = 0.15,
) -> pd.DataFrame:
    """Simulate a cycled cell fleet; one row per sampled (cell, cycle). See the module doc.

    Raises ValueError naming the argument when one is out of range.
    """
    cells = _check_int("cells", cells, 2, 10_000)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    sample_every = _check_int("sample_every", sample_every, 1, 1_000)
    shift = _check_float("temperature_shift_c", temperature_shift_c, -25.0, 30.0)
    tail = _check_float("long_tail_fraction", long_tail_fraction, 0.0, 1.0)
    if chemistry not in _CHEMISTRY:
        raise ValueError(f"chemistry must be one of {', '.join(CHEMISTRIES)}, got {chemistry!r}")
    chem = _CHEMISTRY[chemistry]
    rng = np.random.default_rng(seed)

    # Per-cell properties, drawn in a fixed order so a seed always means the same fleet.
    rate = rng.lognormal(mean=0.0, sigma=0.3, size=cells)
    ambient = rng.normal(25.0, 5.0, size=cells) + shift
    discharge_c = rng.uniform(*chem.discharge_c, size=cells)
    charge_c = rng.uniform(*chem.charge_c, size=cells)
    r0 = chem.resistance_mohm * rng.normal(1.0, 0.05, size=cells)
    sei_tau = rng.uniform(30.0, 70.0, size=cells)
    n_tail = round(tail * cells)
    eol = np.full(cells, EOL_SOH)
    eol[rng.permutation(cells)[:n_tail]] = LONG_TAIL_EOL_SOH
    stress = (discharge_c**0.5) * (0.6 + 0.4 * charge_c**1.2)
    current0 = discharge_c * chem.capacity_ah

    rows: list[np.ndarray] = []
    fade = np.zeros(cells)  # cumulative non-SEI capacity loss, percentage points
    alive = np.ones(cells, dtype=bool)
    cycle = 0
    while alive.any():
        cycle += 1
        if cycle > _MAX_CYCLES:  # pragma: no cover - guards the physics constants
            raise RuntimeError("battery simulation did not reach end of life")
        # Daily ambient wobble and current jitter are drawn for every cell, alive or not,
        # so one cell retiring does not change the random stream of the others.
        amb = ambient + rng.normal(0.0, 0.8, size=cells)
        current = current0 * (1.0 + rng.normal(0.0, 0.02, size=cells))
        sei = chem.sei_loss * (1.0 - np.exp(-cycle / sei_tau))
        soh = 100.0 - sei - fade
        r_mohm = _resistance_mohm(r0, soh, amb)
        heat_w = current**2 * r_mohm / 1000.0
        temp = amb + heat_w * chem.thermal_k_per_w
        knee = 1.0 + chem.knee_gain * np.clip(chem.knee_soh - soh, 0.0, None)
        step = chem.base_fade * rate * _arrhenius(temp) * stress * knee
        alive &= soh > eol
        if (cycle - 1) % sample_every == 0 and alive.any():
            idx = np.flatnonzero(alive)
            rows.append(
                np.column_stack(
                    [
                        idx,
                        np.full(idx.size, cycle),
                        soh[idx],
                        current[idx],
                        r_mohm[idx],
                        temp[idx],
                        charge_c[idx],
                    ]
                )
            )
        fade = fade + np.where(alive, step, 0.0)

    sim = np.concatenate(rows)
    cell_id, cycle_idx, soh, current, r_mohm, temp, c_charge = sim.T
    return _measure(chem, rng, cell_id, cycle_idx, soh, current, r_mohm, temp, c_charge)


def _measure(
    chem: _Chemistry,
    rng: np.random.Generator,
    cell_id: np.ndarray,
    cycle_idx: np.ndarray,
    soh: np.ndarray,
    current: np.ndarray,
    r_mohm: np.ndarray,
    temp: np.ndarray,
    c_charge: np.ndarray,
) -> pd.DataFrame:
    """Turn the true cell state into what a cycler logs: derived timings plus sensor noise."""
    n = soh.size
    s = soh / 100.0
    capacity_ah = chem.capacity_ah * s
    r_ohm = r_mohm / 1000.0
    usable = capacity_ah * np.clip(1.0 - current * r_ohm / chem.sag_v, 0.5, 1.0)
    discharge_s = 3600.0 * usable / current
    window = chem.window_share * s**chem.window_exp * np.clip(1.0 - current * r_ohm / 0.6, 0.2, 1)
    vdrop_s = 3600.0 * capacity_ah * window / current
    i_charge = c_charge * chem.capacity_ah
    cc_share = np.clip(0.95 - i_charge * r_ohm / chem.cv_margin_v, 0.3, 0.95)
    # CV phase: current tapers, averaging about 30 % of the CC current.
    charge_s = 3600.0 * capacity_ah * (cc_share / i_charge + (1.0 - cc_share) / (0.3 * i_charge))
    heat_w = current**2 * r_ohm
    peak_c = temp + 0.6 * heat_w * chem.thermal_k_per_w + 0.8

    def noisy(x: np.ndarray, rel: float) -> np.ndarray:
        return x * (1.0 + rng.normal(0.0, rel, size=n))

    out = pd.DataFrame(
        {
            "cell_id": cell_id.astype(np.int64),
            "cycle_index": cycle_idx.astype(np.int64),
            "discharge_time_s": noisy(discharge_s, 0.005),
            "voltage_drop_time_s": noisy(vdrop_s, 0.005),
            "mean_temperature_c": temp + rng.normal(0.0, 0.3, size=n),
            "max_temperature_c": peak_c + np.abs(rng.normal(0.0, 0.3, size=n)),
            "mean_current_a": noisy(current, 0.01),
            "internal_resistance_mohm": noisy(r_mohm, 0.02),
            "charge_time_s": noisy(charge_s, 0.005),
            "soh_pct": soh + rng.normal(0.0, 0.3, size=n),
        }
    )
    for col, decimals in _DECIMALS.items():
        out[col] = out[col].round(decimals)
    out = out.sort_values(["cell_id", "cycle_index"], kind="stable").reset_index(drop=True)
    return out[BATTERY_COLUMNS]


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """The canonical CSV encoding (LF, no index): what `tinyship data generate` writes."""
    text: str = df.to_csv(index=False, lineterminator="\n")
    return text.encode("utf-8")
