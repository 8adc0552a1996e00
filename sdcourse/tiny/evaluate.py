"""Measure every quality figure of the tiny models and write them into the model cards.

Instructor build tooling (``make eval-tiny``); notebooks never import this module.

Run: ``python -m sdcourse.tiny.evaluate`` (``make eval-tiny``). Prints a summary, writes
``<models>/eval_results.json``, regenerates each ``MODEL_CARD.md`` (from
``sdcourse/tiny/templates/``) and the status table of README.md's models section; every
requirement is checked against ``sdcourse.tiny.floors``.

Figures (all on data the trainers never saw):

* CLIP: zero-shot top-1 over the 24 colour x shape classes with the prompt
  "a photo of {a} {colour} {shape}", on held-out shapes-world scenes and on scenes drawn by
  ``other_renderer`` (independent drawing code: rotated shapes with their own geometry,
  outlines, light / dark / grey / textured backgrounds, other sizes); limitation figures:
  choosing between a two-object relation caption and the same caption with the objects
  swapped (chance 50%), and counting ("two / three / four {colour} {shape}s", chance 33%).
* VAE: reconstruction (``latent_dist.mode()``) of matplotlib's two sample photos, never
  trained on, resized to 256x256 and 512x512: PSNR and colour cast (mean absolute error of
  the per-channel means, images in [0, 1]); PSNR on held-out shapes scenes, on 64x64 crops of
  the held-out strip of every training photo, and on ``other_renderer`` scenes.
* Pipeline: prompt adherence on "a {colour} {shape}" prompts (9 per class = 216 samples) at
  guidance 1, 3, 7.5 and 20 with 25 DDIM steps, judged from pixels alone by ``shapes.judge``
  (no neural network; it refuses colours too dark or too washed out to be seen as the prompted
  one); what high guidance costs: clipped channel values, saturation, diversity.
* Speed / size: 25-step sampling time for one image, load times and peak memory of a fresh
  process that loads all three and samples once, size of ``data/models``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from sdcourse import shapes
from sdcourse.tiny import common

PROMPT = "a photo of {a} {colour} {shape}"
GUIDANCES = (1.0, 3.0, 7.5, 20.0)
EVAL_SEED = 777  # held-out split seed used by every figure below
RESERVED_SIZES = (256, 512)


# ------------------------------------------------------------------ an independent renderer
OTHER_BACKGROUNDS = ("light", "dark", "grey", "textured")
OTHER_STYLES = ("filled", "filled+outline", "outline")


def _other_background(rng: np.random.Generator, kind: str, S: int):
    from PIL import Image, ImageFilter

    if kind == "light":
        return Image.new("RGB", (S, S), tuple(int(v) for v in rng.integers(200, 256, 3)))
    if kind == "dark":
        return Image.new("RGB", (S, S), tuple(int(v) for v in rng.integers(0, 50, 3)))
    if kind == "grey":
        g = int(rng.integers(110, 160))
        return Image.new("RGB", (S, S), (g, g, g))
    # textured: a muted two-colour gradient, blurred noise and sometimes faint stripes
    a, b = rng.integers(60, 230, 3), rng.integers(60, 230, 3)
    a, b = a * 0.4 + a.mean() * 0.6, b * 0.4 + b.mean() * 0.6
    t = np.linspace(0, 1, S)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, S)[:, None, None]
    arr = a * (1 - t) + b * t + rng.normal(0, 14, (S, S, 1)) + rng.normal(0, 6, (S, S, 3))
    if rng.random() < 0.5:
        period = rng.integers(S // 10, S // 4)
        arr = arr + 12 * (np.sin(2 * np.pi * np.arange(S) / period)[None, :, None] > 0)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(radius=S / 128))


def _other_vertices(shape: str, cx: float, cy: float, r: float, theta: float, rng: np.random.Generator):
    """Vertices of ``shape`` with circumradius ``r`` rotated by ``theta``: this renderer's own
    geometry (a 72-gon slightly elliptic circle, stars with a random inner radius)."""
    if shape == "circle":
        k = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = np.stack([r * np.cos(k), r * rng.uniform(0.92, 1.0) * np.sin(k)], 1)
    elif shape == "square":
        k = np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([r * np.cos(k), r * np.sin(k)], 1)
    elif shape == "triangle":
        k = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([r * np.cos(k), r * np.sin(k)], 1)
    elif shape == "star":
        k = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        pts = np.stack([rad * np.cos(k), rad * np.sin(k)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    c, s = np.cos(theta), np.sin(theta)
    pts = pts @ np.array([[c, s], [-s, c]])
    return [(float(x + cx), float(y + cy)) for x, y in pts]


def other_renderer(colour: str, shape: str, rng: np.random.Generator, size: int = 64,
                   background: str | None = None, style: str | None = None):
    """One ``colour`` ``shape`` drawn by code that shares nothing with ``shapes.render_scene``:
    PIL polygons at 4x with Lanczos downsampling, any rotation, circumradius 16-36% of the side
    anywhere in the frame, the colour's shade jittered by up to 20 levels, filled / filled with
    a dark (light on dark backgrounds) outline / outline only, on a light, dark, grey or
    textured background (random when not given). Returns an RGB ``PIL.Image``."""
    from PIL import Image, ImageDraw

    S = 4 * size
    background = background or OTHER_BACKGROUNDS[int(rng.integers(len(OTHER_BACKGROUNDS)))]
    style = style or OTHER_STYLES[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
    img = _other_background(rng, background, S)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.16, 0.36) * S
    cx, cy = rng.uniform(r + 2, S - r - 2, 2)
    theta = rng.uniform(0, 2 * np.pi)
    fill = tuple(int(v) for v in np.clip(np.array(shapes.COLOURS[colour]) + rng.integers(-20, 21, 3), 0, 255))
    pts = _other_vertices(shape, cx, cy, r, theta, rng)
    if style == "filled":
        draw.polygon(pts, fill=fill)
    elif style == "filled+outline":
        edge = (20, 20, 20) if background != "dark" else (235, 235, 235)
        draw.polygon(pts, fill=fill, outline=edge, width=int(rng.integers(2, 4)) * 4)
    else:
        draw.polygon(pts, outline=fill, width=int(rng.integers(3, 6)) * 4)
    return img.resize((size, size), Image.LANCZOS)


def other_renderer_set(n: int = 480, seed: int = EVAL_SEED, **kw):
    """``n`` (image, (colour, shape), background, style) items, the 24 classes in turn."""
    rng = np.random.default_rng([seed, 31])
    out = []
    for i in range(n):
        c, s = shapes.CLASSES[i % len(shapes.CLASSES)]
        bg = kw.get("background") or OTHER_BACKGROUNDS[int(rng.integers(len(OTHER_BACKGROUNDS)))]
        st = kw.get("style") or OTHER_STYLES[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        out.append((other_renderer(c, s, rng, background=bg, style=st), (c, s), bg, st))
    return out


# ------------------------------------------------------------------ CLIP
# Raw (unnormalised) embeddings, normalised by the callers with _unit: lesson 6-3-3 asks
# students to write the normalised version (embed_images / embed_texts), and this module
# ships with the student package (tests/test_bundle.py checks that no sdcourse function
# solves an exercise in one call).
@torch.no_grad()
def _image_features(model, preprocess, images, batch: int = 128) -> torch.Tensor:
    feats = []
    for i in range(0, len(images), batch):
        x = torch.stack([preprocess(im) for im in images[i:i + batch]])
        feats.append(model.encode_image(x))
    return torch.cat(feats)


@torch.no_grad()
def _text_features(model, tokenizer, texts) -> torch.Tensor:
    return model.encode_text(tokenizer(list(texts)))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _heldout(n: int, kind: str, seed: int = EVAL_SEED):
    return shapes.make_dataset(n, split="heldout", seed=seed, size=64, kinds=(kind,))


@torch.no_grad()
def _class_predictions(model, preprocess, tokenizer, images) -> list[tuple[str, str]]:
    img = _unit(_image_features(model, preprocess, images))
    txt = _unit(_text_features(model, tokenizer, shapes.class_prompts(PROMPT)))
    return [shapes.CLASSES[i] for i in (img @ txt.T).argmax(-1).tolist()]


def _accuracies(pred, truth) -> dict:
    return dict(top1=float(np.mean([p == t for p, t in zip(pred, truth)])),
                colour_acc=float(np.mean([p[0] == t[0] for p, t in zip(pred, truth)])),
                shape_acc=float(np.mean([p[1] == t[1] for p, t in zip(pred, truth)])))


def clip_zero_shot(model, preprocess, tokenizer, n: int = 480, seed: int = EVAL_SEED) -> dict:
    """Zero-shot top-1 over colour x shape on ``n`` held-out single-object scenes."""
    data = _heldout(n, "single", seed)
    pred = _class_predictions(model, preprocess, tokenizer, [d[0] for d in data])
    truth = [(s["objects"][0]["colour"], s["objects"][0]["shape"]) for _, _, s in data]
    return dict(**_accuracies(pred, truth), n=n, classes=len(shapes.CLASSES), chance=1 / len(shapes.CLASSES),
                prompt=PROMPT)


def clip_other_renderer(model, preprocess, tokenizer, n: int = 480, seed: int = EVAL_SEED) -> dict:
    """Zero-shot accuracy on ``n`` scenes drawn by ``other_renderer`` (per background and style too)."""
    data = other_renderer_set(n, seed)
    pred = _class_predictions(model, preprocess, tokenizer, [d[0] for d in data])
    truth = [d[1] for d in data]
    out = dict(**_accuracies(pred, truth), n=n)
    for key, names, col in (("shape_acc_by_background", OTHER_BACKGROUNDS, 2), ("shape_acc_by_style", OTHER_STYLES, 3)):
        out[key] = {b: float(np.mean([p[1] == d[1][1] for p, d in zip(pred, data) if d[col] == b])) for b in names}
    return out


def clip_relation_swap(model, preprocess, tokenizer, n: int = 200, seed: int = EVAL_SEED) -> dict:
    """How often the true relation caption beats the same caption with the objects swapped."""
    data = _heldout(n, "relation", seed)
    img = _unit(_image_features(model, preprocess, [d[0] for d in data]))
    wins = []
    for k, (_, cap, spec) in enumerate(data):
        a, b = spec["objects"]
        art = lambda c: "an" if c[0] in "aeiou" else "a"  # noqa: E731
        swapped = (f"{art(b['colour'])} {b['colour']} {b['shape']} {spec['relation']} "
                   f"{art(a['colour'])} {a['colour']} {a['shape']}")
        s = img[k] @ _unit(_text_features(model, tokenizer, [cap, swapped])).T
        wins.append(float(s[0] > s[1]))
    return dict(acc=float(np.mean(wins)), n=n, chance=0.5)


def clip_counting(model, preprocess, tokenizer, n: int = 200, seed: int = EVAL_SEED) -> dict:
    """Zero-shot choice between "two / three / four {colour} {shape}s" (colour, shape given)."""
    data = _heldout(n, "count", seed)
    img = _unit(_image_features(model, preprocess, [d[0] for d in data]))
    hits = []
    for k, (_, _, spec) in enumerate(data):
        o = spec["objects"][0]
        options = [f"{w} {o['colour']} {o['shape']}s" for w in shapes.COUNT_WORDS.values()]
        s = img[k] @ _unit(_text_features(model, tokenizer, options)).T
        hits.append(list(shapes.COUNT_WORDS)[int(s.argmax())] == len(spec["objects"]))
    return dict(acc=float(np.mean(hits)), n=n, chance=1 / len(shapes.COUNT_WORDS))


# ------------------------------------------------------------------ VAE
@torch.no_grad()
def _reconstruct(vae, u8: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions, originals), both (N, 3, H, W) in [-1, 1]; posterior mode."""
    x = common.to_model_range(u8)
    rec = torch.cat([vae.decode(vae.encode(x[i:i + batch]).latent_dist.mode()).sample for i in range(0, len(x), batch)])
    return rec.clamp(-1, 1), x


