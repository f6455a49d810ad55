"""Export every recorded call to OpenTelemetry: one GenAI client span and the GenAI client metrics.

    from agentmeter.otel import export_to_otel

    export_to_otel(meter)  # the global tracer and meter providers
    export_to_otel(meter, tracer_provider=tp, meter_provider=mp, metric_tags=("tenant",))

Calls are exported on the recorder's writer thread, after the transaction that records them
commits, so with a database file the agent's own thread never touches OpenTelemetry (an
in-memory database writes, and so exports, inline). A span is created after the fact,
with explicit times: it ends at the call's ``ts`` and starts ``latency_ms`` earlier. Use a
``BatchSpanProcessor`` in production so a slow collector never holds up the recorder. A call
recorded while a span is current on the agent's thread or task (an agent step's span, the web
request's) becomes that span's child: the exporter's ``capture()`` keeps the current context as
the call is recorded (a few hundred nanoseconds, only while the exporter is registered);
otherwise the call is a trace of its own. ``agentmeter.run_id`` groups the calls of a run.

Conventions (``semconv=``): the OpenTelemetry GenAI conventions are at Development stability and
moved out of ``open-telemetry/semantic-conventions`` (last published there: v1.41.0) into
``open-telemetry/semantic-conventions-genai``, which has renamed several names since and has no
release yet. ``"1.41.0"`` (the default) emits the published names every backend reads today;
``"1.42.0-dev"`` emits the names of that repository's development schema
(``https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev``). Setting
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` selects ``"1.42.0-dev"`` when
``semconv`` is not given, as OpenTelemetry's own instrumentations do.

Span ``chat {gen_ai.request.model}``, kind CLIENT, status ERROR for a failed call. Attributes:

* ``gen_ai.operation.name``: ``chat``
* ``gen_ai.provider.name``: the provider as its well-known value (``provider_name``); omitted
  when unknown rather than guessed
* ``gen_ai.request.model``: ``requested_model``; ``gen_ai.response.model``: ``model``
* ``gen_ai.request.max_tokens``: ``max_tokens``, when set
* ``gen_ai.request.stream``: ``true``, and ``gen_ai.response.time_to_first_chunk``:
  ``ttft_ms / 1000``, for streamed calls only
* ``error.type``: ``error_type`` (``_OTHER`` when not known), for failed calls only
* ``gen_ai.usage.input_tokens``: ``input_tokens + cache_read_tokens + cache_write_tokens``
  (OpenTelemetry's input includes the cache; our buckets are disjoint)
* ``gen_ai.usage.output_tokens``: ``output_tokens`` (reasoning already inside)
* ``gen_ai.usage.cache_read.input_tokens``: ``cache_read_tokens``
* ``gen_ai.usage.cache_creation.input_tokens`` (1.41.0) or
  ``gen_ai.usage.cache_write.input_tokens`` (1.42.0-dev): ``cache_write_tokens``
* ``gen_ai.usage.reasoning.output_tokens``: ``reasoning_tokens``
* ``agentmeter.usage_status``: ``reported``, ``estimated`` or ``unknown``; every
  ``gen_ai.usage.*`` attribute is omitted when ``unknown``
* ``agentmeter.cost_usd`` (float) and ``agentmeter.cost_nano_usd`` (int, exact): omitted when
  the cost is unknown; ``agentmeter.cost_status``: ``ok``, ``unknown_model`` or ``unknown_usage``
* ``agentmeter.run_id``, ``agentmeter.step``; ``agentmeter.tag.<name>`` for each tag

The ``agentmeter.cost_*`` attributes and the cost counter are left out with ``capture_cost=False``.

Metrics, each with ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` and the ``metric_tags`` asked for (as ``agentmeter.tag.<name>``; tags
are left off metrics by default because they may have many values):

* 1.41.0: histograms ``gen_ai.client.operation.duration`` (s, with ``error.type`` on failures),
  ``gen_ai.client.operation.time_to_first_chunk`` (s, streamed calls) and
  ``gen_ai.client.token.usage`` (``{token}``): one point with ``gen_ai.token.type=input`` (the
  input total above, cache included, counted once) and one with ``output``, when usage is known.
* 1.42.0-dev: histograms ``gen_ai.client.inference.duration`` and
  ``gen_ai.client.inference.time_to_first_chunk`` (s); counters
  ``gen_ai.client.inference.usage.input_tokens`` (the total), ``.output_tokens``,
  ``.cache_read.input_tokens``, ``.cache_write.input_tokens``, ``.reasoning.output_tokens``
  (``{token}``, ``gen_ai.token.modality=unknown``: we keep no modality split); histograms
  ``gen_ai.client.inference.operation.input_tokens`` and ``.output_tokens`` (with
  ``error.type`` on failures). These are recorded for every call, ``0`` when usage is unknown,
  as that schema asks.
* Both: counter ``agentmeter.cost`` (USD) of the calls whose cost is known.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "agentmeter.otel needs the OpenTelemetry API: pip install 'agentmeter[otel]'"
    ) from exc

from . import __version__
from .errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.metrics import Meter as OtelMeter
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .meter import Meter

__all__ = [
    "SEMCONV_DEV",
    "SEMCONV_RELEASED",
    "OtelExporter",
    "export_to_otel",
    "provider_name",
    "span_attributes",
    "span_name",
]

SEMCONV_RELEASED = "1.41.0"
SEMCONV_DEV = "1.42.0-dev"
OPERATION = "chat"
_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
_OPT_IN_LATEST = "gen_ai_latest_experimental"

# Bucket boundaries the conventions ask for (same in both versions).
_DURATION_BUCKETS_S = tuple(0.01 * 2**i for i in range(14))  # 0.01, 0.02, 0.04 ... 81.92
_TOKEN_BUCKETS = tuple(4**i for i in range(14))  # 1, 4, 16, ... 67108864


@dataclass(frozen=True, slots=True)
class _Names:
    """The names that differ between the published conventions and the development schema."""

    schema_url: str
    cache_write_attribute: str
    duration_metric: str
    ttft_metric: str


_NAMES = {
    SEMCONV_RELEASED: _Names(
        schema_url="https://opentelemetry.io/schemas/1.41.0",
        cache_write_attribute="gen_ai.usage.cache_creation.input_tokens",
        duration_metric="gen_ai.client.operation.duration",
        ttft_metric="gen_ai.client.operation.time_to_first_chunk",
    ),
    SEMCONV_DEV: _Names(
        schema_url="https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev",
        cache_write_attribute="gen_ai.usage.cache_write.input_tokens",
        duration_metric="gen_ai.client.inference.duration",
        ttft_metric="gen_ai.client.inference.time_to_first_chunk",
    ),
}

# Our provider names (litellm's ``litellm_provider`` and the usage adapters' names) -> the
# well-known values of ``gen_ai.provider.name``. Anything else is passed through unchanged: the
# conventions allow a custom value when no well-known one applies.
_PROVIDER_NAMES = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "chatgpt": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "bedrock_mantle": "aws.bedrock",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "xai": "x_ai",
    "groq": "groq",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
    "moonshot": "moonshot_ai",
}

_CTX = Context(prec=40, rounding=ROUND_HALF_EVEN)
_NANO_PER_USD = 10**9


def provider_name(provider: str | None) -> str | None:
    """The ``gen_ai.provider.name`` value for one of our provider names (``None`` stays ``None``)."""
    if not provider:
        return None
    key = provider.strip().lower()
    if key.startswith("vertex_ai-"):  # litellm's vertex_ai-anthropic_models and the like
        return "gcp.vertex_ai"
    return _PROVIDER_NAMES.get(key, provider)


def span_name(call: Mapping[str, Any]) -> str:
    """``chat {requested model}``, or ``chat`` when the call has no model."""
    model = call.get("requested_model") or call.get("model")
    return f"{OPERATION} {model}" if model else OPERATION


def span_attributes(
    call: Mapping[str, Any], *, semconv: str = SEMCONV_RELEASED, capture_cost: bool = True
) -> dict[str, AttributeValue]:
    """The attributes of the span of one ``agentmeter_calls`` row (see the module docstring)."""
    names = _names(semconv)
    attrs = _common_attributes(call)
    if call.get("max_tokens") is not None:
        attrs["gen_ai.request.max_tokens"] = int(call["max_tokens"])
    if call.get("stream"):
        attrs["gen_ai.request.stream"] = True
        if call.get("ttft_ms") is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = call["ttft_ms"] / 1000.0
    if _failed(call):
        attrs["error.type"] = _error_type(call)
    usage_status = call.get("usage_status") or "unknown"
    tokens = _tokens(call)
    if tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = tokens.input_total
        attrs["gen_ai.usage.output_tokens"] = tokens.output
        attrs["gen_ai.usage.cache_read.input_tokens"] = tokens.cache_read
        attrs[names.cache_write_attribute] = tokens.cache_write
        attrs["gen_ai.usage.reasoning.output_tokens"] = tokens.reasoning
    attrs["agentmeter.usage_status"] = usage_status
    if capture_cost:
        cost = call.get("cost_nano_usd")
        if cost is not None:
            attrs["agentmeter.cost_usd"] = cost / _NANO_PER_USD
            attrs["agentmeter.cost_nano_usd"] = int(cost)
        if call.get("cost_status"):
            attrs["agentmeter.cost_status"] = call["cost_status"]
    if call.get("run_id") is not None:
        attrs["agentmeter.run_id"] = str(call["run_id"])
    if call.get("step") is not None:
        attrs["agentmeter.step"] = int(call["step"])
    for name, value in _tags(call).items():
        attr = _attribute_value(value)
        if attr is not None:
            attrs[f"agentmeter.tag.{name}"] = attr
    return attrs


class OtelExporter:
    """Turns committed calls into spans and metric points; called by the recorder with each batch."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_cost: bool = True,
        semconv: str | None = None,
        metric_tags: Sequence[str] = (),
    ) -> None:
        self.semconv = _resolve_semconv(semconv)
        self.capture_cost = capture_cost
        self.metric_tags = tuple(metric_tags)
        names = _NAMES[self.semconv]
        self._tracer = otel_trace.get_tracer(
            "agentmeter", __version__, tracer_provider, schema_url=names.schema_url
        )
        meter = otel_metrics.get_meter(
            "agentmeter", __version__, meter_provider, schema_url=names.schema_url
        )
        self._duration = _histogram(
            meter,
            names.duration_metric,
            "s",
            "GenAI client operation duration.",
            _DURATION_BUCKETS_S,
        )
        self._ttft = _histogram(
            meter,
            names.ttft_metric,
            "s",
            "Time to the first chunk of a streamed response.",
            _DURATION_BUCKETS_S,
        )
        self._cost = (
            meter.create_counter(
                "agentmeter.cost", unit="USD", description="Cost of the calls whose cost is known."
            )
            if capture_cost
            else None
        )
        self._record_tokens: Callable[[Mapping[str, Any], dict[str, AttributeValue]], None]
        if self.semconv == SEMCONV_RELEASED:
            self._token_usage = _histogram(
                meter,
                "gen_ai.client.token.usage",
                "{token}",
                "Number of input and output tokens used.",
                _TOKEN_BUCKETS,
            )
            self._record_tokens = self._record_token_usage
        else:
            prefix = "gen_ai.client.inference"
            self._usage = {
                kind: meter.create_counter(f"{prefix}.usage.{kind}", unit="{token}")
                for kind in (
                    "input_tokens",
                    "output_tokens",
                    "cache_read.input_tokens",
                    "cache_write.input_tokens",
                    "reasoning.output_tokens",
                )
            }
            self._per_operation = {
                kind: _histogram(
                    meter,
                    f"{prefix}.operation.{kind}",
                    "{token}",
                    f"The number of {kind.split('_')[0]} tokens used per inference operation.",
                    _TOKEN_BUCKETS,
                )
                for kind in ("input_tokens", "output_tokens")
            }
            self._record_tokens = self._record_inference_usage

    def __call__(self, calls: Iterable[Mapping[str, Any]]) -> None:
        """Export each call; one that fails does not stop the others (the first error is raised)."""
        first: Exception | None = None
        for call in calls:
            try:
                self.export(call)
            except Exception as exc:  # the recorder counts it in health()["export_errors"]
                first = first or exc
        if first is not None:
            raise first

    def capture(self) -> Any:
        """(Agent's thread) the current context when a span is active in it, else None."""
        if otel_trace.get_current_span().get_span_context().is_valid:
            return otel_context.get_current()
        return None

    def export(self, call: Mapping[str, Any]) -> None:
        """One span and its metric points for one ``agentmeter_calls`` row (its parent: the
        row's ``context``, when ``capture`` found a span current as the call was recorded)."""
        end_ns = _ns(call["ts"], 9)
        latency_ms = call.get("latency_ms")
        start_ns = end_ns - _ns(latency_ms, 6) if latency_ms is not None else end_ns
        span = self._tracer.start_span(
            span_name(call),
            kind=SpanKind.CLIENT,
            attributes=span_attributes(call, semconv=self.semconv, capture_cost=self.capture_cost),
            start_time=start_ns,
            context=call.get("context"),
        )
        if _failed(call):
            span.set_status(Status(StatusCode.ERROR, call.get("error_type") or None))
        span.end(end_time=end_ns)
        self._record_metrics(call)

    def _record_metrics(self, call: Mapping[str, Any]) -> None:
        attrs = _common_attributes(call)
        tags = _tags(call) if self.metric_tags else {}
        for name in self.metric_tags:
            value = _attribute_value(tags.get(name))
            if value is not None:
                attrs[f"agentmeter.tag.{name}"] = value
        failed = {**attrs, "error.type": _error_type(call)} if _failed(call) else attrs
        if call.get("latency_ms") is not None:
            self._duration.record(call["latency_ms"] / 1000.0, failed)
        if call.get("stream") and call.get("ttft_ms") is not None:
            self._ttft.record(call["ttft_ms"] / 1000.0, attrs)
        self._record_tokens(call, attrs)
        cost = call.get("cost_nano_usd")
        if self._cost is not None and cost is not None:
            self._cost.add(cost / _NANO_PER_USD, attrs)

    def _record_token_usage(
        self, call: Mapping[str, Any], attrs: dict[str, AttributeValue]
    ) -> None:
        """1.41.0: one histogram, one point per token type; input is the total, counted once."""
        tokens = _tokens(call)
        if tokens is None:
            return  # the conventions: do not report usage that is not known
        self._token_usage.record(tokens.input_total, {**attrs, "gen_ai.token.type": "input"})
        self._token_usage.record(tokens.output, {**attrs, "gen_ai.token.type": "output"})

    def _record_inference_usage(
        self, call: Mapping[str, Any], attrs: dict[str, AttributeValue]
    ) -> None:
        """1.42.0-dev: usage counters (subsets of the totals) and per-operation histograms."""
        tokens = _tokens(call) or _Tokens(0, 0, 0, 0, 0)
        modality = {**attrs, "gen_ai.token.modality": "unknown"}
        usage = self._usage
        usage["input_tokens"].add(tokens.input_total, modality)
        usage["output_tokens"].add(tokens.output, modality)
        usage["cache_read.input_tokens"].add(tokens.cache_read, modality)
        usage["cache_write.input_tokens"].add(tokens.cache_write, modality)
        usage["reasoning.output_tokens"].add(tokens.reasoning, modality)
        failed = {**attrs, "error.type": _error_type(call)} if _failed(call) else attrs
        self._per_operation["input_tokens"].record(tokens.input_total, failed)
        self._per_operation["output_tokens"].record(tokens.output, failed)


