"""One budget level of the Fashion-MNIST benchmark (``run.py`` runs the levels): its study YAML, its two
searches (TPE and random, each a journal file) and its rows, and the final recipe a row trains with.

:class:`Level` knows which rows exist at a moment (a searched network's rows once its search is recorded, the long
rows once the baselines' rows are in), and trains one (resuming its checkpoint, recording the machines it ran on).
``benchmarks.proxy_fidelity`` and ``benchmarks.rerank_fidelity`` train with the same :func:`final_train`.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from archsearch.config.assemble import load_config_data
from archsearch.config.recipe import TrainConfig
from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.config.study_schema import RerankConfig, SamplerConfig
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle
from archsearch.latency.key import hardware_name
from archsearch.latency.measure import measure_latency
from archsearch.network.arch import Arch
from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.search import rerank
from archsearch.search.objective import Objective
from archsearch.search.recovery import sweep_dead_workers
from archsearch.search.study import open_study, run
from archsearch.space import baselines
from archsearch.study.trial_states import finished_count
from archsearch.training.predict import accuracy
from archsearch.training.train import train
from benchmarks.common import ROOT, claim, read_json, write_json
from benchmarks.fashion_mnist.search import now, search_record, spent, study_digest
from benchmarks.fashion_mnist.store import LEVELS, SAMPLERS, Results, Settings, say

STUDIES = ROOT / "studies"
CPU = torch.device("cpu")  # studies/fmnist_<level>.yaml: each level's space, proxy, budget and re-rank

# -------------------------------------------------------------------------------------------------
# training one row: the final recipe


def machine(device: torch.device | None = None) -> dict[str, str]:
    """What the arithmetic of a row depends on beyond its seed: the same row trained on another processor (the
    kernels torch picks for its instruction set) or torch ends at another accuracy (seen: 0.4-2.5 points after 2
    epochs), so rows record it."""
    found = {"cpu": hardware_name("cpu"), "capability": torch.backends.cpu.get_cpu_capability(),
             "torch": torch.__version__}
    if device is not None and device.type == "cuda":  # the rows' arithmetic ran there (bf16/fp16 autocast)
        found["cuda"] = torch.cuda.get_device_name(device)
    return found


def final_train(arch: Arch, recipe: TrainConfig, data: DataBundle, *, seed: int, subset: int | None = None,
                eval_limit: int | None = None, checkpoint: Path | None = None,
                device: torch.device = CPU) -> dict[str, Any]:
    """Train ``arch`` from ``seed`` on the training and validation splits (the first ``subset`` images), score
    the test split (its first ``eval_limit`` images); the measured record. With ``checkpoint``, the training
    resumes from that file when it exists and saves itself there after each epoch. On a CUDA ``device`` the
    recipe trains in mixed precision (``archsearch.training.train``); the model comes back on the CPU either way."""
    data = data.resized(arch.resolution).to(device)
    x, y = torch.cat((data.x_train, data.x_val)), torch.cat((data.y_train, data.y_val))
    x_test, y_test = data.x_test[:eval_limit], data.y_test[:eval_limit]
    recipe = dataclasses.replace(recipe, train_subset=subset, seconds=None, seed=seed)
    torch.manual_seed(seed)  # the initial weights: build() draws them before train() seeds itself
    model = build(arch)
    # train() scores an eval set after every epoch, which only reports: 1,000 test images are enough for that
    result = train(model, x, y, x_test[:1000], y_test[:1000], recipe, device=device, checkpoint=checkpoint,
                   preprocess=data.preprocess())
    test = accuracy(model, x_test, y_test, batch_size=recipe.eval_batch_size, device=device,
                    preprocess=data.preprocess())
    return {"test_accuracy": test, "epochs": result.epochs_done, "trained_on": min(len(y), subset or len(y)),
            "n_test": len(y_test), "train_seconds": result.train_seconds, "resumed_epochs": result.resumed_epochs,
            "model": model.cpu()}


# -------------------------------------------------------------------------------------------------
# one level: its two searches and its rows


class Level:
    def __init__(self, name: str, work: Path, studies: Path, results: Results, settings: Settings):
        self.name = name
        self.dir = work / name  # locks
        self.studies = studies / name
        self.results = results
        self.settings = settings
        self.device = torch.device("cpu")  # where the rows train (work() sets --device)
        path = STUDIES / f"fmnist_{name}.yaml"
        config = load_study_config(path)
        if config.budget.max_macs != LEVELS[name]:
            raise ConfigError(f"expected budget.max_macs {LEVELS[name]:.1e} for level {name!r}, got "
                              f"{config.budget.max_macs}", path=path, key="budget.max_macs")
        proxy = config.training
        if settings.search_epochs is not None:
            proxy = dataclasses.replace(proxy, epochs=settings.search_epochs)
        if settings.search_subset is not None:
            proxy = dataclasses.replace(proxy, train_subset=settings.search_subset)
        if settings.val_fraction is not None:  # a smaller validation split: every trial scores it each epoch
            config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset,
                                                                             val_fraction=settings.val_fraction))
        if settings.space is not None:  # another space file, with the study's overrides
            config = dataclasses.replace(config, space_path=(ROOT / settings.space).resolve())
            try:
                config.load_space()  # a missing file or a bad key is named now, before anything runs
            except ConfigError as e:
                raise SystemExit(f"error: --space: {e}") from None
        if settings.head_hidden is not None:  # the head's hidden layer on offer, beside the study's overrides
            overrides = {**(config.space_overrides or {}), "head_hidden": list(settings.head_hidden)}
            config = dataclasses.replace(config, space_overrides=overrides)
            config.load_space()  # a bad width is named now, before anything runs
        if settings.rerank is not None:
            top, epochs, images = settings.rerank
            config = dataclasses.replace(config, rerank=RerankConfig(top=top, epochs=epochs, train_subset=images))
        if settings.rerank_folds is not None:  # the same re-rank, scored by k-fold cross-validation
            if config.rerank is None:
                raise SystemExit(f"error: --rerank-folds: {path} has no rerank section to cross-validate")
            config = dataclasses.replace(config, rerank=dataclasses.replace(config.rerank, folds=settings.rerank_folds))
        self.base = dataclasses.replace(config, training=proxy)
        self.final = config.training  # the final recipe: the study's own, with the settings' epochs and images

    def config(self, sampler: str) -> StudyConfig:
        name = self.base.name if sampler == "tpe" else f"{self.base.name}-{sampler}"
        journal = (self.studies / f"{sampler}.journal").resolve()
        cfg = dataclasses.replace(self.base, name=name, storage=f"journal:{journal}")
        if sampler != "tpe":
            cfg = dataclasses.replace(cfg, sampler=SamplerConfig(sampler, self.base.sampler.seed))
        return cfg

    # -- the searches ------------------------------------------------------------------------------

    def search(self, sampler: str, jobs: int) -> str:
        """Join the search until it holds its trials, then re-rank; 'done', or 'busy' while others finish."""
        key = f"search/{self.name}/{sampler}"
        config = self.config(sampler)
        record = self.results.get(key)
        if record is not None:
            if record.get("study") != study_digest(config):
                raise SystemExit(f"error: {key} in {self.results.path} was searched with another study "
                                 f"(studies/fmnist_{self.name}.yaml or the settings changed since); its rows would "
                                 f"not be this study's. Mark it superseded in that file (key and kind) to search "
                                 f"again")
            return "done"
        searching = dataclasses.replace(config, rerank=None)  # re-ranked once, after the search's trials
        budget = self.settings.search_trials
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            study = open_study(searching, create=False)
        except ConfigError:  # not created yet: run() creates it and queues the seed baselines first
            study = None
        done = 0 if study is None else finished_count(study)
        say(f"{self.name}/{sampler}: searching, {done}/{budget} trials finished"
            + ("" if study is None else f", {spent(study):.0f} s of trial time spent"))
        # the workers share the study's total: run() returns once it holds `budget` finished trials
        study = run(searching, n_trials=budget, progress=False, summarize=False)
        sweep_dead_workers(study)  # a trial left RUNNING by a killed process of this host is failed now
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return "busy"
        if config.rerank is not None:  # workers share the re-rank through its claims (archsearch/search/rerank.py)
            space, data = load_config_data(config)
            objective = Objective(config, space, data, device=torch.device("cpu"))
            rerank.rerank(study, config, objective, say=lambda text: say(f"{self.name}/{sampler}: {text}"))
            if rerank.pending(study, config):
                return "busy"  # another worker is still re-ranking
        with claim(self.dir / "locks" / f"search-{sampler}.lock") as mine:
            if mine and self.results.get(key) is None:
                record = search_record(study, config, level=self.name, sampler=sampler,
                                       budget=self.settings.search_trials)
                self.results.add(record)
                say(f"{self.name}/{sampler}: search finished, {record['spent_seconds']:.0f} s of trial time")
        return "done" if self.results.get(key) is not None else "busy"

    # -- the rows ----------------------------------------------------------------------------------

    def rows(self, parts: tuple[str, ...]) -> list[dict[str, Any]]:
        """The rows of this level known now (a searched row once its search is done, ...)."""
        s = self.settings
        out = []
        if "rows" in parts:
            for family in baselines.FAMILIES:
                arch = baselines.fit_to_budget(family, in_chs=1, resolution=28, num_classes=10,
                                               max_macs=LEVELS[self.name])
                if arch is not None:
                    out += [self._row("baseline", family, arch, seed, s.epochs) for seed in range(s.seeds)]
            for sampler, family in SAMPLERS.items():
                search = self.results.get(f"search/{self.name}/{sampler}")
                if search is not None:
                    out += [self._row("searched", family, Arch.from_dict(search["best"]["arch"]), seed, s.epochs,
                                      trial=search["best"]["number"]) for seed in range(s.seeds)]
        if "long" in parts and self.name == s.long_level:
            search = self.results.get(f"search/{self.name}/tpe")
            if search is not None:
                out += [self._row("long", "archsearch", Arch.from_dict(search["best"]["arch"]), seed,
                                  s.long_epochs, trial=search["best"]["number"]) for seed in range(s.seeds)]
            top = self.best_baseline()
            if top is not None:
                out += [self._row("long", top["family"], Arch.from_dict(top["arch"]), seed, s.long_epochs)
                        for seed in range(s.seeds)]
        if "anytime" in parts and self.name == s.anytime_level:
            for sampler, family in SAMPLERS.items():
                search = self.results.get(f"search/{self.name}/{sampler}")
                for point in (search or {}).get("checkpoints", []):
                    out.append(self._row("anytime", family, Arch.from_dict(point["arch"]), 0, s.epochs,
                                         trial=point["number"], tag=f"f{point['fraction']:g}"))
        return out

    def best_baseline(self) -> dict[str, Any] | None:
        """The baseline with the best mean test accuracy once all its seeds' rows are done (None before)."""
        done = self.results.read()
        means = []
        for family in baselines.FAMILIES:
            rows = [done.get(f"row/{self.name}/baseline/{family}/e{self.settings.epochs}/s{seed}")
                    for seed in range(self.settings.seeds)]
            if any(r is None for r in rows):
                if baselines.fit_to_budget(family, in_chs=1, resolution=28, num_classes=10,
                                           max_macs=LEVELS[self.name]) is not None:
                    return None  # wait for every baseline's rows
                continue
            means.append((statistics.fmean(r["test_accuracy"] for r in rows), family, rows[0]["arch"]))
        if not means:
            return None
        _, family, arch = max(means)
        return {"family": family, "arch": arch}

    def _row(self, kind: str, family: str, arch: Arch, seed: int, epochs: int, *, trial: int | None = None,
             tag: str = "") -> dict[str, Any]:
        key = f"row/{self.name}/{kind}/{family}{'-' + tag if tag else ''}/e{epochs}/s{seed}"
        return {"key": key, "kind": kind, "family": family, "seed": seed, "epochs": epochs,
                "arch": arch.to_dict(), "trial": trial, "tag": tag}

    def checkpoint(self, row: dict[str, Any]) -> Path:
        """Where a row in training keeps its state after each epoch: beside the journals, so that a session's
        end, which kills the row in progress, costs at most an epoch once the file is committed."""
        return self.studies / "rows-in-training" / (row["key"].replace("/", "_") + ".pt")

    def train_row(self, row: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        """Train one row with the final recipe (resuming its checkpoint, if any); its measured record."""
        arch = Arch.from_dict(row["arch"])
        cost = arch_cost(arch)
        recipe = dataclasses.replace(self.final, epochs=row["epochs"])
        ckpt = self.checkpoint(row)
        # the machines a row trained on, in order: a resumed row can span sessions, and rows are not
        # bit-reproducible across processors
        segments_file = ckpt.with_suffix(".json")
        segments = (read_json(segments_file) or {}).get("segments", []) if ckpt.exists() else []
        segments.append({"machine": machine(self.device), "started": now()})
        write_json(segments_file, {"key": row["key"], "segments": segments})
        measured = final_train(arch, recipe, data, seed=row["seed"], subset=self.settings.train_subset,
                               eval_limit=self.settings.eval_limit, checkpoint=ckpt, device=self.device)
        model = measured.pop("model")
        lat = measure_latency(model, (arch.in_chs, arch.resolution, arch.resolution), device="cpu", threads=1, batch=1)
        return {
            **row,
            "level": self.name,
            "max_macs": LEVELS[self.name],
            "arch_id": arch.id,
            **measured,
            "macs": cost.macs,
            "params": cost.params,
            "latency_ms": lat.median_ms,
            "latency": {"device": "cpu", "threads": 1, "batch": 1, "p90_ms": lat.p90_ms},
            "torch_threads": torch.get_num_threads(),
            "device": self.device.type,
            "machine": machine(self.device),
            **({"segments": segments} if measured["resumed_epochs"] else {}),
            "created": now(),
        }
