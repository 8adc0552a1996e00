"""Train the tiny SD-style VAE (diffusers ``AutoencoderKL``) from scratch.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

Architecture: like SD's VAE but narrow — 4 ``block_out_channels`` entries, hence 3
downsamplings (8x), and 4 latent channels; so a 64x64 RGB image becomes a 4x8x8 latent.
Data: shapes-world scenes (3/8 of each batch: crops centred on an object, so that the few
colourful pixels are well represented; 1/4: random crops) and crops of the bundled
scikit-image photos (3/8; left 75% of each photo; the right-hand 25% strip is held out). The VAE is fully convolutional, so it is
trained on 32x32 crops (4x cheaper on a CPU) and used on 64x64 images.
Loss: MSE + ``kl_weight`` * KL (SD used a tiny KL weight too, so the latent scale drifts;
that is what ``scaling_factor`` = 1 / std(latents) corrects).
Phase 2 (``--decoder-steps``, default 1200; ``finetune_decoder``): the decoder alone, on 64x64
scenes and photo crops of 64-256 px, so that whole photos decode without the colour casts of
a decoder that has only seen 32x32 crops; the latents do not change.
Then (``centre_latents``): the latent space is shifted so that shapes-world scenes, the
pipeline's training data, have zero-mean latents (exact: no reconstruction changes), and
``scaling_factor`` is set to 1 / std of those scenes' latents.
Phase 3 (``--photo-steps``, default 1800, on ``--photo-threads`` threads; ``finetune_photos``): the
whole VAE on colour-jittered crops of 64-256 px, of the photos (less the texture close-ups of
``PHASE3_SKIP``, plus ``common.PHASE3_PHOTOS``) and of synthetic "dead leaves"
images (``dead_leaves``), weights averaged (EMA), with the shapes scenes' latents anchored to where they were and the
decoder held to its old drawing of (overshot) scene latents, so that photos of colours the
training photos lack encode and decode better while the latent space the pipeline is trained
on, and what guided samples decode to, stay put (shift and ``scaling_factor`` are kept).

Run: ``python -m sdcourse.tiny.train_vae [--steps N] [--out DIR]``; ``--decoder-only-from DIR``
runs phases 2 and 3 on a saved phase-1 VAE, ``--photo-only-from DIR`` phase 3 on a saved VAE.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from sdcourse import shapes
from sdcourse.tiny import common

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 64, 128),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,  # replaced by 1 / std(latents) after training
)
DEFAULTS = dict(steps=3000, batch_size=16, crop=32, lr=1e-3, kl_weight=1e-6, seed=1234,
                shapes_pool=8000, threads=2, decoder_steps=1200, photo_steps=1800, photo_threads=0)


def shapes_pool_u8(n: int, seed: int, size: int = 64, return_centres: bool = False):
    """(n, size, size, 3) uint8 shapes-world training images (and, optionally, for each
    image the pixel centre (y, x) of its first object, for object-centred crops)."""
    data = shapes.make_dataset(n, split="train", seed=seed, size=size)
    arr = np.stack([np.asarray(im) for im, _, _ in data])
    if not return_centres:
        return arr
    centres = np.array([(sp["objects"][0]["y"] * size, sp["objects"][0]["x"] * size) for _, _, sp in data])
    return arr, centres


def object_crops(pool: np.ndarray, centres: np.ndarray, n: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """Random ``crop`` x ``crop`` crops that contain (most of) an object: centred on the
    first object of a random pool image, jittered by up to crop/4, clamped to the image."""
    idx = rng.integers(0, len(pool), n)
    H = pool.shape[1]
    jit = rng.integers(-crop // 4, crop // 4 + 1, size=(n, 2))
    out = []
    for k, i in enumerate(idx):
        cy, cx = centres[i] + jit[k]
        y = int(np.clip(round(cy - crop / 2), 0, H - crop))
        x = int(np.clip(round(cx - crop / 2), 0, H - crop))
        out.append(pool[i, y:y + crop, x:x + crop])
    return np.stack(out)


def random_crops(pool: np.ndarray, n: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(pool), n)
    H = pool.shape[1]
    ys = rng.integers(0, H - crop + 1, n)
    xs = rng.integers(0, H - crop + 1, n)
    return np.stack([pool[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])


@torch.no_grad()
def latent_std(vae, seed: int, n: int = 512) -> float:
    """Std of ``vae.encode(x).latent_dist.sample()`` over ``n`` 64x64 shapes-world training
    scenes, the data the diffusion model is trained on: how latent diffusion's
    ``scale_by_std`` chose SD's 0.18215 (on a batch of the diffusion model's training data)."""
    g = torch.Generator().manual_seed(seed)
    x = common.to_model_range(shapes_pool_u8(n, seed=seed + 99))
    zs = [vae.encode(x[i:i + 64]).latent_dist.sample(generator=g) for i in range(0, len(x), 64)]
    return float(torch.cat(zs).std())


@torch.no_grad()
def centre_latents(vae, seed: int, n: int = 512) -> list[float]:
    """Shift the latent space so that shapes-world scenes (the pipeline's training data) have
    zero-mean latents, without changing a single reconstruction: the encoder's last layer
    (``quant_conv``, whose first ``latent_channels`` outputs are the posterior mean) has the
    per-channel mean ``mu`` of ``n`` scenes' posterior means subtracted from its bias, and the
    decoder's first layer (``post_quant_conv``, a 1x1 conv ``W z + b``) gets ``W mu`` added to
    its bias, so ``decode(z - mu)`` computes what ``decode(z)`` did. Diffusion then starts from
    noise around the data's centre instead of far from it (SD 3 and FLUX keep this offset as a
    ``shift_factor`` outside the VAE; SD 1.x's pipeline has no such field, so it lives in the
    weights here). Returns ``mu``."""
    C = vae.config.latent_channels
    x = common.to_model_range(shapes_pool_u8(n, seed=seed + 77))
    mu = torch.cat([vae.encode(x[i:i + 64]).latent_dist.mean for i in range(0, n, 64)]).mean(dim=(0, 2, 3))
    vae.quant_conv.bias[:C] -= mu
    vae.post_quant_conv.bias += vae.post_quant_conv.weight[:, :, 0, 0] @ mu
    return [round(float(v), 5) for v in mu]


def centre_and_scale(vae, seed: int, n: int = 512) -> tuple[list[float], float]:
    """The last build step: ``centre_latents``, then ``scaling_factor`` = 1 / ``latent_std``
    (written into ``vae.config``). Returns (shift, std)."""
    vae.eval()
    shift = centre_latents(vae, seed)
    std = latent_std(vae, seed, n=n)
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    return shift, std


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          crop: int = DEFAULTS["crop"], lr: float = DEFAULTS["lr"], kl_weight: float = DEFAULTS["kl_weight"],
          seed: int = DEFAULTS["seed"], shapes_pool: int = DEFAULTS["shapes_pool"], log_every: int = 100,
          std_images: int = 512, threads: int = DEFAULTS["threads"],
          decoder_steps: int = DEFAULTS["decoder_steps"], photo_steps: int = DEFAULTS["photo_steps"],
          photo_threads: int = DEFAULTS["photo_threads"]) -> dict:
    """Train and save the VAE to ``out`` (default ``<models>/tiny-sd/vae``); return stats.
    ``photo_threads`` (0: ``threads``) is the torch thread count of phase 3: the build trains the
    CLIP beside phases 1-2 on the other core, and the CLIP is done long before phase 3 starts."""
    from diffusers import AutoencoderKL

    common.set_threads(threads)
    threads = torch.get_num_threads()
    common.quiet_libraries()
    out = Path(out) if out else common.models_dir() / "tiny-sd" / "vae"
    timer = common.Timer()
    g = common.seed_everything(seed)
    rng = np.random.default_rng(seed)
    pool, centres = shapes_pool_u8(shapes_pool, seed=seed, return_centres=True)
    photo_pool = common.photo_crops(max(4 * shapes_pool, 64), 64, "train", seed=seed)

    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = common.warmup_cosine(opt, steps, 100)
    vae.train()
    ema = None
    for step in range(steps):
        # 3/8 object-centred shapes crops (colourful edges), 1/4 random shapes crops, 3/8 photos
        n_obj, n_rand = 3 * batch_size // 8, batch_size // 4
        x = np.concatenate([object_crops(pool, centres, n_obj, crop, rng), random_crops(pool, n_rand, crop, rng),
                            random_crops(photo_pool, batch_size - n_obj - n_rand, crop, rng)])
        x = common.to_model_range(x)
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(rec, x)
        loss = mse + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = mse.item() if ema is None else 0.98 * ema + 0.02 * mse.item()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[vae] step {step:5d}/{steps}  mse {ema:.4f}  psnr~{10 * math.log10(4 / max(ema, 1e-8)):.1f} dB"
                  f"  {timer():.0f}s", flush=True)
    vae.eval()
    phase1_s = round(timer(), 1)
    ft = finetune_decoder(vae, decoder_steps, seed, log_every=log_every) if decoder_steps else {}
    shift, std = centre_and_scale(vae, seed, n=std_images)
    if photo_threads:
        common.set_threads(photo_threads)
    ph = finetune_photos(vae, photo_steps, seed, kl_weight=kl_weight, log_every=log_every) if photo_steps else {}
    out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(out, safe_serialization=True)
    stats = dict(model="tiny-vae", steps=steps, batch_size=batch_size, crop=crop, lr=lr, kl_weight=kl_weight,
                 seed=seed, shapes_pool=shapes_pool, latent_std=std, scaling_factor=round(1.0 / std, 5),
                 params=sum(p.numel() for p in vae.parameters()), train_wall_s=round(timer(), 1),
                 peak_rss_mb=round(common.peak_rss_mb()), threads=threads, photo_threads=torch.get_num_threads(),
                 phase1_wall_s=phase1_s, **ft, **ph, latent_shift=shift,
                 command=f"python -m sdcourse.tiny.train_vae --steps {steps} --decoder-steps {decoder_steps}"
                         f" --photo-steps {photo_steps}")
    common.write_json(out / "training_stats.json", stats)
    common.readable_by_all(out)
    print(f"[vae] saved to {out}  scaling_factor={stats['scaling_factor']}  {stats['train_wall_s']}s", flush=True)
    return stats


#: Phase 2: crop sides (px) of the photo half of each batch, and the photo scales they are cut from.
DECODER_SIZES = (64, 96, 128, 192, 256)
DECODER_PHOTO_SCALES = (0.35, 0.5, 0.7, 1.0)


def _photo_pyramid(scales=DECODER_PHOTO_SCALES, names=tuple(common.PHOTOS)) -> list[np.ndarray]:
    """The training part of every photo in ``names`` at each of ``scales``."""
    return [common._photo_region(p, "train", s) for p in names for s in scales]


#: Photos of ``common.PHOTOS`` that phase 3 leaves out (phases 1-2 keep them): texture close-ups
#: and a star field, detail at every pixel that no code of 4 numbers per 8x8 patch keeps. Their
#: error dominated phase 3's loss: without them the reserved photos gained 0.2 (Grace) and 0.4 dB
#: (Minduka) at 256x256 (1,200-step runs from the same phase-2 weights).
PHASE3_SKIP = ("grass", "gravel", "brick", "hubble_deep_field")


def phase3_photo_names() -> tuple[str, ...]:
    """The photos phase 3 cuts its crops from: ``common.PHOTOS`` less ``PHASE3_SKIP``, plus
    ``common.PHASE3_PHOTOS``."""
    return tuple(n for n in (*common.PHOTOS, *common.PHASE3_PHOTOS) if n not in PHASE3_SKIP)


#: Phase 3's synthetic images: how many, their side (px), the seed they are drawn with, and the
#: share of leaves with a uniformly random colour (the rest take a colour of the training photos).
DEAD_LEAVES = dict(n=48, size=320, seed=7, p_random_colour=0.5)


def dead_leaves(n: int, size: int, seed: int, max_leaves: int = 4000, p_random_colour: float = 0.0) -> list[np.ndarray]:
    """``n`` (size, size, 3) uint8 "dead leaves" images: discs and rotated rectangles dropped
    one under the other until the canvas is covered, radii drawn with density ~ 1/r^2 (so
    there are edges at every scale, as in photos), colours uniformly random (a share
    ``p_random_colour`` of the leaves) or picked from the pixels of the colour photos in
    ``common.PHOTOS``, each leaf shaded with a random gradient and 30% of them with
    grain; then a slight blur (sigma 0-1.2 px). Such images share the edge and colour
    statistics of photos without being any photo (Lee, Mumford & Huang 2001; Baradad et al. 2021
    train image models on them): they teach the VAE to draw edges, not to remember twelve photos.
    Deterministic for a given ``seed``."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    colour = [common.load_photo(p) for p in common.PHOTOS]
    palette = np.concatenate([a.reshape(-1, 3)[::97] for a in colour if np.ptp(a.astype(np.int16), axis=2).any()])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rmin, rmax = 2.0, size / 3
    out = []
    for _ in range(n):
        img = np.zeros((size, size, 3), np.float32)
        filled = np.zeros((size, size), bool)
        for _ in range(max_leaves):
            r = 1 / (1 / rmin - rng.random() * (1 / rmin - 1 / rmax))
            cx, cy = rng.uniform(-r, size + r, 2)
            x0, x1 = int(max(0, cx - r)), int(min(size, cx + r + 1))
            y0, y1 = int(max(0, cy - r)), int(min(size, cy + r + 1))
            if x0 >= x1 or y0 >= y1:
                continue
            sl = (slice(y0, y1), slice(x0, x1))
            dx, dy = xx[sl] - cx, yy[sl] - cy
            if rng.random() < 0.5:
                leaf = dx ** 2 + dy ** 2 <= r * r
            else:
                a = rng.uniform(0, np.pi)
                c, s_, e = np.cos(a), np.sin(a), rng.uniform(0.3, 1)
                leaf = (np.abs(dx * c + dy * s_) <= r) & (np.abs(-dx * s_ + dy * c) <= r * e)
            leaf &= ~filled[sl]
            if not leaf.any():
                continue
            slope = rng.normal(0, 40, 3) / max(r, 1)
            base = rng.uniform(0, 255, 3) if rng.random() < p_random_colour else palette[rng.integers(len(palette))]
            shade = base.astype(np.float32) + dx[..., None] * slope[0] + dy[..., None] * slope[1]
            if rng.random() < 0.3:
                shade = shade + rng.normal(0, rng.uniform(3, 15), shade.shape[:2])[..., None]
            img[sl][leaf] = shade[leaf]
            filled[sl] |= leaf
            if filled.all():
                break
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
        out.append(np.asarray(im))
    return out


