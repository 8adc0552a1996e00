"""Lesson 6-3-5 "From pixels to latents": photos, stand-ins, cost measurements, figures and the
interpolation widget.

The notebook imports this module in one line (``from sdcourse import l5_latents as l5``).
Nothing here is an exercise answer: the figures, the widget and the experiments take the
student's ``encode_image`` / ``decode_latents`` (and results) as arguments, so what appears on
screen is the student's code. What this module does provide:

* input checks with diffusers-style messages (:func:`check_images`, :func:`check_latents`);
* the course's photos (scikit-image's and matplotlib's bundled sample photos, nothing is
  downloaded) and shapes-world scenes as ``[N, 3, S, S]`` tensors in [0, 1]; :func:`psnr`;
* small stand-ins with diffusers' interfaces for tests: :class:`ProbeVAE` (an ``AutoencoderKL``
  look-alike whose encoder and decoder are fixed, readable maps), :func:`sd_shaped_vae` (a
  randomly initialised ``AutoencoderKL`` with SD 1.x's block structure and narrow channels),
  :func:`toy_unet` (a small random ``UNet2DConditionModel``) and :class:`RecordingScheduler`;
* :func:`measure_unet_cost`: FLOPs (``torch.utils.flop_counter.FlopCounterMode``) and time of
  one U-Net forward at latent resolution and at pixel resolution;
* the figures and :func:`interpolation_widget` (runs headless too: building it draws its first
  frame).
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from types import SimpleNamespace
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .figures import figure_view, to_image, to_numpy

__all__ = [
    "check_images", "check_latents", "downsample_factor",
    "PHOTOS", "load_photo", "load_photos", "shapes_scenes", "psnr",
    "ProbeVAE", "SD_VAE_CONFIG", "SD_UNET_CONFIG", "SD_SHAPED_VAE_CONFIG", "sd_shaped_vae",
    "toy_unet", "RecordingScheduler",
    "measure_unet_cost", "UNetCost", "TRACE_KEYS", "LESSON_MAP",
    "reconstruction_figure", "latent_channels_figure", "view_vs_decode_figure",
    "interpolation_strip", "interpolation_widget", "cost_bars", "complete_picture_table",
    "complete_picture",
]


# ===========================================================================
# input checks (diffusers style: say what was expected and what was got)
# ===========================================================================

def downsample_factor(vae) -> int:
    """Spatial downsampling of an ``AutoencoderKL``: 2 ** (number of blocks - 1) (8 for SD's)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_images(images, vae=None, *, channels: int | None = None, downsample: int | None = None,
                 what: str = "images") -> None:
    """Raise a ``ValueError`` (``TypeError`` for a non-tensor) unless ``images`` is a float
    tensor ``[B, channels, H, W]`` with values in [0, 1] and H, W divisible by ``downsample``.
    ``channels`` / ``downsample`` default to the VAE's (3 and 8 for SD's) or to 3 and 8."""
    if channels is None:
        channels = int(vae.config.in_channels) if vae is not None else 3
    if downsample is None:
        downsample = downsample_factor(vae) if vae is not None else 8
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`{what}` must be a torch.Tensor of shape [B, {channels}, H, W] with values in "
                        f"[0, 1], but is a {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"`{what}` must have shape [B, {channels}, H, W] (a batch of images, channels "
                         f"first), but has shape {tuple(images.shape)}. Use images[None] for a single image.")
    if images.shape[1] != channels:
        raise ValueError(
            f"`{what}` must have {channels} channels in dimension 1 ([B, {channels}, H, W]), but has "
            f"{images.shape[1]} (shape {tuple(images.shape)}). Repeat a greyscale image 3 times, drop "
            f"the alpha channel of an RGBA one, and permute channels-last arrays with .permute(0, 3, 1, 2).")
    h, w = images.shape[-2:]
    if h % downsample or w % downsample:
        raise ValueError(f"`height` and `width` of `{what}` have to be divisible by {downsample} but are "
                         f"{h} and {w}.")
    if not images.is_floating_point():
        raise ValueError(f"`{what}` must be a floating-point tensor with values in [0, 1], but has dtype "
                         f"{images.dtype}; divide uint8 images by 255.")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 1 or math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"`{what}` must have values in [0, 1], but they range from {lo:.4g} to "
                             f"{hi:.4g}. Convert images in [-1, 1] with (x + 1) / 2 and images in "
                             f"[0, 255] with x / 255 first.")


