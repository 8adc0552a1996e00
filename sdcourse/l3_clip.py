"""Lesson 6-3-3 "CLIP": figures, the caption widget, the limitation probes and a toy CLIP.

The notebook imports this module in one line (``from sdcourse import l3_clip as l3``). Nothing
here is an exercise answer: the figures and the widget take the student's own functions
and tensors as arguments, and :func:`toy_clip` is a tiny, seeded stand-in with CLIP's
interface (``encode_image`` / ``encode_text`` / ``logit_scale`` + a preprocess and a
tokenizer) so that tests run in milliseconds and give the same result whatever model tier
a student has.
"""
from __future__ import annotations

import copy
import math
import matplotlib.pyplot as plt
import numpy as np
import re
import torch
import torch.nn as nn
import torch.nn.functional as F
import zlib
from PIL import Image, ImageDraw, ImageFont
from typing import Callable, Sequence
from . import shapes
from .figures import figure_view, thumbnails, to_numpy

__all__ = ['ToyTokenizer', 'ToyCLIP', 'toy_clip', 'toy_images', 'draw_dual_encoder', 'untrained_copy',
           'alignment_figure', 'photo_typographic_probe', 'similarity_heatmap', 'batch_difficulty', 'batch_size_figure', 'zero_shot_bars', 'probe_bars', 'caption_explorer', 'write_on', 'relation_probe', 'count_probe', 'typographic_probe']


# ===========================================================================
# toy CLIP, figures, caption widget and limitation probes
# ===========================================================================



# --------------------------------------------------------------------------- toy CLIP

class ToyTokenizer:
    """``tokenizer(list_of_str) -> LongTensor [N, context_length]``, like open_clip's.

    Words (lower-cased runs of letters/digits) are hashed to ids ``1 .. vocab_size - 1``;
    0 is padding. Deterministic across processes (crc32, not ``hash``).
    """

    def __init__(self, context_length: int = 12, vocab_size: int = 211):
        self.context_length, self.vocab_size = context_length, vocab_size

    def __call__(self, texts) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())[: self.context_length]
            for j, w in enumerate(words):
                ids[i, j] = zlib.crc32(w.encode()) % (self.vocab_size - 1) + 1
        return ids


class ToyCLIP(nn.Module):
    """A two-tower toy with open_clip's interface; random (seeded) weights, no training.

    ``encode_image(images [N, 3, S, S], normalize=False) -> [N, embed_dim]`` (4x4 average
    pool + Linear); ``encode_text(ids [N, L], normalize=False) -> [N, embed_dim]`` (mean of
    word + position embeddings over non-padding tokens + Linear); ``logit_scale`` holds the
    LOG of the temperature multiplier, as in open_clip. Two separate towers: nothing is shared.
    """

    def __init__(self, embed_dim: int = 6, vocab_size: int = 211, context_length: int = 12,
                 seed: int = 0, scale: float = 10.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.token_embedding = nn.Parameter(torch.randn(vocab_size, 16, generator=g))
        self.positional_embedding = nn.Parameter(0.5 * torch.randn(context_length, 16, generator=g))
        self.text_projection = nn.Parameter(torch.randn(16, embed_dim, generator=g))
        self.visual_projection = nn.Parameter(torch.randn(48, embed_dim, generator=g))
        self.visual_bias = nn.Parameter(torch.randn(embed_dim, generator=g))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(image, 4).flatten(1)
        out = 3 * x @ self.visual_projection + self.visual_bias
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        mask = (text != 0).float()[..., None]
        x = (self.token_embedding[text] + self.positional_embedding[: text.shape[1]]) * mask
        out = x.sum(1) / mask.sum(1).clamp(min=1) @ self.text_projection
        return F.normalize(out, dim=-1) if normalize else out


def toy_clip(seed: int = 0, embed_dim: int = 6, image_size: int = 8, scale: float = 10.0):
    """``(model, preprocess, tokenizer)`` of a :class:`ToyCLIP`: the same triple that
    ``sdcourse.models.load_clip`` returns, small enough for tests."""
    tokenizer = ToyTokenizer()
    model = ToyCLIP(embed_dim, tokenizer.vocab_size, tokenizer.context_length, seed, scale).eval()

    def preprocess(image: Image.Image) -> torch.Tensor:
        """PIL image -> [3, image_size, image_size] float tensor in [-1, 1]."""
        im = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)

    return model, preprocess, tokenizer


