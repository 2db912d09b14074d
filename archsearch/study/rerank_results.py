"""The re-rank's results as the study records them (:mod:`archsearch.search.rerank` trains them): the re-rank's
recipe and the key a result is recorded under, the finished results of a config's recipe, and their standard error.
A result counts only while its recipe is the config's."""

from __future__ import annotations

import dataclasses
import math

import optuna

from archsearch.config.recipe import TRAINING_KEYS_LATER, TrainConfig
from archsearch.config.study_config import StudyConfig
from archsearch.config.study_schema import RerankConfig
from archsearch.study.study_record import RERANK_PREFIX

__all__ = ["PREFIX", "recipe", "recipe_key", "results", "finished", "standard_error"]


PREFIX = RERANK_PREFIX


def section(config: StudyConfig) -> RerankConfig:
    """The config's ``rerank`` section, for the functions that need one."""
    if config.rerank is None:
        raise ValueError(f"study {config.name!r} has no rerank section")
    return config.rerank


def recipe(config: StudyConfig) -> TrainConfig:
    """The re-rank's training recipe: the study's, with the re-rank's epochs and subset, no time cap."""
    r = section(config)
    t = config.training
    # a recipe counted in steps stays counted in steps, as much longer as the re-rank's epochs are than the search's
    steps = None if t.steps is None else math.ceil(t.steps * r.epochs / t.epochs)
    return dataclasses.replace(t, epochs=r.epochs, steps=steps, train_subset=r.train_subset, seconds=None)


def recipe_key(config: StudyConfig) -> dict:
    """What a result records as its recipe: a result counts for a study only while this equals the study's."""
    key = {k: v for k, v in dataclasses.asdict(recipe(config)).items()
           if not (k in TRAINING_KEYS_LATER and v is None)}  # results recorded before these keys still count
    folds = section(config).folds
    if folds:  # absent without folds: results recorded before folds existed still count
        key["folds"] = folds
    return key


def finished(value: object, want: dict) -> bool:
    """Whether a study attribute is a finished result of the re-rank recipe ``want``."""
    return isinstance(value, dict) and value.get("recipe") == want and "val_accuracy" in value


def results(study: optuna.Study, config: StudyConfig) -> dict[int, dict]:
    """The finished re-rank results of the config's recipe, by trial number ({} without ``rerank``)."""
    if config.rerank is None:
        return {}
    want = recipe_key(config)
    out = {}
    for key, value in study.user_attrs.items():
        if key.startswith(PREFIX) and finished(value, want):
            out[int(key[len(PREFIX):])] = value
    return out


def standard_error(values: list[float]) -> float | None:
    """The standard error of the mean of ``values`` (the sample standard deviation over the square root of their
    number); None for fewer than two."""
    k = len(values)
    if k < 2:
        return None
    mean = sum(values) / k
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k)
