"""Errors raised at the edges (YAML files, records, CLI) and the safe YAML loader they share."""

from __future__ import annotations

import os
import reprlib
from typing import Any

import yaml


class ConfigError(ValueError):
    """Bad user input: names the file, the key path inside it and what was expected.

    It is a ``ValueError`` so that library users can catch it as one; the CLI prints it
    without a traceback.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, key: str | None = None):
        self.path = None if path is None else str(path)
        self.key = key
        self.message = message  # without the file and key
        where = ""
        if self.path is not None:
            where = self.path
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message)


class StorageFailed(BaseException):
    """The study's storage cannot go on: its database stayed unreachable longer than the study allows
    (``recovery.reconnect_s``), or the disk under its file is full. The message names it and says that the same
    command resumes; the CLI prints it without a traceback.

    Not an ``Exception``, like ``KeyboardInterrupt``: it must pass through ``study.optimize(catch=...)``, which
    would otherwise record it as the trial's own failure (and try to store that, on the same storage).
    The running trial stays RUNNING: a dead worker's, run again by the next start.
    """


def storage_failure(error: BaseException) -> StorageFailed | None:
    """The :class:`StorageFailed` behind ``error``, if any: Optuna's ``study.optimize`` may raise another error
    while it unwinds from one (its bookkeeping after a trial reads the same storage)."""
    seen: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and all(e is not s for s in seen):
        if isinstance(e, StorageFailed):
            return e
        seen.append(e)
        e = e.__cause__ or e.__context__
    return None


_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlevel = 3


def show(value: Any) -> str:
    """``str '1e-3'``, ``bool True``, ``float nan``: the type and a bounded repr of a bad value."""
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"int of {value.bit_length()} bits"  # repr() refuses very long ints
    return f"{type(value).__name__} {_repr.repr(value)}"


def short(value: Any) -> str:
    """A bounded repr (60 characters) of a key or name for a message."""
    return _repr.repr(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"mapping key must be a scalar, got {type(key).__name__}", key_node.start_mark
            ) from None
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping from ``path`` with a safe loader; every failure is a :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("expected a YAML file, found a directory", path=path) from None
    except PermissionError:
        raise ConfigError("file is not readable (permission denied)", path=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not a UTF-8 text file ({e.reason} at byte {e.start})", path=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read file: {e.strerror}", path=path) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"not valid YAML: {problem}{line}", path=path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a YAML mapping at the top level, got {type(data).__name__}", path=path
        )
    return data
