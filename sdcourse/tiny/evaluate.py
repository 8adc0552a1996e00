"""Measure every quality figure of the tiny models and write them into the model cards.

Run: ``python -m sdcourse.tiny.evaluate`` (``make eval-tiny``). Prints a summary, writes
``<models>/eval_results.json`` and regenerates each ``MODEL_CARD.md``.

Figures (all on held-out data the trainers never saw):

* CLIP: zero-shot top-1 over the 24 colour x shape classes with the prompt
  "a photo of a {colour} {shape}"; limitation figures: choosing between a two-object
  relation caption and the same caption with the objects swapped ("a red circle left of a
  blue square" vs "a blue square left of a red circle", chance 50%), and counting
  ("two / three / four {colour} {shape}s", chance 33%).
* VAE: reconstruction PSNR (posterior mean) on held-out shapes scenes and on 64x64 crops
  of the held-out right-hand strip of every photo.
* Pipeline: prompt adherence on "a {colour} {shape}" prompts (9 per class = 216 samples)
  at guidance 1, 3, 7.5 and 20 with 25 DDIM steps. The judge uses no neural network: the
  colour comes from pixel statistics (``shapes.dominant_colour``), the shape from the
  geometry of the largest foreground blob (``shapes.dominant_shape``); its accuracy is
  measured on real held-out scenes and on their VAE reconstructions. What high guidance
  costs: foreground saturation, clipped-pixel fraction and diversity (mean per-pixel std
  over the 9 samples of one prompt).
* Speed / size: 25-step sampling time for one image, load time of each model and peak
  memory of a fresh process that loads all three and samples once.
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


# ------------------------------------------------------------------ CLIP
@torch.no_grad()
def _image_features(model, preprocess, images, batch: int = 128) -> torch.Tensor:
    feats = []
    for i in range(0, len(images), batch):
        x = torch.stack([preprocess(im) for im in images[i:i + batch]])
        feats.append(torch.nn.functional.normalize(model.encode_image(x), dim=-1))
    return torch.cat(feats)


@torch.no_grad()
def _text_features(model, tokenizer, texts) -> torch.Tensor:
    return torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts))), dim=-1)


def _heldout(n: int, kind: str, seed: int = EVAL_SEED):
    return shapes.make_dataset(n, split="heldout", seed=seed, size=64, kinds=(kind,))


@torch.no_grad()
def clip_shape_probs(model, preprocess, tokenizer, images) -> torch.Tensor:
    """(N, 24) zero-shot class probabilities over ``shapes.CLASSES``."""
    img = _image_features(model, preprocess, images)
    txt = _text_features(model, tokenizer, shapes.class_prompts(PROMPT))
    return (100.0 * img @ txt.T).softmax(-1)


def clip_zero_shot(model, preprocess, tokenizer, n: int = 480, seed: int = EVAL_SEED) -> dict:
    """Zero-shot top-1 over colour x shape on ``n`` held-out single-object scenes."""
    data = _heldout(n, "single", seed)
    probs = clip_shape_probs(model, preprocess, tokenizer, [d[0] for d in data])
    pred = probs.argmax(-1).tolist()
    truth = [shapes.CLASSES.index((s["objects"][0]["colour"], s["objects"][0]["shape"])) for _, _, s in data]
    top1 = np.mean([p == t for p, t in zip(pred, truth)])
    col = np.mean([shapes.CLASSES[p][0] == shapes.CLASSES[t][0] for p, t in zip(pred, truth)])
    shp = np.mean([shapes.CLASSES[p][1] == shapes.CLASSES[t][1] for p, t in zip(pred, truth)])
    return dict(top1=float(top1), colour_acc=float(col), shape_acc=float(shp), n=n,
                classes=len(shapes.CLASSES), chance=1 / len(shapes.CLASSES), prompt=PROMPT)


def clip_relation_swap(model, preprocess, tokenizer, n: int = 200, seed: int = EVAL_SEED) -> dict:
    """How often the true relation caption beats the same caption with the objects swapped."""
    data = _heldout(n, "relation", seed)
    img = _image_features(model, preprocess, [d[0] for d in data])
    wins = []
    for k, (_, cap, spec) in enumerate(data):
        a, b = spec["objects"]
        art = lambda c: "an" if c[0] in "aeiou" else "a"  # noqa: E731
        swapped = (f"{art(b['colour'])} {b['colour']} {b['shape']} {spec['relation']} "
                   f"{art(a['colour'])} {a['colour']} {a['shape']}")
        t = _text_features(model, tokenizer, [cap, swapped])
        s = img[k] @ t.T
        wins.append(float(s[0] > s[1]))
    return dict(acc=float(np.mean(wins)), n=n, chance=0.5)


def clip_counting(model, preprocess, tokenizer, n: int = 200, seed: int = EVAL_SEED) -> dict:
    """Zero-shot choice between "two / three / four {colour} {shape}s" (colour, shape given)."""
    data = _heldout(n, "count", seed)
    img = _image_features(model, preprocess, [d[0] for d in data])
    hits = []
    for k, (_, _, spec) in enumerate(data):
        o = spec["objects"][0]
        options = [f"{w} {o['colour']} {o['shape']}s" for w in shapes.COUNT_WORDS.values()]
        s = img[k] @ _text_features(model, tokenizer, options).T
        hits.append(list(shapes.COUNT_WORDS)[int(s.argmax())] == len(spec["objects"]))
    return dict(acc=float(np.mean(hits)), n=n, chance=1 / len(shapes.COUNT_WORDS))


# ------------------------------------------------------------------ VAE
@torch.no_grad()
def vae_psnr(vae, n: int = 256, seed: int = EVAL_SEED, batch: int = 64) -> dict:
    """Mean reconstruction PSNR (dB) of ``vae`` on held-out shapes and photo crops (64x64)."""
    sh = np.stack([np.asarray(im) for im, _, _ in _heldout(n, "single", seed)[: n // 2]]
                  + [np.asarray(im) for im, _, _ in shapes.make_dataset(n - n // 2, "heldout", seed + 1)])
    ph = common.photo_crops(n, 64, "heldout", seed=seed)
    out = {}
    for name, arr in (("shapes", sh), ("photos", ph)):
        x = common.to_model_range(arr)
        vals, zs = [], []
        for i in range(0, len(x), batch):
            z = vae.encode(x[i:i + batch]).latent_dist.mean
            zs.append(z)
            vals.append(common.psnr(vae.decode(z).sample, x[i:i + batch]))
        out[f"{name}_psnr"] = float(torch.cat(vals).mean())
        out[f"{name}_latent_std_scaled"] = float(torch.cat(zs).std() * vae.config.scaling_factor)
    out.update(n=n, scaling_factor=float(vae.config.scaling_factor))
    return out


# ------------------------------------------------------------------ pipeline
def judge(images) -> list[tuple[str | None, str | None]]:
    """(colour, shape) of each image's object, from pixels alone: colour by
    ``shapes.dominant_colour``, shape by the geometry of the largest foreground blob
    (``shapes.dominant_shape``). No neural network, so it shares nothing with the pipeline."""
    return [(shapes.dominant_colour(im), shapes.dominant_shape(im)) for im in images]


def _truth(data) -> list[tuple[str, str]]:
    return [(s["objects"][0]["colour"], s["objects"][0]["shape"]) for _, _, s in data]


def judge_accuracy(n: int = 240, seed: int = EVAL_SEED) -> float:
    """Accuracy of the judge on real held-out single-object scenes."""
    data = _heldout(n, "single", seed + 5)
    return float(np.mean([g == t for g, t in zip(judge([d[0] for d in data]), _truth(data))]))


@torch.no_grad()
def judge_accuracy_on_reconstructions(vae, n: int = 240, seed: int = EVAL_SEED) -> float:
    """Accuracy of the judge on the VAE's reconstructions of real held-out scenes: the most a
    pipeline decoding through this VAE can score, however good its UNet."""
    from PIL import Image

    data = _heldout(n, "single", seed + 5)
    x = common.to_model_range(np.stack([np.asarray(d[0]) for d in data]))
    rec = torch.cat([vae.decode(vae.encode(x[i:i + 64]).latent_dist.mean).sample for i in range(0, n, 64)])
    u8 = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    got = judge([Image.fromarray(a) for a in u8])
    return float(np.mean([g == t for g, t in zip(got, _truth(data))]))


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
    """Adherence, saturation and diversity at each guidance scale.

    ``per_class`` samples of "a {colour} {shape}" for each of the 24 classes (216 by default),
    generated with the same seeds at every guidance scale.
    """
    prompts = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}" for c, s in shapes.CLASSES for _ in range(per_class)]
    truth = [(c, s) for c, s in shapes.CLASSES for _ in range(per_class)]
    out = {}
    for gs in guidances:
        images = []
        for i in range(0, len(prompts), batch):
            gens = [torch.Generator().manual_seed(seed * 1000 + k) for k in range(i, min(i + batch, len(prompts)))]
            images += pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=gs,
                           generator=gens).images
        got = judge(images)
        sat, clip_frac = _saturation(images)
        arr = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])
        arr = arr.reshape(len(shapes.CLASSES), per_class, *arr.shape[1:])
        diversity = float(arr.std(axis=1).mean())
        out[str(gs)] = dict(
            adherence=float(np.mean([g == t for g, t in zip(got, truth)])),
            colour_acc=float(np.mean([g[0] == t[0] for g, t in zip(got, truth)])),
            shape_acc=float(np.mean([g[1] == t[1] for g, t in zip(got, truth)])),
            saturation=sat, clipped_fraction=clip_frac, diversity=diversity, n=len(prompts))
        print(f"  guidance {gs:>4}: adherence {out[str(gs)]['adherence']:.3f}  "
              f"colour {out[str(gs)]['colour_acc']:.3f}  shape {out[str(gs)]['shape_acc']:.3f}  "
              f"saturation {sat:.3f}  clipped {clip_frac:.4f}  diversity {diversity:.4f}", flush=True)
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
import json, os, resource, time, io, contextlib, sys
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
res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
    res["clip"] = dict(zero_shot=clip_zero_shot(*clip_bundle, n=n_clip),
                       relation_swap=clip_relation_swap(*clip_bundle, n=n_clip // 2 if quick else 200),
                       counting=clip_counting(*clip_bundle, n=n_clip // 2 if quick else 200))
    print(f"CLIP zero-shot top-1 {res['clip']['zero_shot']['top1']:.3f} "
          f"(chance {res['clip']['zero_shot']['chance']:.3f}); relation-swap {res['clip']['relation_swap']['acc']:.3f} "
          f"(chance 0.5); counting {res['clip']['counting']['acc']:.3f} (chance 0.333)  [{t():.0f}s]", flush=True)
    vae = models.load_vae("tiny", device="cpu")
    res["vae"] = vae_psnr(vae, n=n_vae)
    print(f"VAE PSNR shapes {res['vae']['shapes_psnr']:.2f} dB, photos {res['vae']['photos_psnr']:.2f} dB, "
          f"scaling_factor {res['vae']['scaling_factor']}  [{t():.0f}s]", flush=True)
    pipe = models.load_pipeline("tiny", device="cpu")
    res["judge_accuracy_on_real"] = judge_accuracy(n=96 if quick else 240)
    res["judge_accuracy_on_vae_reconstructions"] = judge_accuracy_on_reconstructions(pipe.vae, n=96 if quick else 240)
    print(f"judge accuracy on real held-out scenes {res['judge_accuracy_on_real']:.3f}, on their VAE "
          f"reconstructions {res['judge_accuracy_on_vae_reconstructions']:.3f}", flush=True)
    res["pipeline"] = dict(adherence=pipeline_adherence(pipe, per_class=2 if quick else per_class),
                           sampling_time_s=sampling_time(pipe))
    print(f"25-step sampling of one 64x64 image (guidance 7.5): {res['pipeline']['sampling_time_s']:.3f}s  [{t():.0f}s]")
    res["runtime"] = load_and_memory()
    res["weights_mb"] = round(common.dir_size_mb(common.models_dir()), 2)
    print(f"load times: clip {res['runtime']['clip_load_s']:.2f}s, vae {res['runtime']['vae_load_s']:.2f}s, "
          f"pipeline {res['runtime']['pipeline_load_s']:.2f}s (imports {res['runtime']['import_s']:.1f}s); "
          f"peak RSS {res['runtime']['peak_rss_mb']:.0f} MB; weights {res['weights_mb']} MB", flush=True)
    res["eval_wall_s"] = round(t(), 1)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small samples (a smoke check, not the card figures)")
    p.add_argument("--no-cards", action="store_true", help="do not rewrite the model cards")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy CPU)")
    a = p.parse_args(argv)
    res = evaluate_all(quick=a.quick, threads=a.threads)
    if not a.quick:
        common.write_json(common.models_dir() / "eval_results.json", res)
        if not a.no_cards:
            from sdcourse.tiny import cards

            cards.write_all(res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
