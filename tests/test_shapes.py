"""Shapes world: determinism, splits, captions that match the pixels, the pixel judge, bad input."""
import numpy as np
import pytest

from sdcourse import shapes


def _pixels(data):
    return np.stack([np.asarray(im) for im, _, _ in data])


def test_same_call_same_data():
    a, b = shapes.make_dataset(20, seed=3), shapes.make_dataset(20, seed=3)
    assert np.array_equal(_pixels(a), _pixels(b))
    assert [c for _, c, _ in a] == [c for _, c, _ in b]


def test_item_does_not_depend_on_n_or_chunking():
    full = shapes.make_dataset(12, seed=5)
    chunk = shapes.make_dataset(4, seed=5, start=8)
    assert np.array_equal(_pixels(full[8:]), _pixels(chunk))


def test_splits_and_seeds_differ():
    tr = _pixels(shapes.make_dataset(30, "train", seed=0))
    ho = _pixels(shapes.make_dataset(30, "heldout", seed=0))
    other = _pixels(shapes.make_dataset(30, "train", seed=1))
    assert not any(np.array_equal(t, h) for t in tr for h in ho)
    assert not np.array_equal(tr, other)


def test_image_format_and_tensor_option():
    im, cap, spec = shapes.make_dataset(1, size=48)[0]
    assert im.size == (48, 48) and im.mode == "RGB"
    t, _, _ = shapes.make_dataset(1, size=48, as_tensor=True)[0]
    assert tuple(t.shape) == (3, 48, 48) and 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert np.allclose(t.permute(1, 2, 0).numpy() * 255, np.asarray(im), atol=0.5)


def test_captions_match_specs_and_pixels():
    data = shapes.make_dataset(200, "heldout", seed=11)
    kinds = {s["kind"] for _, _, s in data}
    assert kinds == set(shapes.KINDS)
    for im, cap, spec in data:
        for o in spec["objects"]:
            assert o["colour"] in cap and o["shape"] in cap
        if spec["kind"] == "relation":
            a, b = spec["objects"]
            rel = spec["relation"]
            assert rel in cap
            if rel == "left of":
                assert a["x"] < b["x"]
            elif rel == "right of":
                assert a["x"] > b["x"]
            elif rel == "above":
                assert a["y"] < b["y"]
            else:
                assert a["y"] > b["y"]
        if spec["kind"] == "count":
            assert cap.startswith(shapes.COUNT_WORDS[len(spec["objects"])])
        if spec["kind"] == "single":
            # the drawn colour is the captioned one (pixel statistics, no network)
            assert shapes.dominant_colour(im) == spec["objects"][0]["colour"]


def test_shape_judge_reads_geometry_not_colour():
    """``dominant_shape`` (the pipeline-adherence judge) on fresh held-out scenes of every
    size and position, and on hand-made specs whose colours it has never seen."""
    data = shapes.make_dataset(300, "heldout", seed=23, kinds=("single",))
    hits = [shapes.dominant_shape(im) == s["objects"][0]["shape"] for im, _, s in data]
    assert np.mean(hits) >= 0.98, np.mean(hits)
    for shape in shapes.SHAPES:
        spec = {"kind": "single", "background": [30, 30, 30], "position": "centre", "relation": None,
                "objects": [{"colour": "x", "shape": shape, "size": "large", "x": 0.5, "y": 0.5, "r": 0.3,
                             "rgb": [200, 200, 255]}]}
        assert shapes.dominant_shape(shapes.render_scene(spec, 96)) == shape
        ext, sol = shapes.shape_features(shapes.render_scene(spec, 96))
        assert 0 < ext <= 1 and 0 < sol <= 1.01
    blank = np.full((64, 64, 3), 240, np.uint8)
    assert shapes.dominant_shape(blank) is None and shapes.shape_features(blank) is None


def test_random_captions_stay_true():
    rng = np.random.default_rng(0)
    for _, _, spec in shapes.make_dataset(100, seed=2):
        cap = shapes.random_caption(spec, rng)
        for o in spec["objects"]:
            assert o["colour"] in cap and o["shape"] in cap
    assert "an orange" in " ".join(shapes.class_prompts())


