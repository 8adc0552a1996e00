"""The tiny model tier: loads offline through the real library calls, meets its quality floors
on small held-out samples, trainers run, the full tier fails fast and clearly offline, and bad
input gives errors written for people.

Run: HF_HUB_OFFLINE=1 python -m pytest tests/test_tiny_models.py -q
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdcourse import models, shapes
from sdcourse.tiny import common, evaluate, floors, train_vae

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
TINY_SD = models.models_dir() / models.TINY_SD
TINY_CLIP = models.models_dir() / models.TINY_CLIP


# The thresholds, defined once in sdcourse/tiny/floors.py. The shipped models must meet the
# first edition's floors (asserted here); the second edition's targets (issue #10: photos never
# trained on, another renderer, SD-shaped guidance curve) are measured and reported, met or not,
# by `make eval-tiny` and the model cards until the retrained models ship.
FLOOR = {f.key: f.value for f in floors.SHIPPED}


@pytest.fixture(scope="module")
def loaded():
    """All three tiny models, loaded once."""
    torch.set_num_threads(2)
    return {name: fn("tiny", device="cpu")
            for name, fn in (("clip", models.load_clip), ("vae", models.load_vae), ("pipe", models.load_pipeline))}


# ------------------------------------------------------------------ loading
def test_each_loader_prints_one_line_and_keeps_stderr_quiet(capfd):
    for fn in (models.load_clip, models.load_vae, models.load_pipeline):
        fn("tiny", device="cpu")
        o, e = capfd.readouterr()
        lines = o.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sdcourse: using the tiny"), o
        assert "SDCOURSE_TIER=full" in lines[0]
        assert e == "", e


# Prefix of the subprocess scripts below: every network attempt is recorded (and refused).
_NO_NETWORK = r"""
import json, socket
attempts = []
def _record(self, address, *a, **k):
    attempts.append(repr(address))
    raise OSError("network disabled by the test")