def export_to_otel(
    meter: Meter,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_cost: bool = True,
    semconv: str | None = None,
    metric_tags: Sequence[str] = (),
) -> OtelExporter:
    """Export every call ``meter`` records from now on as an OpenTelemetry span and metric points.

    ``tracer_provider``/``meter_provider`` default to the global ones. ``capture_cost=False``
    leaves out the cost attributes and the ``agentmeter.cost`` counter. ``semconv`` is
    ``"1.41.0"`` or ``"1.42.0-dev"`` (see the module docstring). ``metric_tags`` names the tags
    to add to metric points (for example ``("tenant",)`` for cost per tenant); spans carry every
    tag. Returns the exporter, already registered with ``meter.add_exporter``.
    """
    exporter = OtelExporter(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_cost=capture_cost,
        semconv=semconv,
        metric_tags=metric_tags,
    )
    meter.add_exporter(exporter)
    return exporter


# -- helpers -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tokens:
    """A call's usage in OpenTelemetry's terms: input_total includes the cache reads and writes."""

    input_total: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int


def _tokens(call: Mapping[str, Any]) -> _Tokens | None:
    if (call.get("usage_status") or "unknown") == "unknown":
        return None
    cache_read = call.get("cache_read_tokens") or 0
    cache_write = call.get("cache_write_tokens") or 0
    return _Tokens(
        input_total=(call.get("input_tokens") or 0) + cache_read + cache_write,
        output=call.get("output_tokens") or 0,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=call.get("reasoning_tokens") or 0,
    )


