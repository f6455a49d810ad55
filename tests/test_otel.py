"""OpenTelemetry export: GenAI spans and metrics from committed calls, in memory and over OTLP/HTTP.

The OpenTelemetry SDK and the OTLP/HTTP exporter are imported at the top on purpose: without the
``otel`` extra these tests fail at collection instead of being skipped.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentmeter import ConfigError, PriceTable, Usage
from agentmeter.otel import (
    SEMCONV_DEV,
    SEMCONV_RELEASED,
    OtelExporter,
    export_to_otel,
    provider_name,
    span_attributes,
)

# USD per million tokens, from our table alone (no litellm map). A call is priced by the model
# that answered: "claude-x" asked for, "claude-x-20250101" answering.
CLAUDE_X = {"input": "$3", "output": "$15", "cache_read": "$0.30", "cache_write": "$3.75"}
PRICES = PriceTable(
    {"claude-x": CLAUDE_X, "claude-x-20250101": CLAUDE_X, "gpt-x": {"input": "$1", "output": "$2"}},
    model_cost={},
)
TS = 1_800_000_000.123456  # when the call finished
LATENCY_MS = 812.5
END_NS = 1_800_000_000_123_456_000
START_NS = END_NS - 812_500_000

# 100 plain input + 2000 cache read + 500 cache write; 300 output of which 120 reasoning.
CACHED = Usage(
    input_tokens=100,
    cache_read_tokens=2000,
    cache_write_tokens=500,
    output_tokens=300,
    reasoning_tokens=120,
)
CACHED_COST_NANO = 100 * 3000 + 2000 * 300 + 500 * 3750 + 300 * 15000  # 7_275_000


@pytest.fixture
def otel():
    """An SDK tracer provider exporting to memory and a meter provider read in memory."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield SimpleNamespace(
        spans=spans, reader=reader, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def exported(make_meter, otel):
    """A meter whose calls are exported to ``otel``; ``record(**kwargs)`` records one and flushes."""

    def build(**export_kwargs):
        meter = make_meter(pricing=PRICES, tags={"tenant": "acme"})
        export_to_otel(
            meter,
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
            **export_kwargs,
        )
        run = meter.run("task", tags={"team": "search"})

        def record(**kwargs):
            kwargs.setdefault("ts", TS)
            kwargs.setdefault("latency_ms", LATENCY_MS)
            rec = run.record(**kwargs)
            assert meter.flush()
            return rec

        return SimpleNamespace(meter=meter, run=run, record=record)

    return build


def metric(reader, name):
    """The metric ``name`` (its data points, unit) from the reader, or None if nothing recorded."""
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for m in scope.metrics:
                if m.name == name:
                    return m
    return None


def points(reader, name):
    """``{frozenset(attributes): point}`` of the metric ``name``."""
    m = metric(reader, name)
    if m is None:
        return {}
    return {frozenset(p.attributes.items()): p for p in m.data.data_points}


def test_span_of_a_cached_streamed_call_has_exact_attributes_and_times(exported, otel):
    """Name, kind, ns timestamps and every attribute, for a call with cache reads and writes."""
    e = exported()
    rec = e.record(
        model="claude-x-20250101",
        requested_model="claude-x",
        provider="anthropic",
        usage=CACHED,
        stream=True,
        ttft_ms=250.0,
        max_tokens=1024,
        tags={"feature": "summarize"},
    )
    (span,) = otel.spans.get_finished_spans()
    assert span.name == "chat claude-x"
    assert span.kind is SpanKind.CLIENT
    assert (span.start_time, span.end_time) == (START_NS, END_NS)
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope.name == "agentmeter"
    assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"
    assert rec.cost_nano_usd == CACHED_COST_NANO
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x-20250101",
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.request.stream": True,
        "gen_ai.response.time_to_first_chunk": 0.25,
        "gen_ai.usage.input_tokens": 2600,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 120,
        "agentmeter.usage_status": "reported",
        "agentmeter.cost_usd": 0.007275,
        "agentmeter.cost_nano_usd": 7_275_000,
        "agentmeter.cost_status": "ok",
        "agentmeter.run_id": e.run.run_id,
        "agentmeter.step": 1,
        "agentmeter.tag.tenant": "acme",
        "agentmeter.tag.team": "search",
        "agentmeter.tag.feature": "summarize",
    }


