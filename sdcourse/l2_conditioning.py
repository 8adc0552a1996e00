"""Lesson 6-3-2 "Conditioning the U-Net": its figures, diagrams, experiment and widget.

The notebook imports this module in one line (``from sdcourse import l2_conditioning as l2``).
Each figure function returns the matplotlib Figure it made; the widget returns an
ipywidgets box. They take the student's results and functions as arguments, so what moves
on screen is the student's code; nothing here computes an exercise's answer. Widgets run
without a browser too (nbval, nbgrader): building one draws its first frame.

* figures: :func:`norm_axes`, :func:`embedding_heatmap`, :func:`similarity_curves`,
  :func:`gain_fits_figure`; diagrams drawn with matplotlib: :func:`draw_conditioned_block`,
  :func:`draw_conditioned_unet`;
* the "is a linear projection of t enough?" experiment: :func:`gain_targets` (a toy task
  that needs nonlinear functions of t) and :func:`fit_gains` (fits any encoder of t to it);
* test helpers: :func:`library_norms_disabled` (the library normalisations raise, as they do
  while ``group_norm`` is graded) and :func:`library_adagn` (a ``ConditionedResBlock`` is
  built with diffusers' ``AdaGroupNorm``, so its tests do not depend on Exercise 3).
"""
from __future__ import annotations

import contextlib
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from typing import Callable, Iterator
from typing import Mapping, Sequence
from .figures import arrow, bars, box, figure_view, to_numpy

__all__ = ['embedding_heatmap', 'similarity_curves', 'norm_axes', 'timestep_explorer', 'gain_targets',
           'fit_gains', 'gain_fits_figure', 'draw_conditioned_block', 'draw_conditioned_unet',
           'library_norms_disabled', 'library_adagn']


# ===========================================================================
# figures
# ===========================================================================



def embedding_heatmap(emb, timesteps, title: str = "Sinusoidal timestep embedding"):
    """Heatmap of an embedding ``emb`` [N, dim] whose rows are the given timesteps [N]."""
    emb, timesteps = to_numpy(emb), to_numpy(timesteps)
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
        y = to_numpy(y)
        ax.plot(to_numpy(x) if x is not None else np.arange(len(y)), y, label=label, lw=1.4)
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




# ===========================================================================
# the timestep widget
# ===========================================================================

def timestep_explorer(timestep_embedding: Callable, mlp: torch.nn.Module,
                      adagn: torch.nn.Module, dim: int, num_steps: int = 1000):
    """Slider over t: the sinusoidal embedding, then the (1 + scale) and shift that an
    AdaGroupNorm derives from the MLP's output for every channel.

    ``timestep_embedding(t, dim)`` -> [N, dim]; ``mlp``: [N, dim] -> [N, E];
    ``adagn.linear``: [N, E] -> [N, 2C] (first half scale, second half shift).
    """
    out, show = figure_view()
    slider = widgets.IntSlider(value=500, min=0, max=num_steps - 1, step=1,
                               description="t", continuous_update=False,
                               layout=widgets.Layout(width="60%"))

    def project(t):
        with torch.no_grad():
            emb = timestep_embedding(torch.as_tensor(t).reshape(-1), dim)
            scale, shift = adagn.linear(mlp(emb)).chunk(2, dim=-1)
        return emb, scale, shift

    # fixed axes: the limits over every t, so the bars move and the axes stay still
    _, all_scale, all_shift = project(torch.arange(num_steps))
    pad = lambda lo, hi: (lo - 0.05 * (hi - lo + 1e-6), hi + 0.05 * (hi - lo + 1e-6))  # noqa: E731
    gamma_lim = pad(min(0.0, float((1 + all_scale).min())), float((1 + all_scale).max()))
    beta_lim = pad(float(all_shift.min()), float(all_shift.max()))

    def draw(t: int) -> None:
        emb, scale, shift = project(t)
        fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
        bars(axes[0], emb[0], f"sinusoidal embedding of t={t}", ylim=(-1.1, 1.1))
        bars(axes[1], 1 + scale[0], "gamma(t) = 1 + scale, per channel", ylim=gamma_lim, color="C1")
        bars(axes[2], shift[0], "beta(t) = shift, per channel", ylim=beta_lim, color="C2")
        for ax in axes[1:]:
            ax.set_xlabel("channel")
        axes[0].set_xlabel("dimension")
        fig.tight_layout()
        show(fig)

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, out])



