"""Unlearning methods: each a loss (or, rarely, an update) under the contract in ``base.py``.

A method is chosen with ``method=<name>`` (``conf/method/<name>.yaml``: ``_target_`` plus its
options) and built by ``runner.components.build``; the unlearning stage (``runner.unlearn``) calls
its hooks and the shared trainer in ``runner.training`` does everything else.
"""
