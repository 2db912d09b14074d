"""archsearch's benchmarks: one package per question, each with its scripts, its data and a README.

Run from the repository root, e.g. ``python -m benchmarks.proxy_fidelity.run --table``; benchmarks/README.md is
the index. Not part of the installed package (pyproject.toml ships ``archsearch*`` only)."""