def check_latents(latents, vae=None, *, channels: int | None = None, what: str = "latents") -> None:
    """Raise a ``ValueError`` unless ``latents`` is a float tensor ``[B, C, h, w]`` with the
    VAE's ``latent_channels`` (4 for SD's)."""
    if channels is None:
        channels = int(vae.config.latent_channels) if vae is not None else 4
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"`{what}` must be a torch.Tensor of shape [B, {channels}, h, w], but is a "
                        f"{type(latents).__name__}.")
    if latents.ndim != 4 or latents.shape[1] != channels:
        raise ValueError(f"`{what}` must have shape [B, {channels}, h, w] ({channels} latent channels), "
                         f"but has shape {tuple(latents.shape)}.")
    if not latents.is_floating_point():
        raise ValueError(f"`{what}` must be a floating-point tensor, but has dtype {latents.dtype}.")


# ===========================================================================
# photos and scenes
# ===========================================================================

#: The course's photos: name -> (where it comes from, licence as its docstring states it,
#: whether the tiny VAE saw it in training). All ship inside installed packages.
PHOTOS: dict[str, tuple[str, str, bool]] = {
    "astronaut": ("skimage.data.astronaut()", "public domain (NASA)", True),
    "coffee": ("skimage.data.coffee()", "CC0 (Rachel Michetti)", True),
    "chelsea": ("skimage.data.chelsea()", "CC0 (Stefan van der Walt)", True),
    "rocket": ("skimage.data.rocket()", "public domain (SpaceX)", True),
    "motorcycle": ("skimage.data.stereo_motorcycle()[0]", "Middlebury 2014 stereo (Scharstein et al.)", True),
    "grace_hopper": ("matplotlib sample_data grace_hopper.jpg", "public domain (US Navy)", False),
    "minduka": ("matplotlib sample_data Minduka_Present_Blue_Pack.png", "CC BY-SA (Minduka)", False),
}
_PHOTO_ARRAYS: dict[str, np.ndarray] = {}


def _photo_array(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; the course's photos are: {', '.join(PHOTOS)}")
    if name not in _PHOTO_ARRAYS:
        from PIL import Image

        if name in ("grace_hopper", "minduka"):
            import matplotlib.cbook

            fname = "grace_hopper.jpg" if name == "grace_hopper" else "Minduka_Present_Blue_Pack.png"
            im = Image.open(matplotlib.cbook.get_sample_data(fname, asfileobj=False))
            if im.mode == "RGBA":
                im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
            arr = np.asarray(im.convert("RGB"))
        else:
            import skimage.data

            arr = (skimage.data.stereo_motorcycle()[0] if name == "motorcycle"
                   else getattr(skimage.data, name)())
            arr = np.asarray(arr)[..., :3]
        _PHOTO_ARRAYS[name] = np.ascontiguousarray(arr, dtype=np.uint8)
    return _PHOTO_ARRAYS[name]


def load_photo(name: str, size: int = 256) -> torch.Tensor:
    """One of :data:`PHOTOS` as a ``[3, size, size]`` float tensor in [0, 1]: the largest
    centred square, resized (Lanczos). ``size`` must be a multiple of 8."""
    from PIL import Image

    if not isinstance(size, int) or size <= 0 or size % 8:
        raise ValueError(f"`size` has to be a positive multiple of 8 (the VAE downsamples by 8) but is {size!r}.")
    arr = _photo_array(name)
    h, w = arr.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    im = Image.fromarray(arr[top:top + m, left:left + m]).resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).clamp_(0, 1)


def load_photos(names: Sequence[str], size: int = 256) -> torch.Tensor:
    """Several photos as one ``[N, 3, size, size]`` tensor in [0, 1] (see :func:`load_photo`)."""
    return torch.stack([load_photo(n, size) for n in names])


def shapes_scenes(n: int, size: int = 64, split: str = "heldout", seed: int = 0) -> torch.Tensor:
    """``n`` shapes-world scenes as a ``[n, 3, size, size]`` tensor in [0, 1]."""
    from . import shapes

    return torch.stack([im for im, _, _ in shapes.make_dataset(n, split, seed=seed, size=size, as_tensor=True)])


