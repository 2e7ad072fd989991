"""Target-runtime profiles: which quantization scheme and operators a TFLM build computes right.

Measured: TensorFlow's converter quantizes Dense (FULLY_CONNECTED) weights per channel by
default; the official TensorFlowLite Arduino library (synced from TFLM in 2023) treats them
as per tensor and silently returns wrong outputs. So the scheme is a property of the
runtime the firmware pins, and the default must be safe for the oldest one we ship.
"""

from __future__ import annotations

from dataclasses import dataclass


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
                "Official TensorFlowLite Arduino library (TFLM synced 2023). Dense layers "
                "per-tensor quantized; per-channel Dense silently miscomputes there."
            ),
            per_channel_dense=False,
            supported_ops=_COMMON_OPS,
            accepts=frozenset({"tflm-arduino-2023"}),
        ),
        Profile(
            name="tflm-current",
            description=(
                "Current TFLM (the tflite-micro package, esp-tflite-micro 1.3+, recent "
                "Arduino_TensorFlowLite forks). Per-channel Dense supported."
            ),
            per_channel_dense=True,
            supported_ops=_COMMON_OPS,
            accepts=frozenset({"tflm-arduino-2023", "tflm-current"}),
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
