"""A study's database storage as the search uses it: Optuna's, with two faults beyond one process handled.

:class:`StudyStorage` wraps a study's storage (an RDB storage behind Optuna's cache, or a journal file):

- **A database server that goes away** for a while (a restart, a failover) pauses the search instead of ending
  it (``reconnect_s``, PostgreSQL/MySQL): a call that fails because the connection is gone is tried again, with a
  growing pause, until the server answers or ``reconnect_s`` seconds have passed since the first failure; then
  :class:`StorageFailed` ends the worker with one line (the study is safe; the same command resumes it).
  SQLAlchemy's pool checks each connection before use (``pool_pre_ping``), so the first call after the server is
  back opens a fresh one. Only lost connections are retried: any other error (a constraint, a bad value) is
  raised at once. SQLite's errors (a full disk, a lock held past its timeout) do not pass by waiting: no retry.
- **A trial whose heartbeat stopped** (its worker's host died): Optuna fails it (``fail_stale_trials``) and then
  calls back; by then the trial is finished and takes no attribute. ``stale_attrs`` are set on each stale trial
  while it is still RUNNING, just before Optuna fails it, so that it reads as a lost worker's, not its own error.

A write whose commit reached the server just before the connection dropped may be sent twice. Every write
Optuna makes is idempotent but two: ``set_trial_state_values`` (a second try finds the trial finished; it is
taken as done where the trial holds the state asked for) and ``create_new_trial`` (a second try makes a
second trial; the first has no worker and is swept as unclaimed, see :mod:`archsearch.search.recovery`).

It leans on two parts of Optuna that are not public: the ``BaseHeartbeat`` interface it implements, and
``fail_stale_trials`` asking ``_get_stale_trial_ids`` before it fails the trials; tests/study/test_optuna_internals.py
checks both (with :mod:`archsearch.study._optuna_internals`, which keeps the others).
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from archsearch.core.errors import StorageFailed

__all__ = ["StudyStorage", "disk_full", "lost_connection"]

_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL

_FIRST_PAUSE_S = 0.5
_MAX_PAUSE_S = 10.0


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the disk is full: ENOSPC, or SQLite's SQLITE_FULL."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
    return False


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and all(e is not seen for seen in out):
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def lost_connection(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database connection is gone, rather than that the call
    was wrong: SQLAlchemy's OperationalError, InterfaceError or DisconnectionError from a server database."""
    import sqlalchemy.exc

    lost = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)
    return any(isinstance(e, lost) or isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated
               for e in _chain(error))


