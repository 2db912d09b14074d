"""How long a recipe trains: ``training.steps`` against ``epochs``, the note a search prints when a recipe gives a
network too few optimizer steps, and the keys that came later, which leave the studies made before unchanged."""

from __future__ import annotations

import dataclasses

from archsearch.config.recipe import (
    MIN_STEPS,
    TRAINING_KEYS_LATER,
    TrainConfig,
    batches_per_epoch,
    planned_steps,
    recipe_note,
)
from archsearch.config.study_config import load_study_config
from archsearch.study import rerank_results


def test_planned_steps_count_epochs_of_batches_or_the_steps_given() -> None:
    assert batches_per_epoch(TrainConfig(batch_size=64), 400) == 7
    assert planned_steps(TrainConfig(epochs=4, batch_size=64), 400) == 28
    assert planned_steps(TrainConfig(epochs=4, steps=400, batch_size=64), 400) == 400
    assert planned_steps(TrainConfig(epochs=2, batch_size=32, train_subset=100), 10_000) == 8


def test_a_recipe_too_short_for_the_data_is_named() -> None:
    note = recipe_note(TrainConfig(epochs=4, batch_size=64), 400)
    assert note is not None and note.startswith("each trial trains 28 optimizer steps (4 epoch(s) of 7 batch(es) "
                                                "of 64 on 400 images)")
    assert "set `training: {steps: 400}`" in note
    assert recipe_note(TrainConfig(steps=MIN_STEPS), 400) is None
    assert recipe_note(TrainConfig(epochs=6, batch_size=32), 1150) is None  # the quickstart: 216 steps
    assert "training.steps 50" in (recipe_note(TrainConfig(steps=50), 10_000) or "")


def test_keys_that_came_later_leave_a_studys_fingerprint_and_rerank_recipe_as_they_were(write_study) -> None:
    config = load_study_config(write_study(rerank={"top": 2, "epochs": 3}, training={"epochs": 5}))
    training = config.fingerprint()["training"]
    assert set(training) == {f.name for f in dataclasses.fields(TrainConfig)} - set(TRAINING_KEYS_LATER)
    assert not set(TRAINING_KEYS_LATER) & set(rerank_results.recipe_key(config))
    weighted = load_study_config(write_study(rerank={"top": 2, "epochs": 3},
                                             training={"epochs": 5, "steps": 90, "class_weight": "balanced"}))
    assert weighted.fingerprint()["training"]["steps"] == 90
    assert weighted.fingerprint()["training"]["class_weight"] == "balanced"
    assert rerank_results.recipe(weighted).steps == 54  # 90 x 3 / 5: as much longer as the re-rank's epochs are
