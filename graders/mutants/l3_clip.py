"""Known-wrong answers for 6-3-3, one per misconception; each must lose its exercise's points."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-3-clip"

HAND = """S_hand = [[0.96, 0.00, 0.67, 0.36],
              [0.00, 1.00, 0.67, 0.80],
              [0.67, 0.67, 0.89, 0.73],
              [0.64, 0.60, 0.93, 0.96]]"""
HAND_T = """S_hand = [[0.96, 0.00, 0.67, 0.64],
              [0.00, 1.00, 0.67, 0.60],
              [0.67, 0.67, 0.89, 0.93],
              [0.36, 0.80, 0.73, 0.96]]"""
HAND_DOT = """S_hand = [[24, 0, 10, 9],
              [0, 2, 4, 8],
              [10, 2, 8, 11],
              [16, 3, 14, 24]]"""
HAND_ONE_NORM = """S_hand = [[4.80, 0.00, 2.00, 1.80],
              [0.00, 1.00, 2.00, 4.00],
              [3.33, 0.67, 2.67, 3.67],
              [3.20, 0.60, 2.80, 4.80]]"""
NORM_A = "a = a / a.norm(dim=-1, keepdim=True)"
NORM_B = "b = b / b.norm(dim=-1, keepdim=True)"
LOGITS = "logits_per_image = logit_scale * image_features @ text_features.T"
LOSS = "return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2"
IMG_RET = "return F.normalize(image_features.float(), dim=-1).cpu()"
TXT_RET = "return F.normalize(text_features.float(), dim=-1).cpu()"
ZS_LOGITS = "logits = model.logit_scale.exp() * image @ text.T"
TW_TRUE = "F.normalize(true_features, dim=-1)"
TW_WRONG = "F.normalize(wrong_features, dim=-1)"

MUTANTS = [
    # ex1a / ex1b: cosine similarity by hand, then as a function
    Mutant("hand_transposed", "ex1a_similarity_by_hand", ((HAND, HAND_T),), "transposed"),
    Mutant("hand_dot_products", "ex1a_similarity_by_hand", ((HAND, HAND_DOT),), "both"),
    Mutant("hand_image_norm_only", "ex1a_similarity_by_hand", ((HAND, HAND_ONE_NORM),), "both"),
    Mutant("no_normalisation", "ex1b_cosine_similarity_matrix", ((NORM_A, "a = a"), (NORM_B, "b = b")),
           "normalise"),
    Mutant("normalise_a_only", "ex1b_cosine_similarity_matrix", ((NORM_B, "b = b"),), "BOTH"),
    Mutant("normalise_wrong_axis", "ex1b_cosine_similarity_matrix", (("dim=-1", "dim=0"),), "wrong axis"),
    Mutant("output_transposed", "ex1b_cosine_similarity_matrix", (("return a @ b.T", "return b @ a.T"),),
           "transposed"),
    # ex2: the symmetric contrastive loss
    Mutant("no_l2_normalisation", "ex2_clip_loss",
           (("image_features = F.normalize(image_features, dim=-1)", "image_features = image_features"),
            ("text_features = F.normalize(text_features, dim=-1)", "text_features = text_features")),
           "L2-normalise"),
    Mutant("one_direction_only", "ex2_clip_loss", ((LOSS, "return F.cross_entropy(logits_per_image, labels)"),),
           "symmetric"),
    Mutant("labels_not_diagonal", "ex2_clip_loss",
           (("torch.arange(len(image_features), device=image_features.device)",
             "torch.zeros(len(image_features), dtype=torch.long, device=image_features.device)"),),
           "diagonal"),
    Mutant("temperature_divided", "ex2_clip_loss",
           ((LOGITS, "logits_per_image = image_features @ text_features.T / logit_scale"),), "multiplies"),
    Mutant("scale_exponentiated_again", "ex2_clip_loss",
           ((LOGITS, "logits_per_image = logit_scale.exp() * image_features @ text_features.T"),),
           "already exponentiated"),
    # ex3: embeddings of the loaded model
    Mutant("images_not_normalised", "ex3_embed", ((IMG_RET, "return image_features.float().cpu()"),),
           "normalise each row"),
    Mutant("texts_normalised_over_batch", "ex3_embed",
           ((TXT_RET, "return F.normalize(text_features.float(), dim=0).cpu()"),), "batch axis"),
    Mutant("gradients_kept", "ex3_embed",
           (("    with torch.no_grad():\n        text_features = model.encode_text(tokens)",
             "    text_features = model.encode_text(tokens)"),), "no_grad"),
    # ex4: zero-shot classification
    Mutant("no_prompt_template", "ex4_zero_shot_classify",
           (("prompts = [template.format(name) for name in class_names]", "prompts = list(class_names)"),),
           "template"),
    Mutant("softmax_over_images", "ex4_zero_shot_classify",
           (("logits.softmax(dim=1)", "logits.softmax(dim=0)"),), "over the classes"),
    Mutant("argmax_over_images", "ex4_zero_shot_classify",
           (("probabilities.argmax(dim=1)", "probabilities.argmax(dim=0)"),), "argmax over the classes"),
    Mutant("temperature_divided", "ex4_zero_shot_classify",
           ((ZS_LOGITS, "logits = image @ text.T / model.logit_scale.exp()"),), "MULTIPLIES"),
    Mutant("log_scale_not_exponentiated", "ex4_zero_shot_classify",
           ((ZS_LOGITS, "logits = model.logit_scale * image @ text.T"),), "LOG"),
    # ex5: measuring the limitations
    Mutant("raw_dot_products", "ex5_two_way_accuracy",
           ((TW_TRUE, "true_features"), (TW_WRONG, "wrong_features")), "cosine"),
    Mutant("count_not_fraction", "ex5_two_way_accuracy",
           ((".float().mean().item()", ".float().sum().item()"),), "fraction"),
    Mutant("wrong_caption_wins", "ex5_two_way_accuracy", (("sim_true > sim_wrong", "sim_true < sim_wrong"),),
           "TRUE caption"),
]
