"""Where studies live: Optuna storages opened from a URL, with the file checks and SQLite settings they need.

``sqlite:///<file>`` (WAL, ``BEGIN IMMEDIATE``, a lock timeout), ``postgresql://``/``mysql://`` (``RDBStorage``
with heartbeats, retried while other workers create the schema) and ``journal:<file>`` (``JournalStorage``). A
file that is not a storage of the kind named is refused before Optuna opens it, so a foreign file is never changed.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import optuna.storages.journal

from archsearch.config.storage_url import JOURNAL_PREFIX, SQLITE_PREFIX, normalize_storage, redact, sqlite_file
from archsearch.core.errors import ConfigError, show
from archsearch.study._reconnect import StudyStorage

__all__ = ["make_storage"]


# Heartbeats turn the RUNNING trial of a killed worker into FAIL (and retry it once), so a resumed
# search neither waits on nor "constant-lies" around a zombie. The heartbeat thread runs beside
# training, so the grace period only has to cover SQLite lock waits, not an epoch.
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_PERIOD_S = 180
HEARTBEAT_MAX_RETRY = 1  # a candidate that kills its worker twice is not retried again
RECONNECT_S = 300.0  # a database server that went away: how long each call is retried before the worker stops
SQLITE_TIMEOUT_S = 60  # several workers on one sqlite file wait for the lock instead of failing
_OPEN_ATTEMPTS = 5  # tries to open an RDB storage that other workers may be creating at the same instant

_SQLITE_HEADER = b"SQLite format 3\x00"


def make_storage(url: str, *, create: bool = True, heartbeat_s: int = HEARTBEAT_INTERVAL_S,
                 grace_s: int = HEARTBEAT_GRACE_PERIOD_S, reconnect_s: float = RECONNECT_S,
                 stale_attrs: dict[str, Any] | None = None,
                 stale_callback: Callable[[optuna.Study, Any], None] | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (as :attr:`StudyConfig.storage` holds it).

    sqlite/postgresql/mysql: ``RDBStorage`` with heartbeats (a dead worker's trial becomes FAIL and is
    retried once). ``journal:<file>``: ``JournalStorage`` on a journal file. A relative file is relative to
    the current directory; its parent directory is created. An existing file that is not an SQLite
    database, or an SQLite database that is not an Optuna storage (or not a journal, for journal:), is
    refused before Optuna opens it, so a foreign file is never modified. With ``create=False`` a missing
    file is an error instead of a new, empty storage (for commands that read a study).

    ``heartbeat_s``/``grace_s``: a worker's trial records a beat every ``heartbeat_s``; one silent for
    ``grace_s`` is marked with ``stale_attrs``, failed, and passed to ``stale_callback`` (which may queue it again;
    None: Optuna's retry, once) by the next worker to start a trial. ``reconnect_s``: how long a call to a
    database server that went away is retried. Both: :class:`~archsearch.study._reconnect.StudyStorage`.
    """
    if not isinstance(url, str):
        raise ConfigError(f"expected a storage URL string, got {show(url)}", key="storage")
    try:
        url = normalize_storage(url, Path.cwd())
    except ValueError as e:
        raise ConfigError(f"{e}, got {redact(url)!r}", key="storage") from None
    if url.startswith(JOURNAL_PREFIX):
        file = Path(url[len(JOURNAL_PREFIX) :])
        _prepare_file(file, _check_journal_file, create=create)
        return StudyStorage(optuna.storages.JournalStorage(_JournalFile(str(file))), reconnect_s=None,
                            name=url, folder=file.parent)
    engine_kwargs: dict[str, Any] = {}
    folder = None
    if url.startswith(SQLITE_PREFIX):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        file_text, _ = sqlite_file(url)
        if file_text is not None:
            _prepare_file(Path(file_text), _check_sqlite_file, create=create)
            folder = Path(file_text).parent
    try:
        callback = stale_callback
        if callback is None:
            with warnings.catch_warnings():  # experimental since Optuna 2.8, still so in 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=HEARTBEAT_MAX_RETRY)
        storage = _rdb_storage(url, engine_kwargs, heartbeat_s, grace_s, callback)
    except ImportError as e:
        raise ConfigError(f"no database driver for {redact(url)!r}: {e}", key="storage") from None
    except Exception as e:  # sqlalchemy errors (unreachable server, bad schema version) are user-facing
        raise ConfigError(f"cannot open storage {redact(url)!r}: {type(e).__name__}: {e}", key="storage") from None
    sqlite = url.startswith(SQLITE_PREFIX)
    if sqlite:
        _use_wal(storage)
    return StudyStorage(storage, reconnect_s=None if sqlite else reconnect_s, name=redact(url), folder=folder,
                        stale_attrs=stale_attrs)


class _JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, whose append leaves no partial line behind where the disk fills: a partial last line
    would be joined to the next append once space is freed, and the journal could not be read again."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file_lock = optuna.storages.journal.JournalFileSymlinkLock(path)  # Optuna's default lock
        super().__init__(path, lock_obj=self._file_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._file_lock.acquire()  # blocks: as Optuna's own append, across processes and hosts
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)  # unbuffered: nothing left to flush on failure
            try:
                size = os.fstat(fd).st_size
                try:
                    view = memoryview(text.encode("utf-8"))
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # freeing blocks needs no space
                    raise
            finally:
                os.close(fd)
        finally:
            self._file_lock.release()


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], heartbeat_s: int, grace_s: int,
                 callback: Callable[[optuna.Study, Any], None]) -> optuna.storages.RDBStorage:
    """``RDBStorage`` with heartbeats, retried where workers open a new database at the same instant.

    Optuna creates its tables without a lock, so of several processes opening a new database together
    some fail ("table studies already exists", a duplicate type on PostgreSQL); a second try finds the
    tables made and creates nothing.
    """
    import sqlalchemy.exc

    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return _rdb_storage_once(url, engine_kwargs, heartbeat_s, grace_s, callback)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))  # jitter: not all retry together
    raise AssertionError("unreachable")


