"""Pictures of trace detection: probe accuracy by layer, and the models' activations in two dimensions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROBES = "trace_probes.png"
PCA_PLOT = "trace_pca.png"
UMAP_PLOT = "trace_umap.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_layers(n_layers: int, chosen) -> list[int]:
    """The layers to picture: ``chosen`` (negative counts from the end), else the middle one and the last."""
    if chosen:
        return sorted({int(c) % n_layers for c in chosen})
    return sorted({n_layers // 2, n_layers - 1})


def write_probe_plot(path: Path, probes: dict) -> Path:
    """Accuracy by layer, one panel per pair of models, a line per prompt set and pooling; chance dashed."""
    fig = _figure(5.0 * max(1, len(probes)), 3.6)
    for i, (pair, by_set) in enumerate(probes.items()):
        ax = fig.add_subplot(1, len(probes), i + 1)
        for s, v in by_set.items():
            for pooling, curve in v["accuracy_by_layer"].items():
                ax.plot(range(len(curve)), curve, marker="o", markersize=2, label=f"{s} ({pooling})")
        ax.axhline(0.5, linestyle="--", color="grey", linewidth=0.8)
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("probe accuracy (out of fold)")
        ax.set_title(pair, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_projection(path: Path, acts: dict, labels: list[str], sets: list[str], layers: list[int], how: str) -> Path:
    """The last-token activations of every model, projected to 2-D per (prompt set, layer), coloured by model."""
    fig = _figure(3.6 * len(layers), 3.2 * len(sets))
    for r, s in enumerate(sets):
        for c, layer in enumerate(layers):
            x = np.concatenate([acts[lab, s][0][:, layer, :] for lab in labels])
            who = np.concatenate([[i] * len(acts[lab, s][0]) for i, lab in enumerate(labels)])
            xy = _project(x, how)
            ax = fig.add_subplot(len(sets), len(layers), r * len(layers) + c + 1)
            for i, lab in enumerate(labels):
                ax.scatter(xy[who == i, 0], xy[who == i, 1], s=6, alpha=0.7, label=lab)
            ax.set_title(f"{s}, layer {layer} ({how})", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _project(x: np.ndarray, how: str) -> np.ndarray:
    if how == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=0).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(x)


def write_all(run_dir: Path, probes: dict, acts: dict, labels: list[str], sets: list[str], chosen) -> dict:
    """Every picture; their paths by kind (UMAP only where the ``umap`` package imports)."""
    n_layers = next(iter(acts.values()))[0].shape[1]
    layers = plot_layers(n_layers, chosen)
    out = {
        "probes": str(write_probe_plot(run_dir / PROBES, probes)),
        "pca": str(write_projection(run_dir / PCA_PLOT, acts, labels, sets, layers, "pca")),
        "layers": layers,
    }
    try:
        import umap  # noqa: F401  (optional)
    except ImportError:
        return out
    out["umap"] = str(write_projection(run_dir / UMAP_PLOT, acts, labels, sets, layers, "umap"))
    return out