def _colour_error(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: mean over R, G, B of |mean(reconstruction) - mean(original)|, images in [0, 1]."""
    return ((rec - x) / 2).mean((2, 3)).abs().mean(1)


def vae_reserved_photos(vae, sizes=RESERVED_SIZES) -> dict:
    """PSNR and colour cast of the reconstructions of matplotlib's sample photos (never trained on)."""
    out = {}
    for name in common.RESERVED_PHOTOS:
        for size in sizes:
            rec, x = _reconstruct(vae, common.reserved_photo(name, size)[None])
            out.setdefault(name, {})[str(size)] = dict(psnr=float(common.psnr(rec, x)[0]),
                                                      colour_error=float(_colour_error(rec, x)[0]))
    for size in sizes:
        vals = [out[n][str(size)] for n in common.RESERVED_PHOTOS]
        out[f"min_psnr_{size}"] = min(v["psnr"] for v in vals)
        out[f"max_colour_error_{size}"] = max(v["colour_error"] for v in vals)
    return out


def vae_psnr(vae, n: int = 256, seed: int = EVAL_SEED, batch: int = 64) -> dict:
    """Mean reconstruction PSNR (dB) on held-out shapes scenes, on 64x64 crops of the held-out
    strip of every training photo and on ``other_renderer`` scenes (light and dark backgrounds)."""
    sh = np.stack([np.asarray(im) for im, _, _ in _heldout(n, "single", seed)[: n // 2]]
                  + [np.asarray(im) for im, _, _ in shapes.make_dataset(n - n // 2, "heldout", seed + 1)])
    sets = {"shapes": sh, "photos": common.photo_crops(n, 64, "heldout", seed=seed)}
    for bg in ("light", "dark"):
        sets[f"other_{bg}"] = np.stack([np.asarray(d[0]) for d in other_renderer_set(n // 2, seed + 2, background=bg)])
    out = {}
    for name, arr in sets.items():
        rec, x = _reconstruct(vae, arr, batch)
        out[f"{name}_psnr"] = float(common.psnr(rec, x).mean())
        if name in ("shapes", "photos"):
            with torch.no_grad():
                z = torch.cat([vae.encode(x[i:i + batch]).latent_dist.mean for i in range(0, len(x), batch)])
            out[f"{name}_latent_std_scaled"] = float(z.std() * vae.config.scaling_factor)
    out.update(n=n, scaling_factor=float(vae.config.scaling_factor))
    return out


# ------------------------------------------------------------------ pipeline
def _truth(data) -> list[tuple[str, str]]:
    return [(s["objects"][0]["colour"], s["objects"][0]["shape"]) for _, _, s in data]


def judge_accuracy(n: int = 240, seed: int = EVAL_SEED) -> float:
    """Accuracy of ``shapes.judge`` on real held-out single-object scenes."""
    data = _heldout(n, "single", seed + 5)
    return float(np.mean([shapes.judge(d[0]) == t for d, t in zip(data, _truth(data))]))


def judge_rejection(n: int = 240, seed: int = EVAL_SEED) -> dict:
    """How often ``shapes.judge`` refuses the true colour of held-out objects drawn too dark
    (colour x 0.35) or washed out (75% background); and accepts them drawn as usual."""
    data = _heldout(n, "single", seed + 6)
    out = {}
    for name, f in (("dark", lambda rgb, bg: 0.35 * rgb), ("washed_out", lambda rgb, bg: 0.25 * rgb + 0.75 * bg)):
        rej = []
        for _, _, spec in data:
            o = spec["objects"][0]
            rgb = f(np.array(o["rgb"], float), np.array(spec["background"], float))
            im = shapes.render_scene(dict(spec, objects=[dict(o, rgb=[int(v) for v in rgb])]), 64)
            rej.append(shapes.judge(im)[0] != o["colour"])
        out[f"rejects_{name}"] = float(np.mean(rej))
    return out


def judge_accuracy_on_reconstructions(vae, n: int = 240, seed: int = EVAL_SEED) -> float:
    """Accuracy of the judge on the VAE's reconstructions of real held-out scenes: the most a
    pipeline decoding through this VAE can score, however good its UNet."""
    from PIL import Image

    data = _heldout(n, "single", seed + 5)
    rec, _ = _reconstruct(vae, np.stack([np.asarray(d[0]) for d in data]), 64)
    u8 = ((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return float(np.mean([shapes.judge(Image.fromarray(a)) == t for a, t in zip(u8, _truth(data))]))


def _saturation(images) -> tuple[float, float]:
    """(mean HSV saturation of foreground pixels, fraction of channel values at 0 or 255)."""
    sats, clipped = [], []
    for im in images:
        a = np.asarray(im, dtype=np.float32) / 255.0
        mx, mn = a.max(-1), a.min(-1)
        s = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0)
        fg = s > 0.25
        sats.append(float(s[fg].mean()) if fg.any() else 0.0)
        clipped.append(float(((a <= 1 / 255) | (a >= 254 / 255)).mean()))
    return float(np.mean(sats)), float(np.mean(clipped))


@torch.no_grad()
def pipeline_adherence(pipe, guidances=GUIDANCES, per_class: int = 9, steps: int = 25,
                       seed: int = EVAL_SEED, batch: int = 108) -> dict:
    """Adherence (``shapes.judge`` sees the prompted colour AND shape), saturation, clipped
    fraction and diversity at each guidance scale: ``per_class`` samples of "a {colour} {shape}"
    for each of the 24 classes (216 by default), the same seeds at every scale."""
    prompts = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}" for c, s in shapes.CLASSES for _ in range(per_class)]
    truth = [(c, s) for c, s in shapes.CLASSES for _ in range(per_class)]
    out = {}
    for gs in guidances:
        images = []
        for i in range(0, len(prompts), batch):
            gens = [torch.Generator().manual_seed(seed * 1000 + k) for k in range(i, min(i + batch, len(prompts)))]
            images += pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=gs,
                           generator=gens).images
        got = [shapes.judge(im) for im in images]
        sat, clip_frac = _saturation(images)
        arr = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])
        arr = arr.reshape(len(shapes.CLASSES), per_class, *arr.shape[1:])
        diversity = float(arr.std(axis=1).mean())
        r = out[str(gs)] = dict(
            adherence=float(np.mean([g == t for g, t in zip(got, truth)])),
            colour_acc=float(np.mean([g[0] == t[0] for g, t in zip(got, truth)])),
            shape_acc=float(np.mean([g[1] == t[1] for g, t in zip(got, truth)])),
            saturation=sat, clipped_fraction=clip_frac, diversity=diversity, n=len(prompts))
        print(f"  guidance {gs:>4}: adherence {r['adherence']:.3f}  colour {r['colour_acc']:.3f}  "
              f"shape {r['shape_acc']:.3f}  saturation {sat:.3f}  clipped {clip_frac:.4f}  diversity {diversity:.4f}",
              flush=True)
    return out


def sampling_time(pipe, steps: int = 25, guidance: float = 7.5, repeats: int = 3, threads: int = 1) -> float:
    """Median wall time (s) of one ``pipe(prompt, num_inference_steps=steps)`` call, batch 1,
    with ``threads`` torch threads (a batch of one 8x8 latent is fastest on one thread)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        pipe("a red circle", num_inference_steps=steps, guidance_scale=guidance, generator=g)  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pipe("a red circle", num_inference_steps=steps, guidance_scale=guidance, generator=g)
            ts.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return float(np.median(ts))
_LOAD_SCRIPT = r"""
import json, os, time, io, contextlib, sys
t0 = time.perf_counter()
import torch, open_clip, diffusers, transformers
from diffusers import AutoencoderKL, StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer
torch.set_num_threads(int(os.environ.get("SDCOURSE_EVAL_THREADS", "2")))
t_import = time.perf_counter() - t0
from sdcourse import models
res = {"import_s": t_import}
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    for name, fn in (("clip", models.load_clip), ("vae", models.load_vae), ("pipeline", models.load_pipeline)):
        t = time.perf_counter(); obj = fn("tiny", device="cpu"); res[name + "_load_s"] = time.perf_counter() - t
    pipe = obj
    pipe("a red circle", num_inference_steps=25, guidance_scale=7.5, generator=torch.Generator().manual_seed(0))
from sdcourse.tiny.common import peak_rss_mb  # not ru_maxrss: that would count the evaluating parent
res["peak_rss_mb"] = peak_rss_mb()
res["printed_lines"] = buf.getvalue().strip().splitlines()
print(json.dumps(res))
"""


def load_and_memory() -> dict:
    """Load times and peak memory, measured in a fresh Python process (offline)."""
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", SDCOURSE_EVAL_THREADS=str(torch.get_num_threads()))
    r = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT], capture_output=True, text=True, env=env,
                       cwd=str(common.REPO_ROOT), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"load check failed:\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["stderr_bytes"] = len(r.stderr)
    return res


# ------------------------------------------------------------------ main
def evaluate_all(per_class: int = 9, quick: bool = False, threads: int = 2) -> dict:
    from sdcourse import models

    common.set_threads(threads)
    common.quiet_libraries()
    n_clip, n_vae = (120, 64) if quick else (480, 256)
    res: dict = {}
    t = common.Timer()
    clip_bundle = models.load_clip("tiny", device="cpu")
    c = res["clip"] = dict(zero_shot=clip_zero_shot(*clip_bundle, n=n_clip),
                           other_renderer=clip_other_renderer(*clip_bundle, n=n_clip),
                           relation_swap=clip_relation_swap(*clip_bundle, n=n_clip // 2 if quick else 200),
                           counting=clip_counting(*clip_bundle, n=n_clip // 2 if quick else 200))
    print(f"CLIP zero-shot top-1 {c['zero_shot']['top1']:.3f} (chance {c['zero_shot']['chance']:.3f}); "
          f"other renderer: colour {c['other_renderer']['colour_acc']:.3f}, shape {c['other_renderer']['shape_acc']:.3f}; "
          f"relation-swap {c['relation_swap']['acc']:.3f} (chance 0.5); counting {c['counting']['acc']:.3f} "
          f"(chance 0.333)  [{t():.0f}s]", flush=True)
    vae = models.load_vae("tiny", device="cpu")
    v = res["vae"] = vae_psnr(vae, n=n_vae)
    v["reserved"] = vae_reserved_photos(vae)
    print(f"VAE PSNR shapes {v['shapes_psnr']:.2f} dB, photo strips {v['photos_psnr']:.2f} dB, other renderer "
          f"{v['other_light_psnr']:.2f} / {v['other_dark_psnr']:.2f} dB (light / dark); reserved photos: "
          + "; ".join(f"{n} {s}px {v['reserved'][n][s]['psnr']:.2f} dB, colour {v['reserved'][n][s]['colour_error']:.4f}"
                      for n in common.RESERVED_PHOTOS for s in v["reserved"][n])
          + f"  [{t():.0f}s]", flush=True)
    pipe = models.load_pipeline("tiny", device="cpu")
    res["judge_accuracy_on_real"] = judge_accuracy(n=96 if quick else 240)
    res["judge_accuracy_on_vae_reconstructions"] = judge_accuracy_on_reconstructions(pipe.vae, n=96 if quick else 240)
    res["judge_rejection"] = judge_rejection(n=96 if quick else 240)
    print(f"judge accuracy on real held-out scenes {res['judge_accuracy_on_real']:.3f}, on their VAE "
          f"reconstructions {res['judge_accuracy_on_vae_reconstructions']:.3f}; refuses the colour of objects "
          f"drawn dark {res['judge_rejection']['rejects_dark']:.3f}, washed out "
          f"{res['judge_rejection']['rejects_washed_out']:.3f}", flush=True)
    res["pipeline"] = dict(adherence=pipeline_adherence(pipe, per_class=2 if quick else per_class),
                           sampling_time_s=sampling_time(pipe))
    print(f"25-step sampling of one 64x64 image (guidance 7.5): {res['pipeline']['sampling_time_s']:.3f}s  [{t():.0f}s]")
    res["runtime"] = load_and_memory()
    res["weights_mb"] = round(common.dir_size_mb(common.models_dir()), 2)
    bt = common.models_dir() / "build_times.json"
    res["build_times"] = common.read_json(bt) if bt.is_file() else {}
    print(f"load times: clip {res['runtime']['clip_load_s']:.2f}s, vae {res['runtime']['vae_load_s']:.2f}s, "
          f"pipeline {res['runtime']['pipeline_load_s']:.2f}s (imports {res['runtime']['import_s']:.1f}s); "
          f"peak RSS {res['runtime']['peak_rss_mb']:.0f} MB; weights {res['weights_mb']} MB", flush=True)
    res["eval_wall_s"] = round(t(), 1)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small samples (a smoke check, not the card figures)")
    p.add_argument("--no-cards", action="store_true", help="do not rewrite the model cards and README's table")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy CPU)")
    p.add_argument("--cards-only", action="store_true",
                   help="measure nothing: re-read eval_results.json (and build_times.json), re-check the floors and "
                        "rewrite the model cards and README's table (after editing a template or a floor)")
    a = p.parse_args(argv)
    if a.cards_only:
        res = common.read_json(common.models_dir() / "eval_results.json")
        bt = common.models_dir() / "build_times.json"
        res["build_times"] = common.read_json(bt) if bt.is_file() else {}
    else:
        res = evaluate_all(quick=a.quick, threads=a.threads)
    if not a.quick:
        from sdcourse.tiny import floors

        res["floors"] = {f.key: dict(bound=f.bound(), measured=v, met=ok, edition=f.edition)
                         for f, v, ok in floors.check(res)}
        common.write_json(common.models_dir() / "eval_results.json", res)
        if not a.no_cards:
            from sdcourse.tiny import cards

            cards.write_all(res)
    print(json.dumps(res, indent=1))
    if not a.quick:
        missed = [k for k, f in res["floors"].items() if not f["met"]]
        print("floors: all met" if not missed else f"floors NOT met: {', '.join(missed)}", flush=True)


if __name__ == "__main__":
    main()
