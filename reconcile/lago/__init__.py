"""A faithful stand-in for Lago's events API, for tests and demos: Lago itself cannot run here."""
