"""The declared schemas' plumbing: constrained field types, pydantic's errors as one located ConfigError, JSON Schema.

The study and space files are declared as pydantic v2 models (:mod:`archsearch.config.study_config`,
:mod:`archsearch.space.search_space`) built from the field types here. :func:`validate` runs a model on parsed YAML
and turns the first error into a
:class:`~archsearch.core.errors.ConfigError` that names the file, the dotted key path and what was expected, with the
hints users need: "did you mean" for unknown keys and names, and YAML 1.1's reading of ``1e-3`` as a string.
The message is derived from the field's declaration (its type, bounds, choices), so the models are the only
statement of what a key accepts. :func:`json_schema` gives the same declaration to editors (``archsearch schema``).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import annotated_types
import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from archsearch.core.errors import ConfigError, short, show

__all__ = ["Model", "Expect", "Int", "Number", "OneOf", "Choices", "validate", "fail", "json_schema", "SCHEMA_DIR",
           "SCHEMAS"]

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"  # shipped: <kind>.schema.json
SCHEMAS = ("study", "space")


class Model(BaseModel):
    """A section of a YAML file: no unknown keys, no coercion (a quoted number stays a string), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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


def validate(model: type[BaseModel], data: Any, *, path: Any = None, context: Mapping[str, Any] | None = None) -> Any:
    """``model`` validated from ``data``; the first error (unknown keys first) as a located ConfigError."""
    try:
        return model.model_validate(data, context=dict(context or {}))
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False)
        first = next((x for x in errors if x["type"] in ("invalid_key", "extra_forbidden")), errors[0])
        loc, message = _explain(model, first)
        raise ConfigError(message, path=path, key=dotted(loc) or None) from None


def dotted(loc: tuple[str | int, ...]) -> str:
    """``('stages', 0, 'block')`` -> ``stages[0].block``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(model: type[BaseModel], error: Mapping[str, Any]) -> tuple[tuple, str]:
    """The key path of ``error`` and the message today's users read."""
    kind, loc, value = error["type"], tuple(error["loc"]), error["input"]
    if loc and loc[-1] == "[key]":  # a mapping key of the wrong kind, e.g. an option name that is no identifier
        owner, _ = _field_at(model, loc[:-2])
        return loc[:-2], f"{_expected((owner, []), key=True)}, got {show(loc[-2])}"
    if kind == "invalid_key":
        return loc[:-1], f"keys must be strings, got {show(loc[-1])}"
    if kind == "extra_forbidden":
        keys = _keys(_field_at(model, loc[:-1])[0])
        return loc, f"unknown key {short(loc[-1])}{did_you_mean(loc[-1], keys)}; valid keys here: {', '.join(keys)}"
    if kind == "missing":
        return loc, "missing required key"
    if kind == "archsearch":
        return loc, error["ctx"]["message"]
    if kind == "value_error":  # a ValueError raised in a validator
        return loc, str(error["ctx"]["error"])
    annotation, metadata = _field_at(model, loc)
    choices = _literal(annotation)
    suggestion = did_you_mean(value, choices) if choices else ""
    return loc, f"expected {_expected((annotation, metadata))}, got {show(value)}{hint(value)}{suggestion}"


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[Any, list]:
    """The annotation (Optional unwrapped) and constraint metadata of the field at ``loc``."""
    annotation: Any = model
    metadata: list = []
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
            info = annotation.model_fields[part]
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


def _keys(annotation: Any) -> list[str]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


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
    if keys := _keys(annotation):
        return f"a mapping with keys {', '.join(keys)}"
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


def json_schema(model: type[BaseModel], *, title: str, description: str) -> dict[str, Any]:
    """The model's JSON Schema (draft 2020-12), as shipped in ``archsearch/schemas/`` and printed by the CLI."""
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "description": description, **{k: v for k, v in schema.items() if k not in ("title", "description")}}


def schema_text(schema: Mapping[str, Any]) -> str:
    """The shipped file's exact text (sorted keys off: the models' order is the documentation's)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
