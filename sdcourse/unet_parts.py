"""Building blocks for lesson 6-3-1 "U-Net architecture".

* :class:`ResBlock`: the residual block every level of the lesson's U-Net uses
  (conv -> norm -> activation, twice, plus a short-range skip);
* :func:`gradient_footprint`: measure a receptive field as the set of input pixels that
  receive a non-zero gradient from one output pixel (the experiment that checks the
  student's ``receptive_field`` arithmetic);
* :func:`input_footprint`: the same measurement on any network, for any hooked layer.

The lesson's exercises (``unet_level_shapes``, ``TinyUNet``, ``receptive_field``,
``high_frequency_error``) are written by the student in the notebook, not here.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResBlock", "num_groups_for", "positive_stack", "gradient_footprint",
           "input_footprint"]


def num_groups_for(channels: int, max_groups: int = 8) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups`` (gcd with 8).

    Stable Diffusion uses 32 groups everywhere (its channel counts are multiples of 32);
    our tiny networks have odd channel counts too, so the group count adapts.
    """
    return math.gcd(channels, max_groups)


class ResBlock(nn.Module):
    """Residual block: ``x -> [conv3x3 -> GroupNorm -> SiLU] x 2  (+ skip(x))``.

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (resolution unchanged;
    the U-Net changes resolution *between* blocks). ``skip`` is the identity when the
    channel counts match and a 1x1 convolution otherwise, so that the sum is defined.
    This *short-range* skip helps gradients flow through deep stacks (as in ResNet); it
    is not the U-Net's long-range skip connection.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm1 = nn.GroupNorm(num_groups_for(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups_for(out_channels), out_channels)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


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
    try:
        out = net(x)
    finally:
        if handle is not None:
            handle.remove()
    target = captured.get("out", out)
    r, c = pixel
    target[..., r, c].sum().backward()
    return (x.grad.abs().sum(dim=tuple(range(x.ndim - 2))) > 0)


def gradient_footprint(num_levels: int, convs_per_level: int = 2, kernel_size: int = 3) -> int:
    """Measured receptive field (in input pixels, along one side) of one bottleneck pixel of
    :func:`positive_stack`: build the network, backpropagate from the centre pixel of its
    output, count the input rows that receive a gradient."""
    net = positive_stack(num_levels, convs_per_level, kernel_size)
    step = 2 ** (num_levels - 1)
    size = step * (2 * (convs_per_level * (kernel_size - 1) + 1) + 5)   # wide enough: no border
    x = torch.ones(1, 1, size, size)
    n_out = size // step
    mask = input_footprint(net, x, (n_out // 2, n_out // 2))
    rows = mask.any(dim=1).nonzero().flatten()
    if rows.numel() == 0 or rows.min() == 0 or rows.max() == size - 1:
        raise RuntimeError("footprint touches the border; enlarge the test image")
    return int(rows.max() - rows.min() + 1)
