"""Hardware-in-the-loop validation: `validate()` a registry version on a board, get a `Report`."""

from tinyship.hil.harness import validate
from tinyship.hil.report import REPORT_KEYS, Check, Report

__all__ = ["REPORT_KEYS", "Check", "Report", "validate"]
