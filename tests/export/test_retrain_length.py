"""An export's retrain trains as long as it is told: ``--epochs E`` on a study whose recipe counts steps trains E
epochs, and without ``--epochs`` the recipe's steps."""

from __future__ import annotations

import pytest

from archsearch.config.assemble import load_config_data
from archsearch.config.recipe import batches_per_epoch
from archsearch.config.study_config import load_study_config
from archsearch.export.selection import retrain
from archsearch.network.arch import Arch

pytestmark = pytest.mark.slow  # retrains


def test_epochs_replace_the_recipes_steps(write_study) -> None:
    config = load_study_config(write_study(training={"epochs": 1, "steps": 5, "batch_size": 64}))
    _, data = load_config_data(config)
    arch = Arch.from_dict({"in_chs": 1, "resolution": 8, "num_classes": 4, "stem": {"type": "conv", "out_chs": 8},
                           "stages": [{"block": "dwsep", "out_chs": 16, "stride": 2}], "head": "gap"})
    _, by_steps = retrain(arch, config, data)  # 5 steps of 4 batches an epoch: 2 epochs, the last one part-way
    assert batches_per_epoch(config.training, len(data.y_train)) == 4 and by_steps["epochs"] == 2
    _, by_epochs = retrain(arch, config, data, epochs=3)
    assert by_epochs["epochs"] == 3 and by_epochs["training"]["steps"] is None
