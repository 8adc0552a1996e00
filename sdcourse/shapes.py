"""Shapes world: a seeded, procedural world of coloured shapes with captions.

The tiny model tier (see ``sdcourse.models``) is trained on this world, and lessons use it
directly to make small, fully controlled datasets.

A *scene* is described by a plain, JSON-serialisable ``dict`` (the *spec*)::

    {"kind": "single" | "count" | "relation",
     "background": [r, g, b],                  # ints 0-255
     "objects": [{"colour": "red", "shape": "circle", "size": "large",
                  "x": 0.31, "y": 0.52,          # centre, fraction of the image side
                  "r": 0.24,                     # radius, fraction of the image side
                  "rgb": [221, 38, 45]}, ...],
     "position": "top left" | None,            # single scenes: the 3x3 cell of the object
     "relation": "left of" | "right of" | "above" | "below" | None}

``render_scene(spec, size)`` draws a spec as an RGB ``PIL.Image`` (deterministic: the
same spec always gives the same pixels), ``caption(spec)`` writes its canonical caption,
``sample_scene(rng)`` draws a random spec, and ``make_dataset(n, split, seed)`` returns
``n`` (image, caption, spec) triples.

Splits
------
Item ``i`` of a split is drawn from its own generator
``numpy.random.default_rng([seed, SPLIT_IDS[split], i])``: ``train`` uses stream 0 and
``heldout`` stream 1, so the two splits never share a random stream, item ``i`` is the
same whatever ``n`` is, and the same call always returns the same data. Because positions,
sizes and colours are continuous jitters, a held-out scene is (with probability ~1) never
pixel-identical to a training scene, while it is drawn from the same distribution.

Pure numpy + PIL; a few thousand 64x64 images per second on one CPU core.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS", "SHAPES", "SIZES", "POSITIONS", "RELATIONS", "COUNT_WORDS", "KINDS",
    "SPLIT_IDS", "CLASSES", "render_scene", "sample_scene", "caption", "random_caption",
    "make_dataset", "images_to_tensor", "dominant_colour", "dominant_shape", "shape_features",
    "class_prompts", "colour_name", "judge", "adheres", "COLOUR_RULES",
]

#: Colour names and their nominal RGB values (each object jitters them by a few levels).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 50, 180),
    "orange": (245, 135, 25),
}
#: Shape names.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
#: Size names and their nominal radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.15, "large": 0.26}
#: 3x3 grid cells used by single-object captions, row-major from the top left.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right", "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)
#: Two-object relations ("A <relation> B").
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
#: Number words for "count" scenes.
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
#: Scene kinds.
KINDS: tuple[str, ...] = ("single", "count", "relation")
#: Split name -> random-stream id (see the module docstring).
SPLIT_IDS: dict[str, int] = {"train": 0, "heldout": 1}
#: The colour x shape classes used for zero-shot classification, in a fixed order.
CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)

_POS_PHRASE = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "centre": "in the centre", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}
_SUPERSAMPLE = 2  # draw at 2x and box-filter down: cheap anti-aliasing


# --------------------------------------------------------------------------- drawing
def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices (pixel coordinates) of a polygonal shape; None for the circle."""
    if shape == "square":
        h = 0.82 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        # equilateral, pointing up, bounding box centred on (cx, cy)
        R = 1.12 * r
        cy2 = cy + 0.25 * R
        return [(cx, cy2 - R), (cx + 0.866 * R, cy2 + 0.5 * R), (cx - 0.866 * R, cy2 + 0.5 * R)]
    if shape == "star":
        R, ri = 1.1 * r, 0.48 * r
        pts = []
        for k in range(10):
            a = -np.pi / 2 + k * np.pi / 5
            rad = R if k % 2 == 0 else ri
            pts.append((cx + rad * np.cos(a), cy + 0.06 * R + rad * np.sin(a)))
        return pts
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}; valid shapes are {', '.join(SHAPES)}")


