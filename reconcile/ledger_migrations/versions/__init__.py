"""The ledger's Alembic revisions, one per change of its tables."""
