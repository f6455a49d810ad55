"""The post-mortem HTML: one self-contained file whose chart and tables match the recorded run."""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentmeter import FakeClock, Meter, ReplayError, Usage, html_report
from agentmeter.cli import cli
from agentmeter.html_report import render_html_report, write_html_report

START = 1_800_000_000.0
POLICIES = """version: 1
ladder:
  test-model: [cheap-model]
pricing:
  test-model: {input: "$1", output: "$2"}
  cheap-model: {input: "$0.10", output: "$0.20"}
policies:
  - name: burst
    when: {metric: cost_usd, stat: sum, window: 1h, scope: run, above: "$0.010"}
    warn_at: 80%
    then: [downgrade, alert]
  - name: loop
    when: {metric: repeated_prompt, last: 10, above: 2}
    cooldown: 5m
    then: [{pause: {for: 20s}}]
"""


def record(path: str, calls: int = 24) -> str:
    """A run with latency, streams (time to first token), a failure, a downgrade and a pause."""
    clock = FakeClock(START)
    meter = Meter(db=path, policies=POLICIES, clock=clock)
    with meter, meter.run("research <agent>", tags={"tenant": "acme"}) as run:
        for i in range(1, calls + 1):
            decision = run.decide("test-model", prompt_tokens=1000 + 50 * i, max_tokens=500)
            run.apply(decision)
            latency = 1.5 + (i % 5) * 0.6 + (6.0 if i == 9 else 0.0)
            clock.advance(latency)
            failed = i == 12
            run.record(
                model=decision.model,
                requested_model="test-model",
                usage=None
                if failed
                else Usage(input_tokens=1000 + 50 * i, output_tokens=300 + 10 * i),
                latency_ms=latency * 1000,
                ttft_ms=400.0 + 20 * i if i % 3 == 0 else None,
                status="error" if failed else "ok",
                error_type="RateLimitError" if failed else None,
                prompt_hash="loop" if 15 <= i <= 19 else f"p{i}",
                stream=i % 3 == 0,
            )
            clock.advance(3.0)
    return run.run_id


