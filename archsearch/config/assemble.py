"""A study's space and data as its config names them: the one place a dataset is assembled from a study file
(the search, the export and the command line call it), and the notes it prints before a run."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from archsearch.config.recipe import TrainConfig, recipe_note
from archsearch.config.study_config import StudyConfig
from archsearch.data.bundle import DataBundle, load_data
from archsearch.space.search_space import Space

__all__ = ["load_config_data", "print_notes"]


def load_config_data(config: StudyConfig) -> tuple[Space, DataBundle]:
    space = config.load_space()
    ds = config.dataset
    # the folder dataset's keys, where set (`resolution`: what images of several sizes are resized to)
    folder: dict[str, Any] = {
        k: v for k, v in (("channels", ds.channels), ("test_fraction", ds.test_fraction)) if v is not None
    }
    if ds.name == "folder":
        folder["resolution"] = config.resolution
    if ds.bad_files != "stop":  # for another dataset: refused by load_data, as test_fraction is
        folder["bad_files"] = ds.bad_files
    data = load_data(ds.name, root=ds.root, val_fraction=ds.val_fraction, seed=config.training.seed,
                     download=ds.download, base_dir=None if config.source is None else Path(config.source).parent,
                     **folder, **ds.options)
    if config.resolution is not None:
        data = data.resized(config.resolution)
    return space, data


def print_notes(data: DataBundle, stream: IO[str] | None, recipe: TrainConfig | None = None) -> None:
    """The data's notes (what its loader left out, and why), and where ``recipe`` trains each network for too few
    optimizer steps on this data, a note that says so; a line each, to ``stream`` (None: nowhere)."""
    if stream is None:
        return
    short = None if recipe is None else recipe_note(recipe, len(data.y_train))
    for note in (*data.notes, *([short] if short else [])):
        print(f"note: {note}", file=stream, flush=True)
