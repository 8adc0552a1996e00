"""Train the tiny CLIP (an open_clip model) contrastively on shapes world.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

The model is an ordinary open_clip ``CLIP`` (ViT image tower + causal text transformer)
defined by ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``, the same format
as open_clip's hub configs) and trained with open_clip's own ``ClipLoss``. It uses
open_clip's stock BPE tokenizer (the 49,408-token CLIP vocabulary) with a context length
of 24 tokens (longer prompts are truncated, ending in the end-of-text token).
The 49,408 x 64 token-embedding table is frozen at its seeded random initialisation
(only ~40 of its rows are ever used here; updating all of them each step would cost more
than the rest of the model on a CPU). The result loads with the standard calls::

    open_clip.create_model_and_transforms("local-dir:data/models/tiny-clip")
    open_clip.get_tokenizer("local-dir:data/models/tiny-clip")

Run: ``python -m sdcourse.tiny.train_clip [--steps N] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from sdcourse import shapes
from sdcourse.tiny import common

IMAGE_SIZE = 40
MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 3, "width": 96, "patch_size": 8, "head_width": 32,
                   "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "mlp_ratio": 2.0},
}
PREPROCESS_CFG = {
    "image_size": IMAGE_SIZE,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
KIND_PROBS = {"single": 0.6, "relation": 0.25, "count": 0.15}
DEFAULTS = dict(steps=700, focus_steps=1000, batch_size=64, lr=2e-3, focus_lr=1e-3, seed=4321, pool=12000,
                threads=2)
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def write_config(out: Path) -> None:
    common.write_json(out / CONFIG_NAME, {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG})


def make_pool(n: int, seed: int):
    """Training images as a (n, 3, S, S) float tensor in [-1, 1] plus their specs.

    Images are rendered at 64 px and resized to ``IMAGE_SIZE`` like open_clip's preprocess.
    """
    from PIL import Image

    data = shapes.make_dataset(n, split="train", seed=seed, size=64, kinds=tuple(KIND_PROBS),
                               kind_probs=tuple(KIND_PROBS.values()))
    arr = np.stack([np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)) for im, _, _ in data])
    return common.to_model_range(arr), [spec for _, _, spec in data]


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"], pool: int = DEFAULTS["pool"],
          threads: int = DEFAULTS["threads"], log_every: int = 50, focus_steps: int = DEFAULTS["focus_steps"],
          focus_lr: float = DEFAULTS["focus_lr"], resume: Path | None = None) -> dict:
    """Train, save ``open_clip_config.json`` + ``open_clip_model.safetensors`` to ``out``
    (default ``<models>/tiny-clip``) and return training stats.

    Phase 1 (``steps``): random batches. Phase 2 (``focus_steps``, fresh AdamW at ``focus_lr``):
    every other batch holds single-object scenes of only two colours, so that colour cannot
    tell the captions apart and the model has to learn the shapes (phase 1 learns colour
    first and shape slowly). ``resume``: a phase-1 checkpoint to start phase 2 from (skips
    phase 1; used once when the shipped model was built in two runs).
    """
    import open_clip
    from open_clip.loss import ClipLoss
    from safetensors.torch import save_file

    common.set_threads(threads)
    out = Path(out) if out else common.models_dir() / "tiny-clip"
    timer = common.Timer()
    common.seed_everything(seed)
    rng = np.random.default_rng(seed)
    images, specs = make_pool(pool, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out)
    model = open_clip.model.CLIP(**MODEL_CFG)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    model.token_embedding.weight.requires_grad_(False)
    loss_fn = ClipLoss()

    def run_phase(n_steps: int, phase_lr: float, focus: bool, tag: str) -> float:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in params if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=phase_lr, betas=(0.9, 0.98), eps=1e-6)
        warm = max(1, min(100, n_steps // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, n_steps) / n_steps)))
        model.train()
        ema = float("nan")
        for step in range(n_steps):
            cols = rng.choice(len(shapes.COLOURS), size=2, replace=False) if focus and step % 2 == 0 else []
            cand = np.concatenate([by_colour[int(c)] for c in cols]) if len(cols) else np.array([], dtype=int)
            if len(cand):
                idx = rng.choice(cand, size=batch_size, replace=len(cand) < batch_size)
            else:
                idx = rng.choice(len(specs), size=batch_size, replace=False)
            x = images[idx]
            texts = [shapes.random_caption(specs[i], rng) for i in idx]
            img_f, txt_f, scale = model(x, tokenizer(texts))
            loss = loss_fn(img_f, txt_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            ema = loss.item() if step == 0 else 0.98 * ema + 0.02 * loss.item()
            if log_every and (step % log_every == 0 or step == n_steps - 1):
                print(f"[clip:{tag}] step {step:5d}/{n_steps}  loss {ema:.3f}  "
                      f"logit_scale {model.logit_scale.exp().item():.1f}  {timer():.0f}s", flush=True)
        return ema

    colour_names = list(shapes.COLOURS)
    by_colour = [np.array([i for i, sp in enumerate(specs) if sp["kind"] == "single"
                           and sp["objects"][0]["colour"] == c]) for c in colour_names]
    ema = float("nan")
    if resume is None:
        ema = run_phase(steps, lr, focus=False, tag="1")
    else:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(resume)))
    if focus_steps:
        ema = run_phase(focus_steps, focus_lr, focus=True, tag="2")
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_NAME))
    stats = dict(model="tiny-clip", steps=steps, focus_steps=focus_steps, batch_size=batch_size, lr=lr,
                 focus_lr=focus_lr, seed=seed, pool=pool, resumed_from=str(resume) if resume else None,
                 kind_probs=KIND_PROBS, params=sum(p.numel() for p in model.parameters()),
                 train_wall_s=round(timer(), 1), final_loss=round(ema, 4), peak_rss_mb=round(common.peak_rss_mb()),
                 threads=torch.get_num_threads(), command=f"python -m sdcourse.tiny.train_clip --steps {steps} --focus-steps {focus_steps}")
    common.write_json(out / "training_stats.json", stats)
    print(f"[clip] saved to {out}  {stats['train_wall_s']}s", flush=True)
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--resume", type=Path, default=None, help="phase-1 checkpoint; run phase 2 only")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    train(out=a.out, resume=a.resume, **{k: getattr(a, k) for k in DEFAULTS})


if __name__ == "__main__":
    main()
