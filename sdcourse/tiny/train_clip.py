"""Train the tiny CLIP (an open_clip model) contrastively on shapes world.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

The model is an ordinary open_clip ``CLIP`` (a ResNet image tower, open_clip's
``ModifiedResNet`` as in OpenAI's RN50 CLIP, and a causal text transformer) defined by ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``, the same format
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

IMAGE_SIZE = 64
MODEL_CFG = {
    "embed_dim": 64,
    # layers as a list: open_clip builds its ModifiedResNet (the image tower of OpenAI's RN50 CLIP:
    # a 3-conv stem, bottleneck stages, attention pooling) instead of a ViT
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64},
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
DEFAULTS = dict(steps=3000, focus_steps=3000, batch_size=64, lr=2e-3, focus_lr=1e-3, seed=4321, pool=20000,
                threads=2, augment=0.7)
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def write_config(out: Path) -> None:
    common.write_json(out / CONFIG_NAME, {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG})


#: Images whose crops (blurred, desaturated) are the textured backgrounds of augmented renders,
#: colour ones first: every image bundled with scikit-image (``common.PHOTOS``,
#: ``common.PHASE3_PHOTOS`` and ``common.BACKGROUND_ONLY_PHOTOS``; matplotlib's reserved photos never).
BACKGROUND_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                     "motorcycle_left", "motorcycle_right", "colorwheel", "logo",
                     "camera", "coins", "grass", "gravel", "brick")
N_COLOUR_BACKGROUNDS = 11


class PhotoPyramid:
    """The training part (left 75%) of every image in ``BACKGROUND_PHOTOS``, pre-resized by each
    of ``scales`` (levels whose long side would exceed 1600 px are skipped); greyscale ones are
    drawn 0.35 times as often as colour ones."""

    def __init__(self, scales=(0.5, 1.0), names=BACKGROUND_PHOTOS):
        from PIL import Image

        self.levels: list[np.ndarray] = []
        self.weights: list[float] = []
        for k, name in enumerate(names):
            region = common._photo_region(name, "train", 1.0)
            h, w = region.shape[:2]
            for s in scales:
                if max(h, w) * s > 1600 or min(h, w) * s < 64:
                    continue
                im = Image.fromarray(region).resize((round(w * s), round(h * s)), Image.BICUBIC)
                self.levels.append(np.asarray(im))
                self.weights.append(1.0 if k < N_COLOUR_BACKGROUNDS else 0.35)
        self.weights = list(np.asarray(self.weights) / np.sum(self.weights))

    def crop(self, rng: np.random.Generator, size: int) -> np.ndarray:
        for _ in range(100):
            lv = self.levels[int(rng.choice(len(self.levels), p=self.weights))]
            h, w = lv.shape[:2]
            if h >= size and w >= size:
                break
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        return lv[y:y + size, x:x + size]


def _texture(rng: np.random.Generator, S: int, photos) -> np.ndarray:
    """(S, S, 3) float background: a blurred, desaturated photo crop or smooth noise."""
    from PIL import Image, ImageFilter

    if photos is not None and rng.random() < 0.6:
        crop = photos.crop(rng, S).astype(np.float32)
        grey = crop.mean(-1, keepdims=True)
        crop = grey + rng.uniform(0.0, 0.6) * (crop - grey)
        img = Image.fromarray(crop.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 2)))
        return np.asarray(img, np.float32)
    low = rng.uniform(40, 220, (4, 4, 3)).astype(np.float32)
    low = low * 0.3 + low.mean() * 0.7
    big = np.asarray(Image.fromarray(low.clip(0, 255).astype(np.uint8)).resize((S, S), Image.BICUBIC), np.float32)
    return big + rng.normal(0, 8, (S, S, 1))


def augmented_scene(spec: dict, rng: np.random.Generator, photos=None, size: int = 64):
    """Render ``spec`` with training augmentations: object shade and size, fill style (filled,
    outlined, outline only), rotation about the image centre (single-object and count scenes
    only: rotating a relation scene would change its relation), and a light, dark, grey,
    coloured or textured background. Returns (PIL image, keep_position): the position words of
    a rotated scene are no longer true."""
    from PIL import Image
    from scipy import ndimage

    S = 2 * size
    spec = dict(spec, objects=[dict(o) for o in spec["objects"]])
    for o in spec["objects"]:
        o["rgb"] = [int(v) for v in np.clip(np.array(o["rgb"]) + rng.integers(-22, 23, 3), 0, 255)]
        if spec["kind"] == "single":
            o["r"] *= float(rng.uniform(0.8, 1.15) if o["size"] == "small" else rng.uniform(0.85, 1.3))
    black = dict(spec, background=[0, 0, 0])
    fg = np.asarray(shapes.render_scene(black, S), np.float32)
    alpha = np.asarray(shapes.render_scene(dict(black, objects=[dict(o, rgb=[255, 255, 255])
                                                                 for o in spec["objects"]]), S), np.float32)[..., 0] / 255
    keep_position = True
    if spec["kind"] != "relation" and rng.random() < 0.6:
        ang = float(rng.uniform(0, 360))
        fg = np.asarray(Image.fromarray(fg.astype(np.uint8)).rotate(ang, Image.BILINEAR), np.float32)
        alpha = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).rotate(ang, Image.BILINEAR), np.float32) / 255
        keep_position = spec["kind"] != "single"
    u = rng.random()
    bg_kind = rng.choice(["light", "dark", "grey", "colour", "texture"], p=[0.3, 0.2, 0.15, 0.1, 0.25])
    if bg_kind == "light":
        bg = np.broadcast_to(rng.integers(200, 256, 3).astype(np.float32), (S, S, 3))
    elif bg_kind == "dark":
        bg = np.broadcast_to(rng.integers(0, 60, 3).astype(np.float32), (S, S, 3))
    elif bg_kind == "grey":
        bg = np.full((S, S, 3), float(rng.integers(90, 170)), np.float32)
    elif bg_kind == "colour":
        c = rng.integers(0, 256, 3).astype(np.float32)
        bg = np.broadcast_to(c * 0.5 + c.mean() * 0.5, (S, S, 3))
    else:
        bg = _texture(rng, S, photos)
    solid = alpha > 0.5
    if u < 0.1:  # outline only
        w = int(rng.integers(3, 7))
        inner = ndimage.binary_erosion(solid, iterations=w)
        alpha = alpha * ~inner
    elif u < 0.3:  # filled, with a dark or light border
        w = int(rng.integers(2, 6))
        ring = ndimage.binary_dilation(solid, iterations=w) & ~solid
        edge = np.full(3, 20.0 if bg_kind != "dark" else 235.0, np.float32)
        bg = np.where(ring[..., None], edge, bg)
    a = alpha[..., None]
    out = (a * fg + (1 - a) * bg).clip(0, 255).astype(np.uint8)
    return Image.fromarray(out).resize((size, size), Image.BOX), keep_position


def make_pool(n: int, seed: int, augment: float = 0.0):
    """Training images as a (n, 3, S, S) float tensor in [-1, 1], their specs and, for each, whether
    its position words are still true.

    Images are rendered at 64 px and resized to ``IMAGE_SIZE`` like open_clip's preprocess. A
    fraction ``augment`` of them is drawn by ``augmented_scene`` instead of plain
    ``shapes.render_scene``.
    """
    from PIL import Image

    data = shapes.make_dataset(n, split="train", seed=seed, size=64, kinds=tuple(KIND_PROBS),
                               kind_probs=tuple(KIND_PROBS.values()))
    rng = np.random.default_rng([seed, 99])
    photos = PhotoPyramid(scales=(0.5, 1.0)) if augment else None
    imgs, keep = [], []
    for im, _, spec in data:
        k = True
        if augment and rng.random() < augment:
            im, k = augmented_scene(spec, rng, photos)
        imgs.append(np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)))
        keep.append(k)
    return common.to_model_range(np.stack(imgs)), [spec for _, _, spec in data], keep


_POSITION_PHRASES = tuple(sorted({shapes.caption(dict(kind="single", position=p, objects=[
    dict(size="small", colour="red", shape="circle")])).split("circle ", 1)[1] for p in shapes.POSITIONS}, key=len,
    reverse=True))


def train_caption(spec: dict, rng: np.random.Generator, keep_position: bool = True) -> str:
    """``shapes.random_caption(spec)``, without the position words when they are no longer true."""
    text = shapes.random_caption(spec, rng)
    if not keep_position:
        for ph in _POSITION_PHRASES:
            text = text.replace(" " + ph, "")
    return text


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"], pool: int = DEFAULTS["pool"],
          threads: int = DEFAULTS["threads"], log_every: int = 50, focus_steps: int = DEFAULTS["focus_steps"],
          focus_lr: float = DEFAULTS["focus_lr"], resume: Path | None = None,
          augment: float = DEFAULTS["augment"]) -> dict:
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
    images, specs, keep_pos = make_pool(pool, seed, augment)
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
        sched = common.warmup_cosine(opt, n_steps, 100)
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
            texts = [train_caption(specs[i], rng, keep_pos[i]) for i in idx]
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
                 focus_lr=focus_lr, seed=seed, pool=pool, augment=augment, resumed_from=str(resume) if resume else None,
                 kind_probs=KIND_PROBS, params=sum(p.numel() for p in model.parameters()),
                 train_wall_s=round(timer(), 1), cpu_s=common.cpu_s(), final_loss=round(ema, 4), peak_rss_mb=round(common.peak_rss_mb()),
                 threads=torch.get_num_threads(), command=f"python -m sdcourse.tiny.train_clip --steps {steps} --focus-steps {focus_steps} "
                         f"--augment {augment}")
    common.write_json(out / "training_stats.json", stats)
    common.readable_by_all(out)
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
