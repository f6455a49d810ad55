"""Policy files: YAML in, validated by pydantic (``extra="forbid"``), compiled to plain values.

Every mistake becomes one line naming the file, the line, the field path, what was wrong and what
would be right; all of a file's mistakes are reported together in one ``ConfigError``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import ConfigError, read_config_file
from ..units import parse_count, parse_duration_s, parse_percent, parse_quantity
from ..windows import WindowSpec
from .metrics import ANOMALIES, METRICS

__all__ = ["Action", "PolicyRule", "PolicySet", "load_policies", "parse_policies"]

ACTIONS = ("downgrade", "upgrade", "compact", "pause", "halt", "alert", "no_stream")
SCOPES = ("run", "all", "model", "tag:NAME")
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "policies"


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}expected one of: {', '.join(choices)}"


# --------------------------------------------------------------------------------------------
# YAML with line numbers
class _LineLoader(yaml.SafeLoader):
    """A safe loader whose mappings remember the line of each key (``_Lines``)."""


class _Lines(dict):  # type: ignore[type-arg]
    __slots__ = ("key_lines", "line")
    line: int
    key_lines: dict[Any, int]


class _LinesList(list):  # type: ignore[type-arg]
    __slots__ = ("item_lines", "line")
    line: int
    item_lines: list[int]


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Lines:
    mapping = _Lines()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (a mapping may name each key once)",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = value_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LinesList:
    items = _LinesList(loader.construct_object(child, deep=True) for child in node.value)
    items.line = node.start_mark.line + 1
    items.item_lines = [child.start_mark.line + 1 for child in node.value]
    return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line_of(document: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of ``loc`` that the YAML document knows."""
    node, line = document, getattr(document, "line", None)
    for part in loc:
        if part in _FORM_TAGS:
            continue
        if isinstance(node, _Lines) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _LinesList) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _FORM_TAGS or str(part).startswith(
            ("function-", "union[", "str", "dict[", "list[")
        ):
            continue  # pydantic's union branch labels say nothing to the user
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