socket.socket.connect = _record
socket.create_connection = lambda address, *a, **k: _record(None, address)
"""

_LOAD_OFFLINE = _NO_NETWORK + r"""
import torch
from sdcourse import models
clip, _, _ = models.load_clip("tiny", device="cpu")
vae = models.load_vae("tiny", device="cpu")
pipe = models.load_pipeline("tiny", device="cpu")
image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
print(json.dumps({"attempts": attempts, "size": list(image.size)}))
"""


def test_tiny_models_load_and_sample_without_any_network_attempt_and_fit_the_size_floor(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))  # even with the hub allowed
    r = subprocess.run([sys.executable, "-c", _LOAD_OFFLINE], capture_output=True, text=True, env=env,
                       cwd=str(REPO), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res == {"attempts": [], "size": [64, 64]}, res
    assert common.dir_size_mb(models.models_dir()) <= FLOOR["weights_mb"]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's")
def test_peak_memory_is_the_process_own_not_its_parents():
    # ru_maxrss survives exec: a child of a big process would report the parent's size (the
    # load-and-sample memory floor was once measured that way, from inside the evaluation)
    code = ("import resource; from sdcourse.tiny.common import peak_rss_mb; "
            "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    ballast = np.ones((1200, 1024, 1024), np.uint8)  # 1.2 GB, every page touched
    own, maxrss = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())
    del ballast
    assert maxrss >= 1100, "the trap this guards against: ru_maxrss counts the parent"
    assert own < 1000 and own < maxrss - 300, (own, maxrss)


def test_same_library_calls_as_the_full_tier():
    import open_clip
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    model, _, pre = open_clip.create_model_and_transforms("local-dir:" + str(TINY_CLIP))
    tok = open_clip.get_tokenizer("local-dir:" + str(TINY_CLIP))
    assert isinstance(model, open_clip.CLIP) and tok(["a red circle"]).shape[0] == 1
    vae = AutoencoderKL.from_pretrained(str(TINY_SD), subfolder="vae")
    assert len(vae.config.block_out_channels) == 4 and vae.config.latent_channels == 4
    pipe = StableDiffusionPipeline.from_pretrained(str(TINY_SD))
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert pipe.safety_checker is None and pipe.text_encoder.dtype == torch.float32
    # the loaders' shared code path (used with the hub id for the full tier) takes a local folder
    assert models._vae_from(str(TINY_SD), "vae", "cpu", local_files_only=True).config.latent_channels == 4
    assert models._pipeline_from(str(TINY_SD), "cpu", local_files_only=True).unet.config.cross_attention_dim > 0
    assert models.tier_of(models.load_vae("tiny", device="cpu")) == "tiny"


def test_vendored_tokenizer_matches_open_clip_and_truncates_like_sd(loaded):
    import open_clip

    tok = loaded["pipe"].tokenizer
    oc = open_clip.tokenizer.SimpleTokenizer()
    for text in ["a red circle left of a blue square", "Three ORANGE stars!", "an image of a small star"]:
        assert tok(text).input_ids == [oc.sot_token_id] + oc.encode(text) + [oc.eot_token_id]
    long = " ".join(["a large purple triangle"] * 30)
    ids = tok(long, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    full = tok(long).input_ids
    assert len(ids) == tok.model_max_length and ids[:-1] == full[:tok.model_max_length - 1]
    assert ids[-1] == tok.eos_token_id
    img = loaded["pipe"](long, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert img.size == (64, 64)


# ------------------------------------------------------------------ quality floors (smaller samples)
def test_clip_zero_shot_floors_and_relation_limitation(loaded):
    model, pre, tok = loaded["clip"]
    zs = evaluate.clip_zero_shot(model, pre, tok, n=96)
    assert zs["top1"] >= FLOOR["clip_zero_shot"], zs
    other = evaluate.clip_other_renderer(model, pre, tok, n=144)
    assert other["n"] == 144 and other["shape_acc"] >= FLOOR["clip_other_renderer_shape"], other  # shapes drawn differently
    assert other["colour_acc"] >= FLOOR["clip_other_renderer_shape"], other
    rel = evaluate.clip_relation_swap(model, pre, tok, n=64)
    assert rel["acc"] <= FLOOR["clip_relation_swap"], rel  # near chance (0.5): CLIP is close to a bag of words


def test_other_renderer_is_independent_and_draws_every_class():
    """The CLIP's "different renderer" test set does not call the training renderer, and each
    image shows one object of the named colour on its background."""
    import inspect

    src = inspect.getsource(evaluate.other_renderer) + inspect.getsource(evaluate._other_vertices)
    src = src.replace(evaluate.other_renderer.__doc__, "")  # its docstring names what it avoids
    assert "render_scene(" not in src and "_shape_polygon" not in src
    rng = np.random.default_rng(0)
    for colour, shape in shapes.CLASSES:
        for bg in evaluate.OTHER_BACKGROUNDS:
            im = evaluate.other_renderer(colour, shape, rng, background=bg, style="filled")
            assert im.size == (64, 64) and shapes.dominant_colour(im) == colour, (colour, shape, bg)


def test_vae_floors_and_reserved_photos_measured_at_256_and_512(loaded):
    vae = loaded["vae"]
    r = evaluate.vae_psnr(vae, n=32)
    assert r["shapes_psnr"] >= FLOOR["vae_shapes_psnr"], r
    assert r["photos_psnr"] >= FLOOR["vae_photo_strips_psnr"], r
    # the reserved photos are a 2nd-edition target: here only that 512x512 works and is measured
    res = evaluate.vae_reserved_photos(vae, sizes=(256, 512))
    assert all(np.isfinite(res[n][s]["psnr"]) for n in common.RESERVED_PHOTOS for s in ("256", "512")), res


def test_vae_never_trains_on_the_reserved_photos():
    trained = (*common.PHOTOS, *common.PHASE3_PHOTOS)
    reserved = {n.split(".")[0].lower() for n in common.RESERVED_PHOTOS}
    assert not reserved & {n.lower() for n in trained}
    from PIL import Image

    for r in common.RESERVED_PHOTOS:
        ref = common.reserved_photo(r, 64).astype(np.float32)  # squared and resized with PIL's bicubic
        for name in trained:
            # the same picture at any size would give a near-identical 64x64 thumbnail
            thumb = np.asarray(Image.fromarray(common.load_photo(name)).resize((64, 64), Image.BICUBIC))
            assert np.abs(thumb.astype(np.float32) - ref).mean() > 20, (name, r)


def test_phase3_dead_leaves_are_reproducible_and_photo_like():
    a = train_vae.dead_leaves(n=2, size=96, seed=3)
    b = train_vae.dead_leaves(n=2, size=96, seed=3)
    assert all(x.shape == (96, 96, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "same seed, same images (the build must reproduce)"
    assert not np.array_equal(a[0], train_vae.dead_leaves(n=1, size=96, seed=4)[0])
    for x in a:
        assert (x.max(axis=2) < 3).mean() < 0.3, "an empty (black) canvas: the leaves should cover it"
        assert x.std() > 20 and np.ptp(x.astype(np.int16), axis=2).mean() > 10, "varied, coloured leaves"


def test_lesson_photo_table_says_which_photos_the_tiny_vae_trained_on():
    from sdcourse import l5_latents

    trained = {*common.PHOTOS, *common.PHASE3_PHOTOS}
    for name, (_, _, seen) in l5_latents.PHOTOS.items():
        assert seen == (name in trained or f"{name}_left" in trained), name


def test_vae_is_sd_shaped_and_scaled(loaded):
    vae = loaded["vae"]
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
        z512 = vae.encode(torch.zeros(1, 3, 512, 512)).latent_dist.mean
    assert tuple(z.shape) == (1, 4, 8, 8) and tuple(z512.shape) == (1, 4, 64, 64)
    stats = json.loads((TINY_SD / "vae" / "training_stats.json").read_text())
    assert vae.config.scaling_factor == pytest.approx(1 / stats["latent_std"], rel=1e-3)


def test_vae_latents_are_centred_and_unit_scaled_on_the_pipelines_scenes(loaded):
    """The pipeline's training data (shapes scenes) has zero-mean latents of std about 1 once
    scaled (``train_vae.centre_latents`` + ``scaling_factor``), measured on held-out scenes."""
    vae = loaded["vae"]
    x = common.to_model_range(np.stack([np.asarray(im) for im, _, _ in shapes.make_dataset(96, split="heldout",
                                                                                               seed=11, size=64)]))
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    assert z.mean(dim=(0, 2, 3)).abs().max() < 0.15, z.mean(dim=(0, 2, 3))
    assert 0.85 < float(z.std()) < 1.15


def test_centring_the_latents_changes_no_reconstruction():
    from diffusers import AutoencoderKL

    from sdcourse.tiny import train_vae

    torch.manual_seed(0)
    vae = AutoencoderKL(**dict(train_vae.VAE_CONFIG, block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    with torch.no_grad():
        vae.quant_conv.bias[:4] += torch.tensor([2.0, -1.0, 0.5, 3.0])   # an off-centre latent space
        x = torch.rand(3, 3, 64, 64) * 2 - 1
        before = vae.decode(vae.encode(x).latent_dist.mode()).sample
        shift = train_vae.centre_latents(vae, seed=1, n=64)
        after = vae.decode(vae.encode(x).latent_dist.mode()).sample
        again = train_vae.centre_latents(vae, seed=1, n=64)
    assert torch.allclose(before, after, atol=1e-5)
    assert max(abs(v) for v in shift) > 0.4 and max(abs(v) for v in again) < 1e-4


@pytest.fixture(scope="module")
def adherence(loaded):
    """Adherence at guidance 1, 3, 7.5 and 20 on 144 prompts (6 per colour x shape class), 25 steps
    (`make eval-tiny` measures 216 with other seeds)."""
    return evaluate.pipeline_adherence(loaded["pipe"], guidances=(1.0, 3.0, 7.5, 20.0), per_class=6, steps=25,
                                       batch=72)


def test_pipeline_follows_prompts_with_guidance(adherence):
    assert adherence["3.0"]["adherence"] >= FLOOR["pipeline_adherence_3"], adherence
    assert adherence["7.5"]["adherence"] >= FLOOR["pipeline_adherence_7.5"], adherence


def test_guidance_7_5_keeps_the_prompted_colours(adherence):
    """SD's default scale is the sweet spot here too: colours intact at 7.5 (a green object
    stays green, not black), burnt only at 20."""
    assert adherence["7.5"]["colour_acc"] >= 0.9, adherence
    assert adherence["7.5"]["adherence"] >= adherence["3.0"]["adherence"] - 0.03, adherence
    assert adherence["20.0"]["adherence"] < adherence["7.5"]["adherence"], adherence


# As in SD, whose web captions often misdescribe their image, the tiny pipeline is trained on
# captions that are sometimes wrong, so guidance, not the bare conditional model, makes it follow
# the prompt; too much guidance over-saturates (clips) the colours.
def test_guidance_buys_adherence_and_too_much_oversaturates(adherence):
    assert adherence["3.0"]["adherence"] >= adherence["1.0"]["adherence"] + FLOOR["pipeline_guidance_gain_3"], adherence
    assert adherence["7.5"]["adherence"] >= adherence["1.0"]["adherence"] + FLOOR["pipeline_guidance_gain"], adherence
    assert adherence["20.0"]["clipped_fraction"] >= FLOOR["pipeline_oversaturation"] * adherence["7.5"]["clipped_fraction"]


def test_pipeline_samples_64px_from_8x8_latents_with_cross_attention_at_8x8(loaded):
    """Lesson 6-3-4 plots per-token cross-attention maps over the image: the UNet must attend to
    the text at the 8x8 latent level (down and up), not only in its 4x4 middle."""
    pipe = loaded["pipe"]
    out = pipe("a green star", num_inference_steps=25, guidance_scale=7.5, output_type="latent",
               generator=torch.Generator().manual_seed(1)).images
    assert tuple(out.shape) == (1, 4, 8, 8)
    cfg = pipe.unet.config
    assert cfg.down_block_types[0].startswith("CrossAttn") and cfg.up_block_types[-1].startswith("CrossAttn")
    cross = [n for n in pipe.unet.attn_processors if "attn2" in n]
    assert any(n.startswith("down_blocks.0") for n in cross) and any(n.startswith("up_blocks.1") for n in cross)


def test_cards_and_readme_are_rendered_from_eval_results_and_every_floor_is_met():
    """Model cards and README's status table are rendered from eval_results.json and the floors
    (no figure typed by hand), and every first-edition floor is met by the shipped models."""
    from sdcourse.tiny import cards

    ev = json.loads((models.models_dir() / "eval_results.json").read_text())
    for path, text in cards.render_all(ev).items():
        assert path.read_text() == text, f"{path} is out of date: run make eval-tiny"
    readme = (REPO / "README.md").read_text()
    assert cards.readme_block(ev) in readme, "README's tiny-tier status is out of date: run make eval-tiny"
    missed = [(f.key, v) for f, v, ok in floors.check(ev) if not ok and f.edition == 1]
    assert not missed, f"floors not met: {missed}"


# ------------------------------------------------------------------ build tooling stays out of the lessons
#: Exercise functions of the lessons (../shared/DESIGN.md "Exercises"): the build tooling must not
#: hand any of them to a student in one call.
EXERCISES = {"unet_level_shapes", "receptive_field", "high_frequency_error", "timestep_embedding", "group_norm",
             "cosine_similarity_matrix", "clip_loss", "embed_images", "embed_texts", "zero_shot_classify",
             "two_way_accuracy", "probe", "classifier_free_guidance", "sample_with_cfg", "encode_image",
             "decode_latents", "estimate_scaling_factor", "compression_ratio", "trace_pipeline",
             "latent_diffusion_loss"}


def test_tiny_tooling_exposes_no_exercise_solution_and_no_notebook_imports_it():
    import importlib
    import pkgutil

    import sdcourse.tiny as tiny

    assert "notebooks never import" in tiny.__doc__.lower()
    for m in pkgutil.iter_modules(tiny.__path__):
        mod = importlib.import_module(f"sdcourse.tiny.{m.name}")
        assert "notebooks never import" in (mod.__doc__ or "").lower(), m.name
        public = {n for n in vars(mod) if not n.startswith("_") and callable(getattr(mod, n))}
        assert not public & EXERCISES, (m.name, public & EXERCISES)
    for nb in list(REPO.glob("notebooks/**/*.ipynb")) + list(REPO.glob("solutions/**/*.ipynb")):
        assert "sdcourse.tiny" not in nb.read_text() and "sdcourse import tiny" not in nb.read_text(), nb


# ------------------------------------------------------------------ trainers (smoke)
@pytest.mark.slow
def test_trainers_smoke(tmp_path):
    from sdcourse.tiny import train_clip, train_pipeline, train_vae

    train_clip.train(out=tmp_path / "clip", steps=2, focus_steps=2, batch_size=8, pool=64, log_every=0)
    import open_clip
    m, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(tmp_path / "clip"))
    assert isinstance(m, open_clip.CLIP)
    sd = tmp_path / "sd"
    s = train_vae.train(out=sd / "vae", steps=2, batch_size=4, shapes_pool=16, log_every=0, std_images=16,
                        decoder_steps=2, photo_steps=2, threads=1, photo_threads=2)
    assert s["decoder_steps"] == 2 and s["photo_steps"] == 2 and "--photo-steps 2" in s["command"]
    assert s["threads"] == 1 and s["photo_threads"] == min(2, os.cpu_count() or 1), s  # phase 3's own count
    train_vae.main(["--photo-only-from", str(sd / "vae"), "--out", str(tmp_path / "vae-p3"), "--photo-steps", "1",
                    "--threads", "1", "--photo-threads", "1"])
    p3 = json.loads((tmp_path / "vae-p3" / "training_stats.json").read_text())
    assert p3["photo_steps"] == 1 and p3["scaling_factor"] == s["scaling_factor"], p3
    assert p3["photo_threads"] == 1 and p3["threads"] == s["threads"], p3  # phases 1-2's count is kept
    assert (sd / "vae" / "diffusion_pytorch_model.safetensors").is_file() and s["scaling_factor"] > 0
    shipped_tok = common.models_dir() / "tiny-sd" / "tokenizer"
    shutil.copytree(shipped_tok, sd / "tokenizer")  # a rebuild in a clone finds the shipped files there
    train_pipeline.train(out=sd, steps=2, batch_size=8, n_images=16, log_every=0, clip_dir=tmp_path / "clip")
    # the saved tokenizer config carries no padding state from training, and has the shipped one's keys
    tok_cfg = json.loads((sd / "tokenizer" / "tokenizer_config.json").read_text())
    shipped = json.loads((shipped_tok / "tokenizer_config.json").read_text())
    assert not {"max_length", "padding_side", "truncation_strategy"} & tok_cfg.keys(), tok_cfg
    assert tok_cfg.keys() == shipped.keys() and tok_cfg["model_max_length"] == shipped["model_max_length"], tok_cfg
    for f in [*(tmp_path / "clip").rglob("*"), *sd.rglob("*")]:  # weights are saved 0600 by default
        assert f.stat().st_mode & 0o004, f"{f} is not readable by the grading sandbox's user"
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(sd))
    assert pipe(["a red circle"], num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)
    with pytest.raises(FileNotFoundError, match="train_clip"):
        train_pipeline.train(out=sd, steps=1, clip_dir=tmp_path / "no-clip")
    v = tmp_path / "sd-v"
    shutil.copytree(sd / "vae", v / "vae")
    st = train_pipeline.train(out=v, steps=2, batch_size=8, n_images=16, log_every=0, clip_dir=tmp_path / "clip",
                              prediction_type="v_prediction", zero_snr=1, snr_gamma=5.0, width=16)
    assert "--prediction-type v_prediction" in st["command"] and "--width 16" in st["command"]
    pipe = StableDiffusionPipeline.from_pretrained(str(v))
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr
    assert pipe(["a red circle"], num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="v_prediction"):
        train_pipeline.train(out=v, steps=1, zero_snr=1, clip_dir=tmp_path / "clip")
    with pytest.raises(ValueError, match="prediction_type"):
        train_pipeline.train(out=v, steps=1, prediction_type="sample", clip_dir=tmp_path / "clip")


def test_pipeline_text_encoder_is_the_frozen_tiny_clip_text_tower(loaded):
    """As in SD 1.x (which reuses OpenAI CLIP's text tower), the tiny pipeline's text encoder is
    the tiny CLIP's text tower: the same per-token states for the same ids."""
    from sdcourse.tiny import convert

    model, _, tok = loaded["clip"]
    pipe = loaded["pipe"]
    prompts = ["a red circle left of a blue square", "three orange stars", ""]
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    ref = tok(prompts)
    eot = pipe.tokenizer.eos_token_id
    for row, ref_row in zip(ids.tolist(), ref.tolist()):
        # same tokens up to and including <|endoftext|>; only the padding differs (SD pads with
        # <|endoftext|>, open_clip with 0), and the causal mask keeps padding out of earlier states
        n = row.index(eot) + 1
        assert row[:n] == ref_row[:n]
    assert convert.max_state_difference(model, pipe.text_encoder, ids) < 1e-5
    assert pipe.tokenizer.model_max_length == model.positional_embedding.shape[0]


# ------------------------------------------------------------------ bad input
def test_caption_noise_changes_only_the_named_attribute():
    from sdcourse.tiny import train_pipeline

    rng = np.random.default_rng(0)
    scenes = shapes.make_dataset(40, split="train", seed=3, size=64, kinds=("single",), kind_probs=(1.0,))
    for _, _, spec in scenes:
        caption = train_pipeline.noisy_caption(spec, rng, 1.0, "shape")
        obj = spec["objects"][0]
        assert obj["colour"] in caption and obj["shape"] not in caption.split(), caption
        assert train_pipeline.noisy_caption(spec, rng, 0.0, "shape").count(obj["shape"]) == 1
    with pytest.raises(ValueError, match="subset of"):
        train_pipeline.noise_attributes("size")


def test_unknown_tier_lists_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="auto, tiny, full"):
        models.load_vae("huge")
    monkeypatch.setenv("SDCOURSE_TIER", "medium")
    with pytest.raises(ValueError, match="SDCOURSE_TIER"):
        models.resolve_tier("auto")
    monkeypatch.setenv("SDCOURSE_TIER", "tiny")
    assert models.resolve_tier("auto") == "tiny" and models.resolve_tier("full") == "full"


