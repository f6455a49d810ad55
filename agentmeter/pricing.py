"""Exact per-call prices: litellm's price map as integer rates, plus the user's overrides.

Money is never a float here. A rate is an integer number of atto-USD (1e-18 USD) per token, read
from litellm's float prices through ``Decimal(repr(price))`` so ``2.5e-06`` is exactly 2.5e-06.
A call's cost is the integer sum of tokens x rate in atto-USD, rounded once (half-even) to whole
nano-USD (1e-9 USD): an ``int`` for the database (``cost_nano_usd``), a ``Decimal`` with exponent
-9 for the Python API (``compute_cost``). An unknown model costs ``None``, never 0.

Rules taken from litellm (``litellm_core_utils/llm_cost_calc/utils.py``, ``_get_token_base_cost``
and ``tiered_pricing.py``), so a price agrees with ``litellm.cost_per_token``:

* each ``Usage`` bucket is billed at its own rate; reasoning tokens are part of the output and
  bill at ``output_cost_per_reasoning_token`` only when the map has one (else at the output rate);
* a missing cache-read or cache-write rate is the input rate; a missing 1-hour cache-write rate
  is the cache-write rate; an explicit 0 stays a real (free) price; fireworks_ai alone defaults a
  missing cache-read rate to half the input rate (litellm's ``with_default_cache_read_rate``);
* ``*_above_<N>k_tokens`` rates apply to the whole call once the prompt (input + cache read +
  cache write, litellm's ``usage.prompt_tokens``) exceeds N: strictly more than N, except xAI
  which bills the higher tier from N on (``_INCLUSIVE_THRESHOLD_PROVIDERS``). With several
  thresholds the highest crossed wins, a rate it does not restate carries over from the tier
  below, and ``output_cost_per_reasoning_token`` is never tiered;
* a ``tiered_pricing`` list (Dashscope's all-or-nothing ranges) picks one range by prompt size.

Not modelled (litellm prices them from request context we do not have): service tiers
(``_priority``/``_flex``), batch rates, off-peak windows (some DeepSeek models), regional
uplifts, and per-modality (audio/image) rates: all tokens of a bucket bill at its text rate.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, overload

from .errors import ConfigError

if TYPE_CHECKING:
    from .usage import Usage

__all__ = [
    "ATTO_PER_USD",
    "NANO_PER_USD",
    "OVERRIDE_FIELDS",
    "PriceTable",
    "Rates",
    "Tier",
    "compute_cost",
    "cost_nano_usd",
    "default_table",
    "nano_to_usd",
    "usd_to_nano",
]

ATTO_PER_USD = 10**18
NANO_PER_USD = 10**9
_ATTO_PER_NANO = 10**9
_HALF_NANO = _ATTO_PER_NANO // 2

# Decimal arithmetic with room for any price: exact for every value we scale, whatever the
# caller did to the thread's default context.
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)

# Override field -> the litellm map key it replaces (rates are USD per million tokens).
_RATE_KEYS: dict[str, str] = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "reasoning": "output_cost_per_reasoning_token",
}
_LIMIT_KEYS = ("max_input_tokens", "max_output_tokens")
OVERRIDE_FIELDS: tuple[str, ...] = (*_RATE_KEYS, *_LIMIT_KEYS)
_VALID_ENTRY = '{input: "$2.50", output: "$10"} (USD per million tokens)'

# Long-context tier keys, e.g. input_cost_per_token_above_200k_tokens. Only the plain form: the
# _priority/_flex/_batches variants belong to request options we do not see.
_TIER_KEY = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost(?:_above_1hr)?)_above_(\d+(?:\.\d+)?k?)_tokens$"
)
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
_FIREWORKS_CACHE_READ_RATIO = Decimal("0.5")  # litellm's FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO
# Bare names are tried under these first-party prefixes only: a host's price for the same
# weights (together_ai/llama-...) is not the price of the caller's provider.
# fmt: off
_FIRST_PARTY_PREFIXES = (
    "openai", "anthropic", "gemini", "vertex_ai", "xai", "mistral", "deepseek", "cohere", "ai21",
    "meta_llama", "moonshot", "zai", "minimax", "dashscope", "perplexity",
)
# fmt: on
_FAMILY_ALIASES = {"bedrock_converse": "bedrock", "cohere_chat": "cohere", "azure_text": "azure"}
_MAX_CACHED_NAMES = 65_536  # bounds memory if callers invent model names; the map has ~4k


# --------------------------------------------------------------------------------------------
# Money helpers


def nano_to_usd(n: int) -> Decimal:
    """Whole nano-USD as an exact ``Decimal`` of USD with exponent -9 (``1`` -> ``0.000000001``)."""
    # The string constructor is exact whatever the thread's Decimal context says.
    return Decimal(f"{int(n)}E-9")


def usd_to_nano(x: Decimal | str | int | float) -> int:
    """USD (``Decimal``, ``"$1.25"``, ``"1.25"``, int, float via its decimal text) as whole nano-USD.

    Exact for any amount with at most nine decimals; a finer amount rounds half-even.
    """
    value = _parse_money(x)
    if value is None:
        raise ConfigError(f'expected an amount in USD such as "$2.50", got {x!r}')
    return _scale_to_int(value, 9)


def _parse_money(value: object) -> Decimal | None:
    """A finite Decimal from "$2.50", "2.50", 2.5, 2 or Decimal; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))  # 0.1 -> Decimal("0.1"), not the binary expansion
    elif isinstance(value, str):
        text = value.strip()
        sign = text[:1] if text[:1] in "+-" else ""
        text = text[len(sign) :].lstrip()
        text = text[1:].lstrip() if text.startswith("$") else text  # "$2.50" and "-$1" alike
        try:
            result = Decimal(sign + text)
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None


