"""The ledger's revisions (Alembic's, shipped in `reconcile.ledger_migrations`), oldest first."""

from __future__ import annotations

import functools
from importlib.resources import as_file, files

from alembic.script import ScriptDirectory


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every revision of the ledger, oldest first; the last is the one this release needs."""
    with as_file(files("reconcile.ledger_migrations")) as location:
        script = ScriptDirectory(str(location))
        return tuple(revision.revision for revision in reversed(list(script.walk_revisions())))
