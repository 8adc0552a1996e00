"""Turn an open_clip CLIP's text tower into a transformers ``CLIPTextModel``.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

Stable Diffusion 1.x does not train its text encoder: it borrows the text tower of a CLIP
(OpenAI's ViT-L/14) and keeps it frozen. The tiny pipeline does the same with the tiny
CLIP: this module copies the tiny CLIP's text-tower weights into the class SD's pipeline
uses (``transformers.CLIPTextModel``), so that ``StableDiffusionPipeline`` can load it, and
checks that both give the same per-token hidden states.

The two implementations are the same network with different names::

    open_clip                              transformers CLIPTextModel
    token_embedding                        embeddings.token_embedding
    positional_embedding                   embeddings.position_embedding
    transformer.resblocks.i.ln_1 / ln_2    encoder.layers.i.layer_norm1 / layer_norm2
    ...attn.in_proj_weight (q; k; v)       encoder.layers.i.self_attn.q_proj / k_proj / v_proj
    ...attn.out_proj                       encoder.layers.i.self_attn.out_proj
    ...mlp.c_fc / mlp.c_proj               encoder.layers.i.mlp.fc1 / fc2
    ln_final                               final_layer_norm

Both use a causal attention mask, so a token's hidden state depends only on the tokens
before it (padding never changes the states of the prompt's own tokens). SD's
cross-attention reads ``last_hidden_state``: every token's state after ``final_layer_norm``.
The CLIP-specific ``text_projection`` (used only for the pooled contrastive embedding) is
not part of ``CLIPTextModel`` and is not copied.
"""
from __future__ import annotations

import torch


def text_config_of(model, bos_token_id: int = 49406, eos_token_id: int = 49407):
    """The ``CLIPTextConfig`` matching an open_clip CLIP's text tower."""
    from transformers import CLIPTextConfig

    blocks = model.transformer.resblocks
    width = model.token_embedding.weight.shape[1]
    act = blocks[0].mlp.gelu
    if isinstance(act, torch.nn.GELU):
        hidden_act = "gelu" if act.approximate == "none" else "gelu_pytorch_tanh"
    else:  # open_clip's QuickGELU
        hidden_act = "quick_gelu"
    return CLIPTextConfig(
        vocab_size=model.token_embedding.weight.shape[0], hidden_size=width,
        intermediate_size=blocks[0].mlp.c_fc.weight.shape[0], num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads, max_position_embeddings=model.positional_embedding.shape[0],
        hidden_act=hidden_act, layer_norm_eps=model.ln_final.eps, projection_dim=model.text_projection.shape[1],
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id)


@torch.no_grad()
def clip_text_encoder(model):
    """A ``transformers.CLIPTextModel`` holding a copy of ``model``'s text-tower weights."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(text_config_of(model)).eval()
    tm = getattr(te, "text_model", te)  # transformers 5 flattened CLIPTextModel
    tm.embeddings.token_embedding.weight.copy_(model.token_embedding.weight)
    tm.embeddings.position_embedding.weight.copy_(model.positional_embedding)
    for src, dst in zip(model.transformer.resblocks, tm.encoder.layers):
        dst.layer_norm1.load_state_dict(src.ln_1.state_dict())
        dst.layer_norm2.load_state_dict(src.ln_2.state_dict())
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), src.attn.in_proj_weight.chunk(3),
                              src.attn.in_proj_bias.chunk(3)):
            getattr(dst.self_attn, name).weight.copy_(w)
            getattr(dst.self_attn, name).bias.copy_(b)
        dst.self_attn.out_proj.load_state_dict(src.attn.out_proj.state_dict())
        dst.mlp.fc1.load_state_dict(src.mlp.c_fc.state_dict())
        dst.mlp.fc2.load_state_dict(src.mlp.c_proj.state_dict())
    tm.final_layer_norm.load_state_dict(model.ln_final.state_dict())
    return te


@torch.no_grad()
def open_clip_token_states(model, ids: torch.Tensor) -> torch.Tensor:
    """Per-token hidden states of an open_clip text tower after ``ln_final``: (B, L, width)."""
    x = model.token_embedding(ids) + model.positional_embedding[: ids.shape[1]]
    mask = model.attn_mask[: ids.shape[1], : ids.shape[1]] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    return model.ln_final(x)


@torch.no_grad()
def max_state_difference(model, text_encoder, ids: torch.Tensor) -> float:
    """Largest absolute difference between the two encoders' token states for ``ids``."""
    a = open_clip_token_states(model, ids)
    b = text_encoder(ids).last_hidden_state
    return float((a - b).abs().max())
