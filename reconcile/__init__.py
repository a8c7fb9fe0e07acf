"""reconcile: make LiteLLM-to-Lago usage billing complete, exactly once, and provable."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reconcile")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
