"""A throwaway PostgreSQL server from PyPI (pgserver): the demo runs with nothing else installed."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconcile.errors import ConfigError
from reconcile.postgres import Database, parse_database_url

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def any_postgres() -> Iterator[Database]:
    """A server to create databases on: TEST_DATABASE_URL, else 127.0.0.1:5432, else embedded."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield parse_database_url(os.environ["TEST_DATABASE_URL"], setting="TEST_DATABASE_URL")
    elif _answers("127.0.0.1", 5432):
        yield parse_database_url(LOCAL_SERVER, setting="the local Postgres")
    else:
        with embedded_postgres() as admin:
            yield admin


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
