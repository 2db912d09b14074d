"""archsearch: hardware-aware neural architecture search for small image classifiers (Optuna + PyTorch).

The folders, one layer each, in the order a search uses them (a layer imports only those before it):

- ``core``: located errors, the pydantic helpers, text helpers, Ctrl-C at safe points;
- ``network``: the record (``Arch``), the blocks, the builder, the analytic cost and memory;
- ``space``: the search space's file and sampling, budget fitting, the seed baselines;
- ``data``: the dataset readers, the cache of decoded images, the in-memory bundle, the preprocessing;
- ``config``: the study file (its declared schema, the typed config), the training recipe, the storage;
- ``latency``: timing a built network, the lookup table of its parts;
- ``search``: training, the objective (one trial), the study and its workers, samplers, recovery, re-rank,
  progress and the summary;
- ``report``: a study's top trials and Pareto front as text, PNG and HTML;
- ``export``: which trials, retrained, written as a self-contained folder;
- ``cli``: the command line, over all of them.
"""

from archsearch.config.recipe import TrainConfig
from archsearch.config.study_config import StudyConfig, load_study_config, study_config_from_dict
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle, load_data
from archsearch.data.readers import DATASETS
from archsearch.export.folder import load
from archsearch.latency.measure import measure_latency
from archsearch.network.arch import Arch, Stage, Stem
from archsearch.network.blocks import BLOCKS, Block, BlockSpec, get_block, register_block
from archsearch.network.build import build
from archsearch.network.cost import Cost, arch_cost
from archsearch.network.tally import Tally
from archsearch.search.objective import Objective
from archsearch.search.study import open_study, run
from archsearch.space.baselines import EFFNET_PAPER, effnet, effnet_paper, fit_to_budget, mobilenet_v1, shufflenet_v1
from archsearch.space.fit import Fit, fit_shape
from archsearch.space.search_space import (
    Shape,
    Space,
    load_space,
    sample_architectures,
    sample_shapes,
    suggest_architecture,
    suggest_shape,
)
from archsearch.training.train import TrainingDiverged, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "BLOCKS",
    "Block",
    "BlockSpec",
    "ConfigError",
    "Cost",
    "DATASETS",
    "DataBundle",
    "EFFNET_PAPER",
    "Fit",
    "Objective",
    "Shape",
    "Space",
    "Stage",
    "Stem",
    "StudyConfig",
    "Tally",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "arch_cost",
    "build",
    "effnet",
    "effnet_paper",
    "fit_shape",
    "fit_to_budget",
    "get_block",
    "load",
    "load_data",
    "load_space",
    "load_study_config",
    "measure_latency",
    "mobilenet_v1",
    "open_study",
    "register_block",
    "run",
    "sample_architectures",
    "sample_shapes",
    "shufflenet_v1",
    "study_config_from_dict",
    "suggest_architecture",
    "suggest_shape",
    "train",
]
