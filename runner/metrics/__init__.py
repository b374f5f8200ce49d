"""Metric functions: pure numbers in, numbers out (model passes live in benchmarks/)."""
