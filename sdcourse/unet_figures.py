"""Figures and the widget of lesson 6-3-1 "U-Net architecture".

Every function takes the student's results as arguments (level shapes, receptive fields,
trained models) and only draws them; nothing here computes an exercise's answer.
Each figure function returns the matplotlib Figure it made.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

__all__ = ["draw_unet", "receptive_field_growth", "reconstructions", "feature_map_explorer"]


def _box(ax, x, y, w, h, text, color):
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=color, edgecolor="k", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, color="k", text=None, style="-|>", ls="-", text_offset=(0, 0.12)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 lw=1.3, linestyle=ls))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1],
                text, ha="center", va="bottom", fontsize=8, color=color)


def draw_unet(level_shapes: Sequence[tuple[int, int, int]], in_channels: int = 3,
              title: str = "The U: shapes at every level (C x H x W)"):
    """Draw a U-Net from its level shapes ``[(C, H, W), ...]`` (level 0 first, bottleneck last).

    Encoder boxes go down the left side, decoder boxes up the right side, the bottleneck
    sits at the bottom; long-range skip connections cross the U at every level but the last.
    """
    shapes = [tuple(int(v) for v in s) for s in level_shapes]
    n = len(shapes)
    fig, ax = plt.subplots(figsize=(10, 1.3 + 1.2 * n))
    max_c = max(c for c, _, _ in shapes)
    width = lambda c: 0.9 + 1.3 * np.log2(c) / np.log2(max(max_c, 2))  # noqa: E731
    height = 0.55
    xs_left = [1.2 + 0.8 * i for i in range(n)]
    xs_right = [12.8 - 0.8 * i for i in range(n)]
    ys = [n - i for i in range(n)]
    c0, h0, w0 = shapes[0]
    ax.text(xs_left[0] - 1.9, ys[0] + 0.05, f"input\n{in_channels} x {h0} x {w0}", ha="center",
            va="center", fontsize=8.5)
    ax.text(xs_right[0] + 1.9, ys[0] + 0.05, f"output\n{in_channels} x {h0} x {w0}", ha="center",
            va="center", fontsize=8.5)
    for i, (c, h, w) in enumerate(shapes):
        label = f"{c} x {h} x {w}"
        if i == n - 1:
            _box(ax, 7.0, ys[i], width(c) + 0.6, height, "bottleneck\n" + label, "#f4c27a")
            ax.text(7.0, ys[i] - 0.55, "global context: decides WHAT", ha="center", va="top",
                    fontsize=8.5, color="#b36b00")
            continue
        _box(ax, xs_left[i], ys[i], width(c), height, label, "#9ecae1")
        _box(ax, xs_right[i], ys[i], width(c), height, label, "#a1d99b")
        _arrow(ax, (xs_left[i] + width(c) / 2 + 0.05, ys[i]), (xs_right[i] - width(c) / 2 - 0.05, ys[i]),
               color="#555555", ls="--",
               text=f"skip: concat -> {2 * c} ch, conv -> {c}: decides WHERE" if i == 0 else "skip (concat)")
        nxt_left = (7.0, ys[i + 1]) if i + 1 == n - 1 else (xs_left[i + 1], ys[i + 1])
        nxt_right = (7.0, ys[i + 1]) if i + 1 == n - 1 else (xs_right[i + 1], ys[i + 1])
        _arrow(ax, (xs_left[i], ys[i] - height / 2), (nxt_left[0] - 0.3 * (i + 1 == n - 1), nxt_left[1] + height / 2),
               color="#2171b5", text="downsample\n(H, W / 2; C x 2)" if i == 0 else None,
               text_offset=(-1.0, -0.2))
        _arrow(ax, (nxt_right[0] + 0.3 * (i + 1 == n - 1), nxt_right[1] + height / 2), (xs_right[i], ys[i] - height / 2),
               color="#238b45", text="upsample\n(H, W x 2; C / 2)" if i == 0 else None,
               text_offset=(1.0, -0.2))
    ax.text(xs_left[0] - 0.2, ys[-1] - 0.1, "encoder", fontsize=10, color="#2171b5", ha="center")
    ax.text(xs_right[0] + 0.2, ys[-1] - 0.1, "decoder", fontsize=10, color="#238b45", ha="center")
    ax.set_xlim(-1.6, 15.6)
    ax.set_ylim(0.2, n + 0.8)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def receptive_field_growth(fields: Sequence[int], image_size: int = 64,
                           measured: Sequence[int] | None = None,
                           title: str = "Receptive field of one pixel at each level"):
    """Left: receptive field (pixels per side) against the level; right: the fields drawn
    as nested squares on an ``image_size`` x ``image_size`` input."""
    fields = [int(f) for f in fields]
    levels = np.arange(len(fields))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    ax.plot(levels, fields, "o-", label="your receptive_field(level + 1)")
    if measured is not None:
        ax.plot(levels, measured, "x", ms=10, color="C3", label="measured gradient footprint")
    ax.axhline(image_size, color="grey", ls="--", lw=1)
    ax.text(0, image_size * 1.05, f"whole {image_size} x {image_size} input", color="grey", fontsize=9)
    for lv, f in zip(levels, fields):
        ax.annotate(str(f), (lv, f), textcoords="offset points", xytext=(6, -12), fontsize=9)
    ax.set_xticks(levels, [f"level {i}\n(bottleneck)" if i == len(fields) - 1 else f"level {i}"
                           for i in levels])
    ax.set_ylabel("receptive field (pixels per side)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax2.add_patch(Rectangle((0, 0), image_size, image_size, facecolor="#eeeeee", edgecolor="k"))
    centre = image_size / 2
    for i, f in enumerate(fields):
        s = min(f, image_size * 1.15)
        ax2.add_patch(Rectangle((centre - s / 2, centre - s / 2), s, s, fill=False,
                                edgecolor=plt.get_cmap("viridis")(i / max(len(fields) - 1, 1)), lw=2,
                                label=f"level {i}: {f} x {f}"))
    ax2.set_xlim(-0.1 * image_size, 1.1 * image_size)
    ax2.set_ylim(1.1 * image_size, -0.1 * image_size)
    ax2.set_aspect("equal")
    ax2.set_title(f"...drawn on the {image_size} x {image_size} input (clipped at its border)", fontsize=10)
    ax2.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def _show(img: torch.Tensor) -> np.ndarray:
    return ((img.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def reconstructions(clean: torch.Tensor, noisy: torch.Tensor, predictions: Mapping[str, torch.Tensor],
                    scores: Mapping[str, float] | None = None, n: int = 4):
    """Rows: clean, noisy, then one row per model's prediction (images in [-1, 1])."""
    rows = {"clean x0": clean, "noisy input": noisy, **predictions}
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n + 1.6, 1.9 * len(rows)))
    for r, (name, imgs) in enumerate(rows.items()):
        for k in range(n):
            ax = axes[r, k]
            ax.imshow(_show(imgs[k]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if not scores or name not in scores else f"{name}\nHF error {scores[name]:.3f}"
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle("Same data, same training steps: only the skip connections differ")
    fig.tight_layout()
    return fig


def _level_features(model: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    blocks = list(model.down_blocks) + [model.mid_block]
    feats: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, i, o: feats.append(o.detach())) for b in blocks]
    try:
        with torch.no_grad():
            model.eval()(image[None])
    finally:
        for h in handles:
            h.remove()
    return [f[0] for f in feats]


def feature_map_explorer(model: torch.nn.Module, image: torch.Tensor, max_channels: int = 8):
    """Choose a level of a trained U-Net (``down_blocks`` then ``mid_block``) and see the
    first feature maps its block produces for ``image`` [C, H, W]."""
    feats = _level_features(model, image)
    options = [(f"level {i}: {tuple(f.shape)}" + (" bottleneck" if i == len(feats) - 1 else ""), i)
               for i, f in enumerate(feats)]
    out = widgets.Output()
    choice = widgets.Dropdown(options=options, value=0, description="level")

    def draw(level: int) -> None:
        f = feats[level]
        k = min(max_channels, f.shape[0])
        out.clear_output(wait=True)
        with out:
            fig, axes = plt.subplots(1, k + 1, figsize=(1.7 * (k + 1), 2.0))
            axes[0].imshow(_show(image), interpolation="nearest")
            axes[0].set_title("input", fontsize=9)
            for j in range(k):
                axes[j + 1].imshow(f[j].numpy(), cmap="magma", interpolation="nearest")
                axes[j + 1].set_title(f"ch {j}  ({f.shape[1]}x{f.shape[2]})", fontsize=8)
            for a in axes:
                a.set_xticks([])
                a.set_yticks([])
            fig.tight_layout()
            plt.show()

    choice.observe(lambda change: draw(change["new"]), names="value")
    draw(choice.value)
    return widgets.VBox([choice, out])
