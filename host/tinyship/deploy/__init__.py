"""Deploying registry versions to boards: the deployment log and the per-device lock.

This stage sits above `tinyship.device` and `tinyship.registry` and may import them; they
never import it. Importing this package stays cheap (standard library and `filelock`).
"""

from __future__ import annotations

from tinyship.deploy.lock import DeviceBusy, DeviceLock, LockHolder, default_lock_dir
from tinyship.deploy.log import (
    RESULTS,
    Attempt,
    BoardReport,
    DeployLogError,
    DeploymentLog,
    StepRecord,
    default_log_path,
)

__all__ = [
    "RESULTS",
    "Attempt",
    "BoardReport",
    "DeployLogError",
    "DeploymentLog",
    "DeviceBusy",
    "DeviceLock",
    "LockHolder",
    "StepRecord",
    "default_lock_dir",
    "default_log_path",
]
