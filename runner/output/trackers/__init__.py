"""Trackers: dashboards (W&B, TensorBoard) that mirror what results.json holds.

The contract is ``base.Tracker``; each tracker is one class in its own module, configured by
``conf/logger/<name>.yaml`` (``_target_`` + options; ``logger: null`` for none) and built by
``runner.output.tracking.start``.
"""