def _call_spans(otel):
    """The exported call spans by ``agentmeter.step``."""
    return {
        s.attributes["agentmeter.step"]: s
        for s in otel.spans.get_finished_spans()
        if "agentmeter.step" in s.attributes
    }


def test_a_call_recorded_inside_a_span_is_its_child_and_one_outside_is_a_trace_of_its_own(
    exported, otel
):
    ex = exported()  # a file DB: spans are made on the writer thread, after the commit
    tracer = otel.tracer_provider.get_tracer("the-agent")
    with tracer.start_as_current_span("agent step 1") as step:
        ex.record(model="gpt-x", usage=CACHED)
    ex.record(model="gpt-x", usage=CACHED, ts=TS + 1)
    calls = _call_spans(otel)
    inside, outside = calls[1], calls[2]
    assert inside.parent is not None
    assert inside.parent.span_id == step.get_span_context().span_id
    assert inside.context.trace_id == step.get_span_context().trace_id
    assert outside.parent is None and outside.context.trace_id != inside.context.trace_id
    assert not ex.meter._recorder.contexts  # handed over, nothing kept


def test_calls_of_concurrent_threads_get_their_own_thread_s_span(exported, otel):
    import threading

    ex = exported()
    tracer = otel.tracer_provider.get_tracer("the-agent")
    parents: dict[int, int] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with tracer.start_as_current_span(f"worker {i}") as span:
            barrier.wait()
            record = ex.run.record(model="gpt-x", usage=CACHED, ts=TS + i)
            parents[record.step] = span.get_span_context().span_id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ex.meter.flush()
    calls = _call_spans(otel)
    assert {step: span.parent.span_id for step, span in calls.items()} == parents


def test_a_failing_capture_costs_the_call_nothing_but_its_parent(make_meter, otel, caplog):
    meter = make_meter(pricing=PRICES)
    exporter = export_to_otel(
        meter, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    assert meter.capture_context == exporter.capture

    def broken() -> None:
        raise RuntimeError("tracing is broken")

    meter.capture_context = broken  # what add_exporter took from the exporter
    run = meter.run("r")
    with (
        caplog.at_level(logging.WARNING, logger="agentmeter"),  # the demo's CLI test lowers it
        otel.tracer_provider.get_tracer("a").start_as_current_span("step"),
    ):
        assert run.record(model="gpt-x", usage=CACHED, ts=TS) is not None
    assert meter.flush()
    (span,) = _call_spans(otel).values()
    assert span.parent is None
    assert "capture() failed" in caplog.text


def test_input_tokens_count_the_cache_once_on_the_span_and_in_the_token_histogram(exported, otel):
    """OTel input = input + cache read + cache write (our buckets are disjoint), never more."""
    e = exported()
    e.record(model="claude-x", provider="anthropic", usage=CACHED)
    (span,) = otel.spans.get_finished_spans()
    expected_input = CACHED.input_tokens + CACHED.cache_read_tokens + CACHED.cache_write_tokens
    assert span.attributes["gen_ai.usage.input_tokens"] == expected_input == 2600
    assert span.attributes["gen_ai.usage.output_tokens"] == 300  # reasoning is inside, not added
    usage = metric(otel.reader, "gen_ai.client.token.usage")
    assert usage.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in usage.data.data_points}
    assert set(by_type) == {"input", "output"}  # no separate cache or reasoning points to add up
    assert (by_type["input"].count, by_type["input"].sum) == (1, 2600)
    assert (by_type["output"].count, by_type["output"].sum) == (1, 300)
    assert sum(p.sum for p in usage.data.data_points) == 2600 + 300


