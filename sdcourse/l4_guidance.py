"""Lesson 6-3-4 "Text conditioning and guidance": its figures, widget and experiments.

The notebook imports this module in one line (``from sdcourse import l4_guidance as l4``).

* figures: :func:`block_layout` (where self- and cross-attention sit in a U-Net, from its
  configuration), :func:`token_maps_figure` (one cross-attention map per prompt token over
  the generated image), :func:`cfg_geometry` (the three-number guidance example as vectors,
  computed with the student's guidance function),
  :func:`sweep_grid` and :func:`tradeoff_curves` (the guidance sweep);
* the guidance widget :func:`guidance_explorer` (a slider for w and a prompt box);
* experiments: :func:`guidance_sweep` (samples with the student's ``sample_with_cfg`` at
  several guidance scales and measures prompt adherence with the shapes-world pixel judge,
  saturation, clipping and diversity), :func:`batched_vs_sequential` (one U-Net call on the
  batch [uncond, cond] against two calls of one), :func:`record_unet_calls` (what a loop
  passes to the U-Net, for tests) and small helpers (:func:`tokens_of`,
  :func:`fixed_latents`, :func:`object_centre`).

Every function that needs an exercise's answer takes the student's function as an argument;
nothing here computes cross-attention, records attention probabilities, applies the guidance
formula or runs a denoising loop of its own. Widgets run without a browser too (nbval,
nbgrader): building one draws its first frame.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from . import shapes
from .figures import figure_view, to_image, to_numpy

__all__ = ["tokens_of", "fixed_latents", "object_centre", "block_layout", "attention_levels",
           "token_maps_figure", "cfg_geometry", "record_unet_calls", "batched_vs_sequential",
           "measure_batched_cfg",
           "guidance_sweep", "sweep_grid", "tradeoff_curves", "guidance_explorer",
           "judge_prompt", "image_rows"]

#: Colours of the three kinds of layer (the lesson's diagram): ResNet blocks carry the
#: timestep (WHEN), self-attention relates locations, cross-attention reads the text (WHAT).
RESNET, SELF_ATTN, CROSS_ATTN = "#f4b860", "#7fb3e6", "#b48ee0"


# --------------------------------------------------------------------------- small helpers

def tokens_of(tokenizer, prompt: str, pad: bool = True) -> list[str]:
    """The tokens the text encoder sees for ``prompt``, as readable strings: the start token,
    the words' tokens (cut so that the whole fits in the tokenizer's ``model_max_length``,
    as the pipeline truncates), the end token and (``pad=True``) the padding tokens."""
    limit = tokenizer.model_max_length
    words = [t.replace("</w>", "") for t in tokenizer.tokenize(prompt)][: limit - 2]
    out = [tokenizer.bos_token] + words + [tokenizer.eos_token]
    if pad:
        out += [tokenizer.pad_token] * (limit - len(out))
    return out


def fixed_latents(pipe, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` starting latents ``[n, C, h, w]`` (float32, on the CPU) for ``pipe``'s U-Net, one
    seeded generator per sample: sample ``k`` of seed ``s`` is the same whatever ``n`` is."""
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    h, w = (s, s) if isinstance(s, int) else tuple(s)
    return torch.stack([torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed * 100_003 + k))
                        for k in range(n)])


