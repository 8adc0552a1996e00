"""Hidden checks for 6-3-3 "CLIP" (instructor-only).

Oracles: the cosine-similarity formula (explicit norms), open_clip's ``ClipLoss`` (fed
L2-normalised features: ClipLoss does not normalise), open_clip's
``build_zero_shot_classifier`` on a seeded toy CLIP (``sdcourse.clip_lab.ToyCLIP``, other
seeds and sizes than the visible tests), so grades never depend on the student's model tier.
Every check is make-inputs / run-student / compare (see ``common``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.zero_shot_classifier import build_zero_shot_classifier

from sdcourse import clip_lab

from .common import (CheckFailed, Suspect, assert_untampered, expect_close, expect_dtype,
                     expect_shape, quiet, run_check, seeded)

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

def check_similarity_by_hand(S_hand) -> None:
    with quiet():
        assert_untampered()
        try:
            S = torch.as_tensor(S_hand, dtype=torch.float64)
        except Exception:
            raise CheckFailed("S_hand should be a 4x4 nested list of numbers "
                              "(rows = images, columns = texts).") from None
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


def _run_cos(f, i):
    return f(i["a"].clone(), i["b"].clone())


def check_cosine_similarity_matrix_shape(f) -> None:
    run_check(make_cos_inputs, lambda i: _run_cos(f, i), compare_cos_shape, seeds=range(4))


def check_cosine_similarity_matrix_values(f) -> None:
    run_check(make_cos_inputs, lambda i: _run_cos(f, i), compare_cos_values, seeds=range(10, 14))


# --------------------------------------------------------------------- ex2 clip loss

def make_loss_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, d = [(5, 7), (1, 10), (9, 3), (3, 33), (6, 5)][seed % 5]
    img = torch.randn(n, d, generator=g) * (0.3 + 3 * torch.rand(n, 1, generator=g))
    # partly aligned pairs, so the loss is neither ~0 nor ~ln N
    txt = 0.8 * img + torch.randn(n, d, generator=g) * (0.3 + 3 * torch.rand(n, 1, generator=g))
    scale = [14.2857, 3.0, 100.0, 1.0, 7.5][seed % 5]
    return {"image_features": img, "text_features": txt, "logit_scale": torch.tensor(scale)}


def run_loss(f, i):
    return f(i["image_features"].clone(), i["text_features"].clone(), i["logit_scale"].clone())


def _ce_parts(img, txt, scale):
    img, txt = F.normalize(img.double(), dim=-1), F.normalize(txt.double(), dim=-1)
    logits = scale.double() * img @ txt.T
    labels = torch.arange(len(img))
    return logits, labels


def compare_loss_basic(inputs: dict, out) -> None:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"clip_loss should return a torch.Tensor (a scalar), got {type(out).__name__}")
    expect_shape(out, (), "clip_loss(...)", "The loss is ONE number for the batch: average the "
                 "cross-entropy over rows (and the two directions), do not return per-example values.")


def compare_loss_values(inputs: dict, out) -> None:
    compare_loss_basic(inputs, out)
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


def check_clip_loss_basic(f) -> None:
    run_check(make_loss_inputs, lambda i: run_loss(f, i), compare_loss_basic,
              seeds=range(5), forbidden=LOSS_ORACLES)


def check_clip_loss_values(f) -> None:
    run_check(make_loss_inputs, lambda i: run_loss(f, i), compare_loss_values,
              seeds=range(20, 25), forbidden=LOSS_ORACLES)


# --------------------------------------------------------------------- ex3 embeddings

def make_embed_inputs(seed: int) -> dict:
    n, k, dim = [(3, 2, 5), (1, 4, 7), (6, 1, 9)][seed % 3]
    model, preprocess, tokenizer = clip_lab.toy_clip(seed=100 + seed, embed_dim=dim,
                                                     image_size=[8, 6, 10][seed % 3])
    words = ["red", "blue", "green", "circle", "square", "star", "small", "large"]
    texts = [f"a {words[(seed + j) % 3]} {words[3 + (seed + 2 * j) % 3]} {words[6 + j % 2]}" for j in range(k)]
    return {"model": model, "preprocess": preprocess, "tokenizer": tokenizer,
            "images": clip_lab.toy_images(n, seed=200 + seed), "texts": texts}


def run_embed(embed_images, embed_texts, i):
    return {"images": embed_images(i["model"], i["preprocess"], list(i["images"])),
            "texts": embed_texts(i["model"], i["tokenizer"], list(i["texts"]))}


def _expected_embeddings(i: dict) -> dict:
    with torch.no_grad():
        x = torch.stack([i["preprocess"](im) for im in i["images"]])
        return {"images": i["model"].encode_image(x), "texts": i["model"].encode_text(i["tokenizer"](i["texts"]))}


def compare_embed_shape(inputs: dict, out: dict) -> None:
    raw = _expected_embeddings(inputs)
    for key, fn in (("images", "embed_images"), ("texts", "embed_texts")):
        expect_shape(out[key], tuple(raw[key].shape), f"{fn}(...) on {len(raw[key])} {key}",
                     "One row per input, embed_dim columns.")
        if out[key].requires_grad:
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


def check_embed_shape(embed_images, embed_texts) -> None:
    run_check(make_embed_inputs, lambda i: run_embed(embed_images, embed_texts, i),
              compare_embed_shape, seeds=range(3))


def check_embed_values(embed_images, embed_texts) -> None:
    run_check(make_embed_inputs, lambda i: run_embed(embed_images, embed_texts, i),
              compare_embed_values, seeds=range(3, 6))


# --------------------------------------------------------------------- ex4 zero-shot

def make_zero_shot_inputs(seed: int) -> dict:
    n, k, dim = [(5, 3, 7), (1, 4, 5), (4, 6, 9), (7, 2, 11)][seed % 4]
    model, preprocess, tokenizer = clip_lab.toy_clip(seed=300 + seed, embed_dim=dim,
                                                     scale=[7.0, 25.0, 3.0, 12.0][seed % 4])
    names = ["red circle", "blue square", "green star", "orange triangle", "purple circle",
             "yellow square"]
    template = ["a photo of a {}", "a drawing of the {} shape", "{} on a plain background",
                "an image of a {}"][seed % 4]
    return {"model": model, "preprocess": preprocess, "tokenizer": tokenizer,
            "images": clip_lab.toy_images(n, seed=400 + seed, size=(9 + seed % 3, 12)),
            "class_names": names[:k] if seed % 2 else names[-k:], "template": template}


def run_zero_shot(f, i):
    return f(i["model"], i["preprocess"], i["tokenizer"], list(i["images"]),
             list(i["class_names"]), i["template"])


def _zero_shot_reference(i: dict) -> dict:
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
    n, k = len(inputs["images"]), len(inputs["class_names"])
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


def check_zero_shot_contract(f) -> None:
    run_check(make_zero_shot_inputs, lambda i: run_zero_shot(f, i), compare_zero_shot_contract,
              seeds=range(4), forbidden=ZERO_SHOT_ORACLES)


def check_zero_shot_values(f) -> None:
    run_check(make_zero_shot_inputs, lambda i: run_zero_shot(f, i), compare_zero_shot_values,
              seeds=range(8, 12), forbidden=ZERO_SHOT_ORACLES)


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


def run_two_way(f, i):
    return f(i["image_features"].clone(), i["true_features"].clone(), i["wrong_features"].clone())


def _as_scalar(out) -> torch.Tensor:
    try:
        return torch.tensor(float(out), dtype=torch.float64)
    except Exception:
        raise CheckFailed(f"two_way_accuracy should return one number (a float), got "
                          f"{type(out).__name__}") from None


def compare_two_way_range(inputs: dict, out) -> None:
    v = float(_as_scalar(out))
    n = len(inputs["image_features"])
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise CheckFailed(f"two_way_accuracy returned {v:g} for {n} images; an accuracy is a "
                          "fraction in [0, 1] (divide the number of correct choices by N).")


def compare_two_way_values(inputs: dict, out) -> None:
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


def check_two_way_accuracy_range(f) -> None:
    run_check(make_two_way_inputs, lambda i: run_two_way(f, i), compare_two_way_range,
              seeds=range(4))


def check_two_way_accuracy_values(f) -> None:
    run_check(make_two_way_inputs, lambda i: run_two_way(f, i), compare_two_way_values,
              seeds=range(30, 34))
