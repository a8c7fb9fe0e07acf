"""The SQL files of `sql/`, read from wherever the package is installed."""

from importlib.resources import files


def load(name: str) -> str:
    """The text of `sql/<name>`."""
    return files("reconcile.sql").joinpath(name).read_text(encoding="utf-8")