def render_scene(spec: dict, size: int = 64) -> Image.Image:
    """Draw ``spec`` as an RGB image of ``size`` x ``size`` pixels.

    Deterministic: the same spec and size always give the same pixels. Objects are drawn
    in list order (later ones on top).
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    S = size * _SUPERSAMPLE
    img = Image.new("RGB", (S, S), tuple(int(v) for v in spec["background"]))
    draw = ImageDraw.Draw(img)
    for obj in spec["objects"]:
        cx, cy, r = obj["x"] * S, obj["y"] * S, obj["r"] * S
        fill = tuple(int(v) for v in obj["rgb"])
        poly = _shape_polygon(obj["shape"], cx, cy, r)
        if poly is None:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(poly, fill=fill)
    return img.reduce(_SUPERSAMPLE)


# --------------------------------------------------------------------------- sampling
def _jitter_rgb(rng: np.random.Generator, colour: str) -> list[int]:
    base = np.array(COLOURS[colour], dtype=np.int64)
    return np.clip(base + rng.integers(-12, 13, size=3), 0, 255).tolist()


def _make_obj(rng, colour, shape, size, x, y) -> dict:
    r = SIZES[size] * float(rng.uniform(0.9, 1.1))
    return {"colour": colour, "shape": shape, "size": size, "x": float(x), "y": float(y),
            "r": float(r), "rgb": _jitter_rgb(rng, colour)}


def sample_scene(
    rng: np.random.Generator,
    kinds: Sequence[str] = KINDS,
    kind_probs: Sequence[float] | None = None,
    colours: Sequence[str] | None = None,
    shapes: Sequence[str] | None = None,
) -> dict:
    """Draw one random scene spec.

    Args:
        rng: a ``numpy.random.Generator`` (all randomness comes from it).
        kinds: scene kinds to choose from (subset of ``KINDS``).
        kind_probs: probabilities for ``kinds`` (uniform when None).
        colours, shapes: restrict the vocabulary (default: all of ``COLOURS`` / ``SHAPES``).

    Returns:
        a spec ``dict`` (see the module docstring).
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown scene kind(s) {bad}; valid kinds are {', '.join(KINDS)}")
    colours = list(colours or COLOURS)
    shapes = list(shapes or SHAPES)
    kind = kinds[int(rng.choice(len(kinds), p=kind_probs))]
    bg = [int(v) for v in rng.integers(222, 252, size=3)]
    spec = {"kind": kind, "background": bg, "objects": [], "position": None, "relation": None}

    if kind == "single":
        colour = colours[rng.integers(len(colours))]
        shape = shapes[rng.integers(len(shapes))]
        size = ("small", "large")[rng.integers(2)]
        cell = int(rng.integers(9))
        row, col = divmod(cell, 3)
        # cell centres at 0.25 / 0.5 / 0.75 (large objects pulled a little inwards)
        span = 0.22 if size == "small" else 0.16
        cx = 0.5 + (col - 1) * span + rng.uniform(-0.03, 0.03)
        cy = 0.5 + (row - 1) * span + rng.uniform(-0.03, 0.03)
        spec["objects"].append(_make_obj(rng, colour, shape, size, cx, cy))
        spec["position"] = POSITIONS[cell]
    elif kind == "count":
        n = int(rng.integers(2, 5))
        colour = colours[rng.integers(len(colours))]
        shape = shapes[rng.integers(len(shapes))]
        # non-overlapping positions on a jittered 3x3 grid
        cells = rng.permutation(9)[:n]
        for c in cells:
            row, col = divmod(int(c), 3)
            cx = 0.2 + 0.3 * col + rng.uniform(-0.04, 0.04)
            cy = 0.2 + 0.3 * row + rng.uniform(-0.04, 0.04)
            obj = _make_obj(rng, colour, shape, "small", cx, cy)
            obj["r"] = 0.11 * float(rng.uniform(0.9, 1.1))
            spec["objects"].append(obj)
    else:  # relation
        i, j = rng.choice(len(colours), size=2, replace=False)
        ca, cb = colours[i], colours[j]
        sa, sb = shapes[rng.integers(len(shapes))], shapes[rng.integers(len(shapes))]
        rel = RELATIONS[rng.integers(len(RELATIONS))]
        near, far, other = 0.27, 0.73, 0.5
        a_first = rng.uniform(near - 0.05, near + 0.05)
        b_second = rng.uniform(far - 0.05, far + 0.05)
        o1, o2 = rng.uniform(other - 0.12, other + 0.12, size=2)
        if rel == "left of":
            pa, pb = (a_first, o1), (b_second, o2)
        elif rel == "right of":
            pa, pb = (b_second, o1), (a_first, o2)
        elif rel == "above":
            pa, pb = (o1, a_first), (o2, b_second)
        else:  # below
            pa, pb = (o1, b_second), (o2, a_first)
        a = _make_obj(rng, ca, sa, "small", *pa)
        b = _make_obj(rng, cb, sb, "small", *pb)
        a["r"] = 0.15 * float(rng.uniform(0.9, 1.1))
        b["r"] = 0.15 * float(rng.uniform(0.9, 1.1))
        spec["objects"] = [a, b]
        spec["relation"] = rel
    return spec


