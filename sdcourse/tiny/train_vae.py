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

Run: ``python -m sdcourse.tiny.train_vae [--steps N] [--out DIR]``.
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
                shapes_pool=8000, threads=2, decoder_steps=0)


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
    """Std of ``vae.encode(x).latent_dist.sample()`` over 64x64 training images
    (half shapes, half photo crops): how SD's 0.18215 was chosen."""
    g = torch.Generator().manual_seed(seed)
    sh = shapes_pool_u8(n // 2, seed=seed + 99)
    ph = common.photo_crops(n - n // 2, 64, "train", seed=seed + 99)
    x = common.to_model_range(np.concatenate([sh, ph]))
    zs = [vae.encode(x[i:i + 64]).latent_dist.sample(generator=g) for i in range(0, len(x), 64)]
    return float(torch.cat(zs).std())


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          crop: int = DEFAULTS["crop"], lr: float = DEFAULTS["lr"], kl_weight: float = DEFAULTS["kl_weight"],
          seed: int = DEFAULTS["seed"], shapes_pool: int = DEFAULTS["shapes_pool"], log_every: int = 100,
          std_images: int = 512, threads: int = DEFAULTS["threads"],
          decoder_steps: int = DEFAULTS["decoder_steps"]) -> dict:
    """Train and save the VAE to ``out`` (default ``<models>/tiny-sd/vae``); return stats."""
    from diffusers import AutoencoderKL

    common.set_threads(threads)
    common.quiet_libraries()
    out = Path(out) if out else common.models_dir() / "tiny-sd" / "vae"
    timer = common.Timer()
    g = common.seed_everything(seed)
    rng = np.random.default_rng(seed)
    pool, centres = shapes_pool_u8(shapes_pool, seed=seed, return_centres=True)
    photo_pool = common.photo_crops(max(4 * shapes_pool, 64), 64, "train", seed=seed)

    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
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
    std = latent_std(vae, seed, n=std_images)
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    phase1_s = round(timer(), 1)
    ft = finetune_decoder(vae, decoder_steps, seed, log_every=log_every) if decoder_steps else {}
    out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(out, safe_serialization=True)
    stats = dict(model="tiny-vae", steps=steps, batch_size=batch_size, crop=crop, lr=lr, kl_weight=kl_weight,
                 seed=seed, shapes_pool=shapes_pool, latent_std=std, scaling_factor=round(1.0 / std, 5),
                 params=sum(p.numel() for p in vae.parameters()), train_wall_s=round(timer(), 1),
                 peak_rss_mb=round(common.peak_rss_mb()), threads=torch.get_num_threads(),
                 phase1_wall_s=phase1_s, **ft,
                 command=f"python -m sdcourse.tiny.train_vae --steps {steps} --decoder-steps {decoder_steps}")
    common.write_json(out / "training_stats.json", stats)
    print(f"[vae] saved to {out}  scaling_factor={stats['scaling_factor']}  {stats['train_wall_s']}s", flush=True)
    return stats


def finetune_decoder(vae, steps: int, seed: int, batch_size: int = 16, lr: float = 5e-4, n_pool: int = 1500,
                     log_every: int = 100) -> dict:
    """Phase 2, like SD's "ft-MSE" VAE: fine-tune the *decoder only* with the encoder frozen.

    The latents (and so the scaling factor and anything trained on them, such as the
    pipeline's UNet) do not change; reconstructions get sharper and truer in colour. The
    encoder's posteriors of ``n_pool`` shapes scenes + ``n_pool`` photo crops (64x64) are
    computed once; each step decodes random 4x4 latent crops to 32x32 pixels and compares
    them with the matching image crops (MSE).
    """
    timer = common.Timer()
    g = torch.Generator().manual_seed(seed + 2)
    rng = np.random.default_rng(seed + 2)
    imgs = np.concatenate([shapes_pool_u8(n_pool, seed=seed + 3), common.photo_crops(n_pool, 64, "train", seed=seed + 3)])
    x_all = common.to_model_range(imgs)
    vae.eval()
    with torch.no_grad():
        posts = [vae.encode(x_all[i:i + 64]).latent_dist for i in range(0, len(x_all), 64)]
    mean = torch.cat([p.mean for p in posts])
    std = torch.cat([p.std for p in posts])
    dec_params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in vae.parameters():
        p.requires_grad_(False)
    for p in dec_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(dec_params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    vae.decoder.train()
    ema = float("nan")
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(mean), batch_size))
        ii, jj = rng.integers(0, 5, batch_size), rng.integers(0, 5, batch_size)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
        zc = torch.stack([z[k, :, i:i + 4, j:j + 4] for k, (i, j) in enumerate(zip(ii, jj))])
        xc = torch.stack([x_all[int(idx[k]), :, 8 * i:8 * i + 32, 8 * j:8 * j + 32] for k, (i, j) in enumerate(zip(ii, jj))])
        rec = vae.decode(zc).sample
        loss = torch.nn.functional.mse_loss(rec, xc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec_params, 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if step == 0 else 0.98 * ema + 0.02 * loss.item()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[vae:decoder] step {step:5d}/{steps}  mse {ema:.4f}  psnr~{10 * math.log10(4 / max(ema, 1e-8)):.1f} dB"
                  f"  {timer():.0f}s", flush=True)
    vae.requires_grad_(True)
    vae.eval()
    return dict(decoder_steps=steps, decoder_lr=lr, decoder_batch_size=batch_size, decoder_pool=2 * n_pool,
                decoder_wall_s=round(timer(), 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--decoder-only-from", type=Path, default=None,
                   help="run phase 2 only, on the VAE saved in this folder (written to --out)")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    if a.decoder_only_from:
        from diffusers import AutoencoderKL

        common.set_threads(a.threads)
        common.quiet_libraries()
        vae = AutoencoderKL.from_pretrained(str(a.decoder_only_from))
        ft = finetune_decoder(vae, a.decoder_steps, a.seed)
        out = a.out or a.decoder_only_from
        vae.save_pretrained(out, safe_serialization=True)
        stats_p = Path(a.decoder_only_from) / "training_stats.json"
        stats = common.read_json(stats_p) if stats_p.is_file() else {}
        stats.update(ft)
        common.write_json(Path(out) / "training_stats.json", stats)
        print(f"[vae:decoder] saved to {out}  {ft['decoder_wall_s']}s", flush=True)
        return
    train(out=a.out, steps=a.steps, batch_size=a.batch_size, crop=a.crop, lr=a.lr, kl_weight=a.kl_weight,
          seed=a.seed, shapes_pool=a.shapes_pool, threads=a.threads, decoder_steps=a.decoder_steps)


if __name__ == "__main__":
    main()
