"""The SQL reconcile runs, as readable files; installed as the package data `reconcile.sql`."""
