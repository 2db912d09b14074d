"""The declared schemas' plumbing: constrained field types, pydantic's errors as one located ConfigError, JSON Schema.

The study and space files are declared as pydantic v2 models (:mod:`archsearch.space.search_space`) and frozen
pydantic dataclasses (:mod:`archsearch.config.study_schema`, the config classes the code reads) built from the field
types here. :func:`validate` runs a model on parsed YAML
and turns the first error into a
:class:`~archsearch.core.errors.ConfigError` that names the file, the dotted key path and what was expected, with the
hints users need: "did you mean" for unknown keys and names, and YAML 1.1's reading of ``1e-3`` as a string.
The message is derived from the field's declaration (its type, bounds, choices), so the models are the only
statement of what a key accepts. :func:`json_schema` gives the same declaration to editors (``archsearch schema``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import annotated_types
import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from typing_extensions import dataclass_transform

from archsearch.core.errors import ConfigError, short, show

__all__ = ["Model", "declared", "DECLARED", "Bool", "Str", "Section", "OrNull", "AcceptsNull", "Expect", "Int",
           "Number", "OneOf", "Choices", "validate", "fail", "json_schema", "keys", "SCHEMA_DIR",
           "SCHEMAS"]

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"  # shipped: <kind>.schema.json
SCHEMAS = ("study", "space")
T = TypeVar("T")


class Model(BaseModel):
    """A section of a YAML file: no unknown keys, no coercion (a quoted number stays a string), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Lax at the class level, since a strict pydantic dataclass refuses a mapping for a nested section; every leaf is
# strict on its own (Int, Number, Bool, Str, OneOf; a Literal of strings takes only those strings).
DECLARED = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


@dataclass_transform(frozen_default=True, field_specifiers=(Field, FieldInfo, dataclasses.field))
def declared(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]:
    """A config class: a frozen pydantic dataclass that is a file's section and what the code reads.

    Still a dataclass (positional arguments, ``dataclasses.replace`` and ``asdict``), validated when built in code
    too: a bad value is a ConfigError naming the key, worded as for a file (``TrainConfig(epochs=0)``: "epochs:
    expected an integer >= 1 and <= 10000, got int 0").
    """
    def wrap(cls: type[T]) -> type[T]:
        dc: Any = pydantic.dataclasses.dataclass(frozen=True, kw_only=kw_only, config=DECLARED)(cls)
        init, names = dc.__init__, [f.name for f in dataclasses.fields(dc) if f.init]

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            try:
                init(self, *args, **kwargs)
            except pydantic.ValidationError as e:  # a positional argument's error names its index: use its name
                raise _config_error(dc, e, names=names) from None

        dc.__init__ = __init__
        return dc

    return wrap


Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class AcceptsNull:
    """JSON Schema: the field also accepts null (where a validator reads null as the default)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        return {"anyOf": [handler(core_schema), {"type": "null"}]}


def OrNull(annotation: Any, default: Any) -> Any:  # noqa: N802 - a type factory, used like a type
    """``annotation``, where null in the file means ``default()``."""
    return Annotated[annotation, BeforeValidator(lambda value: default() if value is None else value), AcceptsNull()]


def Section(cls: type) -> Any:  # noqa: N802
    """A nested section: a mapping of ``cls``'s keys; null or missing: all defaults."""
    return OrNull(cls, cls)


@dataclass(frozen=True)
class Expect:
    """What a field expects, in words, where its type alone does not say it (e.g. a name's characters)."""

    text: str


def _integral_float(value: Any) -> Any:
    """``1.0e+4`` written for an integer is that integer; anything else goes on to the strict int check."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def Int(lo: int, hi: int, *, integral_floats: bool = True) -> Any:  # noqa: N802 - a type factory, used like a type
    """An integer in ``[lo, hi]``; a float with no fraction counts (unless not ``integral_floats``), a bool or a
    string does not."""
    if not integral_floats:
        return Annotated[int, Field(strict=True, ge=lo, le=hi)]
    return Annotated[int, Field(strict=True, ge=lo, le=hi), BeforeValidator(_integral_float)]


def OneOf(*options: Any) -> Any:  # noqa: N802
    """One of ``options``; for numbers, of that exact type (pydantic's Literal takes ``True`` for 1, ``2.0`` for 2)."""
    def exact(value: Any) -> Any:
        if not any(type(value) is type(o) and value == o for o in options):
            fail(f"expected one of {', '.join(map(repr, options))}, got {show(value)}{hint(value)}"
                 f"{did_you_mean(value, options)}")
        return value

    return Annotated[Literal[options], BeforeValidator(exact)]


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def Choices(item: Any) -> Any:  # noqa: N802
    """One value or a non-empty list of distinct ones (of type ``item``), as a tuple."""
    def distinct(values: list) -> tuple:
        if len(set(values)) != len(values):
            fail(f"choices must be distinct, got {values!r}")
        return tuple(values)

    item_schema = pydantic.TypeAdapter(item).json_schema()
    return Annotated[
        list[item], Expect(f"{_expected(_split(item))}, or a non-empty list of distinct ones"), Field(min_length=1),
        BeforeValidator(_as_list), AfterValidator(distinct),
        WithJsonSchema({"anyOf": [item_schema, {"type": "array", "items": item_schema, "minItems": 1,
                                                "uniqueItems": True}]}),
    ]


def Number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Any:  # noqa: N802
    """A finite number between ``lo`` and ``hi`` (open ends where said); an int counts, a bool does not."""
    bounds: dict[str, Any] = {"gt" if lo_open else "ge": lo, "lt" if hi_open else "le": hi}
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]