# ===========================================================================
# is a linear projection of t enough? (a toy task that needs nonlinear functions of t)
# ===========================================================================

#: DDPM's linear schedule (Ho et al. 2020): beta from 1e-4 to 0.02 over 1000 steps.
_BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
_ALPHA_BAR = torch.cumprod(1 - _BETAS, 0)
GAIN_NAMES = ["sqrt(alpha_bar)", "sqrt(1 - alpha_bar)", "band around t=150", "band around t=400",
              "band around t=650", "band around t=900"]


def gain_targets(t: torch.Tensor) -> torch.Tensor:
    """[N] integer timesteps -> [N, 6]: six per-channel "gains" a block might want at step t.

    The signal and noise weights of DDPM's schedule, sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t),
    and four channels that switch on only in a band of timesteps (Gaussian bumps of width 60
    centred at 150, 400, 650 and 900). None of them is a linear function of t.
    """
    t = torch.as_tensor(t).long()
    if t.ndim != 1 or t.min() < 0 or t.max() > 999:
        raise ValueError("t must be a 1-D tensor of integer timesteps in [0, 999]")
    a = _ALPHA_BAR[t]
    cols = [a.sqrt(), (1 - a).sqrt()] + [torch.exp(-((t.double() - c) / 60.0) ** 2) for c in (150, 400, 650, 900)]
    return torch.stack(cols, 1).float()


def fit_gains(features: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, steps: int = 300,
              lr: float = 1e-2, seed: int = 0) -> dict:
    """Fit ``model(features(t))`` to :func:`gain_targets` on 800 of the 1000 timesteps (Adam,
    full batch, on the CPU, one thread); report the mean squared error on the 200 held-out
    timesteps. ``features``: [N] timesteps -> [N, F]; ``model``: [N, F] -> [N, 6].

    Returns ``{"train": float, "heldout": float, "t": [1000], "pred": [1000, 6]}``.
    """
    t = torch.arange(1000)
    y = gain_targets(t)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(1000, generator=g)
    train, held = perm[:800].sort().values, perm[800:].sort().values
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            x = features(t).float().cpu()
        model = model.cpu().train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            loss = F.mse_loss(model(x[train]), y[train])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = model.eval()(x)
    finally:
        torch.set_num_threads(before)
    return {"train": float(F.mse_loss(pred[train], y[train])), "heldout": float(F.mse_loss(pred[held], y[held])),
            "t": t, "pred": pred}


