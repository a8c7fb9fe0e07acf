"""Test support, shipped for the demo and benchmarks: LiteLLM rows, Postgres, its schema."""
