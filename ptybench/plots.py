"""Matplotlib figures for reports (headless: the Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_demo(results: dict[str, Any], data: Any, path: Path) -> Path:
    """Convergence (object error and R-factor per iteration) and the reconstructed phases."""
    engines = list(results)
    fig, axes = plt.subplots(2, max(2, len(engines) + 1), figsize=(3.2 * (len(engines) + 1), 6.4),
                             layout="constrained")
    for engine, result in results.items():
        axes[0, 0].semilogy(result.column("object_error"), label=engine)
        axes[0, 1].semilogy(result.column("r_factor"), label=engine)
    axes[0, 0].set(xlabel="iteration", ylabel="object error", title="object error vs ground truth")
    axes[0, 1].set(xlabel="iteration", ylabel="R-factor", title="R-factor")
    axes[0, 0].legend()
    for ax in axes[0, 2:]:
        ax.axis("off")
    region = data.illuminated_region
    truth = data.ground_truth_object()[0]
    images = [("ground truth", truth)] + [(engine, result.object[0]) for engine, result in results.items()]
    for ax, (title, image) in zip(axes[1], images, strict=False):
        # Remove the global phase so every panel is on the same scale.
        factor = np.vdot(image[region], truth[region])
        phase = np.where(region, np.angle(image * factor / abs(factor)), np.nan)
        ax.imshow(phase, cmap="twilight", vmin=-np.pi, vmax=np.pi)
        ax.set_title(f"phase: {title}")
        ax.axis("off")
    for ax in axes[1, len(images):]:
        ax.axis("off")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