# --------------------------------------------------------------------------- captions
def _plural(shape: str) -> str:
    return shape + "s"


def _a(word: str) -> str:
    """Indefinite article for ``word``: "an orange", "a red"."""
    return "an" if word[0] in "aeiou" else "a"


def caption(spec: dict) -> str:
    """The canonical (most detailed) caption of a spec, e.g. ``"a large red circle on the left"``,
    ``"three blue squares"`` or ``"a red circle left of a blue square"``."""
    objs = spec["objects"]
    if spec["kind"] == "single":
        o = objs[0]
        return f"{_a(o['size'])} {o['size']} {o['colour']} {o['shape']} {_POS_PHRASE[spec['position']]}"
    if spec["kind"] == "count":
        o = objs[0]
        return f"{COUNT_WORDS[len(objs)]} {o['colour']} {_plural(o['shape'])}"
    a, b = objs
    return (f"{_a(a['colour'])} {a['colour']} {a['shape']} {spec['relation']} "
            f"{_a(b['colour'])} {b['colour']} {b['shape']}")


def random_caption(spec: dict, rng: np.random.Generator) -> str:
    """A randomly worded, still *true* caption of ``spec`` (for training text encoders).

    Single objects randomly drop the size and/or the position; every caption may be
    prefixed with "a photo of" / "an image of". Colour and shape words are always kept.
    """
    objs = spec["objects"]
    if spec["kind"] == "single":
        o = objs[0]
        words = []
        if rng.random() < 0.5:
            words.append(o["size"])
        words += [o["colour"], o["shape"]]
        if rng.random() < 0.5:
            words.append(_POS_PHRASE[spec["position"]])
        text = _a(words[0]) + " " + " ".join(words)
    elif spec["kind"] == "count":
        text = caption(spec)
    else:
        a, b = objs
        if rng.random() < 0.5:
            text = caption(spec)
        else:  # the same fact, said the other way round
            inverse = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
            text = (f"{_a(b['colour'])} {b['colour']} {b['shape']} {inverse[spec['relation']]} "
                    f"{_a(a['colour'])} {a['colour']} {a['shape']}")
    u = rng.random()
    if u < 0.25:
        text = "a photo of " + text
    elif u < 0.35:
        text = "an image of " + text
    return text


def class_prompts(template: str = "a photo of {a} {colour} {shape}") -> list[str]:
    """One prompt per entry of ``CLASSES``, in the same order (``{a}`` is "a" or "an")."""
    return [template.format(a=_a(c), colour=c, shape=s) for c, s in CLASSES]


