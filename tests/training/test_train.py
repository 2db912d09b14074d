"""The training loop on real data: scikit-learn's bundled 8x8 digits, a small CNN, CPU only."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from conftest import Killed, stop_after
from sklearn.datasets import load_digits
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from archsearch.config.recipe import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TrainConfig, planned_epochs
from archsearch.training.augment import augment_batch
from archsearch.training.optimizer import lr_factor, make_optimizer
from archsearch.training.predict import predict
from archsearch.training.train import TrainingDiverged, class_weights, resolve_device, train

CPU = torch.device("cpu")
FAST = dict(epochs=5, lr=0.2, batch_size=32)  # reaches ~0.97-0.98 val accuracy on digits for seeds 0-5


Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def digits_tensors(n_train: int = 1400) -> Digits:
    """Digits as normalized (N, 1, 8, 8) float32 images and int64 labels, split by a fixed shuffle."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels are 0..16
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@pytest.fixture(scope="module")
def digits() -> Digits:
    return digits_tensors()


class SmallCNN(nn.Module):
    """conv-BN-ReLU x2, global average pool, linear (optionally a BatchNorm1d on the pooled features)."""

    def __init__(self, head_bn: bool = False, scale: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.head_bn = nn.BatchNorm1d(32) if head_bn else nn.Identity()
        self.fc = nn.Linear(32, 10)
        self.scale = scale  # float("inf") makes every loss non-finite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = x.mean(dim=(2, 3))  # (B, 32)
        return self.fc(self.head_bn(x)) * self.scale


def fresh_model(**kwargs) -> SmallCNN:
    torch.manual_seed(0)  # same init in every test
    return SmallCNN(**kwargs)


def run(digits: Digits, model: nn.Module | None = None, on_epoch=None, **config) -> object:
    return train(model or fresh_model(), *digits, TrainConfig(**config), device=CPU, on_epoch=on_epoch)


# --- learning, determinism, bookkeeping -----------------------------------------------------------


@pytest.mark.slow  # 5 epochs of digits: seconds
def test_sgd_learns_digits(digits: Digits) -> None:
    model = fresh_model()
    result = run(digits, model, **FAST)
    assert result.val_accuracy > 0.90  # observed 0.97
    assert result.history[-1] == result.val_accuracy and len(result.history) == result.epochs_done == 5
    assert 0 < result.compute_seconds <= result.train_seconds
    assert not model.training
    assert next(model.parameters()).device == CPU


@pytest.mark.slow  # trains three times: seconds
def test_same_seed_same_history_other_seed_differs(digits: Digits) -> None:
    config = dict(epochs=2, lr=0.2, batch_size=32, augment="shift+flip", train_subset=700)
    a = run(digits, seed=1, **config).history
    b = run(digits, seed=1, **config).history
    c = run(digits, seed=2, **config).history
    assert a == b
    assert a != c


@pytest.mark.parametrize("cause", ["huge lr", "inf in forward"])
def test_divergence_raises(digits: Digits, cause: str) -> None:
    if cause == "huge lr":
        # the largest rate a recipe accepts (lr <= 10), on logits scaled near float32's limit: finite at first, the
        # steps then overflow them within the first epoch
        model, config = fresh_model(scale=1e36), dict(epochs=2, lr=10.0)
    else:
        model, config = fresh_model(scale=math.inf), dict(epochs=2, lr=0.1)
    with pytest.raises(TrainingDiverged, match=r"not finite .* epoch 1/2 by global step \d+, at lr=") as info:
        run(digits, model, **config)
    assert isinstance(info.value, FloatingPointError)
    assert not model.training


@pytest.mark.slow  # trains: over half a second
def test_on_epoch_is_called_once_per_epoch(digits: Digits) -> None:
    calls: list[tuple[int, float]] = []
    result = run(digits, on_epoch=lambda epoch, acc: calls.append((epoch, acc)), epochs=3, train_subset=500)
    assert calls == list(enumerate(result.history))


def test_exception_from_on_epoch_propagates_and_stops(digits: Digits) -> None:
    calls: list[int] = []

    def prune_at_second_epoch(epoch: int, acc: float) -> None:
        calls.append(epoch)
        if epoch == 1:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    model = fresh_model()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
        run(digits, model, on_epoch=prune_at_second_epoch, epochs=5, train_subset=500)
    assert calls == [0, 1]
    assert not model.training


def test_seconds_cap_stops_early(digits: Digits) -> None:
    result = run(digits, epochs=5, seconds=1e-6)
    assert result.epochs_done == 1 < 5
    assert len(result.history) == 1


def test_train_subset_and_single_sample_last_batch_with_batchnorm(digits: Digits) -> None:
    # 33 samples in batches of 32 leave one sample, on which BatchNorm1d would raise in train mode
    result = run(digits, fresh_model(head_bn=True), epochs=1, batch_size=32, train_subset=33)
    assert math.isfinite(result.val_accuracy)


def test_bad_inputs_are_rejected(digits: Digits) -> None:
    x, y, xv, yv = digits
    with pytest.raises(ValueError, match="equal length"):
        train(fresh_model(), x, y[:-1], xv, yv, TrainConfig(epochs=1), device=CPU)


# --- checkpoints: a killed training resumes where it stopped -------------------------------------


RESUME = dict(epochs=3, lr=0.2, batch_size=32, augment="shift+flip", train_subset=700, seed=3)


@pytest.mark.slow  # trains four times: seconds
def test_resumed_training_ends_where_an_uninterrupted_one_does(digits: Digits, tmp_path) -> None:
    whole_model = fresh_model(head_bn=True)
    whole = run(digits, whole_model, **RESUME)
    ckpt = tmp_path / "state.pt"
    for killed_at in (1, 2):  # killed after epoch 1, resumed, killed after epoch 2, resumed again
        with pytest.raises(Killed):
            train(fresh_model(head_bn=True), *digits, TrainConfig(**RESUME), device=CPU,
                  on_epoch=stop_after(killed_at), checkpoint=ckpt)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    torch.manual_seed(99)  # another initialisation: the weights must come from the checkpoint
    model = SmallCNN(head_bn=True)
    resumed = train(model, *digits, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)
    assert resumed.resumed_epochs == 2 and resumed.epochs_done == 3
    assert resumed.history == whole.history
    for name, a in whole_model.state_dict().items():  # weights, BN statistics: bit for bit
        assert torch.equal(a, model.state_dict()[name]), name


@pytest.mark.slow  # trains: a second
def test_finished_checkpoint_gives_the_final_weights_without_training(digits: Digits, tmp_path) -> None:
    ckpt = tmp_path / "state.pt"
    first_model = fresh_model()
    first = train(first_model, *digits, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)
    again_model = SmallCNN()
    again = train(again_model, *digits, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)
    assert again.resumed_epochs == 3 and again.history == first.history
    assert again.compute_seconds == first.compute_seconds <= again.train_seconds  # the time spent before counts
    for a, b in zip(first_model.state_dict().values(), again_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not again_model.training


@pytest.mark.slow  # trains: over half a second
def test_checkpoint_of_another_training_is_refused(digits: Digits, tmp_path) -> None:
    ckpt = tmp_path / "state.pt"
    with pytest.raises(Killed):
        train(fresh_model(), *digits, TrainConfig(**RESUME), device=CPU, on_epoch=stop_after(1), checkpoint=ckpt)
    other = {**RESUME, "lr": 0.1}
    with pytest.raises(ValueError, match=r"state\.pt: checkpoint of another training \(lr: saved 0\.2, now 0\.1\)"):
        train(fresh_model(), *digits, TrainConfig(**other), device=CPU, checkpoint=ckpt)
    x, y, xv, yv = digits
    with pytest.raises(ValueError, match="training images: saved 700, now 600"):
        train(fresh_model(), x, y, xv, yv, TrainConfig(**{**RESUME, "train_subset": 600}), device=CPU,
              checkpoint=ckpt)
    with pytest.raises(ValueError, match="the same number of training images, but other images or labels"):
        train(fresh_model(), x.flip(0), y.flip(0), xv, yv, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"checkpoint of another network"):
        train(fresh_model(head_bn=True), *digits, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"state\.pt: not a readable training checkpoint"):
        train(fresh_model(), *digits, TrainConfig(**RESUME), device=CPU, checkpoint=ckpt)


# --- every recipe option runs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [dict(optimizer=o, lr=0.01 if o != "sgd" else 0.1) for o in OPTIMIZERS]
    + [dict(schedule=s, warmup_epochs=0.5) for s in SCHEDULES]
    + [dict(augment=a) for a in AUGMENTATIONS]
    + [dict(label_smoothing=0.1), dict(class_weight="balanced"), dict(sampler="balanced")],
    ids=lambda option: "-".join(f"{k}={v}" for k, v in option.items()),
)
def test_each_option_trains_one_epoch(digits: Digits, option: dict) -> None:
    result = run(digits, epochs=1, batch_size=64, train_subset=640, **option)
    assert result.epochs_done == 1
    assert math.isfinite(result.val_accuracy) and 0.0 <= result.val_accuracy <= 1.0


def test_weight_decay_skips_batchnorm_and_bias() -> None:
    model = fresh_model(head_bn=True)
    for name in OPTIMIZERS:
        optimizer = make_optimizer(model, TrainConfig(optimizer=name, weight_decay=1e-3), CPU)
        decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        assert len(decay) == len(list(model.parameters()))
        for pname, p in model.named_parameters():
            expected = 0.0 if pname.startswith(("bn", "head_bn")) or pname.endswith("bias") else 1e-3
            assert decay[id(p)] == expected, pname


# --- augmentation ---------------------------------------------------------------------------------


def ramp_batch(b: int = 64, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    """The same image ``b`` times; every pixel value is unique, so a shift is visible and identifiable."""
    return torch.arange(c * h * w, dtype=torch.float32).view(1, c, h, w).repeat(b, 1, 1, 1)


def shifts_of(image: torch.Tensor, pad: int = 2) -> list[torch.Tensor]:
    """All translations of ``image`` (C, H, W) by up to ``pad`` pixels, with replicated borders."""
    _, h, w = image.shape
    padded = F.pad(image.unsqueeze(0), (pad,) * 4, mode="replicate")[0]
    return [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]


def test_shift_translates_each_sample_by_its_own_offset() -> None:
    x = ramp_batch()
    out = augment_batch(x, "shift", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    candidates = shifts_of(x[0])
    offsets = set()
    for sample in out:
        matches = [k for k, cand in enumerate(candidates) if torch.equal(sample, cand)]
        assert len(matches) == 1  # each output is exactly one translation of its input
        offsets.add(matches[0])
    assert len(offsets) > 5  # per-sample offsets, not one offset for the whole batch
    assert not torch.equal(out, x)


def test_flip_mirrors_about_half_the_batch() -> None:
    x = ramp_batch()
    out = augment_batch(x, "flip", torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, x[0].flip(2)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_augment_keeps_shape_and_is_seeded(mode: str) -> None:
    x = torch.randn(32, 3, 12, 12)
    a = augment_batch(x, mode, torch.Generator().manual_seed(3))
    b = augment_batch(x, mode, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(a, x) == (mode == "none")


# --- learning-rate schedules ----------------------------------------------------------------------


def test_schedules_shape() -> None:
    total = 100
    cosine = [lr_factor(s, total, 0, "cosine") for s in range(total)]
    assert cosine[0] == 1.0 and cosine[-1] < 1e-3 and cosine == sorted(cosine, reverse=True)
    assert [lr_factor(s, total, 0, "step") for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert {lr_factor(s, total, 0, "constant") for s in range(total)} == {1.0}
    warm = [lr_factor(s, total, 10, "constant") for s in range(12)]
    assert warm[:10] == pytest.approx([(s + 1) / 10 for s in range(10)]) and warm[10:] == [1.0, 1.0]


def test_onecycle_matches_torch() -> None:
    total = 57
    p = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total)
    for s in range(total):
        assert lr_factor(s, total, 0, "onecycle") == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()


# --- devices --------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_resolve_device_without_cuda() -> None:
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device(name)


def test_resolve_device_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu")


@pytest.mark.slow  # trains three times: seconds
def test_training_records_its_learning_curve(tmp_path) -> None:
    from archsearch import Arch, Stage, Stem, build
    from archsearch.data.bundle import load_data
    from archsearch.training.checkpoint import LearningCurve

    data = load_data("digits")
    arch = Arch(1, 8, 10, Stem("conv", 8), (Stage("dwsep", 16, stride=2),))
    config = TrainConfig(epochs=3, batch_size=64, lr=0.1)
    common = dict(device=CPU, preprocess=data.preprocess(), class_figures=True)
    torch.manual_seed(0)
    seen: list[int] = []
    curve = LearningCurve()
    result = train(build(arch), data.x_train, data.y_train, data.x_val, data.y_val, config, curve=curve,
                   on_epoch=lambda epoch, acc: seen.append(len(curve.val_loss)), **common)
    assert seen == [1, 2, 3]  # the curve grows before on_epoch is called: a pruned trial can keep it
    assert result.curve is curve and curve.val_accuracy == result.history
    for name, values in curve.to_dict().items():
        assert len(values) == 3 and all(math.isfinite(v) and v >= 0 for v in values), name
    assert curve.train_loss[-1] < curve.train_loss[0] and curve.val_loss[-1] < curve.val_loss[0]  # it learns
    # the checkpoint carries the curve: a killed and resumed training ends with the uninterrupted one's
    ckpt = tmp_path / "t.pt"
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(build(arch), data.x_train, data.y_train, data.x_val, data.y_val, config, checkpoint=ckpt,
              on_epoch=stop_after(2), **common)
    torch.manual_seed(0)
    again = train(build(arch), data.x_train, data.y_train, data.x_val, data.y_val, config, checkpoint=ckpt, **common)
    assert again.resumed_epochs == 2 and again.curve.to_dict() == curve.to_dict()


@pytest.mark.slow  # a search
def test_every_trial_records_its_learning_curve(write_study) -> None:
    from archsearch.config.study_config import load_study_config
    from archsearch.search.study import run

    study = run(load_study_config(write_study(n_trials=2, training={"epochs": 2})), stream=None, progress=False)
    trained = [t for t in study.trials if "epochs_done" in t.user_attrs]
    assert len(trained) == 2
    for t in trained:
        curve = t.user_attrs["curve"]
        assert set(curve) == {"train_loss", "train_loss_tail", "val_loss", "val_accuracy", "val_balanced_accuracy",
                              "val_macro_f1"}
        assert all(len(v) == 2 for v in curve.values()) and curve["val_accuracy"][-1] == t.user_attrs["val_accuracy"]


# --- the length in steps, imbalance, per-class figures ---------------------------------------------


@pytest.mark.slow  # trains: over half a second
def test_steps_replace_epochs_and_end_the_last_epoch_part_way(digits: Digits) -> None:
    x, y, xv, yv = digits  # 700 images at batch 64: 11 batches an epoch (the last one of 60)
    steps: list[int] = []
    hook = register_optimizer_step_post_hook(lambda *args: steps.append(1))
    try:
        config = TrainConfig(steps=25, epochs=1, batch_size=64, train_subset=700)
        result = train(fresh_model(), x, y, xv, yv, config, device=CPU)
    finally:
        hook.remove()
    assert len(steps) == 25  # 11 + 11 + 3: the third epoch stops after 3 batches
    assert result.epochs_done == 3 == planned_epochs(config, len(y))
    assert len(result.curve.train_loss) == 3 and all(math.isfinite(v) for v in result.curve.train_loss_tail)


def test_planned_epochs_counts_the_batches_train_runs() -> None:
    assert planned_epochs(TrainConfig(epochs=7), 1000) == 7
    assert planned_epochs(TrainConfig(steps=30, batch_size=32), 400) == 3  # 13 batches an epoch
    assert planned_epochs(TrainConfig(steps=30, batch_size=32, train_subset=64), 400) == 15  # 2 batches
    assert planned_epochs(TrainConfig(steps=10, batch_size=32), 33) == 10  # the single-image batch is dropped


def test_class_weights_are_scikit_learns_balanced() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0] * 60 + [1] * 25 + [2] * 10 + [3] * 5)
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y.numpy())
    assert torch.allclose(class_weights(y, 4), torch.tensor(expected, dtype=torch.float32))
    assert class_weights(torch.tensor([0, 0, 2]), 3)[1] == 0  # a class without images weighs nothing


def test_balanced_sampler_shows_a_rare_class_as_often_as_a_common_one(digits: Digits) -> None:
    x, y, xv, yv = digits
    keep = torch.cat([torch.nonzero(y == c).flatten()[: (200 if c == 0 else 10)] for c in range(10)])
    seen: list[torch.Tensor] = []

    class Spy(SmallCNN):
        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append(inp[:, 0, 0, 0].clone())  # the image's tag
            return super().forward(inp)

    tagged = x[keep].clone()
    tagged[:, 0, 0, 0] = torch.arange(len(keep), dtype=torch.float32)  # each image's number in its corner
    torch.manual_seed(0)
    train(Spy(), tagged, y[keep], xv, yv, TrainConfig(epochs=3, batch_size=29, sampler="balanced"), device=CPU)
    drawn = y[keep][torch.cat(seen).long()]
    share = torch.bincount(drawn, minlength=10).float() / len(drawn)
    assert share[0] < 0.2  # 69% of the images, drawn about a tenth of the time
    assert (share > 0.05).all()


def test_validation_figures_are_recorded_each_epoch(digits: Digits) -> None:
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    model = fresh_model()
    result = train(model, *digits, TrainConfig(epochs=2, batch_size=64, train_subset=640), device=CPU,
                   class_figures=True)
    assert run(digits, epochs=1, train_subset=640).curve.val_macro_f1 == [None]  # not asked for: not computed
    _, _, xv, yv = digits
    predicted = predict(model, xv, yv, batch_size=256, device=CPU)
    assert result.val_confusion == confusion_matrix(yv.numpy(), predicted.numpy(), labels=range(10)).tolist()
    assert result.curve.val_balanced_accuracy[-1] == pytest.approx(balanced_accuracy_score(yv, predicted))
    assert result.curve.val_macro_f1[-1] == pytest.approx(f1_score(yv, predicted, average="macro"))
    assert len(result.curve.val_balanced_accuracy) == len(result.curve.val_macro_f1) == 2
