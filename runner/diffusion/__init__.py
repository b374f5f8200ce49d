"""The text-to-image diffusion family (``task=diffusion_attack``), built on ``diffusers``.

Everything that only makes sense for diffusion models lives here: loading Stable Diffusion and its
unlearned variants (``diffusion_model=``), the concept data (``concept=``), attack tokens
(``attack=``), the text-embedding defence (``defense=``), image detectors (``detector=``), image
generation, and the job's pipeline (``runner/diffusion/job.py``). The contracts are in ``base.py``.
Nothing here imports ``diffusers`` at module level except the modules that need it, so LM jobs never
load it.
"""