# --------------------------------------------------------------------------- datasets
def make_dataset(
    n: int,
    split: str = "train",
    seed: int = 0,
    size: int = 64,
    kinds: Sequence[str] = KINDS,
    kind_probs: Sequence[float] | None = None,
    as_tensor: bool = False,
    start: int = 0,
) -> list[tuple]:
    """``n`` (image, caption, spec) triples of one split.

    Args:
        n: number of items.
        split: ``"train"`` or ``"heldout"`` (see the module docstring).
        seed: dataset seed; item ``i`` uses ``default_rng([seed, SPLIT_IDS[split], i])``.
        size: image side in pixels.
        kinds, kind_probs: which scene kinds to draw and how often (see ``sample_scene``).
        as_tensor: return images as float tensors of shape (3, size, size) in [0, 1]
            instead of ``PIL.Image``.
        start: index of the first item (so datasets can be generated in chunks).

    Returns:
        list of ``(image, caption, spec)``; ``caption`` is the canonical ``caption(spec)``.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLIT_IDS)}")
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, SPLIT_IDS[split], i])
        spec = sample_scene(rng, kinds=kinds, kind_probs=kind_probs)
        img = render_scene(spec, size)
        if as_tensor:
            img = images_to_tensor([img])[0]
        out.append((img, caption(spec), spec))
    return out


def images_to_tensor(images: Iterable[Image.Image]):
    """Stack PIL images into a float tensor of shape (N, 3, H, W) with values in [0, 1]."""
    import torch

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def _as_rgb_array(image) -> np.ndarray:
    """(H, W, 3) float32 array in 0-255 from a PIL image, a uint8 array or a (3, H, W) [0, 1] tensor."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0) * 255.0
    return arr


def _foreground(arr: np.ndarray, min_distance: float) -> np.ndarray:
    """Boolean mask of pixels farther than ``min_distance`` (RGB) from the background, taken as
    the median of the image border."""
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg = np.median(border, axis=0)
    return np.linalg.norm(arr - bg, axis=-1) > min_distance


def dominant_colour(image, min_distance: float = 60.0) -> str | None:
    """Name of the ``COLOURS`` entry nearest to the median foreground pixel of ``image``.

    A pixel counts as foreground when its RGB distance to the background (the median of
    the image border) exceeds ``min_distance``. Independent of any neural network, so it
    can judge generated images. Accepts a ``PIL.Image``, an (H, W, 3) uint8 array or a
    (3, H, W) float tensor in [0, 1]. Returns None when there is no foreground.
    """
    arr = _as_rgb_array(image)
    fg = arr[_foreground(arr, min_distance)]
    if len(fg) < 4:
        return None
    med = np.median(fg, axis=0)
    names = list(COLOURS)
    ref = np.array([COLOURS[c] for c in names], dtype=np.float32)
    return names[int(np.argmin(np.linalg.norm(ref - med, axis=1)))]