def photo_batch(regions: list[np.ndarray], pixels: int, rng: np.random.Generator, p_jitter: float = 0.0) -> np.ndarray:
    """(n, size, size, 3) uint8 photo crops for phases 2 and 3: one side drawn from
    ``DECODER_SIZES``, about ``pixels`` pixels in all, each from a random region of the photo
    pyramid that is large enough, flipped half the time and (with ``p_jitter`` > 0) put
    through ``colour_jitter`` with that probability."""
    size = int(DECODER_SIZES[rng.integers(len(DECODER_SIZES))])
    crops = []
    while len(crops) < max(1, round(pixels / size ** 2)):
        reg = regions[rng.integers(len(regions))]
        h, w = reg.shape[:2]
        if h < size or w < size:
            continue
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        c = reg[y:y + size, x:x + size]
        c = c[:, ::-1] if rng.random() < 0.5 else c
        if p_jitter and rng.random() < p_jitter:
            c = colour_jitter(c, rng)
        crops.append(c)
    return np.stack(crops)


def finetune_decoder(vae, steps: int, seed: int, lr: float = 3e-4, pixels: int = 16384, n_scenes: int = 8,
                     log_every: int = 100) -> dict:
    """Phase 2, like SD's "ft-MSE" VAE: fine-tune the *decoder only*, the encoder frozen.

    The latents (and so the scaling factor and anything trained on them, such as the
    pipeline's UNet) do not change. Phase 1 only ever decoded 32x32 crops, and the decoder's
    group norms take their statistics over the whole image: on a 256x256 photo it is in a
    regime it never saw (colour casts). Here each step decodes ``n_scenes`` shapes-world
    scenes (64x64, what the pipeline generates) and about ``pixels`` pixels of photo crops of
    one side drawn from ``DECODER_SIZES`` (cut from the photos at ``DECODER_PHOTO_SCALES``,
    flipped at random), each from the frozen encoder's posterior sample; loss: MSE.
    """
    timer = common.Timer()
    g = torch.Generator().manual_seed(seed + 2)
    rng = np.random.default_rng(seed + 2)
    scenes = common.to_model_range(shapes_pool_u8(4000, seed=seed + 3))
    regions = _photo_pyramid()
    dec_params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    vae.requires_grad_(False)
    for p in dec_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(dec_params, lr=lr, weight_decay=0.0)
    sched = common.warmup_cosine(opt, steps, 50)
    vae.eval()
    vae.decoder.train()
    ema = float("nan")
    for step in range(steps):
        crops = photo_batch(regions, pixels, rng)
        loss = 0.0
        for x in (scenes[torch.from_numpy(rng.integers(0, len(scenes), n_scenes))], common.to_model_range(crops)):
            with torch.no_grad():
                z = vae.encode(x).latent_dist.sample(generator=g)
            loss = loss + torch.nn.functional.mse_loss(vae.decode(z).sample, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec_params, 1.0)
        opt.step()
        sched.step()
        ema = loss.item() / 2 if step == 0 else 0.98 * ema + 0.02 * loss.item() / 2
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[vae:decoder] step {step:5d}/{steps}  mse {ema:.4f}  psnr~{10 * math.log10(4 / max(ema, 1e-8)):.1f} dB"
                  f"  {timer():.0f}s", flush=True)
    vae.requires_grad_(True)
    vae.eval()
    return dict(decoder_steps=steps, decoder_lr=lr, decoder_pixels=pixels, decoder_scenes=n_scenes,
                decoder_sizes=list(DECODER_SIZES), decoder_photo_scales=list(DECODER_PHOTO_SCALES),
                decoder_wall_s=round(timer(), 1))


