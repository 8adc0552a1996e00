"""Write the MODEL_CARD.md of each tiny model from its training stats and measured figures."""
from __future__ import annotations

import json
from pathlib import Path

from sdcourse import shapes
from sdcourse.tiny import common

FOOTER = ("\n## Rebuild\n\n```\nmake tiny-models          # = python -m sdcourse.tiny.build_all (all three, fixed seeds)\n"
          "make eval-tiny            # = python -m sdcourse.tiny.evaluate (re-measures every figure)\n```\n")


def _stats(folder: Path) -> dict:
    p = folder / "training_stats.json"
    return common.read_json(p) if p.is_file() else {}


def _fmt(x, nd=3):
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def clip_card(folder: Path, ev: dict) -> str:
    from sdcourse.tiny.train_clip import MODEL_CFG

    vc, tc = MODEL_CFG["vision_cfg"], MODEL_CFG["text_cfg"]
    IMAGE, PATCH, VW, VL = vc["image_size"], vc["patch_size"], vc["width"], vc["layers"]
    TW, TL, CTX, ED = tc["width"], tc["layers"], tc["context_length"], MODEL_CFG["embed_dim"]
    st, zs = _stats(folder), ev["clip"]["zero_shot"]
    rel, cnt, rt = ev["clip"]["relation_swap"], ev["clip"]["counting"], ev.get("runtime", {})
    return f"""# tiny-clip (open_clip, trained by sdcourse)

A CLIP small enough to train on a laptop CPU, for lesson 6-3-3 when the real open_clip
ViT-B-32 (LAION-2B) cannot be downloaded. Loaded with the standard open_clip calls:

```python
import open_clip
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:data/models/tiny-clip")
tokenizer = open_clip.get_tokenizer("local-dir:data/models/tiny-clip")
# or: from sdcourse.models import load_clip; model, preprocess, tokenizer = load_clip("tiny")
```

## Model
- open_clip `CLIP`: ViT image tower {IMAGE}x{IMAGE} px, patch {PATCH}, width {VW}, {VL} layers;
  causal text transformer width {TW}, {TL} layers, context length {CTX}; joint embedding {ED}.
  Config: `open_clip_config.json` (`model_cfg` + `preprocess_cfg`), weights `open_clip_model.safetensors`.
- Tokenizer: open_clip's stock CLIP BPE (49,408 ids). Prompts longer than {CTX} tokens are truncated.
- The token-embedding table is frozen at its seeded random initialisation (only ~40 rows are used).
- Parameters: {st.get('params', '?'):,}.

## Data
Shapes world (`sdcourse.shapes`, train split, seed {st.get('seed')}): {st.get('pool')} scenes; kinds
{json.dumps(st.get('kind_probs'))}; captions randomly worded by `shapes.random_caption`
(size / position words dropped at random, relations also stated the other way round,
"a photo of" prefixes). Colours: {', '.join(shapes.COLOURS)}; shapes: {', '.join(shapes.SHAPES)}.

## Training
open_clip's `ClipLoss` (symmetric InfoNCE, learned temperature), AdamW lr {st.get('lr')}, cosine
schedule, batch {st.get('batch_size')}, {st.get('steps')} steps, {st.get('threads')} CPU thread(s).
Phase 2: {st.get('focus_steps')} more steps with a fresh AdamW (lr {st.get('focus_lr')}) in which every
other batch holds single-object scenes of only two colours, so the model must learn the shapes.
Wall time on the 2-core build CPU: **{st.get('train_wall_s')} s**. Final loss {st.get('final_loss')}.
Command: `{st.get('command')}`.
{('Build note: ' + st['note']) if st.get('note') else ''}

## Measured (held-out split, `python -m sdcourse.tiny.evaluate`)
| figure | value | chance |
|---|---|---|
| zero-shot top-1, {zs['classes']} colour x shape classes, prompt "{zs['prompt']}" (n={zs['n']}) | **{_fmt(zs['top1'])}** | {_fmt(zs['chance'])} |
| ... colour right | {_fmt(zs['colour_acc'])} | {_fmt(1 / len(shapes.COLOURS))} |
| ... shape right | {_fmt(zs['shape_acc'])} | {_fmt(1 / len(shapes.SHAPES))} |
| limitation: true relation caption vs objects swapped (n={rel['n']}) | **{_fmt(rel['acc'])}** | 0.500 |
| limitation: counting, two / three / four (n={cnt['n']}) | **{_fmt(cnt['acc'])}** | 0.333 |
| load time (offline, after imports) | {_fmt(rt.get('clip_load_s', float('nan')), 2)} s | |

Like real CLIP, it treats a caption much like a bag of words: it knows *which* colours and
shapes are present but barely *which is where* (see the relation-swap figure).

## Intended use and limits
Teaching only. It knows shapes world, nothing else; it is no substitute for the real CLIP.
Its text tower is also the frozen text encoder of the tiny text-to-image pipeline
(`tiny-sd/text_encoder`), just as SD 1.x reuses OpenAI CLIP's: retraining this CLIP means
retraining that pipeline (`make tiny-models` does both, in that order).
{FOOTER}"""