def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image against its reference, both ``[B, 3, H,
    W]`` in [0, 1]: ``10 log10(1 / MSE)``. Returns ``[B]``; higher is better (about 30 dB is
    hard to tell from the original by eye, 20 dB is visibly soft)."""
    if images.shape != reference.shape:
        raise ValueError(f"`images` and `reference` must have the same shape, but have "
                         f"{tuple(images.shape)} and {tuple(reference.shape)}.")
    mse = ((images.detach().float().cpu() - reference.detach().float().cpu()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


# ===========================================================================
# stand-ins with diffusers' interfaces (for tests and for the full tier's shapes)
# ===========================================================================

class ProbeVAE(nn.Module):
    """A stand-in with ``AutoencoderKL``'s interface whose maps are fixed and readable, so a
    test can state exact expected values.

    * ``encode(x).latent_dist``: a diffusers ``DiagonalGaussianDistribution`` whose mean is
      ``[B, 4, H/8, W/8]``: channels 0-2 = the 8x8 block averages of R, G, B of ``x`` (times
      ``gain``), channel 3 = the average of those three; its std is ``posterior_std``
      everywhere. So an encoder input of constant 0.5 gives a latent mean of 0.5.
    * ``decode(z).sample``: ``[B, 3, 8h, 8w]``, channels 0-2 of ``z`` (times ``gain``), each
      repeated over an 8x8 block.
    * ``encoder_inputs`` / ``decoder_inputs``: the ``(min, max)`` of every input it received;
      ``latent_means``: a copy of every posterior mean it produced.
    * ``gain`` is a learnable scalar (1.0), so a test can see whether gradients reach the VAE.
    """

    def __init__(self, scaling_factor: float = 0.5, posterior_std: float = 0.1):
        super().__init__()
        self.config = SimpleNamespace(scaling_factor=scaling_factor, latent_channels=4, in_channels=3,
                                      out_channels=3, block_out_channels=(8, 8, 8, 8),
                                      shift_factor=None)
        self.posterior_std = float(posterior_std)
        self.gain = nn.Parameter(torch.ones(()))
        self.encoder_inputs: list[tuple[float, float]] = []
        self.decoder_inputs: list[tuple[float, float]] = []
        self.latent_means: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return self.gain.device

    @property
    def dtype(self) -> torch.dtype:
        return self.gain.dtype

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
        from diffusers.models.modeling_outputs import AutoencoderKLOutput

        self.encoder_inputs.append((float(x.min()), float(x.max())))
        rgb = F.avg_pool2d(x, 8) * self.gain                                # [B, 3, h, w]
        mean = torch.cat([rgb, rgb.mean(1, keepdim=True)], dim=1)          # [B, 4, h, w]
        self.latent_means.append(mean.detach().clone())
        logvar = torch.full_like(mean, 2 * math.log(self.posterior_std) if self.posterior_std > 0 else -30.0)
        dist = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        from diffusers.models.autoencoders.vae import DecoderOutput

        self.decoder_inputs.append((float(z.min()), float(z.max())))
        out = F.interpolate(z[:, :3] * self.gain, scale_factor=8, mode="nearest")
        return DecoderOutput(sample=out) if return_dict else (out,)


#: SD 1.x's VAE (``stable-diffusion-v1-5``, ``vae/config.json``): the published configuration.
SD_VAE_CONFIG: dict = dict(
    in_channels=3, out_channels=3, latent_channels=4, act_fn="silu", layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=512,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
#: SD 1.x's VAE block structure (4 blocks, 2 ResNet layers each, attention in the middle block,
#: 32 groups) with a quarter of its channels, so it runs in milliseconds. Random weights.
SD_SHAPED_VAE_CONFIG: dict = dict(SD_VAE_CONFIG, block_out_channels=(32, 64, 128, 128))
#: SD 1.x's U-Net (``stable-diffusion-v1-5``, ``unet/config.json``): the published configuration.
SD_UNET_CONFIG: dict = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0, act_fn="silu",
)


def sd_shaped_vae(seed: int = 0, config: Mapping | None = None, device=None):
    """A randomly initialised diffusers ``AutoencoderKL`` (eval mode) with SD 1.x's block
    structure and narrow channels (:data:`SD_SHAPED_VAE_CONFIG`; scaling_factor 0.18215),
    deterministic in ``seed``. The global random state is left untouched."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**dict(config or SD_SHAPED_VAE_CONFIG))
    return vae.to(device or "cpu").eval()


