"""Data loading and tokenisation shared by the benchmarks."""