class Collector(HTMLParser):
    """Every start tag with its attributes, and the text inside <title> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.titles: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in ("circle", "rect", "path", "line", "polyline", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "title":
            self.titles.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and (cls is None or cls in a.get("class", "").split())
        ]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    db = str(folder / "agent.db")
    run_id = record(db)
    out = write_html_report(db, run_id, folder / "postmortem.html")
    conn = sqlite3.connect(db)
    decisions = conn.execute(
        "SELECT policy, action FROM agentmeter_decisions WHERE run_id = ?", (run_id,)
    ).fetchall()
    models = {
        m
        for (m,) in conn.execute(
            "SELECT DISTINCT model FROM agentmeter_calls WHERE run_id = ?", (run_id,)
        )
    }
    conn.close()
    html = out.read_text(encoding="utf-8")
    parser = Collector()
    parser.feed(html)
    return {
        "db": db,
        "run_id": run_id,
        "path": out,
        "html": html,
        "parser": parser,
        "decisions": decisions,
        "models": models,
    }


def _points(attrs: dict[str, str]) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in attrs["points"].split()]  # type: ignore[misc]


def test_the_run_has_what_the_report_should_show(report):
    actions = {a for _, a in report["decisions"]}
    assert {"downgrade", "alert", "warn", "pause"} <= actions
    assert report["models"] == {"test-model", "cheap-model"}


def test_the_chart_has_one_point_per_call_for_latency_and_spend(report):
    parser = report["parser"]
    assert len(parser.find("svg", "timeline")) == 1
    (latency,) = parser.find("polyline", "latency")
    (spend,) = parser.find("polyline", "spend")
    assert len(_points(latency)) == len(_points(spend)) == 24
    xs = [x for x, _ in _points(latency)]
    assert xs == sorted(xs)
    ys = [y for _, y in _points(spend)]
    assert ys == sorted(ys, reverse=True)  # cumulative spend only rises (SVG y grows downward)
    (ttft,) = parser.find("polyline", "ttft")
    assert len(_points(ttft)) == 8  # the streamed calls
    assert len(parser.find("circle", "err")) == 1


def test_every_decision_has_a_marker_with_its_reason_as_a_tooltip(report):
    parser = report["parser"]
    markers = parser.find("g", "decision-marker")
    assert len(markers) == len(report["decisions"])
    assert Counter(m["data-action"] for m in markers) == Counter(a for _, a in report["decisions"])
    reasons = [t for t in parser.titles if "→" in t]
    assert any("burst → downgrade (fire)" in t and "cost_usd sum over 1h" in t for t in reasons)


def test_the_tables_list_each_decision_and_each_model(report):
    html = report["html"]
    decisions_table = html.split("<h2>Decisions</h2>")[1].split("</table>")[0]
    assert decisions_table.count("<tr>") == len(report["decisions"]) + 1
    models_table = html.split("<h2>Per model</h2>")[1].split("</table>")[0]
    assert models_table.count("<tr>") == len(report["models"]) + 1
    assert "research &lt;agent&gt;" in html and "research <agent>" not in html


def test_the_file_is_self_contained(report):
    html = report["html"]
    parser = report["parser"]
    assert "http://" not in html and "https://" not in html
    assert not parser.find("script") and not parser.find("link") and not parser.find("img")
    assert not any("src" in attrs or "href" in attrs for _, attrs in parser.tags)
    assert "@import" not in html and "url(" not in html


def test_reasons_and_names_are_escaped(tmp_path):
    db = str(tmp_path / "agent.db")
    run_id = record(db, calls=3)
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO agentmeter_decisions (run_id, step, ts, policy, action, detail) VALUES (?, 2, ?, ?, 'alert', ?)",
        (
            run_id,
            START + 5,
            "<b>p</b>",
            json.dumps({"reason": "<script>alert(1)</script>", "transition": "fire"}),
        ),
    )
    conn.commit()
    conn.close()
    html = render_html_report(db, run_id)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>p</b>" not in html


def test_long_runs_are_thinned_to_the_point_budget(tmp_path, monkeypatch):
    db = str(tmp_path / "agent.db")
    run_id = record(db, calls=60)
    monkeypatch.setattr(html_report, "MAX_POINTS", 25)
    parser = Collector()
    parser.feed(render_html_report(db, run_id))
    (latency,) = parser.find("polyline", "latency")
    points = _points(latency)
    assert len(points) == 25
    assert len(parser.find("g", "decision-marker")) > 0


def test_a_run_without_calls_still_renders(tmp_path):
    db = str(tmp_path / "agent.db")
    meter = Meter(db=db, clock=FakeClock(START))
    with meter, meter.run("idle") as run:
        pass
    html = render_html_report(db, run.run_id)
    assert "no calls recorded" in html and "No policy fired during this run." in html


def test_an_unknown_run_is_an_error(report):
    with pytest.raises(ReplayError, match="no run 'nope'"):
        render_html_report(report["db"], "nope")


def test_cli_postmortem_writes_the_file(report, tmp_path):
    out = tmp_path / "pm.html"
    result = CliRunner().invoke(
        cli, ["postmortem", report["run_id"][:8], "--html", str(out), "--db", report["db"]]
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote the post-mortem of run {report['run_id']} to {out}\n"
    assert out.read_text(encoding="utf-8") == report["html"]


def test_cli_postmortem_unknown_run_is_one_line(report, tmp_path):
    result = CliRunner().invoke(
        cli, ["postmortem", "nope", "--html", str(tmp_path / "x.html"), "--db", report["db"]]
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: no recorded run has an id starting with 'nope' (see `agentmeter runs`)\n"
    )


# -- rendered by a real browser -------------------------------------------------------------------
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


def _decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered pixel rows) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0
            bpp = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray()
    previous = bytearray(stride)
    for row in range(height):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        out += line
        previous = line
    return width, height, bpp, bytes(out)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_a_chart_that_is_not_blank(report, tmp_path):
    shot = tmp_path / "postmortem.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                Path(report["path"]).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    width, height, bpp, pixels = _decode_png(shot.read_bytes())
    assert (width, height) == (1200, 900)
    colors = Counter(
        pixels[i : i + 3] for i in range(0, len(pixels), bpp * 7)
    )  # a sample of pixels
    _, count = colors.most_common(1)[0]
    assert count < 0.9 * sum(colors.values())  # not one flat colour
    assert len(colors) > 50

    def near(rgb: bytes, target: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 40 for a, b in zip(rgb, target, strict=True))

    assert any(near(c, (0x2F, 0x6D, 0xB5)) for c in colors)  # the latency line's blue
    assert any(near(c, (0x2A, 0x8A, 0x3E)) for c in colors)  # the spend line's green


def test_a_run_of_still_active_pauses_is_one_marker_and_row_with_a_count(tmp_path):
    """Deciding again and again under a breached cap: the report folds the repeats, counts all."""
    path = str(tmp_path / "paused.db")
    policy = (
        "version: 1\npricing:\n  test-model: {input: $1, output: $1}\npolicies:\n"
        "  - name: pace\n    when: {metric: cost_usd, window: 1h, above: $0.001}\n"
        "    then: [pause]\n"
    )
    clock = FakeClock(START)
    with Meter(db=path, policies=policy, clock=clock) as meter, meter.run("paused") as run:
        run.record(model="test-model", usage=Usage(input_tokens=5000), latency_ms=10)
        for _ in range(30):
            clock.advance(1.0)
            assert run.decide("test-model").pause_s > 0
    page = render_html_report(path, run.run_id)
    assert "(and 28 more like it until +30s)" in page
    parsed = Collector()
    parsed.feed(page)
    assert len(parsed.find("g", "decision-marker")) == 2  # the pause that fired, the first repeat
    assert "<span>Decisions</span><strong>30</strong>" in page