def test_missing_or_corrupted_files_name_the_file_and_the_fix(tmp_path, monkeypatch):
    shutil.copytree(TINY_CLIP, tmp_path / "tiny-clip")
    shutil.copytree(TINY_SD, tmp_path / "tiny-sd")
    monkeypatch.setenv("SDCOURSE_MODELS_DIR", str(tmp_path))
    (tmp_path / "tiny-clip" / "open_clip_model.safetensors").unlink()
    with pytest.raises(models.ModelFilesError, match="open_clip_model.safetensors.*make tiny-models"):
        models.load_clip("tiny", device="cpu")
    w = tmp_path / "tiny-sd" / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(models.ModelFilesError, match="corrupted.*unet.diffusion_pytorch_model.safetensors.*make tiny-models"):
        models.load_pipeline("tiny", device="cpu")
    shutil.rmtree(tmp_path / "tiny-sd" / "vae")
    with pytest.raises(models.ModelFilesError, match="vae.config.json.*make tiny-models"):
        models.load_vae("tiny", device="cpu")


_FULL_OFFLINE = _NO_NETWORK + r"""
import contextlib, io
from sdcourse import models
res = {}
for name, fn in (("clip", models.load_clip), ("vae", models.load_vae), ("pipeline", models.load_pipeline)):
    try:
        fn("full", device="cpu"); res[name] = "loaded?!"
    except RuntimeError as e:
        res[name] = str(e)
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    vae = models.load_vae("auto", device="cpu")
    pipe = models.load_pipeline("auto", device="cpu")
res["auto"] = buf.getvalue()
res["tiers"] = [models.tier_of(vae), models.tier_of(pipe), models.session_tier()]
res["attempts"] = attempts
print(json.dumps(res))
"""


def test_full_tier_offline_fails_clearly_without_network_and_auto_falls_back(tmp_path):
    """Offline, the full tier fails with a message that says why and how to switch, without
    trying the network; ``auto`` picks the tiny tier once for every model of the session."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), SDCOURSE_TIER="")
    env.pop("SDCOURSE_MODELS_DIR", None)
    r = subprocess.run([sys.executable, "-c", _FULL_OFFLINE], capture_output=True, text=True, env=env,
                       cwd=str(REPO), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("clip", "vae", "pipeline"):
        assert "could not load the full-tier" in res[name] and "SDCOURSE_TIER=tiny" in res[name], res[name]
    assert "ViT-B-32" in res["clip"] and models.FULL_SD in res["vae"] and "HF_HUB_OFFLINE" in res["vae"]
    assert res["attempts"] == [], f"the loaders tried the network: {res['attempts']}"
    assert res["auto"].startswith("sdcourse: using the tiny VAE"), res["auto"]
    assert res["tiers"] == ["tiny", "tiny", "tiny"], res["tiers"]
