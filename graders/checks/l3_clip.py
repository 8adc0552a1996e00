"""Hidden checks for 6-3-3 "CLIP" (instructor-only).

Oracles: the cosine-similarity formula (explicit norms; the by-hand matrix is compared entry
by entry, which implies the row sums the visible test checks), open_clip's ``ClipLoss`` (fed
L2-normalised features: ClipLoss does not normalise), open_clip's
``build_zero_shot_classifier`` on a seeded toy CLIP (``sdcourse.l3_clip.ToyCLIP``, other
seeds and sizes than the visible tests), so grades never depend on the student's model tier.
Every check is make-inputs / run (sandbox side, ``run_*``) / compare (see ``common``); the
toy CLIP is rebuilt from its seed on both sides.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.zero_shot_classifier import build_zero_shot_classifier

from .common import (Check, CheckFailed, Checks, Suspect, expect_close, expect_dtype,
                     expect_shape, seeded)

LOSS_ORACLES = ["open_clip.loss.ClipLoss", "open_clip.ClipLoss"]
ZERO_SHOT_ORACLES = ["open_clip.zero_shot_classifier.build_zero_shot_classifier",
                     "open_clip.build_zero_shot_classifier",
                     "open_clip.zero_shot_classifier.build_zero_shot_classifier_legacy",
                     "open_clip.build_zero_shot_classifier_legacy"]

HAND_IMAGES = torch.tensor([[3.0, 4, 0], [0, 0, 2], [1, 2, 2], [4, 0, 3]], dtype=torch.float64)
HAND_TEXTS = torch.tensor([[4.0, 3, 0], [0, 0, 1], [2, 1, 2], [3, 0, 4]], dtype=torch.float64)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    return (a / torch.linalg.vector_norm(a, dim=1, keepdim=True)) @ \
        (b / torch.linalg.vector_norm(b, dim=1, keepdim=True)).T


# --------------------------------------------------------------------- ex1 by hand

def make_no_inputs(seed: int) -> dict:
    return {}


def run_hand(inputs: dict, similarity_by_hand):
    S_hand = similarity_by_hand()
    try:
        return {"S": torch.as_tensor(S_hand, dtype=torch.float64)}
    except Exception:  # noqa: BLE001 - not numbers: diagnosed in compare
        return {"S": None, "type": type(S_hand).__name__}


def compare_hand(inputs: dict, result: dict) -> None:
    S = result["S"]
    if S is None:
        raise CheckFailed("S_hand should be a 4x4 nested list of numbers "
                          f"(rows = images, columns = texts), got a {result['type']}.")
    expected = _cos(HAND_IMAGES, HAND_TEXTS)
    suspects = [
        Suspect("transposed", expected.T,
                "your matrix is transposed: row i is IMAGE i and column j is TEXT j, "
                "so S[i][j] = cos(image_i, text_j)."),
        Suspect("dot", HAND_IMAGES @ HAND_TEXTS.T,
                "these are raw dot products; cosine similarity divides by BOTH vector "
                "norms (|image| * |text|)."),
        Suspect("one_norm", (HAND_IMAGES @ HAND_TEXTS.T)
                / torch.linalg.vector_norm(HAND_IMAGES, dim=1, keepdim=True),
                "you divided by the image norm only; cosine similarity divides by BOTH "
                "vector norms."),
    ]
    expect_close(S, expected, "S_hand", atol=0.011, rtol=0, suspects=suspects,
                 hint="Two decimals are enough: S[i][j] = (a_i . b_j) / (|a_i| |b_j|).")


# --------------------------------------------------------------------- ex1 cosine matrix

def make_cos_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, m, d = [(5, 3, 7), (1, 4, 13), (6, 6, 3), (3, 1, 10)][seed % 4]
    a = torch.randn(n, d, generator=g) * (0.2 + 4 * torch.rand(n, 1, generator=g))
    b = torch.randn(m, d, generator=g) * (0.2 + 4 * torch.rand(m, 1, generator=g)) + 0.3
    return {"a": a, "b": b}


def compare_cos_shape(inputs: dict, out) -> None:
    n, m = len(inputs["a"]), len(inputs["b"])
    expect_shape(out, (n, m), f"cosine_similarity_matrix(a [{n}, D], b [{m}, D])",
                 "One row per row of a, one column per row of b: [N, M]. "
                 "Did you compute b against a (transposed)?")


def compare_cos_values(inputs: dict, out) -> None:
    compare_cos_shape(inputs, out)
    a, b = inputs["a"], inputs["b"]
    expected = _cos(a, b)
    suspects = [
        Suspect("dot", a.double() @ b.double().T,
                "these are raw dot products: L2-normalise the rows of BOTH a and b first "
                "(divide each vector by its norm), then take dot products."),
        Suspect("norm_a_only", F.normalize(a.double(), dim=1) @ b.double().T,
                "only a was normalised; normalise the rows of BOTH a and b."),
        Suspect("norm_b_only", a.double() @ F.normalize(b.double(), dim=1).T,
                "only b was normalised; normalise the rows of BOTH a and b."),
        Suspect("transposed", expected.T,
                "your matrix is transposed: rows follow a, columns follow b (a_norm @ b_norm.T)."),
        Suspect("wrong_axis", F.normalize(a.double(), dim=0) @ F.normalize(b.double(), dim=0).T,
                "you normalised along the wrong axis (each column / feature across the batch); "
                "normalise each ROW vector: dim=-1."),
    ]
    expect_close(out, expected, "cosine_similarity_matrix", atol=1e-5, suspects=suspects,
                 context=f"for a {tuple(a.shape)}, b {tuple(b.shape)}")


def run_cos(i, f):
    return f(i["a"].clone(), i["b"].clone())


# --------------------------------------------------------------------- ex2 clip loss

def make_loss_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, d = [(5, 7), (1, 10), (9, 3), (3, 33), (6, 5)][seed % 5]
    img = torch.randn(n, d, generator=g) * (0.3 + 3 * torch.rand(n, 1, generator=g))
    # partly aligned pairs, so the loss is neither ~0 nor ~ln N
    txt = 0.8 * img + torch.randn(n, d, generator=g) * (0.3 + 3 * torch.rand(n, 1, generator=g))
    scale = [14.2857, 3.0, 100.0, 1.0, 7.5][seed % 5]
    return {"image_features": img, "text_features": txt, "logit_scale": torch.tensor(scale)}


def run_loss(i, f):
    return f(i["image_features"].clone(), i["text_features"].clone(), i["logit_scale"].clone())


def _ce_parts(img, txt, scale):
    img, txt = F.normalize(img.double(), dim=-1), F.normalize(txt.double(), dim=-1)
    logits = scale.double() * img @ txt.T
    labels = torch.arange(len(img))
    return logits, labels


def make_loss_equal_inputs(seed: int) -> dict:
    """Every image and every caption alike: nothing is learned yet, the loss is ln N."""
    n, d = [(5, 3), (2, 7), (9, 4)][seed % 3]
    g = seeded(seed)
    v = torch.randn(1, d, generator=g)
    return {"image_features": v.repeat(n, 1), "text_features": 2.5 * v.repeat(n, 1),
            "logit_scale": torch.tensor([14.3, 3.0, 50.0][seed % 3])}


def _loss_scalar(out) -> None:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"clip_loss should return a torch.Tensor (a scalar), got {type(out).__name__}")
    expect_shape(out, (), "clip_loss(...)", "The loss is ONE number for the batch: average the "
                 "cross-entropy over rows (and the two directions), do not return per-example values.")


def compare_loss_basic(inputs: dict, out) -> None:
    _loss_scalar(out)
    n = len(inputs["image_features"])
    expect_close(out, torch.tensor(math.log(n)), f"clip_loss when all {n} similarities are equal",
                 atol=1e-4, hint=f"All logits equal -> the softmax is uniform over N = {n} -> the "
                 f"cross-entropy is ln {n} in both directions.")


def compare_loss_values(inputs: dict, out) -> None:
    _loss_scalar(out)
    img, txt, scale = inputs["image_features"], inputs["text_features"], inputs["logit_scale"]
    n = len(img)
    img_n, txt_n = F.normalize(img.double(), dim=-1), F.normalize(txt.double(), dim=-1)
    expected = ClipLoss()(img_n, txt_n, scale.double())
    logits, labels = _ce_parts(img, txt, scale)
    raw = scale.double() * img.double() @ txt.double().T
    zeros = torch.zeros(n, dtype=torch.long)
    suspects = [
        Suspect("no_normalise", (F.cross_entropy(raw, labels) + F.cross_entropy(raw.T, labels)) / 2,
                "you used the raw features: L2-normalise image_features and text_features "
                "(each row to length 1) before the dot products, so the logits are "
                "logit_scale * cosine similarity."),
        Suspect("image_to_text_only", F.cross_entropy(logits, labels),
                "only one direction: the loss is SYMMETRIC, the average of the image->text "
                "cross-entropy (rows) and the text->image cross-entropy (columns)."),
        Suspect("text_to_image_only", F.cross_entropy(logits.T, labels),
                "only one direction: the loss is SYMMETRIC, the average of the image->text "
                "cross-entropy (rows) and the text->image cross-entropy (columns)."),
        Suspect("labels_zero", (F.cross_entropy(logits, zeros) + F.cross_entropy(logits.T, zeros)) / 2,
                "your labels are all 0. The labels are on the diagonal: image i matches "
                "text i, so labels = torch.arange(N)."),
        Suspect("divided", (F.cross_entropy(logits / scale.double() ** 2, labels)
                            + F.cross_entropy(logits.T / scale.double() ** 2, labels)) / 2,
                "you divided the similarities by logit_scale. In CLIP's convention "
                "logit_scale MULTIPLIES them (the LM temperature divides: same principle, "
                "opposite convention)."),
        Suspect("exp_again", (F.cross_entropy(logits / scale.double() * scale.double().exp(), labels)
                              + F.cross_entropy(logits.T / scale.double() * scale.double().exp(), labels)) / 2,
                "you exponentiated logit_scale; here it is ALREADY exponentiated (as open_clip "
                "passes model.logit_scale.exp() to ClipLoss): multiply by it directly."),
        Suspect("no_scale", (F.cross_entropy(logits / scale.double(), labels)
                             + F.cross_entropy(logits.T / scale.double(), labels)) / 2,
                "the temperature is missing: multiply the cosine similarities by logit_scale."),
        Suspect("sum", (F.cross_entropy(logits, labels, reduction="sum")
                        + F.cross_entropy(logits.T, labels, reduction="sum")) / 2,
                "you summed the cross-entropy over the batch; take the MEAN over the N rows "
                "(and the N columns), as F.cross_entropy does by default."),
    ]
    expect_close(out.reshape(()), expected, "clip_loss", atol=1e-4, rtol=1e-4,
                 suspects=suspects if n > 1 else [],
                 context=f"for N={n}, D={img.shape[1]}, logit_scale={float(scale):g}")


# --------------------------------------------------------------------- ex3 embeddings

def make_embed_inputs(seed: int) -> dict:
    n, k, dim = [(3, 2, 5), (1, 4, 7), (6, 1, 9)][seed % 3]
    words = ["red", "blue", "green", "circle", "square", "star", "small", "large"]
    texts = [f"a {words[(seed + j) % 3]} {words[3 + (seed + 2 * j) % 3]} {words[6 + j % 2]}" for j in range(k)]
    return {"toy": {"seed": 100 + seed, "embed_dim": dim, "image_size": [8, 6, 10][seed % 3]},
            "images": {"n": n, "seed": 200 + seed}, "texts": texts}


def _run_toy(i: dict) -> dict:
    """The toy CLIP and images an input describes (rebuilt from seeds on both sides)."""
    from sdcourse import l3_clip as lab

    model, preprocess, tokenizer = lab.toy_clip(**i["toy"])
    images = lab.toy_images(i["images"]["n"], seed=i["images"]["seed"],
                            **({"size": tuple(i["images"]["size"])} if "size" in i["images"] else {}))
    return {"model": model, "preprocess": preprocess, "tokenizer": tokenizer, "images": images}


def run_embed(i, embed_images, embed_texts):
    toy = _run_toy(i)
    img = embed_images(toy["model"], toy["preprocess"], list(toy["images"]))
    txt = embed_texts(toy["model"], toy["tokenizer"], list(i["texts"]))
    return {"images": img, "texts": txt,
            "grad": [bool(getattr(img, "requires_grad", False)), bool(getattr(txt, "requires_grad", False))]}


def _expected_embeddings(inputs: dict) -> dict:
    i = {**_run_toy(inputs), "texts": inputs["texts"]}
    with torch.no_grad():
        x = torch.stack([i["preprocess"](im) for im in i["images"]])
        return {"images": i["model"].encode_image(x), "texts": i["model"].encode_text(i["tokenizer"](i["texts"]))}


def compare_embed_shape(inputs: dict, out: dict) -> None:
    raw = _expected_embeddings(inputs)
    for j, (key, fn) in enumerate((("images", "embed_images"), ("texts", "embed_texts"))):
        expect_shape(out[key], tuple(raw[key].shape), f"{fn}(...) on {len(raw[key])} {key}",
                     "One row per input, embed_dim columns.")
        if out["grad"][j]:
            raise CheckFailed(f"{fn} returns a tensor that still tracks gradients: wrap the "
                              "encoder calls in `with torch.no_grad():` (we only look at a "
                              "frozen model; no computation graph is needed).")


def compare_embed_values(inputs: dict, out: dict) -> None:
    compare_embed_shape(inputs, out)
    raw = _expected_embeddings(inputs)
    for key, fn in (("images", "embed_images"), ("texts", "embed_texts")):
        r = raw[key].double()
        suspects = [
            Suspect("not_normalised", r,
                    "the embeddings are not normalised: divide each ROW by its L2 norm, so "
                    "dot products become cosine similarities."),
            Suspect("wrong_axis", F.normalize(r, dim=0),
                    "you normalised along the batch axis; normalise each embedding (each row), "
                    "dim=-1."),
        ]
        expect_close(out[key], F.normalize(r, dim=-1), f"{fn}(...)", atol=1e-5,
                     suspects=suspects, context=f"on a toy CLIP with embed_dim={r.shape[1]}")


# --------------------------------------------------------------------- ex4 zero-shot

def make_zero_shot_inputs(seed: int) -> dict:
    n, k, dim = [(5, 3, 7), (1, 4, 5), (4, 6, 9), (7, 2, 11)][seed % 4]
    names = ["red circle", "blue square", "green star", "orange triangle", "purple circle",
             "yellow square"]
    template = ["a photo of a {}", "a drawing of the {} shape", "{} on a plain background",
                "an image of a {}"][seed % 4]
    return {"toy": {"seed": 300 + seed, "embed_dim": dim, "scale": [7.0, 25.0, 3.0, 12.0][seed % 4]},
            "images": {"n": n, "seed": 400 + seed, "size": [9 + seed % 3, 12]},
            "class_names": names[:k] if seed % 2 else names[-k:], "template": template}


def run_zero_shot(i, f):
    toy = _run_toy(i)
    out = f(toy["model"], toy["preprocess"], toy["tokenizer"], list(toy["images"]),
            list(i["class_names"]), i["template"])
    return tuple(out) if isinstance(out, (tuple, list)) else out


def _zero_shot_reference(inputs: dict) -> dict:
    i = {**_run_toy(inputs), "class_names": inputs["class_names"], "template": inputs["template"]}
    model, tok = i["model"], i["tokenizer"]
    with torch.no_grad():
        W = build_zero_shot_classifier(model, tok, i["class_names"], [i["template"]],
                                       num_classes_per_batch=None, device="cpu")   # [D, K]
        x = torch.stack([i["preprocess"](im) for im in i["images"]])
        img_raw = model.encode_image(x).double()
        txt_raw = model.encode_text(tok([i["template"].format(c) for c in i["class_names"]])).double()
        bare = F.normalize(model.encode_text(tok(list(i["class_names"]))).double(), dim=-1)
        img = F.normalize(img_raw, dim=-1)
        s = model.logit_scale.double()
        return {"W": W.double(), "img": img, "img_raw": img_raw, "txt_raw": txt_raw,
                "bare": bare, "log_scale": s, "scale": s.exp()}


def compare_zero_shot_contract(inputs: dict, out) -> None:
    n, k = inputs["images"]["n"], len(inputs["class_names"])
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailed("zero_shot_classify should return a pair (indices, probabilities).")
    idx, probs = out
    expect_shape(idx, (n,), f"the predicted indices for {n} images and {k} classes",
                 "One class index per IMAGE: take the argmax over the class axis (dim=1).")
    expect_dtype(idx, torch.long, "the predicted indices")
    expect_shape(probs, (n, k), f"the probabilities for {n} images and {k} classes",
                 "One row per image, one column per class: [N, K].")
    sums = probs.detach().double().sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed("each row of the probabilities must sum to 1: take the softmax over "
                          f"the CLASSES (dim=1); yours sum to {[round(v, 3) for v in sums.tolist()]}.")


def compare_zero_shot_values(inputs: dict, out) -> None:
    compare_zero_shot_contract(inputs, out)
    idx, probs = out
    r = _zero_shot_reference(inputs)
    logits = r["scale"] * r["img"] @ r["W"]
    expected = logits.softmax(dim=1)
    cos = r["img"] @ r["W"]
    suspects = [
        Suspect("no_template", (r["scale"] * r["img"] @ r["bare"].T).softmax(dim=1),
                "you embedded the bare class names; put each name into the prompt template "
                "first (template.format(name)), as CLIP saw captions, not single words."),
        Suspect("no_normalise", (r["scale"] * r["img_raw"] @ r["txt_raw"].T).softmax(dim=1),
                "the features were not L2-normalised: normalise the image AND text embeddings "
                "so the logits are logit_scale * cosine similarity."),
        Suspect("log_scale", (r["log_scale"] * cos).softmax(dim=1),
                "you used model.logit_scale directly; open_clip stores its LOG: multiply by "
                "model.logit_scale.exp()."),
        Suspect("no_scale", cos.softmax(dim=1),
                "the temperature is missing: multiply the cosine similarities by "
                "model.logit_scale.exp() before the softmax."),
        Suspect("divided", (cos / r["scale"]).softmax(dim=1),
                "you divided by the temperature multiplier; logit_scale.exp() MULTIPLIES the "
                "cosine similarities."),
        Suspect("hard_coded_100", (100.0 * cos).softmax(dim=1),
                "you hard-coded 100 (the full CLIP's value); use this model's "
                "model.logit_scale.exp()."),
    ]
    expect_close(probs, expected, "the zero-shot probabilities", atol=1e-4, rtol=1e-3,
                 suspects=suspects, context=f"for {len(idx)} images, {len(inputs['class_names'])} "
                 f"classes, template {inputs['template']!r}")
    if not torch.equal(idx.cpu(), expected.argmax(dim=1)):
        raise CheckFailed("the predicted indices are not the most probable class of each image: "
                          "indices = probabilities.argmax(dim=1) (over the classes, per image).")


# --------------------------------------------------------------------- ex5 two-way accuracy

def make_two_way_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, d = [(7, 5), (1, 3), (12, 10), (5, 6)][seed % 4]
    img = torch.randn(n, d, generator=g)
    true = img + 1.2 * torch.randn(n, d, generator=g)
    wrong = (img + 1.2 * torch.randn(n, d, generator=g)) * (0.3 + 2 * torch.rand(n, 1, generator=g))
    if n == 1:   # one image, whose wrong caption has the larger dot product but lower cosine
        img, true, wrong = (torch.tensor([[1.0, 0, 0]]), torch.tensor([[1.0, 0.2, 0]]),
                            torch.tensor([[3.0, 3.0, 0]]))
    return {"image_features": img, "true_features": true, "wrong_features": wrong}


def run_two_way(i, f):
    return f(i["image_features"].clone(), i["true_features"].clone(), i["wrong_features"].clone())


def _as_scalar(out) -> torch.Tensor:
    try:
        return torch.tensor(float(out), dtype=torch.float64)
    except Exception:
        raise CheckFailed(f"two_way_accuracy should return one number (a float), got "
                          f"{type(out).__name__}") from None


def _python_float(out) -> None:
    if not isinstance(out, float):
        raise CheckFailed(f"two_way_accuracy should return a Python float (use .item()), got {type(out).__name__}")


def compare_two_way_range(inputs: dict, out) -> None:
    _python_float(out)
    v = float(_as_scalar(out))
    n = len(inputs["image_features"])
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise CheckFailed(f"two_way_accuracy returned {v:g} for {n} images; an accuracy is a "
                          "fraction in [0, 1] (divide the number of correct choices by N).")


def compare_two_way_values(inputs: dict, out) -> None:
    _python_float(out)
    img, true, wrong = (inputs[k].double() for k in ("image_features", "true_features", "wrong_features"))
    n = len(img)
    ct, cw = F.cosine_similarity(img, true, dim=-1), F.cosine_similarity(img, wrong, dim=-1)
    dt, dw = (img * true).sum(-1), (img * wrong).sum(-1)
    correct = (ct > cw).double()
    retrieval = (_cos(img, true).argmax(dim=1) == torch.arange(n)).double().mean()
    suspects = [
        Suspect("count", correct.sum(),
                "you returned the NUMBER of correct choices; return the fraction (divide by N)."),
        Suspect("dot", (dt > dw).double().mean(),
                "you compared raw dot products; compare COSINE similarities (normalise the "
                "features first): a long wrong-caption vector must not win by its length."),
        Suspect("wrong_wins", (ct < cw).double().mean(),
                "you measured how often the WRONG caption wins; count the images whose TRUE "
                "caption is more similar than the wrong one."),
        Suspect("retrieval", retrieval,
                "you let each image choose among ALL the true captions of the batch; here each "
                "image chooses between ITS OWN two captions (true vs wrong), row by row."),
    ]
    if n > 1:
        compare_two_way_range(inputs, out)
    expect_close(_as_scalar(out), correct.mean(), "two_way_accuracy", atol=1e-6,
                 suspects=suspects, context=f"for {n} images")


CHECKS = Checks(
    Check("similarity_by_hand", make_no_inputs, run_hand, compare_hand, seeds=(0,)),
    Check("cosine_similarity_matrix_shape", make_cos_inputs, run_cos, compare_cos_shape, seeds=range(4)),
    Check("cosine_similarity_matrix_values", make_cos_inputs, run_cos, compare_cos_values,
          seeds=range(10, 14)),
    Check("clip_loss_basic", make_loss_equal_inputs, run_loss, compare_loss_basic, seeds=range(3),
          forbid=LOSS_ORACLES),
    Check("clip_loss_values", make_loss_inputs, run_loss, compare_loss_values, seeds=range(20, 25),
          forbid=LOSS_ORACLES),
    Check("embed_shape", make_embed_inputs, run_embed, compare_embed_shape, seeds=range(3)),
    Check("embed_values", make_embed_inputs, run_embed, compare_embed_values, seeds=range(3, 6)),
    Check("zero_shot_contract", make_zero_shot_inputs, run_zero_shot, compare_zero_shot_contract,
          seeds=range(4), forbid=ZERO_SHOT_ORACLES),
    Check("zero_shot_values", make_zero_shot_inputs, run_zero_shot, compare_zero_shot_values,
          seeds=range(8, 12), forbid=ZERO_SHOT_ORACLES),
    Check("two_way_accuracy_range", make_two_way_inputs, run_two_way, compare_two_way_range,
          seeds=range(4)),
    Check("two_way_accuracy_values", make_two_way_inputs, run_two_way, compare_two_way_values,
          seeds=range(30, 34)),
    module=__name__,
)
#: What a hidden test line calls: ``hidden.check("<name>", <student objects>)``.
check = CHECKS
