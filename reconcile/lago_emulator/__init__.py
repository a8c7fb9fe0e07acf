"""A Lago emulator for tests and demos, shipped for `reconcile lago-emulator`: the entry point."""

from reconcile.lago_emulator.server import DEFAULT_API_KEY, LagoEmulator, RequestRecord

__all__ = ["DEFAULT_API_KEY", "LagoEmulator", "RequestRecord"]
