"""The progress line of a search, in one process or many: networks trained of the total, the best feasible score so
far, the over-budget count, the running trials and their epochs, and an ETA from the finished trials' times.

It reads the study (the storage every worker writes to), so a parent process can show its workers' progress. On
stderr, and only where stderr is a terminal (tqdm's ``disable=None``); ``--no-progress`` turns it off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from archsearch.search.summary import progress_note
from archsearch.study.trial_states import finished_count

__all__ = ["StudyBar"]

_MIN_REFRESH_S = 1.0  # storage reads at most this often from refresh(); trial ends always refresh


class StudyBar:
    """A tqdm bar over ``target`` networks to train, fed from ``study``; ``epochs``: each trial's recipe."""

    def __init__(self, study: optuna.Study, target: int, epochs: int, *, name: str):
        from tqdm.auto import tqdm

        self.study, self.target, self.epochs = study, target, epochs
        done = min(target, finished_count(study))
        # smoothing 0: the rate (and so the ETA) is the average over the finished trials of this run, not
        # the last few, which swung a 1 h ETA by 40 min between a fast and a slow trial
        self.bar = tqdm(total=target, initial=done, desc=name, unit="trial", file=sys.stderr, dynamic_ncols=True,
                        smoothing=0, disable=None)
        self._last = 0.0

    def write(self, text: str, stream: Any) -> None:
        """A line above the bar."""
        self.bar.write(text, file=stream)

    def refresh(self, force: bool = False) -> None:
        """Read the study and redraw: trained count, best score, over-budget count, running trials."""
        now = time.monotonic()
        if self.bar.disable or (not force and now - self._last < _MIN_REFRESH_S):
            return
        self._last = now
        self.bar.n = min(self.target, finished_count(self.study))
        running = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # one value per finished epoch (trial.report) where the trial may be pruned: single objective
            epoch = f" epoch {min(len(t.intermediate_values) + 1, self.epochs)}/{self.epochs}" \
                if len(self.study.directions) == 1 else ""
            running.append(f"trial {t.number}{epoch}")
        note = progress_note(self.study) + (f"; running {', '.join(running)}" if running else "")
        self.bar.set_postfix_str(note, refresh=True)

    def watch(self, trainer: Callable[..., Any]) -> Callable[..., Any]:
        """``trainer`` (the search's training function), redrawing the bar after each of its epochs."""
        def watched(*args: Any, on_epoch: Callable[[int, float], None] | None = None, **kwargs: Any) -> Any:
            def hook(epoch: int, accuracy: float) -> None:
                try:
                    if on_epoch is not None:
                        on_epoch(epoch, accuracy)  # reports the epoch to the study (or prunes the trial)
                finally:
                    self.refresh(force=True)

            return trainer(*args, on_epoch=hook, **kwargs)

        return watched

    def close(self) -> None:
        self.bar.close()
