"""Lesson 6-3-1 "U-Net architecture": its building blocks, figures, widget and experiments.

The notebook imports this module in one line (``from sdcourse import l1_unet as l1``).

* :class:`ResBlock`, the residual block every level of the lesson's U-Net uses (Stable
  Diffusion's pre-activation order: norm -> SiLU -> conv, twice, plus the short skip);
* receptive-field measurement: :func:`positive_stack` builds an all-positive conv/pool
  stack, :func:`input_footprint` marks the input pixels that receive a gradient from one
  output pixel and :func:`footprint_width` measures the width of such a mark. The exercise
  ``receptive_field`` must be *arithmetic*: the grader disables these three while it runs,
  and :func:`measuring_disabled` does the same in the visible test, so you are warned early;
* cost: :func:`conv_macs` counts the multiply-accumulates of every ``nn.Conv2d`` in a forward
  pass, for Question 1's comparison of :func:`conv_stack` (full resolution only) with
  :func:`plain_encoder` (downsampling between levels);
* figures (:func:`draw_unet`, :func:`receptive_field_growth`, :func:`reconstructions`,
  :func:`ablation_figure`) and the feature-map widget (:func:`feature_map_explorer`): they take
  the student's results as arguments and only draw them;
* the seeded experiments (:func:`make_images`, :func:`add_noise`, :func:`seeded_init`,
  :func:`train_denoiser`, :func:`denoise`, :func:`ablate`): flat shapes-world images whose
  only fine detail is their edges; about 100 Adam steps on 16x16 crops, a few seconds per
  model on one CPU thread (one thread, so the same seed gives the same numbers everywhere).

The lesson's exercises (``unet_level_shapes``, ``TinyUNet``, ``receptive_field``,
``high_frequency_error``) are written by the student in the notebook, not here.
"""
from __future__ import annotations

import contextlib
import ipywidgets as widgets
import math
import matplotlib.pyplot as plt
import numpy as np
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F
import warnings
import zlib
from matplotlib.patches import FancyArrowPatch, Rectangle
from typing import Iterator
from typing import Mapping, Sequence
from . import shapes
from .figures import figure_view

__all__ = ['ResBlock', 'num_groups_for', 'positive_stack', 'input_footprint', 'footprint_width',
           'measuring_disabled', 'conv_stack', 'plain_encoder', 'conv_macs', 'draw_unet', 'receptive_field_growth', 'reconstructions',
           'ablation_figure', 'feature_map_explorer', 'make_images', 'add_noise', 'seeded_init',
           'train_denoiser', 'denoise', 'ablate', 'one_thread']


# ===========================================================================
# building blocks and receptive-field measurement
# ===========================================================================