def test_render_is_deterministic_and_draws_something():
    spec = shapes.sample_scene(np.random.default_rng(1), kinds=("single",))
    a = np.asarray(shapes.render_scene(spec, 64))
    assert np.array_equal(a, np.asarray(shapes.render_scene(spec, 64)))
    bg = np.array(spec["background"])
    assert (np.abs(a.astype(int) - bg).sum(-1) > 60).mean() > 0.01


def test_judge_reads_colour_and_shape_of_real_scenes():
    data = shapes.make_dataset(300, "heldout", seed=29, kinds=("single",))
    hits = [shapes.judge(im) == (s["objects"][0]["colour"], s["objects"][0]["shape"]) for im, _, s in data]
    assert np.mean(hits) >= 0.98, np.mean(hits)
    im, _, s = data[0]
    o = s["objects"][0]
    assert shapes.adheres(im, o["colour"], o["shape"])
    other = next(c for c in shapes.COLOURS if c != o["colour"])
    assert not shapes.adheres(im, other, o["shape"])
    assert shapes.judge(np.asarray(im)) == shapes.judge(shapes.images_to_tensor([im])[0])  # any image format


def _recoloured(spec, rgb):
    o = dict(spec["objects"][0], rgb=[int(v) for v in rgb])
    return shapes.render_scene(dict(spec, objects=[o]), 64)


def test_judge_fails_colours_too_dark_or_too_washed_out_to_be_seen():
    """A green drawn almost black, a red turned brown or a pastel is not "the prompted colour",
    although its hue is nearest to it (``dominant_colour`` still names it)."""
    data = shapes.make_dataset(60, "heldout", seed=31, kinds=("single",))
    for _, _, spec in data:
        o, bg = spec["objects"][0], np.array(spec["background"], float)
        rgb = np.array(o["rgb"], float)
        dark, washed = _recoloured(spec, 0.35 * rgb), _recoloured(spec, 0.25 * rgb + 0.75 * bg)
        assert shapes.judge(dark)[0] != o["colour"] and not shapes.adheres(dark, o["colour"], o["shape"])
        assert shapes.judge(washed)[0] != o["colour"]
        assert shapes.judge(_recoloured(spec, rgb))[0] == o["colour"]
    assert shapes.colour_name((20, 60, 25)) is None  # green, nearly black
    assert shapes.colour_name((120, 60, 30)) is None  # brown, not red or orange
    assert shapes.colour_name((200, 230, 205)) is None  # washed-out green
    assert shapes.colour_name((128, 128, 128)) is None  # grey
    assert shapes.colour_name((0, 255, 0)) == "green" and shapes.colour_name((255, 0, 0)) == "red"  # over-saturated
    for name, rgb in shapes.COLOURS.items():
        assert shapes.colour_name(rgb) == name


def test_judge_needs_a_visible_object_and_checks_its_arguments():
    blank = np.full((64, 64, 3), 240, np.uint8)
    assert shapes.judge(blank) == (None, None) and not shapes.adheres(blank, "red", "circle")
    speck = blank.copy()
    speck[30:32, 30:32] = (220, 40, 40)  # 4 pixels: below MIN_OBJECT_FRACTION
    assert shapes.judge(speck) == (None, None)
    with pytest.raises(ValueError, match="red, green"):
        shapes.adheres(blank, "pink", "circle")
    with pytest.raises(ValueError, match="circle, square"):
        shapes.adheres(blank, "red", "hexagon")


def test_bad_input_messages():
    with pytest.raises(ValueError, match="train, heldout"):
        shapes.make_dataset(1, split="test")
    with pytest.raises(ValueError, match="single, count, relation"):
        shapes.sample_scene(np.random.default_rng(0), kinds=("grid",))
    with pytest.raises(ValueError, match="circle, square"):
        shapes.render_scene({"background": [0, 0, 0], "objects": [
            {"shape": "hexagon", "x": .5, "y": .5, "r": .2, "rgb": [1, 2, 3]}]})
