"""Faults the virtual board can inject, and the `--faults` spec parser.

Spec syntax: comma-separated `name=value` or bare flags, e.g.

    corrupt_rx=0.01,drop_tx=0.005,garbage=0.05,reset_after=20,hang_after=50,
    wrong_version,wrong_hash,wrong_prediction=0.1,wrong_at=3/7,seed=1

Every random decision uses generators derived from `seed` and the boot number, so a run
with the same seed, traffic and reconnects injects the same faults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Faults:
    """Fault injection settings. All fractions are probabilities in [0, 1]; 0 = off.

    Link (per byte; "rx" = host -> board, "tx" = board -> host):
      corrupt_rx, corrupt_tx: flip one random bit of a byte.
      drop_rx, drop_tx: lose a byte.
      garbage: after each frame the board sends, with this probability send 1..16 random
        non-zero bytes (line noise / stray debug text) before the next frame.
    Board:
      reset_after: reset (banner again, core state lost) after this many reply frames in a
        boot; 0 = never.
      reset_probability: after each reply frame, reset with this probability.
      hang_after: stop answering (read and ignore everything) after this many reply frames
        in a boot, until the port is reopened; 0 = never.
    Identity (config strings the core reports):
      wrong_version: report this model version instead of the real one ("" = off; a value
        starting with "-" is appended to the real version, and the bare flag means "-wrong").
      wrong_hash: report a SHA-256 that differs from the model's.
      bad_model_crc: the model CRC check at boot fails (TS_CRC_MISMATCH; INFER refused).
    Model:
      wrong_prediction: fraction of INFER vectors whose outputs are perturbed.
      wrong_at: indices (0-based, counted over INFER vectors since boot, self-test not
        counted) whose outputs are perturbed.
      wrong_delta: added (mod 256, so the output always changes) to each perturbed output.
    Flash (model slots):
      power_cut_at: lose power at this erase/program operation, counted since the board
        started (1-based), once; the board powers on again as after a brown-out. 0 = off.
      power_cut: lose power at each flash operation with this probability.
      power_cut_mode: before (the operation does nothing), torn (it is left half done: a
        partly programmed unit, a partly erased sector) or random (either, seeded).
    seed: seed of every random decision.
    """

    corrupt_rx: float = 0.0
    corrupt_tx: float = 0.0
    drop_rx: float = 0.0
    drop_tx: float = 0.0
    garbage: float = 0.0
    reset_after: int = 0
    reset_probability: float = 0.0
    hang_after: int = 0
    wrong_version: str = ""
    wrong_hash: bool = False
    bad_model_crc: bool = False
    wrong_prediction: float = 0.0
    wrong_at: tuple[int, ...] = field(default_factory=tuple)
    wrong_delta: int = 37
    power_cut_at: int = 0
    power_cut: float = 0.0
    power_cut_mode: str = "random"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("corrupt_rx", "corrupt_tx", "drop_rx", "drop_tx", "garbage",
                     "reset_probability", "wrong_prediction", "power_cut"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault {name}={v}: expected a fraction in [0, 1]")
        if self.power_cut_mode not in ("before", "torn", "random"):
            raise ValueError(f"fault power_cut_mode={self.power_cut_mode}: expected before, "
                             "torn or random")
        for name in ("reset_after", "hang_after", "seed", "power_cut_at"):
            if getattr(self, name) < 0:
                raise ValueError(f"fault {name}: expected a count >= 0")
        if any(i < 0 for i in self.wrong_at):
            raise ValueError("fault wrong_at: indices must be >= 0")
        if self.wrong_delta % 256 == 0:
            raise ValueError("fault wrong_delta: must not be a multiple of 256")

    @property
    def active(self) -> bool:
        return self != Faults(seed=self.seed)

    def to_spec(self) -> str:
        """The spec string that `parse_faults` turns back into these faults."""
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v == f.default or (f.name == "wrong_at" and not v):
                continue
            if isinstance(v, bool):
                parts.append(f.name)
            elif isinstance(v, tuple):
                parts.append(f"{f.name}={'/'.join(str(i) for i in v)}")
            else:
                parts.append(f"{f.name}={v}")
        return ",".join(parts)


_FLOATS = {"corrupt_rx", "corrupt_tx", "drop_rx", "drop_tx", "garbage", "reset_probability",
           "wrong_prediction", "power_cut"}
_INTS = {"reset_after", "hang_after", "wrong_delta", "seed", "power_cut_at"}
_BOOLS = {"wrong_hash", "bad_model_crc"}
_ALIASES = {"corrupt": ("corrupt_rx", "corrupt_tx"), "drop": ("drop_rx", "drop_tx"),
            "reset_p": ("reset_probability",)}


def parse_faults(spec: str | None) -> Faults:
    """Parse a `--faults` spec (see the module docstring). Raises ValueError on bad input.

    `corrupt=` and `drop=` set both directions; `reset_p=` is `reset_probability=`.
    """
    if spec is None or not spec.strip():
        return Faults()
    kw: dict[str, Any] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        value = value.strip()
        names = _ALIASES.get(name, (name,))
        for n in names:
            if n in _FLOATS:
                kw[n] = _number(n, value, float)
            elif n in _INTS:
                kw[n] = _number(n, value, int)
            elif n in _BOOLS:
                if sep and value.lower() not in ("1", "true", "yes", "on", "0", "false",
                                                 "no", "off"):
                    raise ValueError(f"fault {n}: expected a flag, got '{value}'")
                kw[n] = not sep or value.lower() in ("1", "true", "yes", "on")
            elif n == "wrong_version":
                kw[n] = value if sep else "-wrong"
            elif n == "power_cut_mode":
                kw[n] = value
            elif n == "wrong_at":
                try:
                    kw[n] = tuple(int(v) for v in value.split("/") if v.strip())
                except ValueError:
                    raise ValueError(
                        f"fault wrong_at: expected indices separated by '/', got '{value}'"
                    ) from None
            else:
                known = sorted(_FLOATS | _INTS | _BOOLS | set(_ALIASES) |
                               {"wrong_version", "wrong_at", "power_cut_mode"})
                raise ValueError(f"unknown fault '{name}' (known: {', '.join(known)})")
    return Faults(**kw)


def _number(name: str, value: str, kind: type[float] | type[int]) -> float | int:
    if not value:
        raise ValueError(f"fault {name}: needs a value ({name}=...)")
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"fault {name}: '{value}' is not {what}") from None
