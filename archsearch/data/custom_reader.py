"""A user's own dataset, ``dataset.name: module:function``: import the function, call it, check what it returns.

The function returns ``(train, test)`` or ``(train, test, class_names)``, each part an ``(x, y)`` pair of arrays
or tensors or a torch ``Dataset`` of ``(image_tensor, int_label)`` items; it gets ``root`` if it takes it, and
``dataset.options`` as keywords. The module is imported as Python would, and also from the study file's folder
(``base_dir``), so a loader beside the study needs no ``PYTHONPATH``. Every mismatch is a
:class:`~archsearch.core.errors.ConfigError` that names the function and the part.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from archsearch.core.errors import ConfigError
from archsearch.data.readers import RawSplits, check_images, to_images, to_labels

_COLLATE_BATCH = 1024  # a Dataset is collated into tensors in batches of this many items


def read_custom(
    spec: str, root: str | os.PathLike | None, options: dict[str, Any], base_dir: str | os.PathLike | None = None
) -> RawSplits:
    module_name, _, func_name = spec.partition(":")
    module_name, func_name = module_name.strip(), func_name.strip()
    if not module_name or not func_name:
        raise ConfigError(f"dataset {spec!r}: expected 'module:function', e.g. 'mypkg.datasets:load'")
    module = _import(spec, module_name, base_dir)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"dataset {spec!r}: module {module_name!r} has no function {func_name!r}")
    result = func(**_call_kwargs(spec, func, root, options))
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise ConfigError(
            f"dataset {spec!r}: expected the function to return (train, test) or (train, test, class_names), "
            f"got {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    x_train, y_train, dtype = _custom_part(spec, "train", result[0])
    x_test, y_test, test_dtype = _custom_part(spec, "test", result[1])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ConfigError(
            f"dataset {spec!r}: train images are {tuple(x_train.shape[1:])} but test images {tuple(x_test.shape[1:])}"
        )
    if x_train.dtype != x_test.dtype:  # uint8 beside float in [0, 1]: both float, on the training part's scale
        x_train, x_test = (x_train.float(), x_test * 255) if dtype == "uint8" else (x_train, x_test.float() / 255)
    classes = _class_names(spec, result[2], y_train, y_test) if len(result) == 3 else ()
    shape = " x ".join(map(str, x_train.shape[1:]))
    # the training images' format is the one a trained network expects (a float test part in [0, 1] beside
    # uint8 training images is the same scale, and is said so)
    also = "" if dtype == test_dtype else f" (its test images: {test_dtype})"
    if dtype == "uint8":
        return RawSplits(x_train, y_train, x_test, y_test, 255.0,
                         f"what {spec} returns: uint8, 0 to 255, N x {shape}{also}", classes)
    return RawSplits(x_train, y_train, x_test, y_test, 1.0,
                     f"what {spec} returns: {dtype}, used as given, N x {shape}{also}", classes)


def _import(spec: str, module_name: str, base_dir: str | os.PathLike | None) -> Any:
    """``module_name`` as Python imports it; failing that, from ``base_dir`` (the study file's folder)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        first = module_name.partition(".")[0]
        if base_dir is None or e.name != first or not _exists_in(Path(base_dir), first):
            raise ConfigError(
                f"dataset {spec!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); it is looked "
                f"for on sys.path and in the study file's folder"
                + (f" ({Path(base_dir).resolve()})" if base_dir is not None else "")
            ) from e
    except Exception as e:  # whatever the module raised while importing
        raise ConfigError(f"dataset {spec!r}: cannot import module {module_name!r} ({type(e).__name__}: {e})") from e
    folder = str(Path(base_dir).resolve())
    if folder not in sys.path:
        sys.path.append(folder)  # after everything else: the study's folder never shadows an installed module
    try:
        return importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"dataset {spec!r}: cannot import module {module_name!r} from {folder} "
                          f"({type(e).__name__}: {e})") from e


def _exists_in(folder: Path, name: str) -> bool:
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def _class_names(spec: str, names: Any, y_train: torch.Tensor, y_test: torch.Tensor) -> tuple[str, ...]:
    """The third element of what the function returns: one name per label 0..N-1."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple, np.ndarray)):
        raise ConfigError(f"dataset {spec!r}: class_names must be a list of strings, got {type(names).__name__}")
    names = tuple(str(n) for n in names)
    top = int(max(y_train.max(), y_test.max()))
    if top >= len(names):
        raise ConfigError(f"dataset {spec!r}: label {top} has no name: class_names has {len(names)} names, so labels "
                          f"must be 0 to {len(names) - 1}")
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset {spec!r}: class_names are not unique: {list(names)}")
    return names


def _call_kwargs(
    spec: str, func: Callable, root: str | os.PathLike | None, options: dict[str, Any]
) -> dict[str, Any]:
    """``root`` if ``func`` takes it, plus ``options``; an option it does not take is an error."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # some builtins have no signature: call them bare
        params = None
    if params is None:
        if options:
            raise ConfigError(f"dataset {spec!r}: cannot tell whether the function takes options {sorted(options)}")
        return {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    kwargs = {"root": root} if var_kw or "root" in named else {}
    unknown = sorted(k for k in options if not var_kw and k not in named)
    if unknown:
        raise ConfigError(f"dataset {spec!r}: the function takes no option(s) {unknown}; its parameters are {named}")
    kwargs.update(options)
    try:
        inspect.signature(func).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"dataset {spec!r}: cannot call the function with {sorted(kwargs)} ({e})") from None
    return kwargs


def _custom_part(spec: str, which: str, part: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Tensors from an ``(x, y)`` pair or from a Dataset of ``(image_tensor, int_label)`` items, and the
    images' dtype as given."""
    where = f"dataset {spec!r} ({which})"
    if isinstance(part, Dataset):
        xs, ys = [], []
        try:
            # collate once here so that training later indexes tensors, never the Dataset
            for batch in DataLoader(part, batch_size=_COLLATE_BATCH, shuffle=False):
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ConfigError(f"{where}: expected items (image_tensor, int_label), got {type(batch).__name__}")
                xs.append(batch[0])
                ys.append(batch[1])
        except (TypeError, RuntimeError) as e:
            raise ConfigError(f"{where}: expected items (image_tensor, int_label) ({e})") from e
        if not xs:
            raise ConfigError(f"{where}: the Dataset is empty")
        x, y = torch.cat(xs), torch.cat(ys)
    elif (
        isinstance(part, (tuple, list))
        and len(part) == 2
        and all(isinstance(a, (np.ndarray, torch.Tensor)) for a in part)
    ):
        x, y = part
    else:
        raise ConfigError(
            f"{where}: expected an (x, y) pair of tensors/arrays or a torch Dataset, got {type(part).__name__}"
        )
    dtype = str(x.dtype).removeprefix("torch.")  # before _images: "uint8" is scaled to [0, 1], a float is not
    x, y = to_images(x, where), to_labels(y, where)
    if len(x) != len(y):
        raise ConfigError(f"{where}: {len(x)} images but {len(y)} labels")
    return check_images(x, where), y, dtype