def vae_card(folder: Path, ev: dict) -> str:
    from sdcourse.tiny import train_vae

    st, v, rt = _stats(folder), ev["vae"], ev.get("runtime", {})
    cfg = train_vae.VAE_CONFIG
    lic = "\n".join(f"  - `{k}`: {val}" for k, val in common.PHOTOS.items())
    return f"""# tiny SD VAE (diffusers AutoencoderKL, trained by sdcourse)

A stand-in for Stable Diffusion's VAE for lesson 6-3-5. Same class, same shapes of
tensors: 8x downsampling ({len(cfg['block_out_channels'])} `block_out_channels` entries =
3 downsamplings) and 4 latent channels, so a 64x64 image becomes a 4x8x8 latent (512x512 -> 4x64x64
works too, as with SD's VAE). Loaded with

```python
from diffusers import AutoencoderKL
vae = AutoencoderKL.from_pretrained("data/models/tiny-sd", subfolder="vae")
# or: from sdcourse.models import load_vae; vae = load_vae("tiny")
```

## Model
`block_out_channels` {list(cfg['block_out_channels'])}, `layers_per_block` {cfg['layers_per_block']},
`norm_num_groups` {cfg['norm_num_groups']}, latent channels {cfg['latent_channels']}; {st.get('params', 0):,} parameters.

**scaling_factor = {st.get('scaling_factor')}**, chosen the way SD's 0.18215 was: 1 / std of the
latents (`latent_dist.sample()`) of 512 training images (half shapes, half photo crops);
measured std {_fmt(st.get('latent_std', float('nan')), 4)}. Scaled held-out latents have std
{_fmt(v['shapes_latent_std_scaled'])} (shapes) / {_fmt(v['photos_latent_std_scaled'])} (photos).

## Data
- Shapes world scenes (train split, seed {st.get('seed')}, pool of {st.get('shapes_pool')}).
- Crops of scikit-image's bundled sample photos (no download), at scale 1 and 1/2, random
  horizontal flips. The **right-hand {int(common.HELDOUT_FRACTION * 100)}% strip of every photo is held out**
  for evaluation. Photos and licences (from the `skimage.data` docstrings):
{lic}

## Training
Loss: MSE + {st.get('kl_weight')} x KL (no perceptual or GAN loss, unlike SD, so edges are softer).
Trained on {st.get('crop')}x{st.get('crop')} crops (the VAE is convolutional; 4x cheaper
than 64x64): per batch 3/8 shapes crops centred on an object, 1/4 random shapes crops, 3/8
photo crops; batch {st.get('batch_size')}, AdamW lr {st.get('lr')}, cosine
schedule, {st.get('steps')} steps, {st.get('threads')} CPU thread(s). Wall time on the 2-core build CPU:
**{st.get('train_wall_s')} s**. Command: `{st.get('command')}`.
{('Build note: ' + st['note']) if st.get('note') else ''}

## Measured (`python -m sdcourse.tiny.evaluate`, 64x64, posterior mean)
| figure | value |
|---|---|
| PSNR, held-out shapes scenes (n={v['n']}) | **{_fmt(v['shapes_psnr'], 2)} dB** |
| PSNR, held-out photo crops (n={v['n']}) | **{_fmt(v['photos_psnr'], 2)} dB** |
| load time (offline, after imports) | {_fmt(rt.get('vae_load_s', float('nan')), 2)} s |

## Quality floors (course requirements)
- PSNR >= 25 dB on held-out shapes: **{"met" if v["shapes_psnr"] >= 25 else "NOT met"}**
- PSNR >= 20 dB on held-out photo crops: **{"met" if v["photos_psnr"] >= 20 else "NOT met"}**

## Limits
Trained with MSE only (SD's VAE adds a perceptual and an adversarial loss), so edges are softer
than the originals and fine photo texture is smoothed away (hence the lower photo PSNR); with
{st.get('params', 0):,} parameters it is about 30x smaller than SD's VAE and knows little beyond
flat shapes and the few bundled photos.
{FOOTER}"""


