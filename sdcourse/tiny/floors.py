"""The quality floors of the tiny models, defined once.

Instructor build tooling; notebooks never import this module. The model cards
(``sdcourse.tiny.cards``), README.md's status table (written by ``make eval-tiny``) and
``tests/test_tiny_models.py`` all read their thresholds from ``FLOORS``.

Each floor names the figure it bounds as a path into ``eval_results.json`` (written by
``sdcourse.tiny.evaluate``) or a small function of it, so ``check(results)`` can tell which
are met.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Floor:
    key: str
    model: str  # "tiny CLIP", "tiny VAE", "tiny pipeline", "all"
    text: str  # what is measured, for people
    op: str  # ">=" or "<="
    value: float
    unit: str
    measure: Callable[[dict], float]
    #: 1: the shipped models must meet it (``tests/test_tiny_models.py`` asserts it);
    #: 2: a target of the tiny tier's second edition, measured and reported (met or NOT met) by
    #: ``make eval-tiny`` and the model cards, asserted once the retrained models ship.
    edition: int = 1

    def met(self, results: dict) -> bool:
        v = self.measure(results)
        return v >= self.value if self.op == ">=" else v <= self.value

    def bound(self) -> str:
        """The floor as people read it, e.g. ">= 22 dB"."""
        return f"{self.op} {self.value:g}{(' ' + self.unit) if self.unit else ''}"


def _adh(results: dict, g: str) -> float:
    return results["pipeline"]["adherence"][g]["adherence"]


def _clipped(results: dict, g: str) -> float:
    return results["pipeline"]["adherence"][g]["clipped_fraction"]


FLOORS: tuple[Floor, ...] = (
    Floor("clip_zero_shot", "tiny CLIP", "zero-shot top-1 on held-out shapes-world scenes", ">=", 0.90, "",
          lambda r: r["clip"]["zero_shot"]["top1"]),
    Floor("clip_other_renderer_shape", "tiny CLIP", "zero-shot shape accuracy on scenes drawn by a different renderer",
          ">=", 0.85, "", lambda r: r["clip"]["other_renderer"]["shape_acc"]),
    Floor("clip_relation_swap", "tiny CLIP", "relation-swap accuracy stays near chance (the limitation lesson 6-3-3 shows)",
          "<=", 0.70, "", lambda r: r["clip"]["relation_swap"]["acc"]),
    Floor("vae_reserved_psnr_256", "tiny VAE", "PSNR on each of matplotlib's two sample photos at 256x256 (never trained on)",
          ">=", 22.0, "dB", lambda r: r["vae"]["reserved"]["min_psnr_256"], edition=2),
    Floor("vae_reserved_colour_256", "tiny VAE", "colour cast on those photos at 256x256 (mean abs. per-channel mean error, [0, 1])",
          "<=", 0.03, "", lambda r: r["vae"]["reserved"]["max_colour_error_256"], edition=2),
    Floor("vae_reserved_psnr_512", "tiny VAE", "PSNR on each of those photos at 512x512", ">=", 22.0, "dB",
          lambda r: r["vae"]["reserved"]["min_psnr_512"], edition=2),
    Floor("vae_shapes_psnr", "tiny VAE", "PSNR on held-out shapes-world scenes (64x64)", ">=", 25.0, "dB",
          lambda r: r["vae"]["shapes_psnr"]),
    Floor("pipeline_adherence_7.5", "tiny pipeline", "adherence (colour and shape plainly right) at guidance 7.5",
          ">=", 0.85, "", lambda r: _adh(r, "7.5")),
    Floor("pipeline_guidance_gain", "tiny pipeline", "adherence at guidance 7.5 minus adherence at guidance 1",
          ">=", 0.15, "", lambda r: _adh(r, "7.5") - _adh(r, "1.0")),
    Floor("vae_photo_strips_psnr", "tiny VAE", "PSNR on held-out 64x64 crops of the training photos", ">=", 20.0, "dB",
          lambda r: r["vae"]["photos_psnr"]),
    Floor("pipeline_adherence_3", "tiny pipeline", "adherence (colour and shape plainly right) at guidance 3",
          ">=", 0.70, "", lambda r: _adh(r, "3.0")),
    Floor("pipeline_guidance_gain_3", "tiny pipeline", "adherence at guidance 3 minus adherence at guidance 1",
          ">=", 0.15, "", lambda r: _adh(r, "3.0") - _adh(r, "1.0")),
    Floor("pipeline_oversaturation", "tiny pipeline", "clipped channel values at guidance 20 divided by those at 7.5",
          ">=", 2.0, "x", lambda r: _clipped(r, "20.0") / max(_clipped(r, "7.5"), 1e-9)),
    Floor("pipeline_sampling_s", "tiny pipeline", "25 DDIM steps at 64x64, one image, CPU", "<=", 1.0, "s",
          lambda r: r["pipeline"]["sampling_time_s"]),
    Floor("load_s", "all", "slowest load of the three (offline, after imports)", "<=", 2.0, "s",
          lambda r: max(r["runtime"][k] for k in ("clip_load_s", "vae_load_s", "pipeline_load_s"))),
    Floor("peak_memory_mb", "all", "peak memory of a process loading all three and sampling", "<=", 2048, "MB",
          lambda r: r["runtime"]["peak_rss_mb"]),
    Floor("weights_mb", "all", "size of data/models", "<=", 60, "MB", lambda r: r["weights_mb"]),
    Floor("build_minutes", "all", "`make tiny-models` (training + evaluation) on the 2-core build machine", "<=", 60,
          "min", lambda r: (r["build_times"]["train_total_s"] + r["eval_wall_s"]) / 60, edition=2),
)
BY_KEY = {f.key: f for f in FLOORS}
SHIPPED = tuple(f for f in FLOORS if f.edition == 1)
TARGETS = tuple(f for f in FLOORS if f.edition == 2)


def check(results: dict) -> list[tuple[Floor, float | None, bool]]:
    """(floor, measured value or None when not measured, met) for every floor."""
    out = []
    for f in FLOORS:
        try:
            v = float(f.measure(results))
        except (KeyError, TypeError, ZeroDivisionError):
            out.append((f, None, False))
            continue
        out.append((f, v, f.met(results)))
    return out
