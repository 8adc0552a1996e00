"""Figures the lessons draw. Each function returns the matplotlib Figure it made.

Notebooks call these so that a lesson cell stays one idea long; the figures never compute
anything the student is asked to write (they take the student's results as arguments).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

__all__ = ["embedding_heatmap", "similarity_curves", "norm_axes", "bars"]


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def embedding_heatmap(emb, timesteps, title: str = "Sinusoidal timestep embedding"):
    """Heatmap of an embedding ``emb`` [N, dim] whose rows are the given timesteps [N]."""
    emb, timesteps = _np(emb), _np(timesteps)
    half = emb.shape[1] // 2
    fig, ax = plt.subplots(figsize=(8, 3.6))
    im = ax.imshow(emb, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest",
                   extent=(-0.5, emb.shape[1] - 0.5, timesteps[-1], timesteps[0]))
    ax.axvline(half - 0.5, color="k", lw=1)
    ax.text(half / 2, timesteps[0], "cos half", ha="center", va="bottom")
    ax.text(half * 1.5, timesteps[0], "sin half", ha="center", va="bottom")
    ax.set_xlabel("embedding dimension (fast frequencies left of each half, slow right)")
    ax.set_ylabel("timestep t")
    ax.set_title(title, pad=18)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def similarity_curves(curves: Mapping[str, object], x=None,
                      title: str = "Cosine similarity of neighbouring timesteps (t vs t+1)"):
    """Line plot of several 1-D curves (e.g. neighbour similarity per embedding type)."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for label, y in curves.items():
        y = _np(y)
        ax.plot(_np(x) if x is not None else np.arange(len(y)), y, label=label, lw=1.4)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("t")
    ax.set_ylabel("cos(emb[t], emb[t+1])")
    ax.set_title(title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def norm_axes(batch: int = 3, channels: int = 8, groups: int = 4):
    """Which entries of a [B, C, H, W] tensor share one mean and variance, per norm type.

    Each square is one (example, channel) feature map of H x W values; squares of one colour
    are normalised together.
    """
    b_idx, c_idx = np.meshgrid(np.arange(batch), np.arange(channels), indexing="ij")
    panels = {
        "Batch norm\n(per channel, across the batch)": c_idx,
        "Layer norm\n(per example, all channels)": b_idx,
        f"Group norm, {groups} groups\n(per example, per group of {channels // groups} channels)":
            b_idx * groups + c_idx // (channels // groups),
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    base = plt.get_cmap("tab20").colors
    for ax, (title, ids) in zip(axes, panels.items()):
        cmap = ListedColormap([base[i % len(base)] for i in range(int(ids.max()) + 1)])
        ax.imshow(ids, cmap=cmap, interpolation="nearest")
        ax.set_xticks(range(channels), [f"c{c}" for c in range(channels)], fontsize=8)
        ax.set_yticks(range(batch), [f"x{b}" for b in range(batch)])
        ax.set_xticks(np.arange(-0.5, channels), minor=True)
        ax.set_yticks(np.arange(-0.5, batch), minor=True)
        ax.grid(which="minor", color="white", lw=2)
        ax.tick_params(which="minor", length=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("channel C (each square: an H x W map)")
    axes[0].set_ylabel("example in batch B")
    fig.suptitle("Same colour = one shared mean and variance", y=1.02)
    fig.tight_layout()
    return fig


def bars(ax, values, title: str, ylim: Sequence[float] | None = None, color: str = "C0"):
    """Bar chart of a 1-D vector on an existing axis (used by the widgets)."""
    v = _np(values)
    ax.bar(np.arange(len(v)), v, color=color)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.axhline(0, color="grey", lw=0.6)
    return ax