def fail(message: str) -> NoReturn:
    """Raise from a validator: the message becomes the ConfigError's, at the field's key path."""
    raise PydanticCustomError("archsearch", "{message}", {"message": message})


# -------------------------------------------------------------------------------------------------
# pydantic's errors as one ConfigError
# -------------------------------------------------------------------------------------------------


def validate(model: type, data: Any, *, path: Any = None, context: Mapping[str, Any] | None = None) -> Any:
    """``model`` validated from ``data``; the first error (unknown keys first) as a located ConfigError."""
    try:
        return pydantic.TypeAdapter(model).validate_python(data, context=dict(context or {}))
    except pydantic.ValidationError as e:
        raise _config_error(model, e, path=path) from None


def _config_error(model: type, e: pydantic.ValidationError, *, path: Any = None,
                  names: list[str] | None = None) -> ConfigError:
    """The first error (unknown keys first) as a located ConfigError; ``names``: positional arguments' fields."""
    errors = e.errors(include_url=False)
    first: dict[str, Any] = dict(next((x for x in errors if x["type"] in ("invalid_key", *_UNKNOWN)), errors[0]))
    if names and first["loc"] and isinstance(first["loc"][0], int) and 0 <= first["loc"][0] < len(names):
        first["loc"] = (names[first["loc"][0]], *first["loc"][1:])
    loc, message = _explain(model, first)
    return ConfigError(message, path=path, key=dotted(loc) or None)


_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")  # a model's, a dataclass's


def dotted(loc: tuple[str | int, ...]) -> str:
    """``('stages', 0, 'block')`` -> ``stages[0].block``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(model: type, error: Mapping[str, Any]) -> tuple[tuple, str]:
    """The key path of ``error`` and the message today's users read."""
    kind, loc, value = error["type"], tuple(error["loc"]), error["input"]
    if loc and loc[-1] == "[key]":  # a mapping key of the wrong kind, e.g. an option name that is no identifier
        owner, _ = _field_at(model, loc[:-2])
        return loc[:-2], f"{_expected((owner, []), key=True)}, got {show(loc[-2])}"
    if kind == "invalid_key":
        return loc[:-1], f"keys must be strings, got {show(loc[-1])}"
    if kind in _UNKNOWN:
        valid = keys(_field_at(model, loc[:-1])[0])
        return loc, f"unknown key {short(loc[-1])}{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"
    if kind in ("missing", "missing_argument"):
        return loc, "missing required key"
    if kind == "archsearch":
        return loc, error["ctx"]["message"]
    if kind == "value_error":  # a ValueError raised in a validator
        return loc, str(error["ctx"]["error"])
    annotation, metadata = _field_at(model, loc)
    choices = _literal(annotation)
    suggestion = did_you_mean(value, choices) if choices else ""
    return loc, f"expected {_expected((annotation, metadata))}, got {show(value)}{hint(value)}{suggestion}"


def _field_at(model: type, loc: tuple) -> tuple[Any, list]:
    """The annotation (Optional unwrapped) and constraint metadata of the field at ``loc``."""
    annotation: Any = model
    metadata: list = []
    for part in loc:
        annotation = _unwrap(annotation)
        if _fields(annotation) and isinstance(part, str):
            info = _fields(annotation)[_by_key(annotation).get(part, part)]
            annotation, metadata = info.annotation, list(info.metadata)
        elif typing.get_origin(annotation) in (list, tuple) and isinstance(part, int):
            annotation, metadata = typing.get_args(annotation)[0], []
        elif typing.get_origin(annotation) in (dict, Mapping):
            annotation, metadata = typing.get_args(annotation)[1], []
        else:  # a union member's tag (pydantic names the member it tried)
            continue
        annotation, more = _split(annotation)
        metadata += more
    return _unwrap(annotation), metadata


