"""tinyship: train, quantize and ship a small model to a microcontroller, then keep it healthy.

Importing this package must stay cheap (no TensorFlow): device commands start fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tinyship")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
