"""archsearch: hardware-aware neural architecture search for small image classifiers (Optuna + PyTorch).

The pipeline, one module per stage:

- the YAML files: config (a study, validated by its declared schema in study_schema) and space (the search
  space's schema and sampling: YAML -> choices -> a sampled shape); schema holds what both declarations share
  (pydantic's errors as one located ConfigError, JSON Schema for editors); storage opens where the trials live
- fit (the shape's widths scaled to the budget) -> arch (the record) -> blocks -> build (record -> nn.Module)
  -> cost (MACs, params, activations); latency (lookup table, of latency_parts under a latency_key; measure:
  timing a built model in PyTorch or ONNX Runtime)
- data (splits, normalization, cache; readers: the dataset files; custom_reader: a `module:function`
  dataset) -> train -> objective (one trial)
- study (create or resume, run, workers; samplers; recovery: every trial ends with a verdict; rerank: the top
  candidates trained again; summary: the study in words)
- export (selection: which trials, retrained; preprocess: the input contract; codegen: model.py; card) and
  report (report_text, report_plots)
- cli (with latency_cli); text: the small helpers the CLI and its subcommands share
"""

from .arch import Arch, Stage, Stem
from .baselines import EFFNET_PAPER, effnet, effnet_paper, fit_to_budget, mobilenet_v1, shufflenet_v1
from .blocks import BLOCKS, Block, BlockSpec, get_block, register_block
from .build import build
from .config import StudyConfig, load_study_config, study_config_from_dict
from .cost import Cost, arch_cost
from .data import DATASETS, DataBundle, load_data
from .errors import ConfigError
from .export import load
from .fit import Fit, fit_shape
from .measure import measure_latency
from .objective import Objective
from .space import Shape, Space, load_space, sample_architectures, sample_shapes, suggest_architecture, suggest_shape
from .study import open_study, run
from .tally import Tally
from .train import TrainConfig, TrainingDiverged, TrainResult, train

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