def _rdb_storage_once(url: str, engine_kwargs: dict[str, Any], heartbeat_s: int, grace_s: int,
                      callback: Callable[[optuna.Study, Any], None]) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        # heartbeat_interval and the retry callback are marked experimental; they are what we want
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_s,
            grace_period=grace_s,
            heartbeat_stale_trial_callback=callback,
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # no implicit BEGIN from the sqlite3 module (it begins only before a write): _begin_immediate does it
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` on every connection.

    A trial makes some 30 small writes (parameters, attributes, reports); with SQLite's default
    rollback journal each one waits for two fsyncs, which measured 4-24 ms a write on this project's
    machines, a large share of a quick trial. WAL keeps commits durable against a process crash
    (a killed worker loses nothing committed), and readers no longer block the writer, which
    several workers on one file need. WAL needs a local file system (not NFS).

    Every transaction begins with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite). Optuna checks a
    trial's state and then changes it (WAITING -> RUNNING when a worker takes a queued trial, RUNNING ->
    FAIL when a dead worker's trial is swept) in one session, relying on ``SELECT ... FOR UPDATE``, which
    SQLite ignores; the sqlite3 module began the transaction only at the write, so two workers could both
    see WAITING and both take the trial (both trained it, the second could not record its result), or
    both fail a dead worker's trial and queue it twice. Taking the write lock at the start makes the check
    and the change one step; transactions here last milliseconds, so workers barely wait.
    """
    import sqlalchemy

    sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
    sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
    storage.engine.dispose()  # reconnect: the connections opened at creation lack the pragmas


def _prepare_file(file: Path, check: Callable[[Path], None], *, create: bool) -> None:
    """Refuse a foreign file at ``file`` (or a missing one unless ``create``), else create its parent directory."""
    if not create and _existing_regular_file(file) is None:
        raise ConfigError(
            "does not exist: no study has run with this storage yet; run `archsearch search` first",
            path=file,
            key="storage",
        )
    check(file)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create directory {file.parent}: {e.strerror}", path=file, key="storage") from None


def _existing_regular_file(file: Path) -> int | None:
    """The size of ``file``, None when it does not exist; ConfigError when it is not a regular file."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot access storage file: {e.strerror}", path=file, key="storage") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("storage path exists but is not a regular file", path=file, key="storage")
    return st.st_size


def _read_head(file: Path, n: int) -> bytes:
    try:
        with open(file, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise ConfigError(f"cannot read storage file: {e.strerror}", path=file, key="storage") from None


def _check_sqlite_file(file: Path) -> None:
    """An existing file must be an SQLite database with Optuna's ``studies`` table (or no tables yet).

    The file is read through SQLite only, never with a plain ``open()``: POSIX locks belong to a process,
    and closing any descriptor of a file drops all of the process's locks on it. A worker that opened its
    study before (its WAL connections hold a shared lock all along) would lose them; another worker
    closing its last connection then believes itself alone, checkpoints and deletes the write-ahead log
    the first one is still writing, and the two go on with different views of one file: duplicate trial
    numbers, lost trials, a malformed database. SQLite itself shares one descriptor per file within a
    process and keeps it open while any lock is held.
    """
    if not _existing_regular_file(file):  # missing or empty: SQLite starts a new database
        return
    try:
        tables = _sqlite_tables(file)
    except sqlite3.DatabaseError as e:
        if getattr(e, "sqlite_errorname", "") != "SQLITE_NOTADB":
            raise ConfigError(f"is a damaged or unreadable SQLite database ({e})", path=file, key="storage") from None
        # not a database: no SQLite connection can hold a lock on it, so reading it plainly is safe
        header = _read_head(file, len(_SQLITE_HEADER))
        if header == _SQLITE_HEADER:
            raise ConfigError(f"is a damaged SQLite database ({e})", path=file, key="storage") from None
        raise ConfigError(
            f"exists but is not an SQLite database (it starts with {header!r}); refusing to use it as the "
            "study storage: point `storage` at a new file",
            path=file,
            key="storage",
        ) from None
    if tables and "studies" not in tables:
        shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
        raise ConfigError(
            f"is an SQLite database but not an Optuna storage (its tables: {shown}); refusing to add "
            "Optuna's tables to it: point `storage` at a new file",
            path=file,
            key="storage",
        )


def _sqlite_tables(file: Path) -> list[str]:
    """The table names of an SQLite file, opened read-only so that even opening it cannot change it.

    Not with ``immutable=1``: that opens the file without SQLite's locking, and closing it drops the
    process's locks like a plain ``open()`` would (see :func:`_check_sqlite_file`).
    """
    con = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        con.close()


def _check_journal_file(file: Path) -> None:
    """An existing non-empty journal must start with an Optuna journal record (a JSON line with op_code)."""
    if not _existing_regular_file(file):
        return
    first = _read_head(file, 1 << 16).split(b"\n", 1)[0]
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ConfigError(
            "exists but is not an Optuna journal file; refusing to append to it: point `storage` at a new file",
            path=file,
            key="storage",
        )
