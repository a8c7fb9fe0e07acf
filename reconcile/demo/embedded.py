"""A throwaway PostgreSQL server from PyPI (pgserver): the demo runs with nothing else installed."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconcile.errors import ConfigError
from reconcile.postgres import Database, parse_database_url


@contextlib.contextmanager
def embedded_postgres() -> Iterator[Database]:
    """Start a private server in a temporary directory; stop and delete it on exit."""
    with tempfile.TemporaryDirectory(prefix="reconcile-pg-") as directory:
        # Run as root, pgserver starts the server as its own user, who must reach the data.
        Path(directory).chmod(0o755)
        server = _start(Path(directory) / "pgdata")
        try:
            yield parse_database_url(server.get_uri(), setting="the embedded Postgres")
        finally:
            server.cleanup()


def _start(data: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import pgserver  # noqa: PLC0415 (optional dependency)
        except ImportError:
            raise ConfigError(
                "the embedded Postgres needs pgserver: pip install 'reconcile[demo]'"
            ) from None
        return pgserver.get_server(data, cleanup_mode="stop")  # type: ignore[attr-defined]
