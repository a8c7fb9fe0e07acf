"""Everything `reconcile demo`, tests and benchmarks need and production does not."""
