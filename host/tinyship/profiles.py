"""Target-runtime profiles: which quantization scheme and operators a TFLM build computes right.

Measured: TensorFlow's converter quantizes Dense (FULLY_CONNECTED) weights per channel by
default; TFLM libraries whose FullyConnected kernel reads one weight scale per tensor (the
Arduino libraries, TFLM synced up to 2023-01; esp-tflite-micro before 1.3.4) silently return
wrong outputs. So the scheme is a property of the runtime the firmware pins, and the default
must be safe for the oldest one we ship. Which library release runs which profile is the
table in `tinyship.tflm_libraries`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyship.tflm_libraries import PROFILE_ACCEPTS


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: Quantize FULLY_CONNECTED weights per channel (False: one scale per tensor).
    per_channel_dense: bool
    #: Builtin operators this runtime is known to run correctly for int8.
    supported_ops: frozenset[str]
    #: Profiles whose models this runtime may run (a newer runtime runs older schemes).
    accepts: frozenset[str]


_COMMON_OPS = frozenset(
    {
        "FULLY_CONNECTED",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "RESHAPE",
        "EXPAND_DIMS",
        "SQUEEZE",
        "RELU",
        "RELU6",
        "TANH",
        "LOGISTIC",
        "SOFTMAX",
        "QUANTIZE",
        "DEQUANTIZE",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "MEAN",
        "ADD",
        "MUL",
    }
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="tflm-arduino-2023",
            description=(
                "TFLM whose FullyConnected reads one weight scale per tensor: "
                "Chirale_TensorFlowLite 2.0.0 (TFLM of 2023-01-14), the official Arduino "
                "library (TFLM of 2022-09-20), esp-tflite-micro 1.3.0-1.3.3.1. Dense layers "
                "per-tensor quantized; per-channel Dense silently miscomputes there."
            ),
            per_channel_dense=False,
            # MEAN: these libraries' int8 MEAN rounds differently from the tflite-micro
            # package the virtual board and the HIL reference run (up to 3 LSB on 56 % of
            # random inputs, measured on a Conv2D+Mean+Dense model), so the host could not
            # predict the board bit-exactly. tinyship's own models never use it.
            supported_ops=_COMMON_OPS - {"MEAN"},
            accepts=PROFILE_ACCEPTS["tflm-arduino-2023"],
        ),
        Profile(
            name="tflm-current",
            description=(
                "TFLM whose FullyConnected honours per-channel weight scales: the "
                "tflite-micro package, esp-tflite-micro 1.3.4 and later. Per-channel Dense "
                "supported."
            ),
            per_channel_dense=True,
            supported_ops=_COMMON_OPS,
            accepts=PROFILE_ACCEPTS["tflm-current"],
        ),
    )
}

DEFAULT_PROFILE = "tflm-arduino-2023"


def get_profile(name: str) -> Profile:
    """Look a profile up by name; KeyError lists the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile '{name}' (known: {', '.join(sorted(PROFILES))})") from None


def compatible(runtime_profile: str, model_profile: str) -> bool:
    """True if firmware pinned to `runtime_profile` computes a `model_profile` model right."""
    return model_profile in get_profile(runtime_profile).accepts
