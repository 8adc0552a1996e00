"""Rebuild every tiny model from scratch with fixed seeds, then measure them and write the cards.

Run: ``python -m sdcourse.tiny.build_all`` (``make tiny-models``). Order: VAE (the pipeline
needs it), text-to-image pipeline, CLIP (the pipeline's evaluation judge), evaluation.
Writes ``<models>/build_times.json`` with the wall time of each stage.
"""
from __future__ import annotations

import argparse
import os

from sdcourse.tiny import common


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-eval", action="store_true", help="train only")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sdcourse.tiny import evaluate, train_clip, train_pipeline, train_vae

    md = common.models_dir()
    total = common.Timer()
    times = {}
    times["vae_s"] = train_vae.train(out=md / "tiny-sd" / "vae")["train_wall_s"]
    times["pipeline_s"] = train_pipeline.train(out=md / "tiny-sd")["train_wall_s"]
    times["clip_s"] = train_clip.train(out=md / "tiny-clip")["train_wall_s"]
    times["train_total_s"] = round(total(), 1)
    common.write_json(md / "build_times.json", times)
    print(f"[build_all] trained in {times['train_total_s']} s: {times}", flush=True)
    if not a.skip_eval:
        evaluate.main([])
        times["with_eval_s"] = round(total(), 1)
        common.write_json(md / "build_times.json", times)
    print(f"[build_all] done in {total():.0f} s", flush=True)


if __name__ == "__main__":
    main()
