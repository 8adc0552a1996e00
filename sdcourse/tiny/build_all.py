"""Rebuild every tiny model from scratch with fixed seeds, then measure them and write the cards.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

Run: ``python -m sdcourse.tiny.build_all`` (``make tiny-models``). Order:

1. the tiny CLIP and the VAE, which do not depend on each other: on a machine with two or
   more cores they train at the same time in two processes with one torch thread each
   (small models use two cores better that way than one process with two threads); the
   VAE's phase 3, which starts long after the CLIP is done, then takes both cores;
2. the text-to-image pipeline, which needs both (the VAE's latent space and the CLIP's
   text tower as its frozen text encoder), with two threads;
3. the evaluation (``sdcourse.tiny.evaluate``), which writes the figures and model cards.

Writes to ``$SDCOURSE_MODELS_DIR`` (default ``data/models``) and records the wall time of
each stage in ``<models>/build_times.json``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from sdcourse.tiny import common


def _start(module: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(common.REPO_ROOT) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", f"sdcourse.tiny.{module}", *args], env=env,
                            cwd=str(common.REPO_ROOT))


def _wait(procs: dict[str, subprocess.Popen]) -> None:
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"[build_all] training failed: {', '.join(failed)} (see the log above)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-eval", action="store_true", help="train only")
    p.add_argument("--serial", action="store_true",
                   help="train the CLIP and the VAE one after the other (default: at the same time "
                        "when the machine has two or more cores)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    md = common.models_dir()
    clip_dir, sd_dir = md / "tiny-clip", md / "tiny-sd"
    total = common.Timer()
    times: dict = {}
    parallel = not a.serial and (os.cpu_count() or 1) >= 2
    clip_args = ("train_clip", "--out", str(clip_dir), "--threads", "1" if parallel else "2")
    # phase 3 of the VAE starts long after the CLIP is done: it takes both cores
    vae_args = ("train_vae", "--out", str(sd_dir / "vae"), "--threads", "1" if parallel else "2", "--photo-threads", "2")
    if parallel:
        _wait({"tiny CLIP": _start(*clip_args), "VAE": _start(*vae_args)})
    else:
        _wait({"VAE": _start(*vae_args)})
        _wait({"tiny CLIP": _start(*clip_args)})
    times["clip_s"] = common.read_json(clip_dir / "training_stats.json")["train_wall_s"]
    times["vae_s"] = common.read_json(sd_dir / "vae" / "training_stats.json")["train_wall_s"]
    times["clip_and_vae_wall_s"] = round(total(), 1)
    times["clip_and_vae_parallel"] = parallel
    _wait({"pipeline": _start("train_pipeline", "--out", str(sd_dir), "--clip", str(clip_dir), "--threads", "2")})
    times["pipeline_s"] = common.read_json(sd_dir / "training_stats.json")["train_wall_s"]
    times["train_total_s"] = round(total(), 1)
    times["train_cpu_s"] = common.cpu_s(children=True)  # CPU time of the trainers: what a shared machine does not change
    common.write_json(md / "build_times.json", times)
    print(f"[build_all] trained in {times['train_total_s']} s: {times}", flush=True)
    if not a.skip_eval:
        _wait({"evaluation": _start("evaluate")})
        times["with_eval_s"] = round(total(), 1)
        times["with_eval_cpu_s"] = common.cpu_s(children=True)
        common.write_json(md / "build_times.json", times)
    print(f"[build_all] done in {total():.0f} s", flush=True)


if __name__ == "__main__":
    main()