# --------------------------------------------------------------------------------------------
# The schema (pydantic, at the edge only)
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConditionSpec(_Strict):
    """``when:`` a statistic of a metric over a window in a scope, compared with a threshold."""

    metric: str
    stat: str | None = None
    window: str | None = None
    last: int | str | None = None
    scope: str | dict[str, str] = "run"
    above: float | int | str | None = None
    below: float | int | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _anomaly_shorthand(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "anomaly" not in data:
            return data
        kind = data["anomaly"]
        if kind not in ANOMALIES:
            raise ValueError(f"unknown anomaly '{kind}'; {_suggest(str(kind), tuple(ANOMALIES))}")
        if "metric" in data or "stat" in data:
            raise ValueError("'anomaly' names the metric itself: drop 'metric' and 'stat'")
        out = {k: v for k, v in data.items() if k != "anomaly"}
        out.update(metric=ANOMALIES[kind], stat="anomaly")
        out.setdefault("last", 100)
        if "above" not in out and "below" not in out:
            out["above"] = 6
        return out

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric '{value}'; {_suggest(value, tuple(METRICS))}")
        return value

    @field_validator("stat")
    @classmethod
    def _stat_applies(cls, value: str | None, info: ValidationInfo) -> str | None:
        metric = METRICS.get(info.data.get("metric", ""))
        if value is not None and metric is not None and value not in metric.stats:
            raise ValueError(
                f"stat '{value}' does not apply to metric '{metric.name}'; "
                f"{_suggest(value, metric.stats)}"
            )
        return value

    @field_validator("above", "below")
    @classmethod
    def _threshold(cls, value: Any, info: ValidationInfo) -> Any:
        metric = METRICS.get(info.data.get("metric", ""))
        if value is None or metric is None:
            return value
        if info.data.get("stat") == "anomaly":
            try:
                z = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"an anomaly threshold is a robust z-score like 6, got {value!r}"
                ) from None
            if z <= 0:
                raise ValueError(
                    f"an anomaly threshold is a positive robust z-score like 6, got {value!r}"
                )
            return value
        example = {"usd": '"$2.00"', "ms": "8s or 8000", "tokens": "100k", "ratio": '"20%"'}.get(
            metric.unit, "3"
        )
        try:
            number = parse_quantity(value, metric.unit)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a threshold for {metric.name} (unit: {metric.unit}); "
                f"write it like {example}"
            ) from None
        if number < 0:
            raise ValueError(f"the threshold must not be negative, got {value!r}")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_s(value)
        return value

    @field_validator("last")
    @classmethod
    def _last(cls, value: int | str | None) -> int | str | None:
        if value is not None and parse_count(value) < 1:
            raise ValueError(f"'last' is a number of calls >= 1, got {value!r}")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        _scope_key(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ConditionSpec:
        metric = METRICS[self.metric]
        stat = self.stat or metric.default_stat
        if self.window is not None and self.last is not None:
            raise ValueError("give either 'window' (a time like 10m) or 'last' (a count), not both")
        if self.above is None and self.below is None:
            raise ValueError(
                "a condition needs a threshold: 'above' (e.g. above: \"$2.00\") or 'below'"
            )
        if self.above is not None and self.below is not None:
            raise ValueError("give either 'above' or 'below', not both")
        if stat == "next" and self.metric != "prompt_tokens":
            raise ValueError("stat 'next' only applies to prompt_tokens")
        if self.window is None and self.last is None and stat not in ("next", "last"):
            raise ValueError(
                "a condition needs a window: 'window' (a time like 10m, 24h) or 'last' (a count "
                "of calls like 50)"
            )
        return self


class AnySpec(_Strict):
    any: list[ConditionSpec] = Field(min_length=1)


class AllSpec(_Strict):
    all: list[ConditionSpec] = Field(min_length=1)


def _when_form(value: Any) -> str:
    if isinstance(value, Mapping) and "any" in value:
        return "any-form"
    if isinstance(value, Mapping) and "all" in value:
        return "all-form"
    if isinstance(value, BaseModel):
        forms: dict[type[BaseModel], str] = {AnySpec: "any-form", AllSpec: "all-form"}
        return forms.get(type(value), "condition-form")
    return "condition-form"


_FORM_TAGS = ("condition-form", "any-form", "all-form")

When = Annotated[
    Annotated[ConditionSpec, Tag("condition-form")]
    | Annotated[AnySpec, Tag("any-form")]
    | Annotated[AllSpec, Tag("all-form")],
    Discriminator(_when_form),
]


class PolicySpec(_Strict):
    """One policy: a name, a condition, actions, and the hysteresis that keeps it from flapping."""

    name: str = Field(min_length=1)
    description: str | None = None
    when: When
    then: list[str | dict[str, Any]] = Field(min_length=1)
    warn_at: str | float | None = None
    cooldown: str | float | None = None
    recover_below: float | int | str | None = None
    recover_after: str | float | None = None
    shared: bool = False
    enabled: bool = True

    @field_validator("then")
    @classmethod
    def _actions(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for item in value:
            _parse_action(item)
        return value

    @model_validator(mode="after")
    def _shared_is_for_hard_caps(self) -> PolicySpec:
        if not self.shared:
            return self
        conditions = (
            [self.when]
            if isinstance(self.when, ConditionSpec)
            else list(getattr(self.when, "any", None) or getattr(self.when, "all", None) or [])
        )
        kinds = {a if isinstance(a, str) else next(iter(a)) for a in self.then}
        cap = [
            c
            for c in conditions
            if c.metric == "cost_usd" and (c.stat or "sum") == "sum" and c.above is not None
        ]
        if not cap or not kinds & {"halt", "pause"}:
            raise ValueError(
                "shared: true applies to hard caps: a cost_usd sum with 'above' whose actions "
                "include halt or pause"
            )
        if any(c.window is None for c in cap) or any(_scope_key(c.scope) == "run" for c in cap):
            raise ValueError(
                "a shared cap needs a time window (e.g. window: 24h) and a shared scope "
                "(all, model or tag:NAME), since a run lives in one process"
            )
        return self

    @field_validator("warn_at")
    @classmethod
    def _warn(cls, value: str | float | None) -> str | float | None:
        if value is not None and not 0 < parse_percent(value) < 1:
            raise ValueError(f"warn_at is a share of the threshold like '80%', got {value!r}")
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration_s(value, allow_zero=True)
        return value

    @field_validator("recover_after")
    @classmethod
    def _recover_after(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration_s(value)
        return value


class PolicySetSpec(_Strict):
    version: Literal[1] = 1
    ladder: dict[str, list[str]] = Field(default_factory=dict)
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policies: list[PolicySpec] = Field(default_factory=list)

    @field_validator("ladder")
    @classmethod
    def _no_cycles(cls, ladder: dict[str, list[str]]) -> dict[str, list[str]]:
        for model, steps in ladder.items():
            if not steps:
                raise ValueError(f"ladder for '{model}' is empty; list at least one cheaper model")
            seen = [model]
            for step in steps:
                if step in seen:
                    raise ValueError(
                        f"ladder for '{model}' has a cycle: {' -> '.join([*seen, step])}; each "
                        "model may appear once"
                    )
                seen.append(step)
        return ladder

    @model_validator(mode="after")
    def _unique_names(self) -> PolicySetSpec:
        names = [p.name for p in self.policies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"policy names must be unique; repeated: {', '.join(dupes)}")
        return self


# --------------------------------------------------------------------------------------------
# Compiled, plain values for the hot path
@dataclass(frozen=True, slots=True)
class Action:
    """One action of a policy: ``kind`` and its parameters."""

    kind: str
    steps: int = 1  # downgrade
    target_tokens: int | None = None  # compact
    pause_s: float | None = None  # pause: fixed duration (None: exact from the window)
    message: str | None = None  # alert


@dataclass(frozen=True, slots=True)
class Threshold:
    """A compiled ``when`` leaf."""

    metric: str
    stat: str
    spec: WindowSpec | None
    scope: str  # 'run', 'all', 'model' or 'tag:NAME'
    above: bool
    threshold: float  # in the metric's display unit
    raw: float  # in the stored sample's unit (nano-USD for cost)


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """A compiled policy."""

    name: str
    conditions: tuple[Threshold, ...]
    combine: str  # 'any' or 'all'
    actions: tuple[Action, ...]
    warn_at: float | None
    cooldown_s: float
    recover_ratio: float | None  # recover level as a share of the threshold
    recover_level: float | None  # explicit recover level (display unit)
    recover_after_s: float | None
    description: str | None = None
    shared: bool = False

    @property
    def is_hard_cap(self) -> bool:
        """A cost-sum limit that halts or pauses: its budget is reserved before each call."""
        return any(a.kind in ("halt", "pause") for a in self.actions) and any(
            c.metric == "cost_usd" and c.stat == "sum" and c.above for c in self.conditions
        )


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A loaded, validated set of policies with its downgrade ladder and price overrides."""

    policies: tuple[PolicyRule, ...]
    ladder: Mapping[str, tuple[str, ...]]
    pricing: Mapping[str, Mapping[str, Any]]
    source: str
    digest: str
    document: Mapping[str, Any]

    def normalized(self) -> dict[str, Any]:
        """The policy set with defaults filled in, as plain data (what ``agentmeter check`` prints)."""
        return {
            "version": 1,
            "ladder": {k: list(v) for k, v in self.ladder.items()},
            "pricing": {k: dict(v) for k, v in self.pricing.items()},
            "policies": [_normalized_rule(rule) for rule in self.policies],
        }


def _normalized_rule(rule: PolicyRule) -> dict[str, Any]:
    def condition(c: Threshold) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": c.metric, "stat": c.stat}
        if c.spec is not None and c.spec.seconds is not None:
            out["window_s"] = c.spec.seconds
        if c.spec is not None and c.spec.count is not None:
            out["last"] = c.spec.count
        out["scope"] = c.scope
        out["above" if c.above else "below"] = c.threshold
        return out

    when: dict[str, Any] = (
        condition(rule.conditions[0])
        if len(rule.conditions) == 1
        else {rule.combine: [condition(c) for c in rule.conditions]}
    )
    actions = []
    for a in rule.actions:
        params = {
            "downgrade": {"steps": a.steps},
            "compact": {"target_tokens": a.target_tokens},
            "pause": {"for_s": a.pause_s} if a.pause_s is not None else {"for_s": "exact"},
            "alert": {"message": a.message} if a.message else {},
        }.get(a.kind, {})
        actions.append({a.kind: params} if params else a.kind)
    return {
        "name": rule.name,
        "when": when,
        "then": actions,
        "warn_at": rule.warn_at,
        "cooldown_s": rule.cooldown_s,
        "recover_below": rule.recover_level
        if rule.recover_level is not None
        else f"{(rule.recover_ratio or 1.0):.0%} of threshold",
        "recover_after_s": rule.recover_after_s,
        "hard_cap": rule.is_hard_cap,
        "shared": rule.shared,
    }


def _scope_key(value: str | Mapping[str, str]) -> str:
    if isinstance(value, Mapping):
        if set(value) != {"tag"} or not isinstance(value["tag"], str) or not value["tag"]:
            raise ValueError(
                f"scope as a mapping is {{tag: NAME}} (e.g. {{tag: tenant}}), got {dict(value)!r}"
            )
        return f"tag:{value['tag']}"
    if value in ("run", "all", "model"):
        return value
    if isinstance(value, str) and value.startswith("tag:") and len(value) > 4:
        return value
    raise ValueError(
        f"unknown scope {value!r}; expected one of: run, all, model, tag:NAME "
        "(e.g. tag:tenant) or {tag: NAME}"
    )


def _parse_action(item: str | Mapping[str, Any]) -> Action:
    if isinstance(item, str):
        if item not in ACTIONS:
            raise ValueError(f"unknown action '{item}'; {_suggest(item, ACTIONS)}")
        if item == "compact":
            raise ValueError("compact needs a target: {compact: {target_tokens: 40k}}")
        return Action(kind=item)
    if not isinstance(item, Mapping) or len(item) != 1:
        raise ValueError(
            f"an action is a name (e.g. downgrade) or a one-key mapping (e.g. "
            f"{{pause: {{for: 30s}}}}), got {item!r}"
        )
    ((kind, params),) = item.items()
    if kind not in ACTIONS:
        raise ValueError(f"unknown action '{kind}'; {_suggest(kind, ACTIONS)}")
    params = params or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"parameters of '{kind}' are a mapping, got {params!r}")
    allowed = {
        "downgrade": {"steps"},
        "compact": {"target_tokens"},
        "pause": {"for"},
        "alert": {"message"},
        "halt": set(),
        "no_stream": set(),
        "upgrade": set(),
    }[kind]
    extra = set(params) - allowed
    if extra:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(map(str, extra)))} for '{kind}'; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    if kind == "downgrade":
        steps = parse_count(params.get("steps", 1))
        if steps < 1:
            raise ValueError(f"downgrade steps must be >= 1, got {steps}")
        return Action(kind=kind, steps=steps)
    if kind == "compact":
        if "target_tokens" not in params:
            raise ValueError("compact needs target_tokens, e.g. {compact: {target_tokens: 40k}}")
        target = parse_count(params["target_tokens"])
        if target < 1:
            raise ValueError(f"compact target_tokens must be >= 1, got {target}")
        return Action(kind=kind, target_tokens=target)
    if kind == "pause":
        return Action(
            kind=kind, pause_s=parse_duration_s(params["for"]) if "for" in params else None
        )
    if kind == "alert":
        return Action(kind=kind, message=params.get("message"))
    return Action(kind=kind)


def _compile_condition(spec: ConditionSpec) -> Threshold:
    metric = METRICS[spec.metric]
    stat = spec.stat or metric.default_stat
    window: WindowSpec | None = None
    if spec.window is not None:
        window = WindowSpec(seconds=parse_duration_s(spec.window))
    elif spec.last is not None:
        window = WindowSpec(count=parse_count(spec.last))
    elif stat == "last":
        window = WindowSpec(count=1)
    above = spec.above is not None
    given = spec.above if above else spec.below
    anomaly = stat == "anomaly"
    threshold = float(given) if anomaly else parse_quantity(given, metric.unit)  # type: ignore[arg-type]
    return Threshold(
        metric=spec.metric,
        stat=stat,
        spec=window,
        scope=_scope_key(spec.scope),
        above=above,
        threshold=threshold,
        raw=threshold if anomaly else threshold / metric.scale,
    )


def _compile(spec: PolicySetSpec, source: str, document: Mapping[str, Any]) -> PolicySet:
    rules = []
    for p in spec.policies:
        if not p.enabled:
            continue
        conditions: tuple[ConditionSpec, ...]
        if isinstance(p.when, ConditionSpec):
            conditions, combine = (p.when,), "any"
        elif isinstance(p.when, AnySpec):
            conditions, combine = tuple(p.when.any), "any"
        else:
            conditions, combine = tuple(p.when.all), "all"
        compiled = tuple(_compile_condition(c) for c in conditions)
        recover_level = None
        if p.recover_below is not None:
            recover_level = parse_quantity(p.recover_below, METRICS[compiled[0].metric].unit)
        rules.append(
            PolicyRule(
                name=p.name,
                conditions=compiled,
                combine=combine,
                actions=tuple(_parse_action(a) for a in p.then),
                warn_at=parse_percent(p.warn_at) if p.warn_at is not None else None,
                cooldown_s=parse_duration_s(p.cooldown, allow_zero=True)
                if p.cooldown is not None
                else 60.0,
                recover_ratio=None if recover_level is not None else 0.9,
                recover_level=recover_level,
                recover_after_s=parse_duration_s(p.recover_after)
                if p.recover_after is not None
                else None,
                description=p.description,
                shared=p.shared,
            )
        )
    canonical = json.dumps(_plain(document), sort_keys=True, default=str)
    return PolicySet(
        policies=tuple(rules),
        ladder={k: tuple(v) for k, v in spec.ladder.items()},
        pricing=spec.pricing,
        source=source,
        digest=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        document=document,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
def parse_policies(text: str, *, source: str = "<string>") -> PolicySet:
    """Validate a YAML policy document and compile it; ``ConfigError`` lists every mistake."""
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        what = exc.problem or str(exc)
        raise ConfigError(
            f"{where}: invalid YAML: {what} (check indentation and quoting near that line)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if document is None:
        document = _Lines()
        document.line, document.key_lines = 1, {}
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"{source}:1: a policy file is a mapping with 'version', 'ladder', 'pricing' and "
            f"'policies'; got a {type(document).__name__}"
        )
    try:
        spec = PolicySetSpec.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            line = _line_of(document, loc)
            where = f"{source}:{line}" if line else source
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                parent = _parent_fields(loc)
                message = f"unknown field '{loc[-1]}'; {_suggest(str(loc[-1]), parent)}"
            elif error["type"] == "missing":
                message = f"missing required field '{loc[-1]}'"
            elif error["type"] == "literal_error" and loc == ("version",):
                message = (
                    f"unsupported version {error['input']!r}; this agentmeter reads version: 1"
                )
            problems.append(f"{where}: {_path(loc)}: {message}")
        problems = _dedupe_union_noise(problems)
        raise ConfigError("\n".join(problems), problems=problems) from None
    if spec.pricing:
        _check_pricing(spec.pricing, source, document)
    return _compile(spec, source, document)


def _parent_fields(loc: tuple[Any, ...]) -> tuple[str, ...]:
    names = [str(p) for p in loc[:-1] if not isinstance(p, int) and p not in _FORM_TAGS]
    parent = names[-1] if names else ""
    models: dict[str, type[BaseModel]] = {
        "policies": PolicySpec,
        "when": ConditionSpec,
        "any": ConditionSpec,
        "all": ConditionSpec,
    }
    return tuple(models.get(parent, PolicySetSpec).model_fields)


def _dedupe_union_noise(problems: list[str]) -> list[str]:
    """A ``when`` that matches no branch yields one error per branch; keep the condition's."""
    out: list[str] = []
    for problem in problems:
        if (".when.any" in problem or ".when.all" in problem) and "missing required" in problem:
            continue
        if problem not in out:
            out.append(problem)
    return out


def _check_pricing(pricing: Mapping[str, Any], source: str, document: Any) -> None:
    from ..pricing import PriceTable

    try:
        PriceTable(overrides=pricing, load_map=False)
    except ConfigError as exc:
        problems = []
        for problem in exc.problems:
            model = next(
                (
                    m
                    for m in sorted(pricing, key=len, reverse=True)
                    if problem.startswith(f"pricing.{m}")
                ),
                None,
            )
            line = _line_of(document, ("pricing", model) if model else ("pricing",))
            problems.append(f"{source}:{line}: {problem}")
        raise ConfigError("\n".join(problems), problems=problems) from None


def load_policies(source: str | os.PathLike[str] | PolicySet | None) -> PolicySet | None:
    """A ``PolicySet`` from a file path, a built-in name (``default``), YAML text, or one given.

    Built-in names are the files shipped in ``agentmeter/policies`` (``default``,
    ``strict-budget``, ``latency-slo``, ``multi-tenant``, ``loop-guard``).
    """
    if source is None or isinstance(source, PolicySet):
        return source
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        path = Path(source)  # type: ignore[arg-type]
        return parse_policies(read_config_file(path, "policy file"), source=str(path))
    if isinstance(source, str) and "\n" not in source and ":" not in source:
        builtin = BUILTIN_DIR / f"{source}.yaml"
        if builtin.exists():
            return parse_policies(builtin.read_text(encoding="utf-8"), source=str(builtin))
        names = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
        raise ConfigError(
            f"{source!r} is neither a policy file path nor a built-in policy set; "
            f"{_suggest(source, names)}"
        )
    return parse_policies(str(source))