def _split(annotation: Any) -> tuple[Any, list]:
    """``Annotated[T, *meta]`` -> ``(T, meta)``, also inside ``Optional``."""
    if typing.get_origin(annotation) is Annotated:
        return annotation.__origin__, list(annotation.__metadata__)
    args = typing.get_args(annotation)
    if _is_union(annotation) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _split(inner[0])
    return annotation, []


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _unwrap(annotation: Any) -> Any:
    return _split(annotation)[0]


def _literal(annotation: Any) -> tuple:
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def _fields(annotation: Any) -> dict[str, pydantic.fields.FieldInfo]:
    """A model's or pydantic dataclass's fields by name; {} for anything else."""
    return (getattr(annotation, "__pydantic_fields__", None) if isinstance(annotation, type) else None) or {}


def _by_key(annotation: Any) -> dict[str, str]:
    """The keys a file writes (a field's alias, else its name) -> field names; excluded fields are no keys."""
    return {info.alias or name: name for name, info in _fields(annotation).items() if not info.exclude}


def keys(annotation: Any) -> list[str]:
    """The keys of a declared section, in the declaration's order (the file's)."""
    return list(_by_key(_unwrap(annotation)))



def _expected(field: tuple[Any, list], *, key: bool = False) -> str:
    """What ``field`` accepts, in words: its Expect, else its type with its bounds or choices."""
    annotation, metadata = field
    if key:  # a dict's key type
        annotation, metadata = _split(typing.get_args(annotation)[0])
    for item in metadata:
        if isinstance(item, Expect):
            return item.text
    if choices := _literal(annotation):
        return "one of " + ", ".join(repr(c) for c in choices)
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        return f"{'an integer' if annotation is int else 'a number'} {_bounds(metadata)}".rstrip()
    if valid := keys(annotation):
        return f"a mapping with keys {', '.join(valid)}"
    if annotation is str:
        return "a string"
    return f"{getattr(annotation, '__name__', annotation)}"


def _bounds(metadata: list) -> str:
    parts = []
    for item in _flatten(metadata):
        for cls, sign, name in ((annotated_types.Gt, ">", "gt"), (annotated_types.Ge, ">=", "ge"),
                                (annotated_types.Lt, "<", "lt"), (annotated_types.Le, "<=", "le")):
            if isinstance(item, cls):
                parts.append(f"{sign} {_fmt(getattr(item, name))}")
    return " and ".join(parts)


def _flatten(metadata: list) -> list:
    """Constraints, also those a ``Field(...)`` in ``Annotated`` holds in its own metadata."""
    out = []
    for item in metadata:
        out += _flatten(item.metadata) if isinstance(item, pydantic.fields.FieldInfo) else [item]
    return out


def _fmt(x: float) -> str:
    if isinstance(x, int) or (x.is_integer() and abs(x) < 1e7):
        return str(int(x))
    return f"{x:g}"


def _yaml_float(text: str) -> str:
    """``text`` (a number with an exponent) spelled so that YAML 1.1 reads it as a float: 1e-3 -> 1.0e-3."""
    match = re.fullmatch(r"([+-]?)(\d*)\.?(\d*)[eE]([+-]?)(\d+)", text)
    if match is None or not (match[2] or match[3]):
        return repr(float(text))
    sign, whole, frac, exp_sign, exponent = match.groups()
    return f"{sign}{whole or '0'}.{frac or '0'}e{exp_sign or '+'}{exponent}"


def hint(value: Any) -> str:
    """Why a value that looks right is not: YAML 1.1 exponent rules, quoted numbers, booleans."""
    if isinstance(value, bool):
        return " (true/false is a boolean, not a number)"
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return ""
        if "e" in text.lower() and math.isfinite(number):
            return (
                f" (YAML 1.1 reads {text} as a string: a float needs a dot in the mantissa and a sign in "
                f"the exponent; write {_yaml_float(text)})"
            )
        return " (a quoted number is a string: remove the quotes)"
    return ""


def did_you_mean(word: Any, options: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word.lower(), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -------------------------------------------------------------------------------------------------
# JSON Schema
# -------------------------------------------------------------------------------------------------


def json_schema(model: type, *, title: str, description: str) -> dict[str, Any]:
    """The model's JSON Schema (draft 2020-12), as shipped in ``archsearch/schemas/`` and printed by the CLI."""
    schema = pydantic.TypeAdapter(model).json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "description": description, **{k: v for k, v in schema.items() if k not in ("title", "description")}}


def schema_text(schema: Mapping[str, Any]) -> str:
    """The shipped file's exact text (sorted keys off: the models' order is the documentation's)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
