"""Decoding strategies (``decoding=``): how a model generates on reasoning benchmarks.

``base`` holds the contract, ``processors`` the ``LogitsProcessor``s (CyclicReflex's
wave, TIP's penalty, s1's budget forcing), ``strategies`` the configurable
strategies built from ``conf/decoding/*.yaml``, ``tokens`` the word -> token-id
resolution and ``generate`` the batched generation loop they all run in.
"""