def _common_attributes(call: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {"gen_ai.operation.name": OPERATION}
    provider = provider_name(call.get("provider"))
    if provider:
        attrs["gen_ai.provider.name"] = provider
    requested = call.get("requested_model") or call.get("model")
    if requested:
        attrs["gen_ai.request.model"] = requested
    if call.get("model"):
        attrs["gen_ai.response.model"] = call["model"]
    return attrs


def _failed(call: Mapping[str, Any]) -> bool:
    return (call.get("status") or "ok") != "ok"


def _error_type(call: Mapping[str, Any]) -> str:
    return call.get("error_type") or "_OTHER"  # the conventions' fallback value


def _tags(call: Mapping[str, Any]) -> dict[str, Any]:
    tags = call.get("tags")
    if isinstance(tags, Mapping):
        return dict(tags)
    if not tags:
        return {}
    try:
        value = json.loads(tags)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _attribute_value(value: Any) -> AttributeValue | None:
    """A tag as an attribute: scalars and lists of one scalar type as they are, others as JSON."""
    if value is None:
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(value)
    return json.dumps(value, sort_keys=True, default=str)


def _histogram(
    meter: OtelMeter, name: str, unit: str, description: str, buckets: Sequence[float]
) -> Histogram:
    """A histogram with the conventions' bucket boundaries where the API can take them."""
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # opentelemetry-api < 1.30 has no bucket advisory: the SDK's default buckets
        return meter.create_histogram(name, unit=unit, description=description)


def _ns(value: float, exponent: int) -> int:
    """``value`` x 10**exponent as an integer, from the float's shortest decimal form (exact)."""
    return int(_CTX.scaleb(Decimal(repr(value)), exponent).to_integral_value(ROUND_HALF_EVEN))


def _names(semconv: str) -> _Names:
    try:
        return _NAMES[semconv]
    except KeyError:
        raise ConfigError(
            f"semconv must be {SEMCONV_RELEASED!r} (the published GenAI conventions) or "
            f"{SEMCONV_DEV!r} (the development schema), got {semconv!r}"
        ) from None


def _resolve_semconv(semconv: str | None) -> str:
    if semconv is None:
        opt_in = {part.strip() for part in os.environ.get(_OPT_IN_ENV, "").split(",")}
        semconv = SEMCONV_DEV if _OPT_IN_LATEST in opt_in else SEMCONV_RELEASED
    _names(semconv)
    return semconv