def toy_unet(seed: int = 0, cross_attention_dim: int = 32, device=None):
    """A small randomly initialised ``UNet2DConditionModel`` (4 latent channels in and out,
    cross-attention to ``cross_attention_dim``-wide text states), deterministic in ``seed``."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=cross_attention_dim,
            attention_head_dim=8, norm_num_groups=32)
    return unet.to(device or "cpu")


class RecordingScheduler:
    """Wraps a diffusers scheduler; every ``add_noise(original_samples, noise, timesteps)`` call
    is recorded in ``calls`` (a list of dicts of detached copies) and then forwarded. Every
    other attribute (``config``, ``alphas_cumprod``, ...) is the wrapped scheduler's."""

    def __init__(self, scheduler):
        self._scheduler = scheduler
        self.calls: list[dict] = []

    def add_noise(self, original_samples, noise, timesteps):
        self.calls.append({"original_samples": original_samples.detach().clone(),
                           "noise": noise.detach().clone(),
                           "timesteps": torch.as_tensor(timesteps).detach().clone()})
        return self._scheduler.add_noise(original_samples, noise, timesteps)

    def __getattr__(self, name):
        return getattr(self._scheduler, name)


# ===========================================================================
# what the compression buys: FLOPs and time of one U-Net forward
# ===========================================================================