def sd_card(folder: Path, ev: dict) -> str:
    from sdcourse.tiny import train_pipeline as tp

    st, p, rt = _stats(folder), ev["pipeline"], ev.get("runtime", {})
    te_cfg = folder / "text_encoder" / "config.json"
    te = common.read_json(te_cfg) if te_cfg.is_file() else {}
    rows = "\n".join(
        f"| {g} | **{_fmt(r['adherence'])}** | {_fmt(r['colour_acc'])} | {_fmt(r['shape_acc'])} | "
        f"{_fmt(r['saturation'])} | {_fmt(r['clipped_fraction'], 4)} | {_fmt(r['diversity'], 4)} |"
        for g, r in p["adherence"].items())
    n = next(iter(p["adherence"].values()))["n"]
    a1, a75, a20 = (p["adherence"][k] for k in ("1.0", "7.5", "20.0"))
    best, ab = max(p["adherence"].items(), key=lambda kv: kv[1]["adherence"])
    if st.get("caption_noise"):
        guidance_text = (
            f"the training captions are noisy, as SD's are, so p(image | \"a red circle\") also holds "
            f"images of other {st.get('caption_noise_on', 'colour,shape').replace(',', 's or ')}s and sampling without guidance follows the "
            f"prompt poorly (adherence {_fmt(a1['adherence'])}, {st.get('caption_noise_on', '').split(',')[-1]} "
            f"{_fmt(a1[st.get('caption_noise_on', 'shape').split(',')[-1] + '_acc'])} at guidance 1). Classifier-free guidance pushes "
            f"each sample towards images the caption fits best: {_fmt(a75['adherence'])} at 7.5 "
            f"({a75['adherence'] - a1['adherence']:+.3f}; best here: guidance {best} with {_fmt(ab['adherence'])}). The cost shows "
            f"at guidance 20: {_fmt(a20['clipped_fraction'] * 100, 1)}% of channel values clipped (against "
            f"{_fmt(a1['clipped_fraction'] * 100, 1)}% at 1), burnt dark colours and adherence down to {_fmt(a20['adherence'])}. "
            f"Trained on correct captions only (`--caption-noise 0`), the same recipe follows prompts without "
            f"guidance and guidance 7.5 buys little; the README records both.")
    else:
        guidance_text = (
            f"every training caption states the colour and the shape correctly, so p(image | \"a red circle\") is "
            f"narrow and the model follows such prompts fairly well without guidance (adherence "
            f"{_fmt(a1['adherence'])} at guidance 1); best here: guidance {best} with {_fmt(ab['adherence'])}; at 7.5 "
            f"({a75['adherence'] - a1['adherence']:+.3f} over guidance 1) dark colours start to burn, and guidance 20 clips "
            f"{_fmt(a20['clipped_fraction'] * 100, 1)}% of the channel values.")
    return f"""# tiny-sd: a tiny text-to-image StableDiffusionPipeline (trained by sdcourse)

A complete diffusers `StableDiffusionPipeline` folder for lessons 6-3-4 and 6-3-5 when SD 1.x
cannot be downloaded or is too slow. It draws 64x64 shapes-world pictures from prompts like
"a red circle" or "a large blue star at the top left".

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("data/models/tiny-sd")
image = pipe("a red circle", num_inference_steps=25, guidance_scale=7.5).images[0]
# or: from sdcourse.models import load_pipeline; pipe = load_pipeline("tiny")
```

## Components
| folder | class | notes |
|---|---|---|
| `tokenizer/` | transformers `CLIPTokenizer` | CLIP BPE vocabulary vendored from open_clip (same ids); `model_max_length` **{st['max_length']}** instead of SD's 77; longer prompts are truncated as in SD (first {st['max_length'] - 1} tokens + `<|endoftext|>`), padding with `<|endoftext|>` |
| `text_encoder/` | transformers `CLIPTextModel` | **the tiny CLIP's text tower, frozen** (copied weight for weight from `{st.get('text_encoder_from', '../tiny-clip')}` by `sdcourse.tiny.convert`; same per-token states), as SD 1.x freezes OpenAI CLIP ViT-L/14's text tower; {te.get('num_hidden_layers')} layers, hidden size {te.get('hidden_size')}, {st.get('text_encoder_params', 0):,} parameters; the UNet's cross-attention reads `last_hidden_state`, {st['max_length']} token states per prompt |
| `unet/` | diffusers `UNet2DConditionModel` | `block_out_channels` {list(tp.UNET_CONFIG['block_out_channels'])}, cross-attention to the text at 8x8 and in the middle block, `cross_attention_dim` {tp.UNET_CONFIG['cross_attention_dim']}, {st.get('unet_params', 0):,} parameters |
| `vae/` | diffusers `AutoencoderKL` | the tiny VAE (see `vae/MODEL_CARD.md`), scaling_factor {st.get('vae_scaling_factor')} |
| `scheduler/` | diffusers `DDIMScheduler` | SD 1.x schedule: scaled_linear betas 0.00085 -> 0.012, 1000 steps, epsilon prediction |
| safety checker / feature extractor | none | `requires_safety_checker: false` |

## Data and training
Shapes world (train split, seed {st.get('seed')}): {st.get('n_images')} scenes, kinds {json.dumps(st.get('kind_probs'))},
encoded once by the frozen VAE (posterior mean and std stored; a fresh latent is sampled each
step and multiplied by the scaling factor). Captions randomly worded (`shapes.random_caption`);
**{int(st.get('p_uncond', 0) * 100)}% replaced by the empty prompt ""** (caption dropout, so
classifier-free guidance works){(f"; **{int(round(st['caption_noise'] * 100))}% of single-object captions name a wrong {st.get('caption_noise_on', 'colour,shape').replace(',', ' or ')}** (`train_pipeline.noisy_caption`), like web alt-text that misdescribes its image" if st.get('caption_noise') else "")}.
Only the UNet is trained (the VAE and the text encoder are frozen). Epsilon-prediction MSE at uniform random timesteps; AdamW
lr {st.get('lr')}, batch {st.get('batch_size')}, {st.get('steps')} steps, EMA {st.get('ema_decay')} (the shipped
weights are the EMA). VAE encoding {st.get('encode_wall_s')} s; wall time on the 2-core build CPU
(including encoding): **{st.get('train_wall_s')} s**. Command: `{st.get('command')}`.

## Measured (`python -m sdcourse.tiny.evaluate`)
Prompts "a {{colour}} {{shape}}" for all {len(shapes.CLASSES)} classes, {n} samples per guidance scale, 25 DDIM
steps, the same seeds at every scale. **Adherence** = colour AND shape right, judged from pixels
alone, with no neural network (so it shares nothing with this pipeline's text encoder): colour by
pixel statistics (`shapes.dominant_colour`), shape by the geometry of the largest foreground blob
(`shapes.dominant_shape`: how convex it is and how much of its bounding box it fills). The judge
scores {_fmt(ev.get('judge_accuracy_on_real', float('nan')))} on real held-out scenes and
{_fmt(ev.get('judge_accuracy_on_vae_reconstructions', float('nan')))} on their reconstructions by the VAE
(the ceiling for any pipeline that decodes through it).
Saturation = mean HSV saturation of foreground pixels; clipped = fraction of channel values at
0 or 255; diversity = mean per-pixel std over the samples of one prompt.

| guidance | adherence | colour | shape | saturation | clipped | diversity |
|---|---|---|---|---|---|---|
{rows}

- 25-step sampling of one 64x64 image at guidance 7.5 on the CPU: **{_fmt(p['sampling_time_s'], 3)} s**
- load time (offline, after imports): {_fmt(rt.get('pipeline_load_s', float('nan')), 2)} s; peak memory of a process
  loading all three tiny models and sampling: {_fmt(rt.get('peak_rss_mb', float('nan')), 0)} MB

## Quality floors (course requirements)
- adherence at guidance 7.5 >= 0.80: **{"met" if p["adherence"]["7.5"]["adherence"] >= 0.8 else "NOT met"}**
- adherence at guidance 7.5 clearly (>= 0.10) above guidance 1: **{"met" if p["adherence"]["7.5"]["adherence"] >= p["adherence"]["1.0"]["adherence"] + 0.1 else "NOT met"}**
- 25-step sampling <= 1 s: **{"met" if p["sampling_time_s"] <= 1.0 else "NOT met"}**

## Limits
Knows shapes world only; 64x64 output; a single 8x8 latent grid, so small details are soft.
Adherence is measured for "a {{colour}} {{shape}}" prompts only. It is also trained on sizes,
positions, counts and two-object relations, but those are not measured here; expect them to be
weaker: its text encoder, the tiny CLIP, barely tells a relation from its swap (see
`tiny-clip/MODEL_CARD.md`), a limitation SD inherited from CLIP too.

What guidance buys here: {guidance_text}
{FOOTER}"""


def write_all(ev: dict) -> None:
    md = common.models_dir()
    (md / "tiny-clip" / "MODEL_CARD.md").write_text(clip_card(md / "tiny-clip", ev))
    (md / "tiny-sd" / "vae" / "MODEL_CARD.md").write_text(vae_card(md / "tiny-sd" / "vae", ev))
    (md / "tiny-sd" / "MODEL_CARD.md").write_text(sd_card(md / "tiny-sd", ev))
