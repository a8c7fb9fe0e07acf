"""reconcile: make LiteLLM-to-Lago usage billing complete, exactly once, and provable."""


def __getattr__(name: str) -> str:
    # Resolved on first use: importlib.metadata costs a noticeable part of start-up.
    if name == "__version__":
        from importlib import metadata  # noqa: PLC0415

        try:
            return metadata.version("reconcile")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(name)