def _largest_blob(image, min_distance: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(RGB array, boolean mask of the largest 4-connected foreground blob) or None."""
    from scipy import ndimage

    arr = _as_rgb_array(image)
    mask = _foreground(arr, min_distance)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return arr, labels == int(np.argmax(sizes)) + 1


def _blob_features(blob: np.ndarray) -> tuple[float, float] | None:
    from scipy.spatial import ConvexHull, QhullError

    area = float(blob.sum())
    if area < 4:
        return None
    ys, xs = np.nonzero(blob)
    extent = area / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)])
    try:
        solidity = area / float(ConvexHull(corners).volume)  # in 2-D, "volume" is the area
    except QhullError:  # a blob one pixel wide
        return None
    return extent, solidity


def shape_features(image, min_distance: float = 60.0) -> tuple[float, float] | None:
    """(extent, solidity) of the largest foreground blob of ``image``, or None if there is none.

    extent = blob area / area of its bounding box (square ~1.0, circle ~0.79 = pi/4,
    triangle ~0.5, star ~0.4); solidity = blob area / area of its convex hull (star ~0.6,
    the convex shapes > 0.85). Foreground as in ``dominant_colour``; pure numpy + scipy.
    """
    found = _largest_blob(image, min_distance)
    return None if found is None else _blob_features(found[1])


#: Decision thresholds of ``dominant_shape`` (midway between the classes' ranges measured on
#: held-out renders and on the tiny VAE's reconstructions of them).
SHAPE_RULES = {"star_below_solidity": 0.77, "triangle_below_extent": 0.67, "circle_below_extent": 0.87}


def dominant_shape(image, min_distance: float = 60.0) -> str | None:
    """Name of the shape of the largest foreground blob, from its geometry alone.

    Star if the blob is far from convex (solidity below 0.77); otherwise by how much of its
    bounding box it fills (extent): triangle below 0.67, circle below 0.87, else square.
    Like ``dominant_colour``, independent of any neural network, so together they judge
    whether a generated image shows the prompted colour and shape. None when there is no
    foreground blob. Assumes the shapes world's upright, unrotated shapes.
    """
    return _shape_from_features(shape_features(image, min_distance))


def _shape_from_features(f: tuple[float, float] | None) -> str | None:
    if f is None:
        return None
    extent, solidity = f
    if solidity < SHAPE_RULES["star_below_solidity"]:
        return "star"
    if extent < SHAPE_RULES["triangle_below_extent"]:
        return "triangle"
    if extent < SHAPE_RULES["circle_below_extent"]:
        return "circle"
    return "square"


# --------------------------------------------------------------------------- the strict judge
#: How far a colour may stray from a ``COLOURS`` entry and still be seen as it, in HSV terms:
#: hue within ``max_hue_deviation`` degrees of the entry's hue (and nearer to it than to any
#: other entry's), saturation at least ``min_saturation`` (less looks washed out, greyish or
#: pastel) and value (brightness) at least ``min_value_fraction`` of the entry's own (less
#: looks dark: a green drawn almost black, a red turned brown).
COLOUR_RULES = {"max_hue_deviation": 25.0, "min_saturation": 0.45, "min_value_fraction": 0.7}
#: The smallest object ``judge`` accepts, as a fraction of the image area.
MIN_OBJECT_FRACTION = 0.01


def _hsv(rgb) -> tuple[float, float, float]:
    """(hue in degrees, saturation, value) of an RGB triple in 0-255."""
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*(float(c) / 255.0 for c in rgb))
    return 360.0 * h, s, v


def colour_name(rgb) -> str | None:
    """The ``COLOURS`` entry an RGB triple (0-255) is plainly seen as, or None when it is too
    dark, too washed out or between two entries (thresholds in ``COLOUR_RULES``)."""
    h, s, v = _hsv(rgb)
    dists = {c: abs((h - _hsv(ref)[0] + 180.0) % 360.0 - 180.0) for c, ref in COLOURS.items()}
    best = min(dists, key=dists.get)
    if dists[best] > COLOUR_RULES["max_hue_deviation"] or s < COLOUR_RULES["min_saturation"]:
        return None
    if v < COLOUR_RULES["min_value_fraction"] * _hsv(COLOURS[best])[2]:
        return None
    return best


def judge(image, min_distance: float = 60.0) -> tuple[str | None, str | None]:
    """(colour, shape) of the main object of ``image``, from pixels alone; None for what it
    cannot see.

    The object is the largest foreground blob (pixels farther than ``min_distance`` in RGB
    from the median of the image border) covering at least ``MIN_OBJECT_FRACTION`` of the
    image. Its colour is ``colour_name`` of its median pixel: stricter than
    ``dominant_colour``, it refuses a colour that is too dark or too washed out to be seen as
    any entry of ``COLOURS``. Its shape comes from its geometry, as in ``dominant_shape``.
    No neural network, so it can judge any model's images. Accepts what ``dominant_colour``
    accepts.
    """
    found = _largest_blob(image, min_distance)
    if found is None:
        return None, None
    arr, blob = found
    if blob.sum() < MIN_OBJECT_FRACTION * blob.size:
        return None, None
    return colour_name(np.median(arr[blob], axis=0)), _shape_from_features(_blob_features(blob))


def adheres(image, colour: str, shape: str) -> bool:
    """True when ``image``'s main object is plainly ``colour`` and ``shape`` (see ``judge``).

    For example ``adheres(pipe("a green star").images[0], "green", "star")``.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; valid colours are {', '.join(COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid shapes are {', '.join(SHAPES)}")
    return judge(image) == (colour, shape)