def _flops(unet_config: Mapping, batch_shape: tuple, context_shape: tuple) -> int:
    """FLOPs of one forward of a U-Net with this configuration, counted on the meta device
    (shapes only: no weights, no memory, the same count on every machine)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(dict(unet_config))
        x = torch.empty(batch_shape)
        ctx = torch.empty(context_shape)
        t = torch.tensor([500])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, t, encoder_hidden_states=ctx)
    return int(counter.get_total_flops())


def _time_forward(unet, x, ctx, repeats: int) -> float:
    t = torch.tensor([500], device=x.device)
    threads = torch.get_num_threads()
    if x.device.type == "cpu":
        torch.set_num_threads(1)   # one thread: a shared or busy CPU distorts multi-threaded timings
    try:
        return _median_time(unet, x, t, ctx, repeats)
    finally:
        torch.set_num_threads(threads)


def _median_time(unet, x, t, ctx, repeats: int) -> float:
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=ctx)          # warm-up
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            unet(x, t, encoder_hidden_states=ctx)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


class UNetCost(dict):
    """``{"latent": {...}, "pixel": {...}}`` (see :func:`measure_unet_cost`), printed as one line."""

    def __str__(self) -> str:
        lat, pix = self["latent"], self["pixel"]

        def part(name, d):
            t = f", {d['seconds'] * 1e3:.1f} ms" if d["seconds"] else ", not timed"
            return f"{name} {tuple(d['shape'])}: {d['flops']:.3g} FLOPs{t}"
        ratio = f"FLOPs ratio {pix['flops'] / lat['flops']:.0f}x"
        if lat["seconds"] and pix["seconds"]:
            ratio += f", time ratio {pix['seconds'] / lat['seconds']:.0f}x"
        return f"{part('latent', lat)}; {part('pixel', pix)}; {ratio}"


def measure_unet_cost(unet=None, downsample: int = 8, latent_size: int | None = None,
                      context_length: int | None = None, repeats: int = 3,
                      max_timed_flops: float = 3e10) -> UNetCost:
    """Cost of ONE forward (batch 1) of a U-Net with ``unet``'s configuration at latent
    resolution and at pixel resolution. ``unet`` is a ``UNet2DConditionModel`` or just its
    configuration (a dict, e.g. :data:`SD_UNET_CONFIG`: then FLOPs only, nothing is timed).

    * latent: ``unet`` itself on ``[1, in_channels, s, s]`` with ``s = latent_size`` (default
      ``unet.config.sample_size``);
    * pixel: the same configuration with ``in_channels = out_channels = 3`` on ``[1, 3, S, S]``,
      ``S = downsample * s``, with random weights (the cost of a forward does not depend on
      the weights).

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes
    only, attention included). Time is the median of ``repeats`` forwards after a warm-up, on
    ``unet``'s device and dtype (on a CPU with ONE thread, so that a busy machine's thread
    scheduling does not distort the comparison), and only where the forward costs at most ``max_timed_flops``
    (else ``None``: SD 1.x at 512x512 pixels would need a 262,144 x 262,144 attention matrix).
    ``context_length`` is the number of text tokens (default: 77, SD's; the tiny pipeline's
    tokenizer has 24). Without a ``unet``, measures the tiny pipeline's U-Net on the CPU.
    Returns a :class:`UNetCost`, ``{"latent": {...}, "pixel": {...}}``, each with ``shape``,
    ``values``, ``positions``, ``flops`` and ``seconds``; ``str()`` gives a one-line summary.
    """
    from diffusers import UNet2DConditionModel

    if unet is None:
        from .models import load_pipeline

        pipe = load_pipeline("tiny", device="cpu")
        unet, context_length = pipe.unet, context_length or pipe.tokenizer.model_max_length
    context_length = int(context_length or 77)

    config_only = isinstance(unet, Mapping)
    cfg = dict(unet if config_only else unet.config)
    s = int(latent_size or cfg["sample_size"])
    size = downsample * s
    ctx_shape = (1, int(context_length), int(cfg["cross_attention_dim"]))
    pixel_cfg = dict(cfg, in_channels=3, out_channels=3, sample_size=size)
    device, dtype = (None, None) if config_only else (unet.device, unet.dtype)
    out = {}
    for name, c, res in (("latent", cfg, s), ("pixel", pixel_cfg, size)):
        shape = (1, int(c["in_channels"]), res, res)
        flops = _flops(c, shape, ctx_shape)
        seconds = None
        if not config_only and flops <= max_timed_flops:
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
            ctx = torch.zeros(ctx_shape, device=device, dtype=dtype)
            if name == "latent":
                model = unet
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = UNet2DConditionModel.from_config(c).to(device, dtype).eval()
            seconds = _time_forward(model, x, ctx, repeats)
        out[name] = {"shape": shape, "values": int(np.prod(shape)), "positions": res * res,
                     "flops": flops, "seconds": seconds}
    return UNetCost(out)


# ===========================================================================
# the complete picture: which lesson built which part
# ===========================================================================

#: The stages ``trace_pipeline`` records, in order.
TRACE_KEYS = ("token_ids", "text_embeddings", "initial_latents", "unet_input", "noise_pred",
              "final_latents", "image")

#: stage -> (what produces it, which lesson built the idea)
LESSON_MAP: dict[str, tuple[str, str]] = {
    "token_ids": ("CLIP tokenizer (padded to its max length)", "6-3-3"),
    "text_embeddings": ("frozen CLIP text encoder; [uncond; cond] for CFG", "6-3-3, 6-3-4"),
    "initial_latents": ("Gaussian noise in latent space", "6.2, 6-3-5"),
    "unet_input": ("U-Net + timestep embedding + cross-attention", "6-3-1, 6-3-2, 6-3-4"),
    "noise_pred": ("predicted noise, then CFG: eps_u + w (eps_c - eps_u)", "6-3-4"),
    "final_latents": ("the scheduler's denoising loop (DDIM here)", "6.2"),
    "image": ("VAE decoder: latent language -> pixel language", "6-3-5"),
}


def complete_picture_table(trace: Mapping[str, Sequence[int]]) -> str:
    """The complete-picture table as text: one row per traced stage, with its shape, the
    component that produces it and the lesson that built it."""
    rows = [("stage", "shape", "component", "lesson")]
    for key in TRACE_KEYS:
        if key not in trace:
            raise ValueError(f"the trace has no {key!r} entry; it must have the keys {', '.join(TRACE_KEYS)}")
        what, lesson = LESSON_MAP[key]
        rows.append((key, str(tuple(int(d) for d in trace[key])), what, lesson))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
        if k == 0:
            lines.append("-" * (sum(widths) + 6 + max(len(x[3]) for x in rows)))
    return "\n".join(lines)


def complete_picture(trace: Mapping[str, Sequence[int]], tier: str = "tiny"):
    """Stable Diffusion as one diagram: every box is a component, coloured by the lesson that
    built it, every arrow labelled with the shape your ``trace_pipeline`` recorded."""
    from matplotlib.patches import FancyBboxPatch

    for key in TRACE_KEYS:
        if key not in trace:
            raise ValueError(f"the trace has no {key!r} entry; it must have the keys {', '.join(TRACE_KEYS)}")
    sh = {k: "x".join(str(int(d)) for d in trace[k]) for k in TRACE_KEYS}
    colours = {"6-3-1": "#f4c27a", "6-3-2": "#f7dc9c", "6-3-3": "#a9c8f0", "6-3-4": "#c6b3ec",
               "6-3-5": "#9fd8b0", "6.2": "#dddddd"}
    boxes = [  # (x, y, w, h, text, lesson key)
        (0.2, 5.0, 2.2, 0.9, "prompt", None),
        (3.0, 5.0, 2.4, 0.9, "CLIP tokenizer", "6-3-3"),
        (6.0, 5.0, 2.8, 0.9, "CLIP text encoder\n(frozen)", "6-3-3"),
        (9.6, 5.0, 3.0, 0.9, "[uncond; cond]\nfor CFG", "6-3-4"),
        (0.2, 2.6, 2.6, 0.9, "noise z_T\n(latent space)", "6-3-5"),
        (3.6, 2.2, 5.0, 1.7, "", "6-3-1"),
        (9.6, 2.6, 3.0, 0.9, "CFG: eps_u +\nw (eps_c - eps_u)", "6-3-4"),
        (9.6, 0.3, 3.0, 0.9, "scheduler step\n(DDIM / DDPM)", "6.2"),
        (3.6, 0.3, 2.6, 0.9, "VAE decoder", "6-3-5"),
        (0.2, 0.3, 2.6, 0.9, "image", None),
    ]
    fig, ax = plt.subplots(figsize=(13, 6.3))
    for x, y, w, h, text, les in boxes:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", lw=1.2, ec="k",
                                    fc=colours.get(les, "white")))
        if text:
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)
    # inside the U-Net box
    ax.text(6.1, 3.62, "U-Net (6-3-1): encoder, bottleneck, decoder, skips", ha="center", fontsize=9)
    for x, label, les in ((3.8, "timestep\nembedding\n+ injection", "6-3-2"),
                          (5.45, "ResNet blocks\nat every\nresolution", "6-3-1"),
                          (7.0, "cross-attention\nto the text", "6-3-4")):
        ax.add_patch(FancyBboxPatch((x, 2.35), 1.45, 1.0, boxstyle="round,pad=0.03", lw=0.8, ec="k",
                                    fc=colours[les]))
        ax.text(x + 0.72, 2.85, label, ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1, label="", dy=0.12, ha="center"):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", lw=1.3))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, label, ha=ha, va="bottom", fontsize=8, color="#333")

    arrow(2.45, 5.45, 2.95, 5.45)
    arrow(5.45, 5.45, 5.95, 5.45, f"ids\n{sh['token_ids']}", dy=0.5)
    arrow(8.85, 5.45, 9.55, 5.45)
    arrow(11.1, 4.95, 7.7, 3.95, f"text embeddings {sh['text_embeddings']}", dy=0.05, ha="left")
    arrow(2.85, 3.05, 3.55, 3.05, f"{sh['initial_latents']}", dy=0.5)
    arrow(8.65, 3.05, 9.55, 3.05, f"noise_pred\n{sh['noise_pred']}", dy=0.1)
    arrow(11.1, 2.55, 11.1, 1.25)
    arrow(9.55, 0.75, 6.25, 0.75, f"final latents {sh['final_latents']}", dy=0.1)
    arrow(10.4, 1.25, 8.0, 2.15, f"loop: U-Net input {sh['unet_input']}", dy=-0.15, ha="right")
    arrow(3.55, 0.75, 2.85, 0.75, f"{sh['image']}", dy=0.1)
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c, ec="k") for c in colours.values()]
    names = ["6-3-1 U-Net", "6-3-2 timestep conditioning", "6-3-3 CLIP", "6-3-4 cross-attention & CFG",
             "6-3-5 VAE / latent space", "Module 6.2 diffusion"]
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=8,
              frameon=False)
    ax.set_xlim(0, 12.8)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    ax.set_title(f"Stable Diffusion, every part built in this module (shapes from your trace, {tier} tier)")
    fig.tight_layout()
    return fig


# ===========================================================================
# figures
# ===========================================================================

def _show(ax, img, title=""):
    ax.imshow(to_image(img), interpolation="nearest")
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def reconstruction_figure(images: torch.Tensor, reconstructions: torch.Tensor,
                          names: Sequence[str] | None = None, amplify: float = 3.0):
    """Three rows: the photos, their VAE round trips, and ``amplify`` x |difference|; each
    column titled with its PSNR and the mean colour shift (R, G, B) of the reconstruction."""
    check_images(images, downsample=1)
    check_images(reconstructions, downsample=1, what="reconstructions")
    if images.shape != reconstructions.shape:
        raise ValueError(f"`images` and `reconstructions` must have the same shape, but have "
                         f"{tuple(images.shape)} and {tuple(reconstructions.shape)}.")
    images, recons = images.detach().float().cpu(), reconstructions.detach().float().cpu()
    n = len(images)
    scores = psnr(recons, images)
    shift = (recons - images).mean(dim=(2, 3))
    fig, axes = plt.subplots(3, n, figsize=(2.3 * n, 7.4), squeeze=False)
    for i in range(n):
        name = names[i] if names is not None else f"image {i}"
        _show(axes[0, i], images[i], name)
        _show(axes[1, i], recons[i], f"{scores[i]:.1f} dB")
        _show(axes[2, i], (amplify * (recons[i] - images[i]).abs()).clamp(0, 1),
              "shift " + " ".join(f"{v:+.2f}" for v in shift[i].tolist()))
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("decode(encode(x))")
    axes[2, 0].set_ylabel(f"|difference| x {amplify:g}")
    fig.suptitle("The VAE round trip: PSNR (middle row) and mean colour shift R G B (bottom row)")
    fig.tight_layout()
    return fig


def latent_channels_figure(latents: torch.Tensor, image: torch.Tensor | None = None, name: str = ""):
    """The channels of ONE latent ``[C, h, w]`` (or ``[1, C, h, w]``) side by side, each with
    its own colour scale, mean and std; the image it encodes on the left if given."""
    z = latents.detach().float().cpu()
    if z.ndim == 4:
        z = z[0]
    if z.ndim != 3:
        raise ValueError(f"`latents` must have shape [C, h, w] or [1, C, h, w], but has {tuple(latents.shape)}.")
    c = z.shape[0]
    k = c + (image is not None)
    fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.9), squeeze=False)
    axes = axes[0]
    if image is not None:
        _show(axes[0], image, name or "image")
        axes = axes[1:]
    for i in range(c):
        lim = float(z[i].abs().max())
        im = axes[i].imshow(z[i].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        axes[i].set_xticks([]); axes[i].set_yticks([])
        axes[i].set_title(f"channel {i}\nmean {z[i].mean():+.2f}, std {z[i].std():.2f}", fontsize=9)
        fig.colorbar(im, ax=axes[i], fraction=0.046, pad=0.03)
    fig.suptitle(f"The {c} channels of the latent {tuple(z.shape)} (red +, blue -)", y=1.02)
    fig.tight_layout()
    return fig


def view_vs_decode_figure(image: torch.Tensor, latents: torch.Tensor, decoded: torch.Tensor):
    """What you get if you "view" a latent as an RGB picture, next to a real thumbnail of the
    same size and the decoder's translation. ``image`` ``[3, H, W]``, ``latents`` ``[C, h, w]``
    (scaled), ``decoded`` ``[3, H, W]``."""
    image = image.detach().float().cpu().reshape(3, *image.shape[-2:])
    z = latents.detach().float().cpu()
    z = z[0] if z.ndim == 4 else z
    h, w = z.shape[-2:]
    viewed = z[:3]
    lo = viewed.amin(dim=(1, 2), keepdim=True)
    hi = viewed.amax(dim=(1, 2), keepdim=True)
    viewed = (viewed - lo) / (hi - lo).clamp_min(1e-8)                     # min-max per channel
    clipped = z[:3].clamp(0, 1)
    thumb = F.interpolate(image[None], size=(h, w), mode="area")[0]
    fig, axes = plt.subplots(1, 5, figsize=(13, 3.1))
    _show(axes[0], image, f"the photo {tuple(image.shape)}")
    _show(axes[1], thumb, f"a real thumbnail {tuple(thumb.shape)}")
    _show(axes[2], clipped, "latent ch 0-2 as RGB\n(values clipped to [0, 1])")
    _show(axes[3], viewed, "latent ch 0-2 as RGB\n(each channel stretched)")
    _show(axes[4], decoded, "decode_latents(latent)")
    fig.suptitle("Viewing the latent is not decoding it: the thumbnail is a small image, the latent is not",
                 y=1.04)
    fig.tight_layout()
    return fig


def _mix(encode_image: Callable, decode_latents: Callable, vae, a: torch.Tensor, b: torch.Tensor):
    a, b = a.reshape(1, *a.shape[-3:]), b.reshape(1, *b.shape[-3:])
    check_images(a, vae, what="image_a")
    check_images(b, vae, what="image_b")
    with torch.no_grad():
        za, zb = encode_image(vae, a), encode_image(vae, b)

    def latent(w: float) -> torch.Tensor:
        with torch.no_grad():
            return decode_latents(vae, (1 - w) * za + w * zb)[0].float().cpu()

    def pixel(w: float) -> torch.Tensor:
        return ((1 - w) * a + w * b)[0].float().cpu()
    return latent, pixel


def interpolation_strip(encode_image: Callable, decode_latents: Callable, vae, image_a: torch.Tensor,
                        image_b: torch.Tensor, weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)):
    """Two rows over the mixing weight w: top, the pixel cross-fade (1-w) a + w b; bottom,
    ``decode_latents((1-w) encode_image(a) + w encode_image(b))`` (your functions)."""
    latent, pixel = _mix(encode_image, decode_latents, vae, image_a, image_b)
    n = len(weights)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 5.0), squeeze=False)
    for i, w in enumerate(weights):
        _show(axes[0, i], pixel(w), f"w = {w:g}")
        _show(axes[1, i], latent(w))
    axes[0, 0].set_ylabel("pixel cross-fade")
    axes[1, 0].set_ylabel("decoded latent mix")
    fig.suptitle("Mixing in pixel space (top) vs mixing the latents and decoding (bottom)")
    fig.tight_layout()
    return fig


def interpolation_widget(encode_image: Callable, decode_latents: Callable, vae, image_a: torch.Tensor,
                         image_b: torch.Tensor, weight: float = 0.5):
    """Slider for the mixing weight w: image a, the pixel cross-fade, the decoded latent mix,
    image b. Encodes both images once (your ``encode_image``), decodes at every move (your
    ``decode_latents``). Each frame is a PNG of fixed size (``figures.figure_view``), so the
    panels keep their size and place while the slider moves."""
    import ipywidgets as widgets

    latent, pixel = _mix(encode_image, decode_latents, vae, image_a, image_b)
    view, show = figure_view()
    slider = widgets.FloatSlider(value=weight, min=0.0, max=1.0, step=0.05, description="w",
                                 continuous_update=False, readout_format=".2f",
                                 layout=widgets.Layout(width="60%"))

    def draw(w: float) -> None:
        fig, axes = plt.subplots(1, 4, figsize=(11, 3.0))
        _show(axes[0], image_a, "image a (w = 0)")
        _show(axes[1], pixel(w), f"pixel cross-fade, w = {w:.2f}")
        _show(axes[2], latent(w), f"decoded latent mix, w = {w:.2f}")
        _show(axes[3], image_b, "image b (w = 1)")
        fig.tight_layout()
        show(fig)

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, view])


def _fmt(v: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def cost_bars(costs: Mapping[str, Mapping], title: str = "What the VAE's compression buys"):
    """Bar chart (log scale) of values, spatial positions and FLOPs of one U-Net forward in
    pixel vs latent space. ``costs``: label -> the output of :func:`measure_unet_cost`
    (one group of bars per label, e.g. the loaded U-Net and SD 1.x's configuration)."""
    metrics = [("values", "values per image"), ("positions", "spatial positions"),
               ("flops", "FLOPs of one U-Net forward")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = list(costs)
    x = np.arange(len(labels))
    for ax, (key, name) in zip(axes, metrics):
        pix = np.array([costs[l]["pixel"][key] for l in labels], dtype=float)
        lat = np.array([costs[l]["latent"][key] for l in labels], dtype=float)
        ax.bar(x - 0.2, pix, 0.4, color="C3", label="pixel space")
        ax.bar(x + 0.2, lat, 0.4, color="C2", label="latent space")
        for i in range(len(labels)):
            ax.text(x[i] - 0.2, pix[i], _fmt(pix[i]), ha="center", va="bottom", fontsize=8)
            ax.text(x[i] + 0.2, lat[i], _fmt(lat[i]), ha="center", va="bottom", fontsize=8)
            ax.text(x[i], pix[i] * 4, f"{pix[i] / lat[i]:.0f}x", ha="center", va="bottom",
                    fontsize=9, fontweight="bold")
        ax.set_yscale("log")
        ax.set_ylim(min(lat.min(), pix.min()) / 3, pix.max() * 60)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(name, fontsize=10)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