def toy_images(n: int, seed: int = 0, size: tuple[int, int] = (13, 11)) -> list[Image.Image]:
    """``n`` small random RGB images (blocky colour fields), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
        out.append(Image.fromarray(coarse).resize(size, Image.NEAREST))
    return out


# --------------------------------------------------------------------------- figures



def similarity_heatmap(S, images: Sequence[Image.Image] | None = None,
                       texts: Sequence[str] | None = None, title: str = "cosine similarity",
                       fmt: str = "{:.2f}"):
    """Heatmap of an [N, M] similarity matrix: rows = images, columns = texts. The diagonal
    (the matching pairs, i.e. the labels) is outlined; each row's maximum is starred."""
    S = to_numpy(S)
    n, m = S.shape
    thumbs = images is not None
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * m + (1.0 if thumbs else 0), 0.8 + 0.75 * n))
    im = ax.imshow(S, cmap="viridis", vmin=min(0.0, S.min()), vmax=max(1e-6, S.max()))
    for i in range(n):
        for j in range(m):
            star = "*" if j == int(S[i].argmax()) else ""
            ax.text(j, i, fmt.format(S[i, j]) + star, ha="center", va="center", fontsize=8,
                    color="white" if S[i, j] < (S.min() + S.max()) / 2 else "black")
    for k in range(min(n, m)):
        ax.add_patch(plt.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=2.2))
    ax.set_xticks(range(m))
    ax.set_xticklabels(texts if texts is not None else [f"text {j}" for j in range(m)],
                       rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n))
    if thumbs:
        ax.set_yticklabels([""] * n)
        for i, t in enumerate(thumbnails(images)):
            ax.imshow(t, extent=(-1.45, -0.55, i + 0.45, i - 0.45))
        ax.set_xlim(-1.5, m - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
    else:
        ax.set_yticklabels([f"image {i}" for i in range(n)], fontsize=8)
    ax.set_title(title + "\n(red boxes: the matching pairs = the labels; * = row maximum)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


@torch.no_grad()
def batch_difficulty(image_features: torch.Tensor, text_features: torch.Tensor,
                     loss_fn: Callable, logit_scale: float, sizes: Sequence[int],
                     trials: int = 20, seed: int = 0) -> dict:
    """For each batch size N: mean contrastive loss and top-1 image->text accuracy over
    ``trials`` random batches of N matching pairs drawn from the given features."""
    g = torch.Generator().manual_seed(seed)
    out = {"sizes": list(sizes), "loss": [], "accuracy": []}
    scale = torch.as_tensor(float(logit_scale))
    img, txt = F.normalize(image_features.float(), dim=-1), F.normalize(text_features.float(), dim=-1)
    for n in sizes:
        losses, accs = [], []
        for _ in range(trials):
            idx = torch.randperm(len(img), generator=g)[:n]
            losses.append(float(loss_fn(img[idx], txt[idx], scale)))
            pred = (img[idx] @ txt[idx].T).argmax(dim=1)
            accs.append(float((pred == torch.arange(n)).float().mean()))
        out["loss"].append(float(np.mean(losses)))
        out["accuracy"].append(float(np.mean(accs)))
    return out


def batch_size_figure(curves: dict, title: str = "The same features, harder tasks"):
    """``curves``: label -> output of :func:`batch_difficulty`. Loss with the chance level
    ln N, and top-1 accuracy with chance 1/N, against batch size N."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    sizes = np.array(next(iter(curves.values()))["sizes"])
    for k, (label, c) in enumerate(curves.items()):
        axes[0].plot(c["sizes"], c["loss"], "o-", color=f"C{k}", label=label)
        axes[1].plot(c["sizes"], c["accuracy"], "o-", color=f"C{k}", label=label)
    axes[0].plot(sizes, np.log(sizes), "k--", lw=1, label="chance: ln N")
    axes[1].plot(sizes, 1 / sizes, "k--", lw=1, label="chance: 1/N")
    for ax, lab in zip(axes, ["contrastive loss", "top-1 accuracy (image -> its caption)"]):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.set_xlabel("batch size N (1 positive, N - 1 negatives per row)")
        ax.set_ylabel(lab)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1.05)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def zero_shot_bars(images: Sequence[Image.Image], probabilities, class_names: Sequence[str],
                   true_index: Sequence[int] | None = None, top: int = 5):
    """One column per image: the image, then its ``top`` class probabilities (true class in
    green when ``true_index`` is given)."""
    P = to_numpy(probabilities)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 4.4), gridspec_kw={"height_ratios": [1, 1.1]},
                             squeeze=False)
    for i in range(n):
        axes[0, i].imshow(np.asarray(images[i].convert("RGB")))
        axes[0, i].axis("off")
        order = np.argsort(-P[i])[:top][::-1]
        colours = ["C2" if true_index is not None and k == true_index[i] else "C0" for k in order]
        axes[1, i].barh(range(len(order)), P[i, order], color=colours)
        axes[1, i].set_yticks(range(len(order)))
        axes[1, i].set_yticklabels([class_names[k] for k in order], fontsize=7)
        axes[1, i].set_xlim(0, 1)
        axes[1, i].tick_params(axis="x", labelsize=7)
    fig.suptitle("zero-shot probabilities (softmax over the classes; green = true class)", fontsize=10)
    fig.tight_layout()
    return fig


def probe_bars(results: dict, title: str = "Choosing the true caption over a wrong one"):
    """``results``: probe name -> accuracy in [0, 1]; the dashed line is chance (0.5)."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(results), 3.2))
    names, vals = list(results), [float(v) for v in results.values()]
    bars = ax.bar(range(len(vals)), vals, color=[f"C{k}" for k in range(len(vals))])
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.02, f"{v:.2f}", ha="center", fontsize=9)
    ax.axhline(0.5, color="k", ls="--", lw=1, label="chance (coin flip)")
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(names, fontsize=8, rotation=15)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("two-way accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def caption_explorer(embed_texts: Callable, model, tokenizer, image_features: torch.Tensor,
                     images: Sequence[Image.Image], caption: str = "a red circle"):
    """Type a caption; see its cosine similarity to every image (your ``embed_texts``)."""
    import ipywidgets as widgets

    out, show = figure_view()
    box = widgets.Text(value=caption, description="caption", continuous_update=False,
                       layout=widgets.Layout(width="60%"))
    img = F.normalize(image_features.float(), dim=-1)
    thumbs = thumbnails(images, 40)

    def draw(text: str) -> None:
        with torch.no_grad():
            sims = (img @ embed_texts(model, tokenizer, [text]).float().T)[:, 0]
        s = to_numpy(sims)
        fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(s)), 3))
        best = int(s.argmax())
        ax.bar(range(len(s)), s, color=["C3" if k == best else "C0" for k in range(len(s))])
        ax.set_xlim(-0.5, len(s) - 0.5)
        lo = min(0.0, s.min())
        ax.set_ylim(lo, max(s.max() * 1.15, 1e-3))
        ax.set_xticks([])
        ax.set_ylabel("cosine similarity")
        ax.set_title(f"{text!r}: best match is image {best} (red)", fontsize=10)
        for k, t in enumerate(thumbs):
            ax.imshow(t, extent=(k - 0.4, k + 0.4, lo - 0.02 - 0.25 * (ax.get_ylim()[1] - lo), lo - 0.02),
                      clip_on=False)
        fig.subplots_adjust(bottom=0.3)
        show(fig)

    box.observe(lambda change: draw(change["new"]), names="value")
    draw(box.value)
    return widgets.VBox([box, out])


