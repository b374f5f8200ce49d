"""Reasoning distillation (``task=distill``): condensed chains of thought (EPiC) fine-tuned into a student."""
