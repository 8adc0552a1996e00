"""Vendor the CLIP BPE tokenizer as Hugging Face ``CLIPTokenizer`` files, offline.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

open_clip ships the original CLIP merges file (``open_clip/bpe_simple_vocab_16e6.txt.gz``).
From it we build ``vocab.json`` and ``merges.txt`` exactly the way OpenAI's / HF's
``openai/clip-vit-large-patch14`` tokenizer files were made (256 byte tokens, the same with
``</w>``, 48,894 merges, then ``<|startoftext|>`` and ``<|endoftext|>``: 49,408 ids), plus
the ``tokenizer_config.json`` / ``special_tokens_map.json`` that SD 1.x uses (padding and
unknown token = ``<|endoftext|>``).

Load the result with ``CLIPTokenizer.from_pretrained(folder)``. (Do not build it with
``CLIPTokenizer(vocab_file=..., merges_file=...)``: in transformers 5 that silently gives a
2-token vocabulary.)

Run: ``python -m sdcourse.tiny.tokenizer OUT_DIR [--max-length 77]``.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """(vocab token -> id, merge lines) from open_clip's bundled BPE file."""
    import open_clip

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_tokenizer(out: Path, max_length: int = 77) -> Path:
    """Write a complete HF CLIP tokenizer folder to ``out`` and return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # a tokenizer.json left by an earlier save would shadow these files when transformers loads the folder
    (out / "tokenizer.json").unlink(missing_ok=True)
    vocab, merges = build_vocab_and_merges()
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def check_against_open_clip(folder: Path, texts: list[str]) -> None:
    """Raise AssertionError unless HF and open_clip give the same ids (before padding)."""
    import open_clip
    from transformers import CLIPTokenizer

    hf = CLIPTokenizer.from_pretrained(str(folder))
    oc = open_clip.tokenizer.SimpleTokenizer()
    for t in texts:
        a = hf(t).input_ids
        b = [oc.sot_token_id] + oc.encode(t) + [oc.eot_token_id]
        assert a == b, f"tokenizers disagree on {t!r}: HF {a} vs open_clip {b}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--max-length", type=int, default=77)
    a = p.parse_args(argv)
    folder = write_tokenizer(a.out, a.max_length)
    check_against_open_clip(folder, ["a red circle left of a blue square", "Three ORANGE stars!"])
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
