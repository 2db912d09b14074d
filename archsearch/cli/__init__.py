"""The command line: a thin layer over the library (``archsearch`` is :func:`main`)."""

from archsearch.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