def gain_fits_figure(results: Mapping[str, dict], channels: Sequence[int] = (1, 3, 5),
                     title: str = "Fitting per-channel gains of t (dashed: the target)"):
    """One panel per target channel: the target curve and every contender's fit."""
    t = to_numpy(next(iter(results.values()))["t"])
    y = to_numpy(gain_targets(torch.as_tensor(t)))
    fig, axes = plt.subplots(1, len(channels), figsize=(4.0 * len(channels), 3.0), squeeze=False)
    for ax, c in zip(axes[0], channels):
        ax.plot(t, y[:, c], "k--", lw=1.6, label="target")
        for k, (label, r) in enumerate(results.items()):
            ax.plot(t, to_numpy(r["pred"])[:, c], color=f"C{k}", lw=1.2, label=f"{label} (held-out MSE {r['heldout']:.4f})")
        ax.set_title(GAIN_NAMES[c], fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylim(-0.3, 1.3)
    axes[0][0].set_ylabel("gain")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ===========================================================================
# diagrams (matplotlib)
# ===========================================================================

def draw_conditioned_block(title: str = "A residual block with two AdaGN injection points "
                                        "(diffusers ResnetBlockCondNorm2D, time_embedding_norm='ada_group')"):
    """The block of Exercise 5: x -> AdaGN -> SiLU -> conv -> AdaGN -> SiLU -> conv -> (+),
    with the shared time embedding projected by each AdaGN's own Linear."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    y_main, y_emb = 1.0, 2.45
    box(ax, 0.45, y_main, 0.95, 0.45, "x\n[B, C_in, H, W]", "#eeeeee", fontsize=7.5)
    steps = [(1.8, "AdaGN 1\n(norm1)", "#f4c27a"), (3.0, "SiLU", "#dddddd"), (4.1, "conv1 3x3", "#9ecae1"),
             (5.4, "AdaGN 2\n(norm2)", "#f4c27a"), (6.6, "SiLU", "#dddddd"), (7.7, "conv2 3x3", "#9ecae1")]
    prev = 0.93
    for x, text, colour in steps:
        box(ax, x, y_main, 0.85, 0.5, text, colour)
        arrow(ax, (prev, y_main), (x - 0.43, y_main))
        prev = x + 0.43
    ax.add_patch(plt.Circle((8.8, y_main), 0.16, facecolor="white", edgecolor="k"))
    ax.text(8.8, y_main, "+", ha="center", va="center", fontsize=12)
    arrow(ax, (prev, y_main), (8.64, y_main))
    box(ax, 9.85, y_main, 1.0, 0.45, "output\n[B, C_out, H, W]", "#eeeeee", fontsize=7.5)
    arrow(ax, (8.96, y_main), (9.34, y_main))
    ax.plot([0.5, 0.5, 8.8], [y_main - 0.23, 0.25, 0.25], color="#555555", lw=1.2)
    arrow(ax, (8.8, 0.25), (8.8, y_main - 0.16), color="#555555")
    ax.text(4.6, 0.3, "short-range skip: conv_shortcut (1x1 conv when C_in != C_out, else x itself)",
            ha="center", va="bottom", fontsize=8, color="#555555")
    box(ax, 0.75, y_emb, 1.5, 0.42, "t -> sinusoid\n-> TimestepMLP", "#dddddd", fontsize=8)
    box(ax, 2.6, y_emb, 0.9, 0.42, "t_emb [B, E]\n(shared)", "#c7e9c0")
    arrow(ax, (1.52, y_emb), (2.15, y_emb))
    for x, c in [(1.8, "C_in"), (5.4, "C_out")]:
        arrow(ax, (2.6 if x < 3 else 3.05, y_emb - 0.21), (x, y_main + 0.26), color="#238b45",
              text=f"own Linear(E, 2*{c})", text_offset=(0.45 if x > 3 else -0.55, 0.0))
    ax.text(7.4, y_emb, "one embedding, a different learned lens per norm:\nscale, shift = Linear(t_emb); "
            "GN(h) * (1 + scale) + shift", ha="center", va="center", fontsize=8.5, color="#238b45")
    ax.set_xlim(-0.1, 10.45)
    ax.set_ylim(0.05, 2.9)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def draw_conditioned_unet(level_shapes: Sequence[tuple[int, int, int]] = ((64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)),
                          title: str = "Skeleton and nervous system: t_emb reaches every residual block"):
    """The U of lesson 1 (shapes as (C, H, W), level 0 first, the bottleneck last), with the
    one time embedding feeding every encoder, bottleneck and decoder block."""
    shapes_ = [tuple(int(v) for v in s) for s in level_shapes]
    n = len(shapes_)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 1.0 * n))
    ys = [n - i for i in range(n)]
    xl = [1.0 + 0.9 * i for i in range(n)]
    xr = [11.0 - 0.9 * i for i in range(n)]
    blocks = []
    for i, (c, h, w) in enumerate(shapes_):
        label = f"{c} x {h} x {w}"
        if i == n - 1:
            box(ax, 6.0, ys[i], 1.9, 0.5, "bottleneck block\n" + label, "#f4c27a")
            blocks.append((6.0, ys[i]))
            continue
        box(ax, xl[i], ys[i], 1.5, 0.5, "enc block\n" + label, "#9ecae1")
        box(ax, xr[i], ys[i], 1.5, 0.5, "dec block\n" + label, "#a1d99b")
        blocks += [(xl[i], ys[i]), (xr[i], ys[i])]
        arrow(ax, (xl[i] + 0.76, ys[i]), (xr[i] - 0.76, ys[i]), color="#777777", ls="--")
        nl = (6.0, ys[i + 1]) if i + 1 == n - 1 else (xl[i + 1], ys[i + 1])
        nr = (6.0, ys[i + 1]) if i + 1 == n - 1 else (xr[i + 1], ys[i + 1])
        arrow(ax, (xl[i], ys[i] - 0.25), (nl[0] - (0.7 if i + 1 == n - 1 else 0), nl[1] + 0.25), color="#2171b5")
        arrow(ax, (nr[0] + (0.7 if i + 1 == n - 1 else 0), nr[1] + 0.25), (xr[i], ys[i] - 0.25), color="#238b45")
    y_t = n + 1.0
    box(ax, 6.0, y_t, 5.6, 0.42, "t -> sinusoidal embedding -> TimestepMLP = t_emb (computed once)", "#c7e9c0")
    for bx, by in blocks:
        ax.plot([6.0 + 0.9 * np.sign(bx - 6.0) * min(1.0, abs(bx - 6.0) / 5), bx], [y_t - 0.21, by + 0.25],
                color="#41ab5d", lw=0.9, alpha=0.8)
    ax.text(0.2, y_t, "every block:\nits own Linear(t_emb)", fontsize=8, color="#238b45", va="center")
    ax.set_xlim(-0.3, 12.3)
    ax.set_ylim(0.4, n + 1.5)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ===========================================================================
# test helpers
# ===========================================================================

_LIBRARY_NORMS = [("torch.nn.functional", n) for n in ("group_norm", "layer_norm", "instance_norm", "batch_norm")] + \
                 [("torch", n) for n in ("group_norm", "layer_norm", "instance_norm", "batch_norm")] + \
                 [("torch.nn", n) for n in ("GroupNorm", "LayerNorm", "InstanceNorm1d", "InstanceNorm2d",
                                            "InstanceNorm3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d")]


@contextlib.contextmanager
def library_norms_disabled() -> Iterator[None]:
    """Inside this block PyTorch's normalisation functions and layers (group, layer, instance
    and batch norm) raise. The visible tests of ``group_norm`` run your function like this,
    because the grader does the same: the exercise is to write the normalisation yourself."""
    import importlib
    import sys

    saved = []
    main = sys.modules.get("__main__")

    def refuse(path):
        def refused(*args, **kwargs):
            raise RuntimeError(f"{path} is disabled here: group_norm must compute the mean and variance "
                               "itself (reshape, mean, var); the grader disables the library normalisations too.")
        return refused

    try:
        for module_name, attr in _LIBRARY_NORMS:
            owner = importlib.import_module(module_name)
            original = getattr(owner, attr)
            saved.append((owner, attr, original))
            setattr(owner, attr, refuse(f"{module_name}.{attr}"))
            if main is not None:
                for name, value in list(vars(main).items()):
                    if value is original:
                        saved.append((main, name, original))
                        setattr(main, name, refuse(f"{module_name}.{attr}"))
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


@contextlib.contextmanager
def library_adagn(block_class: type) -> Iterator[None]:
    """While this block runs, the name ``AdaGroupNorm`` that ``block_class`` uses (a global of
    the notebook) means diffusers' ``AdaGroupNorm`` (same arguments: ``(emb_dim, num_channels,
    num_groups, eps=...)``, same ``linear`` layer). The tests of ``ConditionedResBlock`` build it
    like this so that a mistake in Exercise 3 costs only Exercise 3."""
    from diffusers.models.normalization import AdaGroupNorm as LibraryAdaGroupNorm

    space = getattr(getattr(block_class, "__init__", None), "__globals__", None)
    if not isinstance(space, dict):
        yield
        return
    had, saved = "AdaGroupNorm" in space, space.get("AdaGroupNorm")
    space["AdaGroupNorm"] = LibraryAdaGroupNorm
    try:
        yield
    finally:
        if had:
            space["AdaGroupNorm"] = saved
        else:
            space.pop("AdaGroupNorm", None)
