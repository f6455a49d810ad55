"""Shared helpers for the provider adapters: tolerant field access and strict count parsing.

Every adapter reads provider payloads that may be plain dicts (JSON, boto3), SDK objects
(pydantic models from openai, anthropic, google-genai, cohere) or litellm objects. ``get`` reads a
field from any of them without ever raising; ``count`` turns a field into a token count or raises
``Unusable`` when the value is present but corrupt, which the public entry point maps to ``None``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

from agentmeter.usage import Usage

__all__ = [
    "MAX_TOKENS",
    "Unusable",
    "count",
    "field",
    "first",
    "from_litellm",
    "get",
    "make_usage",
    "subtract",
    "to_raw",
]

# No single call reads or writes anywhere near 2**53 tokens; a larger value is a corrupt payload
# (and beyond what a JSON producer in JavaScript can even represent exactly).
MAX_TOKENS = 2**53

# Scalars and sequences never carry named fields; skipping getattr on them is cheaper and avoids
# matching methods such as ``str.count``.
_NO_FIELDS = (str, bytes, bytearray, int, float, bool, list, tuple, set, frozenset)


class Unusable(Exception):
    """A usage payload is present but cannot be trusted (negative, non-numeric, inconsistent)."""


_PROPERTIES: dict[tuple[type, str], bool] = {}


def _is_property(cls: type, key: str) -> bool:
    """Whether ``cls`` computes ``key`` (cached: class-level lookups on pydantic models are slow)."""
    known = _PROPERTIES.get((cls, key))
    if known is None:
        known = _PROPERTIES[(cls, key)] = any(
            isinstance(klass.__dict__.get(key), property) for klass in cls.__mro__
        )
    return known


# What ``get`` does with an object, by its type: found once per type (isinstance against the
# ``Mapping`` ABC costs about a microsecond, and parsing one usage payload asks ~20 fields).
_MAPPING, _SCALAR, _PYDANTIC, _OBJECT = range(4)
_KINDS: dict[type, int] = {}


def _kind_of(cls: type) -> int:
    if issubclass(cls, Mapping):
        return _MAPPING
    if issubclass(cls, _NO_FIELDS):
        return _SCALAR
    if isinstance(getattr(cls, "__pydantic_fields__", None), dict):
        return _PYDANTIC
    return _OBJECT


def get(obj: Any, key: str) -> Any:
    """Field ``key`` of a mapping or attribute of an object; ``None`` when absent or on any error."""
    if obj is None:
        return None
    cls = type(obj)
    if cls is dict:
        return obj.get(key)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _kind_of(cls)
        if len(_KINDS) < 4096:  # types are few; a bound keeps a pathological caller harmless
            _KINDS[cls] = kind
    if kind == _MAPPING:
        try:
            return obj.get(key)
        except Exception:
            return None
    if kind == _SCALAR:
        return None
    if kind == _PYDANTIC:
        # A pydantic model (litellm's responses): read declared fields and extras from the
        # instance dicts. getattr of an absent name goes through pydantic's __getattr__ and an
        # exception, several microseconds each, and usage parsing asks for many absent names.
        value = obj.__dict__.get(key)
        if value is not None or key in cls.__pydantic_fields__:
            return value
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra and key in extra:
            return extra[key]
        if not _is_property(cls, key):
            return None
        # a computed field: fall through to getattr
    try:
        return getattr(obj, key, None)
    except Exception:  # properties of foreign objects may raise anything
        return None


def plain(obj: Any, nested: tuple[str, ...] = ()) -> Any:
    """A pydantic model's fields and extras as a dict (``nested`` ones too), else ``obj`` itself.

    ``get`` on the dict answers what ``get`` on the model answers, at a dict lookup's cost: for
    a model that computes no public name (``property``), which is checked once per class.
    Parsing one litellm usage asks ~20 fields; this is the hot path of ``run.completion``.
    """
    cls = type(obj)
    flat = _FLAT.get(cls)
    if flat is None:
        flat = _is_flat_model(cls)
        if len(_FLAT) < 4096:
            _FLAT[cls] = flat
    if not flat:
        return obj
    fields = dict(obj.__dict__)
    extra = obj.__pydantic_extra__
    if extra:
        fields.update(extra)
    for key in nested:
        value = fields.get(key)
        if value is not None:
            fields[key] = plain(value, nested)
    return fields


# Per class: whether ``plain`` may read it as a dict (a pydantic model with no computed names).
_FLAT: dict[type, bool] = {}
# pydantic's own properties, which no usage payload names.
_PYDANTIC_API = frozenset(
    {"model_extra", "model_fields_set", "model_computed_fields", "model_fields"}
)


def _is_flat_model(cls: type) -> bool:
    if not isinstance(getattr(cls, "__pydantic_fields__", None), dict):
        return False
    return not any(
        isinstance(value, property)
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if not name.startswith("_") and name not in _PYDANTIC_API
    )


def first(obj: Any, *keys: str) -> Any:
    """The first non-``None`` field among ``keys`` (camelCase and snake_case spellings)."""
    for key in keys:
        value = get(obj, key)
        if value is not None:
            return value
    return None


def count(value: Any) -> int | None:
    """A token count from ``value``: ``None`` when absent, ``Unusable`` when present but corrupt.

    Accepted: non-negative ints, integral floats (Cohere's SDK types counts as floats), ASCII digit
    strings ("12") and integer-like objects (``__index__``). Rejected: bools, negatives, fractions,
    NaN/inf, other strings, containers and values above ``MAX_TOKENS``.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        number = value
    elif kind is bool:
        raise Unusable("bool is not a token count")
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise Unusable(f"non-integral token count {value!r}")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        # 16 digits bound int() parsing and stay above MAX_TOKENS' 16 digits for the range check.
        if not (0 < len(text) <= 16 and text.isascii() and text.isdigit()):
            raise Unusable(f"non-numeric token count {value!r}")
        number = int(text)
    else:
        try:
            number = operator.index(value)
        except Exception as exc:
            raise Unusable(f"token count of type {kind.__name__}") from exc
    if number < 0 or number > MAX_TOKENS:
        raise Unusable(f"token count out of range: {number}")
    return number


def field(obj: Any, *keys: str) -> int | None:
    """``count`` of the first present field among ``keys``."""
    return count(first(obj, *keys))


def subtract(total: int, *parts: int) -> int:
    """``total`` minus its cached ``parts``; a negative rest means the provider contradicts itself."""
    rest = total - sum(parts)
    if rest < 0:
        raise Unusable(f"cached parts {parts} exceed the prompt total {total}")
    return rest


def from_litellm(obj: Any) -> bool:
    """Whether ``obj`` is a litellm object, judged by its class module (litellm is never imported)."""
    module = getattr(type(obj), "__module__", None)
    return isinstance(module, str) and (module == "litellm" or module.startswith("litellm."))


def to_raw(obj: Any) -> dict[str, Any] | None:
    """The provider's usage object as a plain dict (``raw`` on ``Usage``), or ``None``."""
    if obj is None:
        return None
    if type(obj) is dict:
        return obj
    if isinstance(obj, Mapping):
        try:
            return dict(obj)
        except Exception:
            return None
    if _FLAT.get(type(obj)):  # a pydantic model seen by plain(): skip the method lookups
        try:
            return obj.model_dump()  # type: ignore[no-any-return]
        except Exception:
            pass
    for method in ("model_dump", "to_dict", "dict"):
        dump = get(obj, method)
        if callable(dump):
            try:
                data = dump()
            except Exception:
                continue
            if isinstance(data, dict):
                return data
    try:
        data = vars(obj)
    except TypeError:
        return None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def make_usage(
    provider: str,
    raw: Any,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> Usage:
    """Build a ``Usage``; sub-counts that overshoot their parent are clamped to it.

    ``reasoning_tokens`` and ``cache_write_1h_tokens`` only split a bucket that is already billed
    (output, cache write), so clamping them keeps the billed totals exactly as the provider sent them.
    """
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=min(reasoning_tokens, output_tokens),
        cache_write_1h_tokens=min(cache_write_1h_tokens, cache_write_tokens),
        provider=provider,
        raw=to_raw(raw),
    )
