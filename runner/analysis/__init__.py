"""Analyses of finished runs (``task=analyse``): they load the runs' saved weights, never re-run training."""