def object_centre(image) -> tuple[int, int]:
    """(row, column) of the centre of the main object of a shapes-world image: the mean
    position of the pixels that differ from the border colour. Accepts what
    ``shapes.judge`` accepts; returns the image centre when there is no object."""
    arr = _rgb(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fg = np.linalg.norm(arr - np.median(border, axis=0), axis=-1) > 60
    if fg.sum() < 4:
        return arr.shape[0] // 2, arr.shape[1] // 2
    ys, xs = np.nonzero(fg)
    return int(round(ys.mean())), int(round(xs.mean()))


def _rgb(image) -> np.ndarray:
    """(H, W, 3) float array in 0-255 from a [3, H, W] tensor in [0, 1], an array or PIL."""
    return to_image(image).astype(np.float32) * 255.0


def judge_prompt(prompt: str) -> tuple[str | None, str | None]:
    """The (colour, shape) a shapes-world prompt asks for: its first colour word and its
    first shape word (None when it names none)."""
    words = prompt.lower().replace(",", " ").split()
    colour = next((w for w in words if w in shapes.COLOURS), None)
    shape = next((w.rstrip("s") for w in words if w.rstrip("s") in shapes.SHAPES), None)
    return colour, shape


# --------------------------------------------------------------------------- where attention sits

def attention_levels(config: Mapping) -> list[dict]:
    """Every stage of a ``UNet2DConditionModel`` configuration, in the order the data flows:
    ``{"stage", "block", "latent", "channels", "attention", "tokens", "transformers"}``.

    ``latent`` is the side of the feature map the stage works at (a down block downsamples
    at its end, an up block upsamples at its end), ``tokens`` = latent ** 2 (the query
    locations of its attention layers), ``transformers`` the number of transformer blocks
    (self-attention, cross-attention, feed-forward) in the stage.
    """
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    chans = list(config["block_out_channels"])
    side = config["sample_size"] if isinstance(config["sample_size"], int) else config["sample_size"][0]
    layers = config.get("layers_per_block", 2)
    mid_type = config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    rows = []
    for i, block in enumerate(down):
        res = side // 2 ** i
        att = "CrossAttn" in block
        rows.append(dict(stage=f"down {i}", block=block, latent=res, channels=chans[i], attention=att,
                         tokens=res * res, transformers=layers if att else 0))
    res = side // 2 ** (len(down) - 1)
    att = "CrossAttn" in mid_type
    rows.append(dict(stage="mid", block=mid_type, latent=res, channels=chans[-1], attention=att,
                     tokens=res * res, transformers=1 if att else 0))
    for i, block in enumerate(up):
        res = side // 2 ** (len(up) - 1 - i)
        att = "CrossAttn" in block
        rows.append(dict(stage=f"up {i}", block=block, latent=res, channels=chans[::-1][i], attention=att,
                         tokens=res * res, transformers=(layers + 1) if att else 0))
    return rows


def _stage_box(ax, x, y, w, h, row):
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor="white", edgecolor="k", lw=1))
    colours = [RESNET] + ([SELF_ATTN, CROSS_ATTN] if row["attention"] else [])
    strip = 0.16 * h
    for k, c in enumerate(colours):
        ax.add_patch(Rectangle((x - w / 2 + k * w / len(colours), y - h / 2), w / len(colours), strip,
                               facecolor=c, edgecolor="none"))
    ax.text(x, y + 0.22 * h, row["block"], ha="center", va="center", fontsize=6.6, weight="bold")
    ax.text(x, y + 0.02 * h, f"latent {row['latent']}x{row['latent']}, {row['channels']} ch",
            ha="center", va="center", fontsize=6.6)
    detail = (f"{row['transformers']} x (self + cross), {row['tokens']} queries" if row["attention"]
              else "ResNet blocks only")
    ax.text(x, y - 0.2 * h, detail, ha="center", va="center", fontsize=6.3)


def _u_panel(ax, config: Mapping, title: str):
    rows = attention_levels(config)
    n_down = len(config["down_block_types"])
    w, h = 2.9, 0.82
    for i, row in enumerate(rows):
        if row["stage"].startswith("down"):
            x, y = 1.6 + 0.45 * i, n_down - i
        elif row["stage"] == "mid":
            x, y = 5.0, 0.0
        else:
            j = int(row["stage"].split()[1])
            x, y = 8.4 - 0.45 * (n_down - 1 - j), 1 + j
        _stage_box(ax, x, y, w, h, row)
    ax.text(0.1, -0.55, "down blocks: each halves H, W at its end", fontsize=7, color="#2171b5", ha="left")
    ax.text(9.9, -0.55, "up blocks: each doubles H, W at its end", fontsize=7, color="#238b45", ha="right")
    ax.set_xlim(-0.2, 10.2)
    ax.set_ylim(-0.75, n_down + 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=9.5)


