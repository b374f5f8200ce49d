"""Image utility under a defence (``utility.enabled: true``; meant for a GPU): CLIP score and FID on a
sample of COCO captions.

- ``captions``: a ``.txt`` (one caption a line), ``.csv`` or ``.jsonl`` (field ``caption``) file; the
  first ``n`` captions are generated from, seeds ``seed + i``, with the job's generation settings.
- CLIP score: 100 * max(cos(image embedding, caption embedding), 0), averaged (the torchmetrics
  convention), with ``clip_model`` (default ``openai/clip-vit-large-patch14``).
- FID: the Frechet distance between Gaussian fits of image features of the generated images and of
  the reference images in ``reference_dir`` (COCO val images of the same captions). The features are
  ``clip_model``'s image embeddings (FID in CLIP space, Kynkaanniemi et al. 2023), not Inception-v3's:
  the Inception weights come through torchvision / torch-fidelity, which this build cannot install.
  Numbers are therefore comparable between runs of this runner, not with Inception FIDs in papers.

Rows ``no_attack`` (the model) and ``defended`` (the same model under the defence) are measured.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from runner.errors import ConfigError


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # a singular product: nudge both covariances
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def read_captions(path: str, n: int) -> list[str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError("utility.captions", f"{file} does not exist", "give a COCO captions file (.txt/.csv/.jsonl)")
    if file.suffix == ".jsonl":
        rows = [json.loads(line)["caption"] for line in file.read_text().splitlines() if line.strip()]
    elif file.suffix == ".csv":
        with open(file, newline="", encoding="utf-8") as f:
            rows = [r["caption"] for r in csv.DictReader(f)]
    else:
        rows = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    return rows[:n]


class Utility:
    def __init__(self, cfg, device: torch.device):
        from transformers import CLIPModel, CLIPProcessor

        self.cfg, self.device = cfg, device
        self.captions = read_captions(str(cfg.captions), int(cfg.n))
        try:
            self.model = CLIPModel.from_pretrained(str(cfg.clip_model)).to(device).eval()
            self.processor = CLIPProcessor.from_pretrained(str(cfg.clip_model))
        except OSError as exc:
            raise ConfigError("utility.clip_model", f"cannot load it ({exc})", "download it first") from None
        self.reference = None
        if cfg.get("reference_dir"):
            from runner.diffusion.concept import _from_dir

            refs = _from_dir(Path(str(cfg.reference_dir)).expanduser(), 10**9, 224)
            self.reference = gaussian(self.image_features(refs))

    @torch.no_grad()
    def image_features(self, images) -> np.ndarray:
        feats = []
        for start in range(0, len(images), 32):
            px = self.processor(images=images[start : start + 32], return_tensors="pt")["pixel_values"].to(self.device)
            feats.append(torch.nn.functional.normalize(self.model.get_image_features(pixel_values=px), dim=-1).cpu())
        return torch.cat(feats).numpy()

    @torch.no_grad()
    def measure(self, generate) -> dict:
        """``generate(captions)`` -> one PIL image per caption; returns {clip_score, fid}."""
        images = generate(self.captions)
        img = torch.from_numpy(self.image_features(images))
        text = self.processor(text=self.captions, return_tensors="pt", padding=True, truncation=True).to(self.device)
        txt = torch.nn.functional.normalize(self.model.get_text_features(**text), dim=-1).cpu()
        out = {"clip_score": float((100 * (img * txt).sum(-1).clamp(min=0)).mean())}
        if self.reference is not None:
            out["fid"] = frechet_distance(*gaussian(img.numpy()), *self.reference)
        return out