def _scale_to_int(value: Decimal, exponent: int) -> int:
    """``value * 10**exponent`` as an int, rounded half-even only if it is finer than that."""
    return int(value.scaleb(exponent, _CTX).to_integral_value(ROUND_HALF_EVEN, _CTX))


def _atto_to_nano(atto: int) -> int:
    """Round atto-USD to nano-USD half-even (integer arithmetic, so exact)."""
    nano, rest = divmod(atto, _ATTO_PER_NANO)
    if rest > _HALF_NANO or (rest == _HALF_NANO and nano & 1):
        nano += 1
    return nano


# --------------------------------------------------------------------------------------------
# Rates


@dataclass(frozen=True, slots=True)
class Tier:
    """Rates that bill the whole call once its prompt has at least ``from_tokens`` tokens."""

    from_tokens: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class Rates:
    """One model's prices as integer atto-USD (1e-18 USD) per token, fallbacks already applied.

    ``cache_read``/``cache_write`` equal ``input`` when the map has no cache price and
    ``cache_write_1h`` equals ``cache_write`` when it has no one-hour price. ``reasoning`` is set
    only when reasoning tokens have their own rate. ``tiers`` (ascending ``from_tokens``) replace
    all of these for a long prompt; ``for_prompt`` picks the one that applies.
    """

    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    reasoning: int | None = None
    tiers: tuple[Tier, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    provider: str | None = None

    def for_prompt(self, prompt_tokens: int) -> Rates:
        """The rates billed for a call whose prompt (input + cache read + write) has this many tokens."""
        for tier in reversed(self.tiers):
            if prompt_tokens >= tier.from_tokens:
                return tier.rates
        return self

    def cost_atto(self, usage: Usage) -> int:
        """Exact cost of ``usage`` in atto-USD: every bucket times its own rate."""
        return _cost_atto(self, usage)


def _cost_atto(rates: Rates, u: Usage) -> int:
    """Sum of bucket x rate; the hot path, so plain attribute reads and int arithmetic only."""
    if rates.tiers:
        rates = rates.for_prompt(u.input_tokens + u.cache_read_tokens + u.cache_write_tokens)
    write_1h = u.cache_write_1h_tokens
    total = (
        u.input_tokens * rates.input
        + u.cache_read_tokens * rates.cache_read
        + (u.cache_write_tokens - write_1h) * rates.cache_write
        + write_1h * rates.cache_write_1h
    )
    reasoning_rate = rates.reasoning
    if reasoning_rate is None:
        return total + u.output_tokens * rates.output
    reasoning = u.reasoning_tokens
    return total + (u.output_tokens - reasoning) * rates.output + reasoning * reasoning_rate


# --------------------------------------------------------------------------------------------
# Reading litellm's map


def _map_rate(entry: Mapping[str, Any], key: str) -> int | None:
    """A map price (float, int or numeric string, USD per token) in atto-USD; None if absent."""
    value = entry.get(key)
    if value is None:
        return None
    money = _parse_money(value)
    # A malformed or negative price in a user-registered entry is treated as absent, as
    # litellm skips unparsable strings: cost must never go negative.
    if money is None or money < 0:
        return None
    return _scale_to_int(money, 18)


def _map_int(entry: Mapping[str, Any], key: str) -> int | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


def _resolved(
    inp: int,
    out: int,
    cache_read: int | None,
    cache_write: int | None,
    cache_write_1h: int | None,
    reasoning: int | None,
    **info: Any,
) -> Rates:
    """Apply litellm's fallbacks: no cache price -> input rate; no 1h price -> cache-write rate."""
    write = inp if cache_write is None else cache_write
    return Rates(
        input=inp,
        output=out,
        cache_read=inp if cache_read is None else cache_read,
        cache_write=write,
        cache_write_1h=write if cache_write_1h is None else cache_write_1h,
        # Same rate as output is no distinct rate: keeps the hot path on one branch.
        reasoning=None if reasoning == out else reasoning,
        **info,
    )


def _parse_threshold(text: str) -> Decimal:
    return Decimal(text[:-1]) * 1000 if text.endswith("k") else Decimal(text)


def _first_tokens_above(threshold: Decimal, inclusive: bool) -> int:
    """Smallest prompt size past the threshold: ``> N`` means N+1, xAI's ``>= N`` means N."""
    floor = int(threshold.to_integral_value(ROUND_FLOOR, _CTX))
    return floor if inclusive and floor == threshold else floor + 1


def _rates_from_entry(entry: Mapping[str, Any]) -> Rates | None:
    """One litellm map entry as ``Rates``; None if it has no per-token price at all."""
    provider = entry.get("litellm_provider")
    provider = provider if isinstance(provider, str) else None
    inp = _map_rate(entry, "input_cost_per_token")
    out = _map_rate(entry, "output_cost_per_token")
    if not out:  # litellm bills image-generation output tokens at their image-token rate
        out = _map_rate(entry, "output_cost_per_image_token") or out
    inp_or_0, out_or_0 = inp or 0, out or 0  # litellm's get_cost_per_unit defaults to 0.0
    reasoning = _map_rate(entry, "output_cost_per_reasoning_token")
    info = {
        "max_input_tokens": _map_int(entry, "max_input_tokens"),
        "max_output_tokens": _map_int(entry, "max_output_tokens"),
        "provider": provider,
    }
    ranges = _range_tiers(entry, inp_or_0, out_or_0, reasoning, info)
    if inp is None and out is None and not ranges:
        return None  # priced per image, second, query...: not something tokens can price
    inp, out = inp_or_0, out_or_0
    cache_read = _map_rate(entry, "cache_read_input_token_cost")
    if cache_read is None and provider == "fireworks_ai":
        cache_read = _scale_to_int(_CTX.multiply(Decimal(inp), _FIREWORKS_CACHE_READ_RATIO), 0)
    cache_write = _map_rate(entry, "cache_creation_input_token_cost")
    write_1h = _map_rate(entry, "cache_creation_input_token_cost_above_1hr")
    tiers = (
        ranges
        if ranges
        else _threshold_tiers(
            entry, provider, inp, out, cache_read, cache_write, write_1h, reasoning, info
        )
    )
    return _resolved(inp, out, cache_read, cache_write, write_1h, reasoning, tiers=tiers, **info)


def _threshold_tiers(
    entry: Mapping[str, Any],
    provider: str | None,
    inp: int,
    out: int,
    cache_read: int | None,
    cache_write: int | None,
    write_1h: int | None,
    reasoning: int | None,
    info: dict[str, Any],
) -> tuple[Tier, ...]:
    """``*_above_<N>_tokens`` tiers, chained like litellm's ascending walk over thresholds."""
    thresholds = {
        m.group(2)
        for key, value in entry.items()
        if value is not None and (m := _TIER_KEY.match(key))
    }
    inclusive = provider in _INCLUSIVE_THRESHOLD_PROVIDERS
    tiers = []
    for text in sorted(thresholds, key=_parse_threshold):
        # A rate this tier does not restate keeps the value of the tier below (or the base).
        suffix = f"_above_{text}_tokens"
        inp = _pick(_map_rate(entry, "input_cost_per_token" + suffix), inp)
        out = _pick(_map_rate(entry, "output_cost_per_token" + suffix), out)
        cache_read = _pick(_map_rate(entry, "cache_read_input_token_cost" + suffix), cache_read)
        cache_write = _pick(
            _map_rate(entry, "cache_creation_input_token_cost" + suffix), cache_write
        )
        write_1h = _pick(
            _map_rate(entry, "cache_creation_input_token_cost_above_1hr" + suffix), write_1h
        )
        rates = _resolved(inp, out, cache_read, cache_write, write_1h, reasoning, **info)
        tiers.append(Tier(_first_tokens_above(_parse_threshold(text), inclusive), rates))
    return tuple(tiers)


@overload
def _pick(value: int | None, fallback: int) -> int: ...
@overload
def _pick(value: int | None, fallback: int | None) -> int | None: ...
def _pick(value: int | None, fallback: int | None) -> int | None:
    return fallback if value is None else value


def _range_tiers(
    entry: Mapping[str, Any], inp: int, out: int, reasoning: int | None, info: dict[str, Any]
) -> tuple[Tier, ...]:
    """Dashscope-style ``tiered_pricing`` ranges: one range bills every token of the call.

    litellm picks the range with ``start < prompt <= end`` (beyond the last: the last); for the
    contiguous ranges from 0 that the map holds, that is the highest start below the prompt.
    A range's missing cache rates are its own input rate, never the model's cache rates.
    """
    table = entry.get("tiered_pricing")
    if not isinstance(table, list):
        return ()
    ranges = [
        t
        for t in table
        if isinstance(t, Mapping)
        and isinstance(t.get("range"), (list, tuple))
        and len(t["range"]) == 2
    ]
    tiers = []
    for tier in sorted(ranges, key=lambda t: t["range"][0]):
        start = _parse_money(tier["range"][0])
        tier_in = _map_rate(tier, "input_cost_per_token")
        if start is None or tier_in is None:
            continue  # litellm bills such a range at the flat rates; the map has none
        tier_out = _pick(_map_rate(tier, "output_cost_per_token"), out)
        write = _pick(_map_rate(tier, "cache_creation_input_token_cost"), tier_in)
        # litellm: ``tier_rate(1h, cache_creation) or cache_creation`` (so a 0 also falls back)
        write_1h = _map_rate(tier, "cache_creation_input_token_cost_above_1hr") or write
        tier_reasoning = _map_rate(tier, "output_cost_per_reasoning_token")
        if tier_reasoning is None:
            tier_reasoning = tier_out if "output_cost_per_token" in tier else _pick(reasoning, out)
        rates = _resolved(
            tier_in,
            tier_out,
            _map_rate(tier, "cache_read_input_token_cost"),
            write,
            write_1h,
            tier_reasoning,
            **info,
        )
        tiers.append(Tier(max(_first_tokens_above(start, False), 1), rates))
    return tuple(tiers)


# --------------------------------------------------------------------------------------------
# Name resolution


def _family(provider: str) -> str:
    """Provider family: vertex_ai-language-models -> vertex_ai, bedrock_converse -> bedrock."""
    if provider.startswith("text-completion-"):
        provider = provider[len("text-completion-") :]
    head = provider.split("-", 1)[0]
    return _FAMILY_ALIASES.get(head, head)


class _Snapshot:
    """litellm's map read once: the raw entries (for merging overrides) and their ``Rates``."""

    __slots__ = ("families", "lower", "rates", "raw")

    def __init__(self, model_cost: Mapping[str, Any]) -> None:
        self.raw: dict[str, Mapping[str, Any]] = {
            name: entry
            for name, entry in model_cost.items()
            if isinstance(name, str) and isinstance(entry, Mapping) and name != "sample_spec"
        }
        self.rates: dict[str, Rates] = {}
        for name, entry in self.raw.items():
            rates = _rates_from_entry(entry)
            if rates is not None:
                self.rates[name] = rates
        self.lower = _lower_index(self.rates)
        self.families = frozenset(_family(r.provider) for r in self.rates.values() if r.provider)


def _lower_index(names: Iterable[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name in names:
        index.setdefault(name.lower(), name)
    return index


def _resolve(
    name: str, rates: Mapping[str, Rates], lower: Mapping[str, str], families: frozenset[str]
) -> str | None:
    """The key ``name`` prices as, the way litellm's name candidates go; None if none fits.

    1. the exact key (then the same, ignoring case);
    2. ``provider/model``: strip leading segments (``bedrock/converse/x`` -> ``converse/x`` ->
       ``x``) and accept a key whose litellm_provider is in the family of the first segment that
       names a provider (``vertex_ai/gemini-2.5-pro`` -> ``gemini-2.5-pro``, a vertex_ai entry),
       so ``azure/<model>`` never silently takes OpenAI's price;
    3. a bare name under a first-party prefix (``grok-4.3`` -> ``xai/grok-4.3``).
    Dated-snapshot stripping is deliberately not done: a snapshot can be priced differently.
    """

    def find(candidate: str) -> str | None:
        if candidate in rates:
            return candidate
        return lower.get(candidate.lower())

    found = find(name)
    if found is not None:
        return found
    segments = name.split("/")
    if len(segments) > 1:
        family = next((_family(s) for s in segments[:-1] if _family(s) in families), None)
        for i in range(1, len(segments)):
            found = find("/".join(segments[i:]))
            if found is not None:
                provider = rates[found].provider
                if family is None or (provider is not None and _family(provider) == family):
                    return found
        return None
    for prefix in _FIRST_PARTY_PREFIXES:
        found = find(f"{prefix}/{name}")
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------------------------
# Overrides


def _validate_overrides(
    overrides: Mapping[str, Any],
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Check the ``pricing:`` section shape; rates become atto-USD per token.

    Returns the parsed entries and the problems found (each naming the model and the field).
    """
    if not isinstance(overrides, Mapping):
        return {}, [
            f"pricing: expected a mapping of model name to {_VALID_ENTRY}, got {type(overrides).__name__}"
        ]
    parsed: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    for model, fields in overrides.items():
        if not isinstance(model, str) or not model.strip():
            problems.append(f"pricing: model names must be non-empty strings, got {model!r}")
            continue
        if not isinstance(fields, Mapping):
            problems.append(
                f"pricing.{model}: expected a mapping such as {_VALID_ENTRY}, got {fields!r}"
            )
            continue
        entry: dict[str, int] = {}
        for field, value in fields.items():
            if field not in OVERRIDE_FIELDS:
                problems.append(
                    f"pricing.{model}.{field}: unknown field {field!r}; valid fields are {', '.join(OVERRIDE_FIELDS)}"
                )
            elif field in _LIMIT_KEYS:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    problems.append(
                        f"pricing.{model}.{field}: expected a positive whole number of tokens, got {value!r}"
                    )
                else:
                    entry[field] = value
            else:
                money = _parse_money(value)
                if money is None:
                    problems.append(
                        f'pricing.{model}.{field}: expected a price in USD per million tokens such as "$2.50", got {value!r}'
                    )
                elif money < 0:
                    problems.append(
                        f"pricing.{model}.{field}: price must not be negative, got {value!r}; "
                        f'expected USD per million tokens such as "$2.50"'
                    )
                else:
                    entry[field] = _scale_to_int(money, 12)  # per million tokens -> per token, atto
        parsed[model] = entry
    return parsed, problems


def _per_token_usd(atto: int) -> Decimal:
    return Decimal(f"{atto}E-18")


def _merged_entry(base: Mapping[str, Any], fields: Mapping[str, int]) -> dict[str, Any]:
    """The map entry with the overridden fields replaced, each one's long-context tiers included.

    A price the user sets is flat: keeping the map's ``_above_200k`` variant of it would bill a
    long prompt at a rate from another source. Fields not set keep the map's rates and tiers.
    """
    dropped = [_RATE_KEYS[f] for f in fields if f in _RATE_KEYS]
    pattern = (
        re.compile(rf"^(?:{'|'.join(map(re.escape, dropped))})(?:_above_\d+(?:\.\d+)?k?_tokens)?$")
        if dropped
        else None
    )
    merged = {k: v for k, v in base.items() if pattern is None or not pattern.match(k)}
    if pattern is not None and isinstance(merged.get("tiered_pricing"), list):
        merged["tiered_pricing"] = [
            {k: v for k, v in t.items() if not pattern.match(k)} if isinstance(t, Mapping) else t
            for t in merged["tiered_pricing"]
        ]
    for field, value in fields.items():
        merged[_RATE_KEYS.get(field, field)] = (
            _per_token_usd(value) if field in _RATE_KEYS else value
        )
    return merged


# --------------------------------------------------------------------------------------------
# The table


_SNAPSHOT: _Snapshot | None = None
_SNAPSHOT_LOCK = threading.Lock()


def _litellm_snapshot() -> _Snapshot:
    """litellm's bundled map, read once per process (litellm imported here, never at import)."""
    global _SNAPSHOT
    with _SNAPSHOT_LOCK:
        if _SNAPSHOT is None:
            # Never fetch the map over the network: prices must not change under a running agent.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            _SNAPSHOT = _Snapshot(litellm.model_cost)
        return _SNAPSHOT


class PriceTable:
    """Model name -> ``Rates``: litellm's map (read lazily, once) with the user's overrides on top.

    ``overrides`` has the YAML ``pricing:`` shape, USD per million tokens:
    ``{"my-model": {"input": "$2.50", "output": "$10", "cache_read": "$1.25"}}``. A model the map
    knows keeps every field not overridden; a new model needs ``input`` and ``output``. Overrides
    are checked (and the map read) when the table is built, so a bad entry raises ``ConfigError``
    at configuration time, not inside the agent's loop. ``load_map=False`` checks only their
    shape now and leaves the map (and the input/output check of new models) for the first
    lookup: for validating a policy file without importing litellm. ``model_cost`` replaces
    litellm's map.
    """

    __slots__ = ("_cache", "_lock", "_model_cost", "_overrides", "_rates", "_resolver", "_snapshot")

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        model_cost: Mapping[str, Any] | None = None,
        load_map: bool = True,
    ) -> None:
        self._model_cost = model_cost
        self._snapshot: _Snapshot | None = None
        self._rates: dict[str, Rates] = {}
        self._resolver: tuple[dict[str, str], frozenset[str]] = ({}, frozenset())
        self._cache: dict[str, Rates | None] = {}
        self._lock = threading.Lock()
        parsed, problems = _validate_overrides(overrides if overrides is not None else {})
        if problems:
            raise ConfigError("\n".join(problems), problems=problems)
        self._overrides = parsed
        if parsed and load_map:
            self._load()

    @classmethod
    def default(cls) -> PriceTable:
        """The process-wide table: litellm's map, no overrides (``default_table()``)."""
        return default_table()

    @property
    def overrides(self) -> dict[str, dict[str, int]]:
        """The validated overrides: rates in atto-USD per token, token limits as given."""
        return {model: dict(fields) for model, fields in self._overrides.items()}

    def with_overrides(self, mapping: Mapping[str, Mapping[str, Any]]) -> PriceTable:
        """A new table with ``mapping`` on top of this one's overrides (field by field)."""
        parsed, problems = _validate_overrides(mapping)
        if problems:
            raise ConfigError("\n".join(problems), problems=problems)
        table = PriceTable(model_cost=self._model_cost)
        merged = {model: dict(fields) for model, fields in self._overrides.items()}
        for model, fields in parsed.items():
            merged.setdefault(model, {}).update(fields)
        table._overrides = merged
        table._load(self._snapshot)  # share the parsed map: no second read
        return table

    def rates(self, model: str) -> Rates | None:
        """The rates ``model`` bills at, or None if unknown; a dict hit after the first call."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        if self._snapshot is None:
            self._load()
        found = _resolve(model, self._rates, *self._resolver)
        rates = None if found is None else self._rates[found]
        if len(self._cache) < _MAX_CACHED_NAMES:
            self._cache[model] = rates  # misses too: an unknown name stays a dict hit
        return rates

    def provider_of(self, model: str) -> str | None:
        """litellm's provider of the entry ``model`` prices as (None if unknown or user-added)."""
        rates = self.rates(model)
        return None if rates is None else rates.provider

    def resolve(self, model: str) -> str | None:
        """The map (or override) key that ``model`` prices as, or None if unknown."""
        if self._snapshot is None:
            self._load()
        return _resolve(model, self._rates, *self._resolver)

    def worst_case_nano_usd(
        self, model: str, prompt_tokens: int, max_output_tokens: int | None = None
    ) -> int | None:
        """Upper cost of a call before it is made: prompt at the input rate, output at the output rate.

        The rates are those of the tier the prompt size selects; the output rate is the higher of
        output and reasoning rates. ``max_output_tokens`` None means the model's limit from the
        map; None is returned if that is unknown too, or the model is. Cache writes (which cost
        more than input) are not assumed: reserve with care for prompts you cache.
        """
        exact = type(prompt_tokens) is int and prompt_tokens >= 0  # every decide asks: be quick
        if not exact or (
            max_output_tokens is not None
            and (type(max_output_tokens) is not int or max_output_tokens < 0)
        ):
            for label, value in (
                ("prompt_tokens", prompt_tokens),
                ("max_output_tokens", max_output_tokens),
            ):
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0
                ):
                    raise ConfigError(
                        f"worst_case_nano_usd: {label} must be a whole number >= 0, got {value!r}"
                    )
        rates = self.rates(model)
        if rates is None:
            return None
        output_tokens = rates.max_output_tokens if max_output_tokens is None else max_output_tokens
        if output_tokens is None:
            return None
        tier = rates.for_prompt(prompt_tokens)
        output_rate = max(tier.output, tier.reasoning or 0)
        atto = prompt_tokens * tier.input + output_tokens * output_rate
        # Round up: a reservation must never be below what the call can cost.
        return -(-atto // _ATTO_PER_NANO)

    def _load(self, snapshot: _Snapshot | None = None) -> None:
        """Read the map (once) and lay the overrides over it; ``_snapshot`` is set last."""
        with self._lock:
            if self._snapshot is not None:
                return
            if snapshot is None:
                snapshot = (
                    _Snapshot(self._model_cost)
                    if self._model_cost is not None
                    else _litellm_snapshot()
                )
            if self._overrides:
                rates = _apply_overrides(snapshot, self._overrides)
                self._rates, self._resolver = rates, (_lower_index(rates), snapshot.families)
            else:
                self._rates, self._resolver = snapshot.rates, (snapshot.lower, snapshot.families)
            # Readers test _snapshot without the lock: publish it only once _rates is complete.
            self._snapshot = snapshot


def _apply_overrides(
    snapshot: _Snapshot, overrides: Mapping[str, Mapping[str, int]]
) -> dict[str, Rates]:
    """The map's rates with each override merged into the entry its name resolves to."""
    rates = dict(snapshot.rates)
    problems: list[str] = []
    owner: dict[str, str] = {}  # map key -> the override name that replaced it
    for model, fields in overrides.items():
        base_key = _resolve(model, snapshot.rates, snapshot.lower, snapshot.families)
        if base_key is None:
            missing = [f for f in ("input", "output") if f not in fields]
            problems.extend(
                f"pricing.{model}.{field}: {model!r} is not in litellm's price map, so it needs "
                f"both input and output; {field} is missing. A valid entry: {model}: {_VALID_ENTRY}"
                for field in missing
            )
            if missing:
                continue
        entry = {} if base_key is None else snapshot.raw[base_key]
        new = _rates_from_entry(_merged_entry(entry, fields))
        if new is None:  # unreachable: input and output are both known by now
            raise ConfigError(
                f"pricing.{model}: no input or output price; a valid entry: {model}: {_VALID_ENTRY}"
            )
        rates[model] = new
        if base_key is not None:
            # Every spelling that resolves to this map entry must see the new price, so two
            # spellings of one model may not set it differently.
            other = owner.setdefault(base_key, model)
            if rates[other] != new:
                problems.append(
                    f"pricing.{model}: {model!r} and {other!r} both override litellm's "
                    f"{base_key!r} with different prices; keep one"
                )
            rates[base_key] = new
    if problems:
        raise ConfigError("\n".join(problems), problems=problems)
    return rates


_DEFAULT: PriceTable | None = None


def default_table() -> PriceTable:
    """The process-wide table (litellm's map, no overrides) used when ``prices`` is None."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PriceTable()
    return _DEFAULT


def cost_nano_usd(
    model: str, usage: Usage | None, *, prices: PriceTable | None = None
) -> int | None:
    """The call's cost in whole nano-USD (rounded once, half-even); None for an unknown model."""
    if usage is None:
        return None
    table = prices if prices is not None else (_DEFAULT or default_table())
    rates = table._cache.get(model)
    if rates is None:
        rates = table.rates(model)
        if rates is None:
            return None
    return _atto_to_nano(_cost_atto(rates, usage))


def compute_cost(
    model: str, usage: Usage | None, *, prices: PriceTable | None = None
) -> Decimal | None:
    """The call's cost in USD as a ``Decimal`` with exponent -9; None for an unknown model or usage."""
    nano = cost_nano_usd(model, usage, prices=prices)
    return None if nano is None else Decimal(f"{nano}E-9")