def colour_jitter(u8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo crop (H, W, 3) uint8 in colours the few training photos lack: channels
    permuted (half the time), saturation x0.5-1.6, per-channel gain 0.75-1.25 and offset
    +-0.1, inverted (30% of the time)."""
    c = u8.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        c = c[..., rng.permutation(3)]
    grey = c.mean(-1, keepdims=True)
    c = grey + (c - grey) * rng.uniform(0.5, 1.6)
    c = c * rng.uniform(0.75, 1.25, 3) + rng.uniform(-0.1, 0.1, 3)
    if rng.random() < 0.3:
        c = 1.0 - c
    return (np.clip(c, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def finetune_photos(vae, steps: int, seed: int, lr: float = 1e-3, anchor: float = 0.1, p_jitter: float = 0.7,
                    keep_decoder: float = 1.0, overshoot: float = 0.6,
                    kl_weight: float = DEFAULTS["kl_weight"], pixels: int = 16384, n_scenes: int = 8,
                    log_every: int = 100, ema_decay: float | None = 0.995) -> dict:
    """Phase 3: the whole VAE on photos, the shapes world's latents anchored.

    The encoder of phases 1-2 saw few photos, and few colours: a saturated blue or a grey
    it never met comes back tinted whatever the decoder learns. Here each step trains encoder
    and decoder on about ``pixels`` pixels of photo crops (as in phase 2; ``p_jitter`` of
    them through ``colour_jitter``) and on ``n_scenes`` shapes scenes, with an extra loss
    ``anchor`` * MSE(scene posteriors' means and log-variances, the same before this phase):
    the latent space the pipeline is trained on (and the centring and ``scaling_factor``
    already measured on it) stays where it was, while photos get the rest of the encoder's
    capacity. (Anchoring the means alone let the scenes' posterior std grow 5x, and a
    pipeline trained on those noisier latents lost its colours at guidance 7.5.) And
    ``keep_decoder`` * MSE(decoder, decoder before this phase) on the scenes' latents pushed
    outwards (x 1 to 1 + ``overshoot``, plus noise): guided sampling lands past the data, and a
    decoder retuned on photos alone drew those latents with duller colours (the shipped
    pipeline's adherence at guidance 7.5 fell from 0.97 to 0.94 with the same UNet).

    The photos: the training part of ``phase3_photo_names()`` (``common.PHOTOS`` less
    ``PHASE3_SKIP``, plus ``common.PHASE3_PHOTOS``) at ``DECODER_PHOTO_SCALES``, and ``DEAD_LEAVES`` synthetic
    ``dead_leaves`` images, drawn from alike. The weights returned are an exponential moving
    average of the trained ones (``ema_decay``; None: the last step's). Measured from the same
    phase-2 VAE, 1,200 steps: without the extra photos and dead leaves and without the average,
    reserved photos 19.5 / 21.4 dB at 256 (grace_hopper / Minduka); with the extra photos,
    19.6 / 20.9 at 600 steps; with dead leaves in the photos' colours, 20.1-20.2 / 20.3-20.6 and
    Minduka's blue tinted (cast 0.026-0.038); half of the leaves in random colours, 20.2 / 22.3;
    then lr 6e-4 (was 3e-4), 20.4 / 22.5; without ``PHASE3_SKIP``'s textures and star field,
    20.6 / 22.9 (without the greyscale photos as well, 20.4 / 22.7); lr 1e-3, 20.7 / 23.1
    (all with ``ema_decay`` 0.995).
    Leaves drawn at twice the size and shrunk, with small ones and printed patterns, or twice as
    many crop pixels per step for half the scenes, gained nothing; nor did the KL term scaled to
    a 32x32 crop's weight (it is a sum over the latent, and these crops are up to 64x larger than
    phase 1's) or dropped: 20.7 / 22.9 and 20.8 / 23.3; and weighting each crop's MSE by
    (typical MSE / its own) ** p, so that the hardest crops (dead leaves) weigh less, lost Grace
    0.1 (p = 0.5) and 0.2 dB (p = 1). The build runs 1,800 steps.
    """
    import copy

    timer = common.Timer()
    g = torch.Generator().manual_seed(seed + 4)
    rng = np.random.default_rng(seed + 4)
    scenes = common.to_model_range(shapes_pool_u8(4000, seed=seed + 5))
    regions = _photo_pyramid(names=phase3_photo_names()) + dead_leaves(**DEAD_LEAVES)
    ref = copy.deepcopy(vae).eval().requires_grad_(False)
    avg = torch.optim.swa_utils.AveragedModel(vae, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay)) if ema_decay else None
    vae.requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = common.warmup_cosine(opt, steps, 50)
    vae.train()
    ema = float("nan")
    for step in range(steps):
        photos = common.to_model_range(photo_batch(regions, pixels, rng, p_jitter))
        batch = scenes[torch.from_numpy(rng.integers(0, len(scenes), n_scenes))]
        loss, rec_mse = 0.0, 0.0
        for x in (batch, photos):
            post = vae.encode(x).latent_dist
            mse = torch.nn.functional.mse_loss(vae.decode(post.sample(generator=g)).sample, x)
            rec_mse += mse.item() / 2
            loss = loss + mse + kl_weight * post.kl().mean()
            if x is batch:
                with torch.no_grad():
                    target = ref.encode(x).latent_dist
                loss = loss + anchor * (torch.nn.functional.mse_loss(post.mean, target.mean)
                                        + torch.nn.functional.mse_loss(post.logvar, target.logvar))
                if keep_decoder:
                    # guided sampling pushes latents past the data: keep decoding those as before
                    u = torch.rand(x.shape[0], 1, 1, 1, generator=g)
                    z = target.mean * (1 + overshoot * u) + 0.3 * torch.randn(target.mean.shape, generator=g)
                    with torch.no_grad():
                        want = ref.decode(z).sample
                    loss = loss + keep_decoder * torch.nn.functional.mse_loss(vae.decode(z).sample, want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if avg is not None:
            avg.update_parameters(vae)
        ema = rec_mse if step == 0 else 0.98 * ema + 0.02 * rec_mse
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[vae:photos] step {step:5d}/{steps}  mse {ema:.4f}  psnr~{10 * math.log10(4 / max(ema, 1e-8)):.1f} dB"
                  f"  {timer():.0f}s", flush=True)
    if avg is not None:
        vae.load_state_dict(avg.module.state_dict())
    vae.eval()
    return dict(photo_steps=steps, photo_lr=lr, photo_anchor=anchor, photo_p_jitter=p_jitter,
                photo_keep_decoder=keep_decoder, photo_overshoot=overshoot, photo_ema_decay=ema_decay,
                photo_extra_photos=list(common.PHASE3_PHOTOS), photo_skipped=list(PHASE3_SKIP),
                photo_dead_leaves=dict(DEAD_LEAVES),
                photo_pictures=len(regions),
                photo_pixels=pixels, photo_scenes=n_scenes, photo_wall_s=round(timer(), 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--decoder-only-from", type=Path, default=None,
                   help="run phases 2 and 3 only, on the phase-1 VAE saved in this folder (written to --out)")
    p.add_argument("--photo-only-from", type=Path, default=None,
                   help="run phase 3 only, on the (phase-2, centred) VAE saved in this folder (written to --out)")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    if a.decoder_only_from or a.photo_only_from:
        _continue(a)
        return
    train(out=a.out, steps=a.steps, batch_size=a.batch_size, crop=a.crop, lr=a.lr, kl_weight=a.kl_weight,
          seed=a.seed, shapes_pool=a.shapes_pool, threads=a.threads, decoder_steps=a.decoder_steps,
          photo_steps=a.photo_steps, photo_threads=a.photo_threads)


def _continue(a) -> None:
    """The later phases on a saved VAE: ``--decoder-only-from`` runs phase 2, the centring and
    phase 3 (on phase-1 weights); ``--photo-only-from`` runs phase 3 alone (on the weights
    ``train`` had before its phase 3). Same seeds and order as ``train``, so the result is the
    one a full run gives on the same thread count."""
    from diffusers import AutoencoderKL

    common.set_threads(a.threads)
    common.quiet_libraries()
    src = Path(a.decoder_only_from or a.photo_only_from)
    vae = AutoencoderKL.from_pretrained(str(src))
    stats_p = src / "training_stats.json"
    stats = common.read_json(stats_p) if stats_p.is_file() else {}
    wall = stats.get("phase1_wall_s", 0)
    if a.decoder_only_from:
        ft = finetune_decoder(vae, a.decoder_steps, a.seed)
        shift, std = centre_and_scale(vae, a.seed)
        stats.update(ft, latent_shift=shift, latent_std=std, scaling_factor=round(1.0 / std, 5))
        wall += ft["decoder_wall_s"]
    else:
        wall += stats.get("decoder_wall_s", 0)
    if a.photo_threads:
        common.set_threads(a.photo_threads)
    ph = finetune_photos(vae, a.photo_steps, a.seed, kl_weight=stats.get("kl_weight", a.kl_weight)) if a.photo_steps else {}
    stats.update(ph, train_wall_s=round(wall + ph.get("photo_wall_s", 0), 1), photo_threads=torch.get_num_threads(),
                 peak_rss_mb=max(stats.get("peak_rss_mb", 0), round(common.peak_rss_mb())),
                 command=f"python -m sdcourse.tiny.train_vae --steps {stats.get('steps')} --decoder-steps "
                         f"{stats.get('decoder_steps', a.decoder_steps)} --photo-steps {a.photo_steps}",
                 note=f"later phases run separately ({'--decoder-only-from' if a.decoder_only_from else '--photo-only-from'})"
                      " on saved weights, with the thread count of the build")
    out = Path(a.out or src)
    out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(out, safe_serialization=True)
    common.write_json(out / "training_stats.json", stats)
    common.readable_by_all(out)
    print(f"[vae] saved to {out}  {stats['train_wall_s']}s", flush=True)

if __name__ == "__main__":
    main()