# --------------------------------------------------------------------------- probes

def write_on(image: Image.Image, word: str, size: int = 15, fill=(0, 0, 0)) -> Image.Image:
    """A copy of ``image`` with ``word`` printed across its middle, on a white label (the
    typographic attack: a handwritten note stuck on the object)."""
    im = image.convert("RGB").copy()
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    w, h = right - left, bottom - top
    x, y = (im.width - w) / 2 - left, (im.height - h) / 2 - top
    draw.rectangle([x + left - 2, y + top - 2, x + right + 2, y + bottom + 2], fill=(255, 255, 255))
    draw.text((x, y), word, fill=fill, font=font)
    return im


def _obj(o: dict) -> str:
    return f"{'an' if o['colour'][0] in 'aeiou' else 'a'} {o['colour']} {o['shape']}"


def relation_probe(n: int, seed: int = 0):
    """Held-out two-object scenes: ``(images, true_captions, swapped_captions)``, where the
    swapped caption uses the SAME words with the two objects exchanged:
    "a red circle left of a blue square" -> "a blue square left of a red circle"."""
    data = shapes.make_dataset(n, split="heldout", seed=seed, kinds=("relation",))
    swapped = [f"{_obj(s['objects'][1])} {s['relation']} {_obj(s['objects'][0])}" for _, _, s in data]
    return [d[0] for d in data], [d[1] for d in data], swapped