def num_groups_for(channels: int, max_groups: int = 8) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups`` (gcd with 8).

    Stable Diffusion uses 32 groups everywhere (its channel counts are multiples of 32);
    our tiny networks have odd channel counts too, so the group count adapts.
    """
    return math.gcd(channels, max_groups)


class ResBlock(nn.Module):
    """Residual block in Stable Diffusion's order: ``x -> [GroupNorm -> SiLU -> conv3x3] x 2``,
    plus the short skip ``conv_shortcut(x)``.

    This is the "pre-activation" order of diffusers' ``ResnetBlock2D`` (normalise, activate,
    then convolve), without the timestep (lesson 2 adds it). Shapes:
    ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (resolution unchanged; the U-Net
    changes resolution *between* blocks). ``conv_shortcut`` (diffusers' name) is the identity
    when the channel counts match and a 1x1 convolution otherwise, so that the sum is defined.
    This *short-range* skip helps gradients flow through deep stacks (as in ResNet); it is
    not the U-Net's long-range skip connection.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups_for(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups_for(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (nn.Identity() if in_channels == out_channels
                              else nn.Conv2d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.conv_shortcut(x)


def positive_stack(num_levels: int, convs_per_level: int = 2, kernel_size: int = 3) -> nn.Sequential:
    """The encoder that ``receptive_field`` describes, on one channel, all weights positive.

    Per level: ``convs_per_level`` stride-1 convolutions (``kernel_size``, 'same' padding);
    between levels a 2x2 average pool (stride 2); the last level (the bottleneck) has its
    convolutions and no pool after it. With every weight positive, no gradient can cancel,
    so the non-zero gradient of one output pixel marks exactly its receptive field.
    """
    layers: list[nn.Module] = []
    for level in range(num_levels):
        for _ in range(convs_per_level):
            conv = nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
            nn.init.constant_(conv.weight, 1.0 / kernel_size ** 2)
            layers.append(conv)
        if level < num_levels - 1:
            layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def _plain_convolutions() -> Iterator[None]:
    """oneDNN off, so that "non-zero" means exactly zero outside a receptive field: oneDNN may
    pick a Winograd or FFT convolution for some shapes and CPUs, whose rounding leaves tiny
    non-zeros everywhere; the plain convolution adds exact zeros. (Entering and leaving the
    flags prints a note about TF32 on Intel GPUs, silenced here and only there.)"""
    flags = torch.backends.mkldnn.flags(enabled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flags.__exit__(None, None, None)


def input_footprint(net: nn.Module, x: torch.Tensor, pixel: tuple[int, int],
                    layer: nn.Module | None = None) -> torch.Tensor:
    """Boolean map [H, W]: input pixels whose gradient is non-zero for one output pixel.

    ``layer``: measure the receptive field of that sub-module's output (via a forward hook)
    instead of the network's output. ``pixel`` indexes that output's (row, column); the
    sum over its channels is differentiated.
    """
    x = x.detach().clone().requires_grad_(True)
    captured = {}
    handle = None
    if layer is not None:
        handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    with _plain_convolutions():
        try:
            out = net(x)
        finally:
            if handle is not None:
                handle.remove()
        target = captured.get("out", out)
        r, c = pixel
        target[..., r, c].sum().backward()
    return (x.grad.abs().sum(dim=tuple(range(x.ndim - 2))) > 0)


def footprint_width(mask: torch.Tensor) -> int:
    """Width, in pixels, of the rows marked in a boolean [H, W] footprint (first to last
    marked row, inclusive). Raises if the mark touches the border (the image was too small to
    hold the whole field)."""
    rows = mask.any(dim=1).nonzero().flatten()
    if rows.numel() == 0:
        return 0
    if rows.min() == 0 or rows.max() == mask.shape[0] - 1:
        raise ValueError("the footprint touches the image border: use a larger input to measure it")
    return int(rows.max() - rows.min() + 1)


_MEASURING = ("positive_stack", "input_footprint", "footprint_width")


@contextlib.contextmanager
def measuring_disabled() -> Iterator[None]:
    """Inside this block, :func:`positive_stack`, :func:`input_footprint` and
    :func:`footprint_width` raise: the visible test of ``receptive_field`` runs your function
    like this, because the grader does the same (the exercise asks for arithmetic, not a
    measurement)."""
    module = sys.modules[__name__]
    saved = {name: getattr(module, name) for name in _MEASURING}

    def refuse(name):
        def refused(*args, **kwargs):
            raise RuntimeError(f"receptive_field must compute the field with arithmetic; l1.{name} "
                               "(a measurement on a real network) is disabled while it is tested and graded.")
        return refused

    try:
        for name in _MEASURING:
            setattr(module, name, refuse(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def conv_stack(num_convs: int, channels: int = 64, in_channels: int = 3) -> nn.Sequential:
    """``num_convs`` 3x3 stride-1 convolutions at full resolution ('same' padding):
    ``in_channels -> channels``, then ``channels -> channels`` (the "just a stack of convs"
    design of Section 2; ReLUs left out, they cost nothing next to the convolutions)."""
    if not 1 <= num_convs <= 256:
        raise ValueError(f"num_convs must be between 1 and 256, got {num_convs}")
    return nn.Sequential(*[nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1)
                           for i in range(num_convs)])


def plain_encoder(num_levels: int, base_channels: int = 64, in_channels: int = 3,
                  convs_per_level: int = 2) -> nn.Sequential:
    """The U-Net's left side without its blocks' extras: per level ``convs_per_level`` 3x3
    convolutions (level i has ``base_channels * 2**i`` channels), a 2x2 average pool between
    levels, none after the last (the bottleneck)."""
    if not 1 <= num_levels <= 8:
        raise ValueError(f"num_levels must be between 1 and 8, got {num_levels}")
    layers: list[nn.Module] = []
    c_in = in_channels
    for level in range(num_levels):
        c = base_channels * 2 ** level
        for _ in range(convs_per_level):
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            c_in = c
        if level < num_levels - 1:
            layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every ``nn.Conv2d`` of ``model`` in one forward pass on ``x``:
    output positions x output channels x (input channels / groups) x kernel area."""
    total = [0]

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total[0] += output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


# ===========================================================================
# figures and the feature-map widget
# ===========================================================================

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
    out, show = figure_view()
    choice = widgets.Dropdown(options=options, value=0, description="level")

    def draw(level: int) -> None:
        f = feats[level]
        k = min(max_channels, f.shape[0])
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
        show(fig)

    choice.observe(lambda change: draw(change["new"]), names="value")
    draw(choice.value)
    return widgets.VBox([choice, out])


# ===========================================================================
# the skip vs no-skip denoising experiment
# ===========================================================================

def make_images(n: int, split: str = "train", seed: int = 0, size: int = 32) -> torch.Tensor:
    """``n`` shapes-world images as a float tensor [n, 3, size, size] scaled to [-1, 1]."""
    items = shapes.make_dataset(n, split, seed=seed, size=size, as_tensor=True)
    return torch.stack([img for img, _, _ in items]) * 2 - 1


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``images + sigma * noise`` with a seeded standard normal noise."""
    g = torch.Generator().manual_seed(seed)
    return images + sigma * torch.randn(images.shape, generator=g)


def seeded_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every sub-module that has ``reset_parameters`` (convolutions, norms,
    linear layers), each from its own seed derived from ``seed`` and the module's *name*
    (``down_blocks.0.conv1``, ...). The result depends on the names, not on the order in which
    ``__init__`` created the layers, so every correct ``TinyUNet`` starts from the same
    weights. Returns ``model``."""
    for name, module in model.named_modules():
        if name and hasattr(module, "reset_parameters"):
            torch.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            module.reset_parameters()
    return model


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_denoiser(model: nn.Module, images: torch.Tensor, steps: int = 100,
                   batch_size: int = 16, crop: int = 16, sigma: float = 0.1,
                   lr: float = 1e-2, seed: int = 0) -> list[float]:
    """Train ``model`` (in place, on the CPU) to map ``x0 + sigma * noise`` back to ``x0``.

    The weights are first re-initialised with :func:`seeded_init` (``seed``), so the result
    does not depend on the order in which the model created its layers. Each step draws
    ``batch_size`` training images, one random ``crop`` x ``crop`` window (a fully
    convolutional network trains on crops and runs on whole images), fresh noise, and takes
    one Adam step on the mean squared error. Returns the loss of every step.
    """
    seeded_init(model, seed)
    g = torch.Generator().manual_seed(seed)
    model.to("cpu").train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    size = images.shape[-1]
    losses = []
    with one_thread():
        for _ in range(steps):
            x0 = images[torch.randint(0, len(images), (batch_size,), generator=g)]
            oy, ox = torch.randint(0, size - crop + 1, (2,), generator=g).tolist()
            x0 = x0[..., oy:oy + crop, ox:ox + crop]
            noisy = x0 + sigma * torch.randn(x0.shape, generator=g)
            loss = F.mse_loss(model(noisy), x0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def denoise(model: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """The model's prediction of the clean images (CPU, no gradient)."""
    with one_thread():
        return model.to("cpu").eval()(noisy)


@torch.no_grad()
def ablate(model: nn.Module, noisy: torch.Tensor, path: str) -> torch.Tensor:
    """The model's prediction with one path cut, by hooks on the pinned attribute names:

    * ``"bottleneck"``: the output of ``model.mid_block`` replaced by zeros (what the keyhole
      passes on is gone; the skips still arrive);
    * ``"top_skip"``: the skip half of the input of the LAST up block (level 0, the full
      resolution) replaced by zeros; the features coming up from below are untouched.
    """
    if path == "bottleneck":
        handle = model.mid_block.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    elif path == "top_skip":
        def cut(module, inputs):
            h = inputs[0].clone()
            h[:, h.shape[1] // 2:] = 0          # cat([upsampled, skip]): the skip is the second half
            return (h,) + tuple(inputs[1:])
        handle = model.up_blocks[-1].register_forward_pre_hook(cut)
    else:
        raise ValueError(f"path must be 'bottleneck' or 'top_skip', got {path!r}")
    try:
        return denoise(model, noisy)
    finally:
        handle.remove()


def ablation_figure(damage: Mapping[str, Mapping[str, float]],
                    title: str = "Which path does the model rely on? (damage = error with the path cut / error intact)"):
    """``damage``: noise label -> {"bottleneck": x, "top_skip": y}. One group of two bars per
    noise level, on a log scale (1 = no damage)."""
    labels = list(damage)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.36
    for k, (path, colour) in enumerate([("bottleneck", "#f4a532"), ("top_skip", "#4a90c2")]):
        vals = [float(damage[lab][path]) for lab in labels]
        bars_ = ax.bar(np.arange(len(labels)) + (k - 0.5) * width, vals, width, color=colour,
                       label="bottleneck zeroed (WHAT)" if path == "bottleneck" else "top skip zeroed (WHERE)")
        for b, v in zip(bars_, vals):
            ax.text(b.get_x() + b.get_width() / 2, v * 1.05, f"x{v:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel("error with the path cut / intact")
    top = max(float(v) for d in damage.values() for v in d.values())
    ax.set_ylim(0.8, top * 2.5)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
