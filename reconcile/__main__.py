"""`python -m reconcile` runs the same CLI as the `reconcile` command."""

from reconcile.cli import main

main()
