"""One exception tree for tinyship, each branch with its documented exit code.

The CLI maps these to exit codes in one place (`tinyship.cli.main`); library code raises
them with enough data (file, column, key, port) for the message to name the problem.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md (keep both in step)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    DATA = 4
    GATE = 5
    REGISTRY = 6
    MODEL = 7
    DEVICE = 8
    VALIDATION = 9
    BUILD = 10
    POLICY = 11
    ROLLED_BACK = 12
    ROLLBACK_FAILED = 13
    # `tinyship retrain` outcomes other than "deployed" (0): where the job stopped.
    NOTHING_DUE = 14
    NOT_BETTER = 15
    DEPLOYED_WITH_FAILURES = 16
    RETRAIN_REFUSED = 17
    AWAITING_APPROVAL = 18


class TinyshipError(Exception):
    """Root of every error tinyship reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(TinyshipError):
    """The project config is missing, malformed, or names an unknown key."""

    exit_code = ExitCode.CONFIG


class DataError(TinyshipError):
    """The dataset is unreadable or fails a data check."""

    exit_code = ExitCode.DATA

    def __init__(
        self,
        message: str,
        *,
        failures: list[dict[str, object]] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures or []


class GateError(TinyshipError):
    """A trained model failed one or more quality gates; nothing was registered."""

    exit_code = ExitCode.GATE

    def __init__(
        self, message: str, *, result: dict[str, object] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.result = result or {}


class RegistryError(TinyshipError):
    """The model registry is unreadable, or a version or alias does not exist."""

    exit_code = ExitCode.REGISTRY


class ModelError(TinyshipError):
    """Training, conversion or export failed, or a model is unfit for its profile."""

    exit_code = ExitCode.MODEL


class DeviceError(TinyshipError):
    """A serial port or device could not be reached or answered badly."""

    exit_code = ExitCode.DEVICE
    hint = "check the cable, the port name and that no other program holds the port"


class DeviceTimeout(DeviceError):
    """The device did not answer within its deadline."""


class ProtocolError(DeviceError):
    """The device answered with something the protocol does not allow."""


class ValidationFailed(TinyshipError):
    """A hardware-in-the-loop validation ran to the end and the device failed it."""

    exit_code = ExitCode.VALIDATION


class BuildError(TinyshipError):
    """Firmware build or flashing failed."""

    exit_code = ExitCode.BUILD


class PolicyError(TinyshipError):
    """A release policy refused the operation before anything was sent to a board (an
    unsigned or badly signed version when a public key is configured, say)."""

    exit_code = ExitCode.POLICY


class RolledBack(TinyshipError):
    """A flash failed (the step and reason in the message) and tinyship put the board back
    on the model it ran before, verified: the board is safe, the new version is not on it."""

    exit_code = ExitCode.ROLLED_BACK


class RollbackFailed(TinyshipError):
    """A flash or rollback failed and the board could not be verified on a known-good model
    afterwards; the message names what the board runs now (or that it does not answer)."""

    exit_code = ExitCode.ROLLBACK_FAILED
    hint = ("the board needs attention: `tinyship device info --device URL` shows what it "
            "runs; `tinyship rollback --device URL` tries again")
