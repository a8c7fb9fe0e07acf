"""LiteLLM's real database schema, built from the SQL migrations `litellm-proxy-extras` ships."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zlib
from importlib import metadata, resources
from pathlib import Path

import psycopg
from psycopg import sql

from reconcile.errors import ConfigError, SourceError
from reconcile.postgres import Database, connect

EXTRAS = "litellm-proxy-extras"
_TEMPLATE_DONE = "reconcile: LiteLLM schema template, complete"


def migration_files(*, before: str | None = None) -> list[Path]:
    """Every `migration.sql`, in the order Prisma applies them; `before`: stop at that folder."""
    try:
        root = Path(str(resources.files("litellm_proxy_extras").joinpath("migrations")))
    except ModuleNotFoundError:
        raise ConfigError(
            f"{EXTRAS} is not installed: install the demo extra, pip install 'reconcile[demo]'"
        ) from None
    folders = sorted(path for path in root.iterdir() if (path / "migration.sql").is_file())
    if before is not None:
        folders = [folder for folder in folders if folder.name < before]
    return [folder / "migration.sql" for folder in folders]


def psql_executable() -> str:
    """Psql from PATH, else the one bundled with pgserver."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ConfigError(
            "psql was not found: install PostgreSQL's client, or pip install 'reconcile[demo]'"
        ) from None
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    if not bundled.is_file():
        raise ConfigError(f"psql was not found, not even at {bundled}")
    return str(bundled)


def psql_command(database: Database) -> tuple[list[str], dict[str, str]]:
    """A psql command line and environment for `database`, the password kept out of argv."""
    environment = {**os.environ, "PGOPTIONS": "-c client_min_messages=error"}
    if database.params.get("password"):
        environment["PGPASSWORD"] = database.params["password"]
    target = database.replace(password="").url()
    return [
        psql_executable(),
        "--no-psqlrc",
        "--quiet",
        "-v",
        "ON_ERROR_STOP=1",
        target,
    ], environment


def apply_migrations(database: Database, files: list[Path]) -> None:
    """Run the files in one psql session, outside transactions (some index CONCURRENTLY)."""
    command, environment = psql_command(database)
    for path in files:
        command += ["-f", str(path)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SourceError(f"applying LiteLLM's migrations failed: {done.stderr.strip()}")


def schema_version() -> str:
    """The `litellm-proxy-extras` version and a digest of its migrations."""
    digest = hashlib.sha256()
    for path in migration_files():
        digest.update(path.parent.name.encode())
        digest.update(path.read_bytes())
    return f"{metadata.version(EXTRAS)}-{digest.hexdigest()[:10]}"


def ensure_template(admin: Database) -> str:
    """A database holding LiteLLM's empty schema, built once per server and schema version.

    Clone it with `create_database`; building takes seconds, a clone a fraction of one.
    """
    name = "litellm_schema_" + schema_version().replace(".", "_").replace("-", "_")
    lock = zlib.crc32(name.encode())
    with connect(admin, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (lock,))
        try:
            comment = connection.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (name,),
            ).fetchone()
            if comment is not None and comment[0] == _TEMPLATE_DONE:
                return name
            identifier = sql.Identifier(name)
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier)
            )
            connection.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
            apply_migrations(admin.replace(dbname=name), migration_files())
            connection.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    identifier, sql.Literal(_TEMPLATE_DONE)
                )
            )
            return name
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (lock,))


def create_database(admin: Database, name: str, *, template: str) -> Database:
    """A fresh database `name` cloned from `template` (replacing any database of that name)."""
    with connect(admin, autocommit=True) as connection:
        identifier = sql.Identifier(name)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
        try:
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    identifier, sql.Identifier(template)
                )
            )
        except psycopg.errors.ObjectInUse:
            # Another session is still connected to the template: retry once it has left.
            connection.execute("SELECT pg_sleep(0.5)")
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    identifier, sql.Identifier(template)
                )
            )
    return admin.replace(dbname=name)


def drop_database(admin: Database, name: str) -> None:
    """Drop `name`, disconnecting whoever still uses it."""
    with connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