def test_metrics_carry_the_semconv_attributes_units_and_values(exported, otel):
    """Duration, time to first chunk (streams only), tokens and cost, with low-cardinality attrs."""
    e = exported()
    e.record(model="claude-x", provider="anthropic", usage=CACHED, stream=True, ttft_ms=250.0)
    e.record(model="claude-x", provider="anthropic", usage=CACHED, ttft_ms=99.0)  # not a stream
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x",
    }
    duration = metric(otel.reader, "gen_ai.client.operation.duration")
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert dict(point.attributes) == base
    assert (point.count, point.sum) == (2, 2 * 0.8125)
    assert list(point.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    ttft = metric(otel.reader, "gen_ai.client.operation.time_to_first_chunk")
    assert ttft.unit == "s"
    (point,) = ttft.data.data_points
    assert (point.count, point.sum) == (1, 0.25)
    cost = metric(otel.reader, "agentmeter.cost")
    assert cost.unit == "USD"
    (point,) = cost.data.data_points
    assert dict(point.attributes) == base
    assert point.value == pytest.approx(2 * 0.007275)
    tokens = points(otel.reader, "gen_ai.client.token.usage")
    assert tokens[frozenset({**base, "gen_ai.token.type": "input"}.items())].sum == 2 * 2600


def test_a_failed_call_is_an_error_span_with_error_type(exported, otel):
    """Status ERROR with the error type; no usage attributes or token points for unknown usage."""
    e = exported()
    e.record(model="gpt-x", provider="openai", status="error", error_type="RateLimitError")
    (span,) = otel.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RateLimitError"
    assert span.attributes["error.type"] == "RateLimitError"
    assert span.attributes["agentmeter.usage_status"] == "unknown"
    assert span.attributes["agentmeter.cost_status"] == "unknown_usage"
    assert not [k for k in span.attributes if k.startswith("gen_ai.usage.")]
    (point,) = metric(otel.reader, "gen_ai.client.operation.duration").data.data_points
    assert point.attributes["error.type"] == "RateLimitError"
    assert metric(otel.reader, "gen_ai.client.token.usage") is None
    assert metric(otel.reader, "agentmeter.cost") is None


def test_a_failure_without_a_type_reports_the_fallback_error_type(exported, otel):
    e = exported()
    e.record(model="gpt-x", provider="openai", status="error")
    (span,) = otel.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "_OTHER"


def test_an_unknown_cost_is_omitted_not_zero(exported, otel):
    """A model without a price: no cost attributes, no cost point; the usage is still there."""
    e = exported()
    e.record(model="mystery-model", provider="openai", usage=CACHED)
    (span,) = otel.spans.get_finished_spans()
    assert "agentmeter.cost_usd" not in span.attributes
    assert "agentmeter.cost_nano_usd" not in span.attributes
    assert span.attributes["agentmeter.cost_status"] == "unknown_model"
    assert span.attributes["gen_ai.usage.input_tokens"] == 2600
    assert metric(otel.reader, "agentmeter.cost") is None


def test_capture_cost_false_leaves_cost_out(exported, otel):
    e = exported(capture_cost=False)
    e.record(model="claude-x", provider="anthropic", usage=CACHED)
    (span,) = otel.spans.get_finished_spans()
    assert not [k for k in span.attributes if k.startswith("agentmeter.cost")]
    assert metric(otel.reader, "agentmeter.cost") is None


def test_tags_become_attributes_and_only_the_named_ones_reach_metrics(exported, otel):
    """Scalars stay typed, homogeneous lists stay lists, anything else is JSON."""
    e = exported(metric_tags=("tenant", "absent"))
    e.record(
        model="gpt-x",
        provider="openai",
        usage=Usage(input_tokens=10, output_tokens=5),
        tags={
            "attempt": 2,
            "beta": True,
            "ratio": 0.5,
            "labels": ["a", "b"],
            "mixed": [1, "a"],
            "extra": {"k": 1},
            "nothing": None,
        },
    )
    (span,) = otel.spans.get_finished_spans()
    tags = {k: v for k, v in span.attributes.items() if k.startswith("agentmeter.tag.")}
    assert tags == {
        "agentmeter.tag.tenant": "acme",
        "agentmeter.tag.team": "search",
        "agentmeter.tag.attempt": 2,
        "agentmeter.tag.beta": True,
        "agentmeter.tag.ratio": 0.5,
        "agentmeter.tag.labels": ("a", "b"),
        "agentmeter.tag.mixed": '[1, "a"]',
        "agentmeter.tag.extra": '{"k": 1}',
    }
    (point,) = metric(otel.reader, "gen_ai.client.operation.duration").data.data_points
    assert point.attributes["agentmeter.tag.tenant"] == "acme"
    assert not [
        k
        for k in point.attributes
        if k.startswith("agentmeter.tag.") and k != "agentmeter.tag.tenant"
    ]


@pytest.mark.parametrize(
    ("ours", "semconv"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("gemini", "gcp.gemini"),
        ("bedrock", "aws.bedrock"),
        ("bedrock_converse", "aws.bedrock"),
        ("deepseek", "deepseek"),
        ("mistral", "mistral_ai"),
        ("cohere", "cohere"),
        ("cohere_chat", "cohere"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("vertex_ai-anthropic_models", "gcp.vertex_ai"),
        ("azure", "azure.ai.openai"),
        ("azure_ai", "azure.ai.inference"),
        ("xai", "x_ai"),
        ("groq", "groq"),
        ("watsonx", "ibm.watsonx.ai"),
        ("aws.bedrock", "aws.bedrock"),
        ("together_ai", "together_ai"),
        (None, None),
    ],
    ids=lambda v: str(v),
)
def test_provider_names_map_to_the_well_known_values(ours, semconv):
    """Our (litellm's and the adapters') provider names -> gen_ai.provider.name; others pass."""
    assert provider_name(ours) == semconv


def test_a_call_without_provider_or_latency_still_exports(exported, otel):
    """Provider omitted rather than guessed; no latency means a zero-length span, no duration."""
    e = exported()
    e.record(model="gpt-x", usage=Usage(input_tokens=10, output_tokens=5), latency_ms=None)
    (span,) = otel.spans.get_finished_spans()
    assert "gen_ai.provider.name" not in span.attributes
    assert span.start_time == span.end_time == END_NS
    assert metric(otel.reader, "gen_ai.client.operation.duration") is None


def test_dev_semconv_uses_the_renamed_attribute_and_inference_metrics(exported, otel):
    """1.42.0-dev: cache_write attribute, usage counters (subsets of the total) and histograms."""
    e = exported(semconv=SEMCONV_DEV)
    e.record(model="claude-x", provider="anthropic", usage=CACHED, stream=True, ttft_ms=250.0)
    e.record(model="claude-x", provider="anthropic", status="error", error_type="Timeout")
    span = otel.spans.get_finished_spans()[0]
    assert span.instrumentation_scope.schema_url == (
        "https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev"
    )
    assert span.attributes["gen_ai.usage.cache_write.input_tokens"] == 500
    assert "gen_ai.usage.cache_creation.input_tokens" not in span.attributes
    assert span.attributes["gen_ai.usage.input_tokens"] == 2600
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x",
    }
    usage_attrs = frozenset({**base, "gen_ai.token.modality": "unknown"}.items())
    prefix = "gen_ai.client.inference"
    # Counters: every call counts, 0 for the failed one whose usage is unknown.
    expected = {
        "usage.input_tokens": 2600,
        "usage.output_tokens": 300,
        "usage.cache_read.input_tokens": 2000,
        "usage.cache_write.input_tokens": 500,
        "usage.reasoning.output_tokens": 120,
    }
    for name, value in expected.items():
        m = metric(otel.reader, f"{prefix}.{name}")
        assert m.unit == "{token}"
        assert {frozenset(p.attributes.items()): p.value for p in m.data.data_points} == {
            usage_attrs: value
        }, name
    per_op = points(otel.reader, f"{prefix}.operation.input_tokens")
    assert per_op[frozenset(base.items())].sum == 2600
    failed = per_op[frozenset({**base, "error.type": "Timeout"}.items())]
    assert (failed.count, failed.sum) == (1, 0)
    duration = points(otel.reader, f"{prefix}.duration")
    assert duration[frozenset(base.items())].sum == 0.8125
    assert frozenset({**base, "error.type": "Timeout"}.items()) in duration
    (ttft,) = metric(otel.reader, f"{prefix}.time_to_first_chunk").data.data_points
    assert ttft.sum == 0.25
    assert metric(otel.reader, "gen_ai.client.token.usage") is None
    assert metric(otel.reader, "gen_ai.client.operation.duration") is None


@pytest.mark.parametrize(
    ("env", "semconv"),
    [
        (None, SEMCONV_RELEASED),
        ("http", SEMCONV_RELEASED),
        ("http, gen_ai_latest_experimental", SEMCONV_DEV),
    ],
    ids=["unset", "other-opt-in", "gen-ai-latest"],
)
def test_the_otel_opt_in_variable_selects_the_development_schema(monkeypatch, otel, env, semconv):
    if env is None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", env)
    exporter = OtelExporter(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    assert exporter.semconv == semconv


class _OldApiMeterProvider:
    """A meter provider whose meters take no bucket advisory, as opentelemetry-api < 1.30."""

    def __init__(self, provider):
        self.provider = provider

    def get_meter(self, name, version=None, schema_url=None, attributes=None):
        meter = self.provider.get_meter(name, version, schema_url)

        def create_histogram(name, unit="", description=""):
            return meter.create_histogram(name, unit=unit, description=description)

        return SimpleNamespace(
            create_histogram=create_histogram, create_counter=meter.create_counter
        )


def test_an_api_without_bucket_advisory_still_gets_every_histogram(make_meter, otel):
    meter = make_meter(pricing=PRICES)
    export_to_otel(
        meter,
        tracer_provider=otel.tracer_provider,
        meter_provider=_OldApiMeterProvider(otel.meter_provider),
    )
    with meter.run("task") as run:
        run.record(model="claude-x", provider="anthropic", usage=CACHED, latency_ms=10.0, ts=TS)
    assert meter.flush()
    (point,) = metric(otel.reader, "gen_ai.client.operation.duration").data.data_points
    assert (point.count, point.sum) == (1, 0.01)
    assert {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in metric(otel.reader, "gen_ai.client.token.usage").data.data_points
    } == {"input": 2600, "output": 300}


def test_an_unknown_semconv_is_a_config_error(otel):
    with pytest.raises(ConfigError, match=r"semconv must be '1\.41\.0'.*got '1\.2'"):
        OtelExporter(tracer_provider=otel.tracer_provider, semconv="1.2")


def test_a_bad_row_does_not_stop_the_rest_of_the_batch(otel):
    """The first error is raised (the recorder counts it) after the other calls are exported."""
    exporter = OtelExporter(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    good = {"ts": TS, "model": "gpt-x", "status": "ok", "usage_status": "unknown", "tags": "{}"}
    with pytest.raises(KeyError):
        exporter([{"model": "no-ts"}, good])
    (span,) = otel.spans.get_finished_spans()
    assert span.name == "chat gpt-x"


def test_span_attributes_is_a_pure_mapping_of_a_row():
    row = {
        "model": "gpt-x",
        "provider": "openai",
        "usage_status": "estimated",
        "input_tokens": 7,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "status": "ok",
        "tags": "{}",
    }
    assert span_attributes(row, capture_cost=False) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-x",
        "gen_ai.response.model": "gpt-x",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 0,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.cache_creation.input_tokens": 0,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "agentmeter.usage_status": "estimated",
    }


def test_importing_agentmeter_does_not_import_opentelemetry():
    code = (
        "import sys, agentmeter; "
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'agentmeter.otel'))); "
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- OTLP/HTTP on loopback -----------------------------------------------------------------------
class _Collector(BaseHTTPRequestHandler):
    """Records every POST body; answers 200 like an OTLP/HTTP collector."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.posts.append((self.path, self.headers.get("Content-Type"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def collector():
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    server.posts = []  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _value(any_value):
    return getattr(any_value, any_value.WhichOneof("value"))


def test_spans_arrive_over_otlp_http_with_their_attributes(make_meter, collector, monkeypatch):
    """A real OTLPSpanExporter posting protobuf to a loopback collector."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    port = collector.server_address[1]
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
    )
    try:
        meter = make_meter(pricing=PRICES)
        export_to_otel(meter, tracer_provider=tracer_provider, meter_provider=MeterProvider())
        with meter.run("task", tags={"tenant": "acme"}) as run:
            run.record(
                model="claude-x",
                provider="anthropic",
                usage=CACHED,
                latency_ms=LATENCY_MS,
                ts=TS,
            )
            run.record(
                model="claude-x", provider="anthropic", status="error", error_type="Timeout", ts=TS
            )
        assert meter.flush()
        assert tracer_provider.force_flush()
    finally:
        tracer_provider.shutdown()
    assert collector.posts, "the exporter posted nothing"
    spans = []
    for path, content_type, body in collector.posts:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "agentmeter"
                spans.extend(scope_spans.spans)
    ok, failed = sorted(spans, key=lambda s: s.status.code)
    attrs = {kv.key: _value(kv.value) for kv in ok.attributes}
    assert ok.name == "chat claude-x"
    assert (ok.start_time_unix_nano, ok.end_time_unix_nano) == (START_NS, END_NS)
    assert {k: attrs[k] for k in attrs if k.startswith(("gen_ai.", "agentmeter.cost"))} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x",
        "gen_ai.usage.input_tokens": 2600,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 120,
        "agentmeter.cost_usd": 0.007275,
        "agentmeter.cost_nano_usd": CACHED_COST_NANO,
        "agentmeter.cost_status": "ok",
    }
    assert attrs["agentmeter.run_id"] == run.run_id
    assert attrs["agentmeter.tag.tenant"] == "acme"
    failed_attrs = {kv.key: _value(kv.value) for kv in failed.attributes}
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert failed.status.message == "Timeout"
    assert failed_attrs["error.type"] == "Timeout"