def count_probe(n: int, seed: int = 0):
    """Held-out scenes of 2-4 identical objects: ``(images, true_captions, wrong_captions)``;
    the wrong caption changes only the number word (2 <-> 3, 4 -> 3)."""
    data = shapes.make_dataset(n, split="heldout", seed=seed, kinds=("count",))
    other = {2: 3, 3: 2, 4: 3}
    wrong = []
    for _, cap, spec in data:
        k = len(spec["objects"])
        wrong.append(cap.replace(shapes.COUNT_WORDS[k], shapes.COUNT_WORDS[other[k]], 1))
    return [d[0] for d in data], [d[1] for d in data], wrong


def typographic_probe(n: int, seed: int = 0):
    """Held-out single large objects: ``(clean_images, attacked_images, true_captions,
    written_captions)``. The attacked image has a WRONG colour word printed on it; the
    written caption names that colour ("a red circle" vs "a blue circle")."""
    data = shapes.make_dataset(n, split="heldout", seed=seed, kinds=("single",))
    rng = np.random.default_rng(seed + 1)
    colours = list(shapes.COLOURS)
    clean, attacked, true, written = [], [], [], []
    for img, _, spec in data:
        o = spec["objects"][0]
        word = colours[(colours.index(o["colour"]) + 1 + int(rng.integers(len(colours) - 1))) % len(colours)]
        clean.append(img)
        attacked.append(write_on(img, word))
        true.append(_obj(o))
        written.append(_obj({"colour": word, "shape": o["shape"]}))
    return clean, attacked, true, written



# --------------------------------------------------------------------------- diagrams and the untrained twin

