"""Unlearning methods. Each is a loss, built from ``conf/method/*.yaml`` by ``hydra.utils.instantiate``.

A method has ``prepare(data)`` for one-off work before training (e.g. the
reference log-probs NPO needs) and ``loss(model, batch) -> (loss, terms)``
where ``batch = {"forget": ..., "retain": ...}`` and ``terms`` are floats to
log. The shared trainer in ``runner.training`` does everything else.
"""
