"""Datasets: the bundled battery generator, CSV loading, and the pre-training data checks.

Importing this package stays light (numpy and pandas only, never TensorFlow).
"""

from tinyship.data.checks import CheckReport, CheckResult, model_features, run_checks
from tinyship.data.generate import BATTERY_FEATURES, BATTERY_TARGET, generate_battery_dataset
from tinyship.data.load import fingerprint, load_dataset

__all__ = [
    "BATTERY_FEATURES",
    "BATTERY_TARGET",
    "CheckReport",
    "CheckResult",
    "fingerprint",
    "generate_battery_dataset",
    "load_dataset",
    "model_features",
    "run_checks",
]