def draw_dual_encoder(embed_dim: int | str = 512, title: str = "CLIP: two encoders, one shared space"):
    """Two parallel towers (image encoder, text encoder) meeting only at the cosine similarity."""
    from .figures import arrow, box

    fig, ax = plt.subplots(figsize=(10, 2.9))
    for y, inp, enc, colour in [(1.9, "image", "image encoder\n(ViT or CNN)", "#9ecae1"),
                                (0.7, "caption", "text encoder\n(Transformer)", "#a1d99b")]:
        box(ax, 0.7, y, 1.1, 0.5, inp, "#eeeeee")
        box(ax, 2.8, y, 1.9, 0.62, enc, colour)
        box(ax, 5.2, y, 1.8, 0.5, f"{inp} vector ({embed_dim})", "#eeeeee")
        arrow(ax, (1.25, y), (1.85, y))
        arrow(ax, (3.75, y), (4.3, y))
        arrow(ax, (6.1, y), (7.35, 1.3 + (0.12 if y > 1.3 else -0.12)))
    box(ax, 8.2, 1.3, 1.7, 0.62, "cosine similarity\n(the loss compares\nONLY here)", "#f4c27a")
    ax.text(2.8, 1.3, "no shared weights", ha="center", va="center", fontsize=8.5, color="#b30000")
    ax.set_xlim(0, 9.2)
    ax.set_ylim(0.25, 2.45)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def untrained_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture as ``model`` with fresh random weights: a deep copy in which every
    layer with ``reset_parameters`` is re-initialised, every other parameter (positional
    embeddings, projections, attention in-projections) is drawn from a normal distribution
    scaled by 1 / sqrt(its last dimension), and ``logit_scale`` is set to its usual starting
    value ln(1 / 0.07). Seeded; the global random state is left untouched."""
    net = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        covered = set()
        for module in net.modules():
            if hasattr(module, "reset_parameters") and module is not net:
                module.reset_parameters()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for name, p in net.named_parameters():
            if id(p) in covered or name.endswith("logit_scale"):
                continue
            p.normal_(0.0, (p.shape[-1] if p.ndim else 1) ** -0.5)
        if isinstance(getattr(net, "logit_scale", None), torch.Tensor):
            net.logit_scale.fill_(math.log(1 / 0.07))
    return net.eval()


def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def alignment_figure(panels: dict, captions: Sequence[str] | None = None,
                     title: str = "Before and after contrastive training: the same images and captions"):
    """``panels``: label -> (image_features [N, D], text_features [N, D]), pair i = (image i,
    caption i). Each panel projects that model's 2N vectors onto their first two principal
    components: circles are images, triangles captions, a line joins each matching pair; the
    title gives the mean cosine similarity of matching and of mismatched pairs."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (label, (img, txt)) in zip(axes[0], panels.items()):
        img = F.normalize(torch.as_tensor(img).float(), dim=-1)
        txt = F.normalize(torch.as_tensor(txt).float(), dim=-1)
        n = len(img)
        S = (img @ txt.T).numpy()
        match, other = float(np.mean(np.diag(S))), float((S.sum() - np.trace(S)) / max(n * n - n, 1))
        xy = _pca2(np.concatenate([img.numpy(), txt.numpy()]))
        cmap = plt.get_cmap("tab10")
        for i in range(n):
            ax.plot([xy[i, 0], xy[n + i, 0]], [xy[i, 1], xy[n + i, 1]], color=cmap(i % 10), lw=1.0, alpha=0.7)
            ax.scatter(*xy[i], marker="o", s=70, color=cmap(i % 10), edgecolor="k", zorder=3)
            ax.scatter(*xy[n + i], marker="^", s=80, color=cmap(i % 10), edgecolor="k", zorder=3)
        ax.set_title(f"{label}\nmean cosine: matching pairs {match:.2f}, mismatched {other:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if captions is not None:
        handles = [plt.Line2D([], [], color=plt.get_cmap("tab10")(i % 10), marker="o", ls="-", label=c)
                   for i, c in enumerate(captions)]
        axes[0][-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title + "  (o image, ^ caption, a line joins each pair)", fontsize=10)
    fig.tight_layout()
    return fig


#: Photos that ship with scikit-image: (loader name, what it shows, the wrong word printed on it).
PHOTO_ATTACKS = [("chelsea", "a cat", "dog"), ("coffee", "a cup of coffee", "pizza"),
                 ("rocket", "a rocket", "tree"), ("astronaut", "an astronaut", "banana")]


def photo_typographic_probe(template: str = "a photo of {}."):
    """The typographic attack on photos (for a web-trained CLIP): scikit-image's sample photos,
    clean and with a WRONG word printed on a white note across the middle. Returns
    ``(clean_images, attacked_images, true_captions, written_captions)``."""
    from skimage import data as skdata

    clean, attacked, true, written = [], [], [], []
    for name, label, word in PHOTO_ATTACKS:
        img = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        clean.append(img)
        attacked.append(write_on(img, word, size=max(24, img.width // 6)))
        true.append(template.format(label))
        written.append(template.format(("an " if word[0] in "aeiou" else "a ") + word))
    return clean, attacked, true, written
