"""A study's storage URL as the study file gives it: the schemes archsearch accepts, the absolute form a relative
file is resolved to, and the URL as printed (never a password). :mod:`archsearch.study.storage` opens it."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["RDB_SCHEMES", "SQLITE_PREFIX", "JOURNAL_PREFIX", "normalize_storage", "sqlite_file", "redact"]

RDB_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")
SQLITE_PREFIX = "sqlite:///"
JOURNAL_PREFIX = "journal:"


def normalize_storage(url: str, base_dir: Path) -> str:
    """Absolute form of a storage URL; ValueError (says what is accepted) when the scheme is not known."""
    try:
        return _normalize_storage_url(url, base_dir)
    except (OSError, RuntimeError) as e:  # RuntimeError: "~user" with no such user
        raise ValueError(f"cannot resolve the storage file: {e}") from None


def _normalize_storage_url(url: str, base_dir: Path) -> str:
    if url.startswith(SQLITE_PREFIX):
        file, query = sqlite_file(url)
        if file is None:
            return url
        resolved = (base_dir / Path(file).expanduser()).resolve()
        return f"{SQLITE_PREFIX}{resolved}{query}"
    if url.startswith(JOURNAL_PREFIX) and url[len(JOURNAL_PREFIX) :].strip():
        resolved = (base_dir / Path(url[len(JOURNAL_PREFIX) :]).expanduser()).resolve()
        return f"{JOURNAL_PREFIX}{resolved}"
    scheme, sep, rest = url.partition("://")
    if sep and scheme in RDB_SCHEMES and rest.strip() and not any(c.isspace() for c in url):
        return url
    raise ValueError(
        "expected null (an sqlite file next to the YAML), sqlite:///<file>, "
        f"{'://..., '.join(RDB_SCHEMES)}://... or journal:<file>"
    )


def sqlite_file(url: str) -> tuple[str | None, str]:
    """The database file of a sqlite URL (None: in memory) and its ``?query`` suffix."""
    file, mark, query = url[len(SQLITE_PREFIX) :].partition("?")
    if "\x00" in file:
        raise ValueError("a path cannot contain a NUL character")
    return (None if file in ("", ":memory:") else file), mark + query


def redact(url: str) -> str:
    """``postgresql://user:***@host/db``: never print a password."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)