class StudyStorage(BaseStorage, BaseHeartbeat):
    """``backend`` (an RDB storage, behind Optuna's cache, or a journal storage), with each call retried for up
    to ``reconnect_s`` seconds while the database is unreachable (None: not retried), and ``stale_attrs`` set on
    the trials the heartbeat finds stale. ``name`` (the redacted URL) is what the messages call it."""

    def __init__(self, backend: BaseStorage, *, reconnect_s: float | None, name: str, folder: Path | None = None,
                 stale_attrs: dict[str, Any] | None = None, say: Callable[[str], None] | None = None) -> None:
        self.backend = backend  # the RDBStorage (its engine, for who needs it: tests, tools) or JournalStorage
        self._folder = folder  # a file storage's folder: named when its disk is full
        self._inner = optuna.storages.get_storage(backend)  # Optuna's cache in front of it, as Optuna would put it
        self._retry_s = reconnect_s
        self._stale_attrs = stale_attrs or {}
        self._name = name
        self._say = say or _stderr
        self._gave_up: str | None = None  # once a call gave up, every later one does at once: the worker ends
        self._down_since: float | None = None  # the outage under way (time.monotonic()), shared by threads
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._gave_up is not None:
            raise StorageFailed(self._gave_up)
        failed_at: float | None = None
        pause = _FIRST_PAUSE_S
        while True:
            try:
                result = getattr(self._inner, method)(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed_at is not None and method == "set_trial_state_values" and self._landed(*args, **kwargs):
                    result = True  # the try that lost its connection had committed
                else:
                    raise
            except Exception as e:
                if disk_full(e):
                    where = f"the device of {self._folder}" if self._folder is not None else "the device"
                    self._gave_up = (f"no space left on {where}: the study's storage {self._name} cannot be written "
                                     "(what was finished is stored, the file intact); free some space, then run the "
                                     "same command to resume")
                    raise StorageFailed(self._gave_up) from None
                if self._retry_s is None or not lost_connection(e):
                    raise
                failed_at = failed_at or time.monotonic()
                waited = time.monotonic() - self._outage_began(e)
                if waited >= self._retry_s:
                    self._gave_up = (f"storage {self._name} unreachable for {waited:.0f} s ({_one_line(e)}); "
                                     "what was finished is stored: run the same command again once the database "
                                     "is back")
                    raise StorageFailed(self._gave_up) from None
                time.sleep(min(pause, self._retry_s - waited))
                pause = min(pause * 2, _MAX_PAUSE_S)
                continue
            if failed_at is not None:
                self._outage_ended()
            return result

    def _outage_began(self, error: BaseException) -> float:
        """When this process first saw the database gone (said once, whichever thread saw it)."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._say(f"storage {self._name}: connection lost ({_one_line(error)}); retrying for up to "
                          f"{self._retry_s or 0:g} s")
            return self._down_since

    def _outage_ended(self) -> None:
        with self._lock:
            if self._down_since is not None:
                self._say(f"storage {self._name}: reconnected after {time.monotonic() - self._down_since:.0f} s")
                self._down_since = None

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale: list[int] = self._call("_get_stale_trial_ids", study_id)
        for trial_id in stale:  # marked while RUNNING; Optuna fails them next (fail_stale_trials)
            for key, value in self._stale_attrs.items():
                try:
                    self._call("set_trial_user_attr", trial_id, key, value)
                except optuna.exceptions.UpdateFinishedTrialError:
                    break  # finished meanwhile (by its worker, or another worker's sweep)
        return stale

    def _landed(self, trial_id: int, state: TrialState, *_: Any, **__: Any) -> bool:
        return self._inner.get_trial(trial_id).state == state

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        return bool(self._call("set_trial_state_values", trial_id, state, values))

    # every other call Optuna makes on a storage, retried while the database is unreachable
    def create_new_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("create_new_study", *args, **kwargs)

    def delete_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_study", *args, **kwargs)

    def set_study_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_study_user_attr", *args, **kwargs)

    def set_study_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_study_system_attr", *args, **kwargs)

    def get_study_id_from_name(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_study_id_from_name", *args, **kwargs)

    def get_study_name_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_study_name_from_id", *args, **kwargs)

    def get_study_directions(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_study_directions", *args, **kwargs)

    def get_study_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_study_user_attrs", *args, **kwargs)

    def get_study_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_study_system_attrs", *args, **kwargs)

    def get_all_studies(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_all_studies", *args, **kwargs)

    def create_new_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("create_new_trial", *args, **kwargs)

    def set_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_trial_param", *args, **kwargs)

    def get_trial_id_from_study_id_trial_number(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_id_from_study_id_trial_number", *args, **kwargs)

    def get_trial_number_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_number_from_id", *args, **kwargs)

    def get_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_param", *args, **kwargs)

    def set_trial_intermediate_value(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_trial_intermediate_value", *args, **kwargs)

    def set_trial_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_trial_user_attr", *args, **kwargs)

    def set_trial_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_trial_system_attr", *args, **kwargs)

    def get_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial", *args, **kwargs)

    def get_all_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_all_trials", *args, **kwargs)

    def get_n_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_n_trials", *args, **kwargs)

    def get_best_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_best_trial", *args, **kwargs)

    def get_trial_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_params", *args, **kwargs)

    def get_trial_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_user_attrs", *args, **kwargs)

    def get_trial_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_trial_system_attrs", *args, **kwargs)

    def check_trial_is_updatable(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("check_trial_is_updatable", *args, **kwargs)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._call("record_heartbeat", trial_id)
        except StorageFailed:
            pass  # the heartbeat thread ends quietly; the worker's next call raises it where it is handled

    # not storage round trips: no retry
    def get_heartbeat_interval(self) -> int | None:
        return self._inner.get_heartbeat_interval() if isinstance(self._inner, BaseHeartbeat) else None

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._inner.get_heartbeat_stale_trial_callback() if isinstance(self._inner, BaseHeartbeat) else None

    def remove_session(self) -> None:
        self._inner.remove_session()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_say": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._say = _stderr
        self._lock = threading.Lock()


def _one_line(error: BaseException) -> str:
    cause = error
    while cause.__cause__ is not None:  # Optuna's StorageInternalError says little; its cause says what
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