def _transformer_panel(ax):
    steps = [("norm1 -> attn1\nself-attention\nQ, K, V from the image", SELF_ATTN),
             ("norm2 -> attn2\ncross-attention\nQ from the image, K, V from the text", CROSS_ATTN),
             ("norm3 -> ff\nfeed-forward", "#dddddd")]
    for k, (text, c) in enumerate(steps):
        y = 2.2 - 1.1 * k
        ax.add_patch(Rectangle((0.1, y - 0.4), 2.8, 0.8, facecolor=c, edgecolor="k"))
        ax.text(1.5, y, text, ha="center", va="center", fontsize=7.5)
        if k:
            ax.add_patch(FancyArrowPatch((1.5, y + 0.7), (1.5, y + 0.42), arrowstyle="-|>", mutation_scale=10))
    ax.text(1.5, 2.85, "inside one BasicTransformerBlock\n(each adds its result to its input)",
            ha="center", va="bottom", fontsize=8)
    ax.text(1.5, -0.55, "text embeddings [B, T, cross_attention_dim]\nenter at attn2 only",
            ha="center", va="top", fontsize=7.5, color="#6a3d9a")
    ax.set_xlim(0, 3)
    ax.set_ylim(-1.2, 3.4)
    ax.axis("off")


def block_layout(configs: Mapping[str, Mapping]):
    """Where attention sits: one U per configuration (``title -> UNet2DConditionModel config``;
    down blocks on the left going down, the mid block at the bottom, up blocks on the right
    going up), and the order of the layers inside one transformer block.

    Colour strips: amber = ResNet blocks (they receive the timestep: WHEN), blue =
    self-attention, violet = cross-attention (reads the text: WHAT).
    """
    n = len(configs)
    fig, axes = plt.subplots(1, n + 1, figsize=(6.2 * n + 3.2, 4.6),
                             gridspec_kw={"width_ratios": [6.2] * n + [3.2]})
    for ax, (title, cfg) in zip(axes, configs.items()):
        _u_panel(ax, cfg, title)
    _transformer_panel(axes[-1])
    handles = [Rectangle((0, 0), 1, 1, facecolor=c) for c in (RESNET, SELF_ATTN, CROSS_ATTN)]
    fig.legend(handles, ["ResNet blocks (timestep: WHEN, global)", "self-attention",
                         "cross-attention (text: WHAT, per location)"],
               loc="lower center", ncol=3, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# --------------------------------------------------------------------------- attention maps

def token_maps_figure(image, maps, tokens: Sequence[str], max_tokens: int = 8,
                      title: str = "Cross-attention of every image location, one map per token"):
    """The generated ``image`` ([3, H, W] in [0, 1]) and one map per token (``maps``:
    [T, H, W], e.g. from your ``token_maps``) drawn over it, for the first ``max_tokens``
    tokens (``tokens``: their names). Each map has its own colour scale (bright = where that
    token is read most); the title gives the token's mean weight over all locations, which
    says how much of the attention it receives overall."""
    maps = to_numpy(maps)
    k = min(max_tokens, len(tokens), maps.shape[0])
    fig, axes = plt.subplots(1, k + 1, figsize=(1.75 * (k + 1), 2.3))
    img = to_image(image)
    axes[0].imshow(img)
    axes[0].set_title("generated", fontsize=8)
    for j in range(k):
        ax = axes[j + 1]
        ax.imshow(img.mean(-1), cmap="gray", vmin=0, vmax=1)
        ax.imshow(maps[j], cmap="magma", alpha=0.8, vmin=float(maps[j].min()), vmax=float(maps[j].max()) + 1e-12)
        ax.set_title(f"{tokens[j]!r}\nmean weight {maps[j].mean():.2f}", fontsize=7.5)
    for ax in axes:
        ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle(title + " (each map on its own colour scale)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the CFG picture

def cfg_geometry(classifier_free_guidance: Callable, eps_uncond, eps_cond, guidance_scale: float,
                 title: str = "Classifier-free guidance as vectors"):
    """The three-number example as arrows, computed with YOUR ``classifier_free_guidance``:
    the unconditional and conditional predictions, the guided one at ``guidance_scale`` and
    dots at w = 0, 1, 2, ... The figure draws the plane through the origin spanned by
    uncond and cond (axis 1 along uncond, axis 2 perpendicular to it, lengths and angles
    true); a correct guided prediction lies in that plane, and the title says if yours does
    not."""
    u, c = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (eps_uncond, eps_cond))
    guide = lambda w: np.asarray(to_numpy(classifier_free_guidance(u, c, float(w))), dtype=float).reshape(-1)  # noqa: E731
    g = guide(guidance_scale)
    u, c = u.numpy(), c.numpy()
    e1 = u / np.linalg.norm(u)
    rest = c - (c @ e1) * e1
    e2 = rest / np.linalg.norm(rest) if np.linalg.norm(rest) > 1e-12 else np.zeros_like(u)
    P = lambda v: np.array([v @ e1, v @ e2])  # noqa: E731
    off_plane = float(np.linalg.norm(g - (g @ e1) * e1 - (g @ e2) * e2))
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    ws = np.arange(0, max(guidance_scale, 1) + 1e-9, 1.0)
    line = np.stack([P(guide(w)) for w in ws])
    ax.plot(*line.T, ":", color="k", lw=1)
    ax.scatter(*line.T, color="k", s=12, zorder=3)
    for w, p in zip(ws, line):
        if w in (0, 1, 2) or w == ws[-1]:
            ax.annotate(f"w={w:g}", p, textcoords="offset points", xytext=(6, -12), fontsize=8)
    for vec, colour, label in ((u, "grey", "eps_uncond"), (c, "C0", "eps_cond"),
                               (g, "C3", f"guided (yours), w = {guidance_scale:g}")):
        p = P(vec)
        ax.add_patch(FancyArrowPatch((0, 0), tuple(p), arrowstyle="-|>", mutation_scale=14, color=colour, lw=2))
        ax.annotate(label, p, textcoords="offset points", xytext=(6, 6), color=colour, fontsize=9)
    pu, pc = P(u), P(c)
    ax.add_patch(FancyArrowPatch(tuple(pu), tuple(pc), arrowstyle="-|>", mutation_scale=12, color="C2",
                                 lw=2.5, linestyle="--"))
    ax.annotate("text direction\ncond - uncond", (pu + pc) / 2, textcoords="offset points", xytext=(-70, 8),
                color="C2", fontsize=8)
    pts = np.vstack([line, [0, 0], P(g)])
    pad = 0.15 * (pts.max(0) - pts.min(0)).max()
    ax.set_xlim(pts[:, 0].min() - pad, pts[:, 0].max() + 3 * pad)
    ax.set_ylim(pts[:, 1].min() - pad, pts[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.axhline(0, color="grey", lw=0.5); ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("along eps_uncond")
    ax.set_ylabel("perpendicular, towards eps_cond")
    ax.set_title(title + (" (drawn in their common plane)" if off_plane < 1e-6 else
                          f" (your guided prediction is {off_plane:.2g} off this plane)"), fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- U-Net calls

@contextlib.contextmanager
def record_unet_calls(pipe) -> Iterator[list[dict]]:
    """Inside the ``with`` block, every call of ``pipe.unet(...)`` appends
    ``{"batch": int, "encoder_hidden_states": tensor}`` to the yielded list (a forward
    pre-hook; nothing about the call changes). Tests use it to see how a loop batches."""
    calls: list[dict] = []

    def hook(module, args, kwargs):
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        sample = args[0] if args else kwargs.get("sample")
        calls.append({"batch": int(sample.shape[0]) if sample is not None else -1,
                      "encoder_hidden_states": None if ehs is None else ehs.detach().to("cpu").clone()})

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@torch.inference_mode()
def batched_vs_sequential(pipe, repeats: int = 25, warmup: int = 3) -> dict:
    """Time one U-Net call on a batch of 2 (the [uncond, cond] batch of classifier-free
    guidance) against two calls on a batch of 1.

    The two are interleaved round by round, so both see the same machine load, after
    ``warmup`` untimed rounds. ``ratio`` compares the fastest of ``repeats`` rounds of each
    (as ``timeit`` does: on a shared machine the other processes only ever add time, so the
    minimum is the most stable estimate of the cost itself); the medians are reported too.
    The inputs are random latents and text embeddings of the right shapes (the cost of a
    call does not depend on the values).

    Returns ``{"batched_ms", "sequential_ms", "ratio", "batched_median_ms",
    "sequential_median_ms", "repeats", "latent_shape", "device", "threads"}``.
    """
    unet = pipe.unet
    device, dtype = unet.device, unet.dtype
    c, s = unet.config.in_channels, unet.config.sample_size
    h, w = (s, s) if isinstance(s, int) else tuple(s)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, h, w, generator=g).to(device, dtype)
    ctx = torch.randn(2, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim,
                      generator=g).to(device, dtype)
    t = torch.tensor(500, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    batched, sequential = [], []
    for k in range(warmup + repeats):
        sync(); t0 = time.perf_counter()
        unet(x, t, encoder_hidden_states=ctx)
        sync(); t1 = time.perf_counter()
        unet(x[:1], t, encoder_hidden_states=ctx[:1])
        unet(x[1:], t, encoder_hidden_states=ctx[1:])
        sync(); t2 = time.perf_counter()
        if k >= warmup:
            batched.append(t1 - t0)
            sequential.append(t2 - t1)
    return {"batched_ms": 1000 * min(batched), "sequential_ms": 1000 * min(sequential),
            "ratio": min(batched) / min(sequential),
            "batched_median_ms": 1000 * statistics.median(batched),
            "sequential_median_ms": 1000 * statistics.median(sequential),
            "repeats": repeats, "latent_shape": (1, c, h, w), "device": str(device),
            "threads": torch.get_num_threads()}


def measure_batched_cfg(repeats: int = 25) -> str:
    """The benchmark's figure (``make bench``): :func:`batched_vs_sequential` on the tiny
    pipeline on the CPU with one thread, as the lesson runs it; one line of text."""
    from .models import load_pipeline

    with contextlib.redirect_stdout(None):
        pipe = load_pipeline("tiny", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = batched_vs_sequential(pipe, repeats=repeats)
    finally:
        torch.set_num_threads(threads)
    return (f"one call on a batch of 2: {r['batched_ms']:.1f} ms, two calls on a batch of 1: "
            f"{r['sequential_ms']:.1f} ms, ratio {r['ratio']:.2f} (target <= 0.8; fastest of {r['repeats']} "
            f"interleaved rounds each, medians {r['batched_median_ms']:.1f} / {r['sequential_median_ms']:.1f} ms; "
            f"tiny U-Net, latents {r['latent_shape']}, CPU, 1 thread)")


# --------------------------------------------------------------------------- the guidance sweep

def _saturation(images: np.ndarray) -> tuple[float, float]:
    """(mean HSV saturation of the object's pixels, fraction of channel values at 0 or 1)
    of images [N, H, W, 3] in [0, 1]."""
    mx, mn = images.max(-1), images.min(-1)
    s = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    fg = s > 0.25
    sat = float(s[fg].mean()) if fg.any() else 0.0
    clipped = float(((images <= 1 / 255) | (images >= 254 / 255)).mean())
    return sat, clipped


@torch.no_grad()
def guidance_sweep(sample_with_cfg: Callable, pipe, prompts: Sequence[str],
                   scales: Sequence[float] = (1.0, 3.0, 7.5, 20.0), seeds: int = 3,
                   num_inference_steps: int = 25, seed: int = 0) -> dict:
    """Sample every prompt ``seeds`` times at every guidance scale with YOUR
    ``sample_with_cfg(pipe, prompts, w, steps, latents)`` (one batched call per scale, the
    same starting latents at every scale) and measure what guidance buys and costs:

    * ``adherence``: fraction of images whose main object has the prompt's colour AND shape
      (``shapes.judge``: pixels only, no neural network); ``colour`` / ``shape`` separately;
    * ``saturation``: mean HSV saturation of the object's pixels; ``clipped``: fraction of
      channel values at 0 or 1 (burnt colours);
    * ``diversity``: mean per-pixel standard deviation over the samples of one prompt.

    Returns a dict of lists (one entry per scale) plus ``images`` [S, P, seeds, 3, H, W],
    ``judged`` (the judge's (colour, shape) per image), ``prompts``, ``scales``, ``seconds``.
    """
    wanted = [judge_prompt(p) for p in prompts]
    for p, (c, s) in zip(prompts, wanted):
        if c is None or s is None:
            raise ValueError(f"every sweep prompt must name a shapes-world colour and shape "
                             f"({', '.join(shapes.COLOURS)}; {', '.join(shapes.SHAPES)}); got {p!r}")
    batch = [p for p in prompts for _ in range(seeds)]
    latents = fixed_latents(pipe, len(batch), seed)
    out = {k: [] for k in ("adherence", "colour", "shape", "saturation", "clipped", "diversity", "judged")}
    images_all = []
    t0 = time.perf_counter()
    for w in scales:
        imgs = sample_with_cfg(pipe, batch, float(w), num_inference_steps, latents).float().cpu()
        arr = imgs.permute(0, 2, 3, 1).numpy()
        judged = [shapes.judge(a) for a in (arr * 255).round().astype(np.uint8)]
        truth = [wc for wc in wanted for _ in range(seeds)]
        out["judged"].append(judged)
        out["adherence"].append(float(np.mean([j == t for j, t in zip(judged, truth)])))
        out["colour"].append(float(np.mean([j[0] == t[0] for j, t in zip(judged, truth)])))
        out["shape"].append(float(np.mean([j[1] == t[1] for j, t in zip(judged, truth)])))
        sat, clipped = _saturation(arr)
        out["saturation"].append(sat)
        out["clipped"].append(clipped)
        per_prompt = arr.reshape(len(prompts), seeds, *arr.shape[1:])
        out["diversity"].append(float(per_prompt.std(axis=1).mean()) if seeds > 1 else float("nan"))
        images_all.append(imgs.reshape(len(prompts), seeds, *imgs.shape[1:]))
    out.update(images=torch.stack(images_all), prompts=list(prompts), scales=[float(w) for w in scales],
               seeds=seeds, seconds=time.perf_counter() - t0, num_inference_steps=num_inference_steps)
    return out


def sweep_grid(result: Mapping, columns: int = 8, title: str = "The same starting noise at every guidance scale"):
    """Rows = guidance scales, columns = the first ``columns`` (prompt, seed) samples of a
    :func:`guidance_sweep` result. Under every image what the pixel judge sees: green when it
    is the prompt's colour and shape, red when not ("?" = it cannot name it)."""
    images = result["images"]                          # [S, P, seeds, 3, H, W]
    n_s, n_p, n_seed = images.shape[:3]
    picks = [(p, k) for k in range(n_seed) for p in range(n_p)][:columns]
    fig, axes = plt.subplots(n_s, len(picks), figsize=(1.45 * len(picks), 1.75 * n_s + 0.4), squeeze=False)
    for i, w in enumerate(result["scales"]):
        for j, (p, k) in enumerate(picks):
            ax = axes[i, j]
            ax.imshow(to_image(images[i, p, k]))
            ax.set_xticks([]); ax.set_yticks([])
            want = judge_prompt(result["prompts"][p])
            got = result["judged"][i][p * n_seed + k]
            ax.set_xlabel(f"{got[0] or '?'} {got[1] or '?'}", fontsize=7,
                          color="green" if got == want else "red")
            if i == 0:
                ax.set_title(result["prompts"][p], fontsize=7.5)
            if j == 0:
                ax.set_ylabel(f"w = {w:g}", fontsize=9)
    fig.suptitle(title + " (under each image: what the pixel judge sees)", fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_curves(result: Mapping, title: str = "What guidance buys and what it costs (measured)"):
    """Three panels against the guidance scale w: prompt adherence (colour AND shape right;
    colour and shape alone dotted), saturation and clipped fraction, diversity."""
    w = np.asarray(result["scales"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    ax = axes[0]
    ax.plot(w, result["adherence"], "o-", color="C0", lw=2, label="colour AND shape")
    ax.plot(w, result["colour"], ":", color="C1", label="colour right")
    ax.plot(w, result["shape"], ":", color="C2", label="shape right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of images")
    ax.set_title("prompt adherence (pixel judge)", fontsize=9.5)
    ax.legend(fontsize=7.5, loc="lower right")
    ax = axes[1]
    ax.plot(w, result["saturation"], "o-", color="C3", label="saturation of the object")
    ax.set_ylim(0, 1.05)
    ax2 = ax.twinx()
    ax2.plot(w, result["clipped"], "s--", color="k", label="clipped channel values")
    ax2.set_ylim(0, max(0.05, 1.2 * max(result["clipped"])))
    ax.set_title("saturation (left axis), clipping (right axis)", fontsize=9.5)
    ax.set_ylabel("mean saturation")
    ax2.set_ylabel("fraction clipped")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=7.5)
    ax = axes[2]
    ax.plot(w, result["diversity"], "o-", color="C4")
    ax.set_ylim(0, max(0.05, 1.2 * np.nanmax(result["diversity"])))
    ax.set_title("diversity (pixel std over seeds)", fontsize=9.5)
    for a in axes:
        a.set_xscale("log")
        a.set_xticks(w, [f"{v:g}" for v in w])
        a.minorticks_off()
        a.set_xlabel("guidance scale w")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_rows(rows: Mapping[str, object], title: str = "", size: float = 1.6):
    """One row per entry of ``rows`` (label -> images [n, 3, H, W] in [0, 1]); under each image
    what the shapes-world pixel judge sees (meaningful for shapes-world images only)."""
    labels = list(rows)
    n = max(len(rows[k]) for k in labels)
    fig, axes = plt.subplots(len(labels), n, figsize=(size * n + 1.2, (size + 0.35) * len(labels) + 0.4),
                             squeeze=False)
    for i, label in enumerate(labels):
        imgs = rows[label]
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([]); ax.set_yticks([])
            if j >= len(imgs):
                ax.axis("off")
                continue
            arr = to_image(imgs[j])
            ax.imshow(arr)
            colour, shape = shapes.judge((arr * 255).round().astype(np.uint8))
            ax.set_xlabel(f"{colour or '?'} {shape or '?'}", fontsize=7)
            if j == 0:
                ax.set_ylabel(str(label) if not isinstance(label, float) else f"w = {label:g}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9.5)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the widget

def guidance_explorer(sample_with_cfg: Callable, pipe, prompt: str = "a red circle",
                      guidance_scale: float = 7.5, n: int = 4, num_inference_steps: int = 20,
                      max_scale: float = 20.0, seed: int = 0):
    """A slider for the guidance scale w and a prompt box; shows ``n`` samples from the same
    ``n`` starting latents, made by YOUR ``sample_with_cfg``. Under each image: what the
    shapes-world pixel judge sees (only meaningful for shapes-world prompts)."""
    import ipywidgets as widgets

    latents = fixed_latents(pipe, n, seed)
    out, show = figure_view()
    slider = widgets.FloatSlider(value=guidance_scale, min=0.0, max=max_scale, step=0.5,
                                 description="w", continuous_update=False,
                                 layout=widgets.Layout(width="55%"))
    box = widgets.Text(value=prompt, description="prompt", continuous_update=False,
                       layout=widgets.Layout(width="55%"))

    def draw(*_):
        text, w = box.value, float(slider.value)
        with torch.no_grad():
            imgs = sample_with_cfg(pipe, [text] * n, w, num_inference_steps, latents).float().cpu()
        fig, axes = plt.subplots(1, n, figsize=(2.0 * n, 2.35), squeeze=False)
        for k, ax in enumerate(axes[0]):
            arr = to_image(imgs[k])
            ax.imshow(arr, extent=(0, 1, 1, 0))
            ax.set_xlim(0, 1); ax.set_ylim(1, 0)
            ax.set_xticks([]); ax.set_yticks([])
            colour, shape = shapes.judge((arr * 255).round().astype(np.uint8))
            ax.set_title(f"judge: {colour or '?'} {shape or '?'}", fontsize=8)
        fig.suptitle(f"{text!r} at w = {w:g} ({num_inference_steps} steps)", fontsize=9)
        fig.tight_layout()
        show(fig)

    slider.observe(draw, names="value")
    box.observe(draw, names="value")
    draw()
    return widgets.VBox([box, slider, out])
