"""Instructor build tooling for the tiny model tier: trainers, evaluation, model cards.

Notebooks never import this package (they load the tiny models through ``sdcourse.models``
and judge images with ``sdcourse.shapes``); it exists to rebuild and re-measure the models
shipped in ``data/models``:

    make tiny-models   = python -m sdcourse.tiny.build_all   (train all three, then evaluate)
    make eval-tiny     = python -m sdcourse.tiny.evaluate    (figures, model cards, README table)

Modules: ``train_clip``, ``train_vae``, ``train_pipeline`` (the trainers), ``convert`` (the
CLIP text tower as a transformers ``CLIPTextModel``), ``tokenizer`` (vendored CLIP BPE files),
``evaluate`` (every figure), ``floors`` (the quality floors, defined once), ``cards`` (model
cards and README table from ``templates/``), ``common`` (paths, photos, PSNR).
Helpers that would answer a lesson exercise in one call are private (leading underscore).
"""
