"""Benchmarks: each builds its forget / retain training sets and evaluates a model on its suites."""
