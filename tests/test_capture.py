"""Content capture through Meter/Run: off by default, redacted before disk, replayable offline."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import agentmeter
from agentmeter.content import replay_run
from agentmeter.simulate import SimulatedProvider

SECRETS = [
    "jane.doe@example.com",
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "4111 1111 1111 1111",
    "+1 (415) 555-0132",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl",
    "AKIAIOSFODNN7EXAMPLE",
]
PROMPT = "Customer " + " / ".join(SECRETS) + " asked about order 12345."


def file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def agent(meter, provider_fn):
    with meter.run("support") as run:
        first = run.completion(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
        streamed = list(
            run.completion(
                model="gpt-4o", messages=[{"role": "user", "content": "and?"}], stream=True
            )
        )
    return run, first, streamed


def simulated(clock):
    provider = SimulatedProvider(clock, seed=2)
    for name in list(provider.profiles):
        provider.degrade(name, error_rate=0.0)
    return provider


def test_nothing_is_captured_by_default(tmp_path, clock):
    db = tmp_path / "off.db"
    with agentmeter.Meter(
        db=str(db), clock=clock, completion_fn=simulated(clock).completion
    ) as meter:
        agent(meter, None)
    assert sqlite3.connect(db).execute("select count(*) from agentmeter_content").fetchone() == (0,)
    data = file_bytes(db)
    assert b"Customer" not in data and not any(s.encode() in data for s in SECRETS)


def test_captured_content_is_redacted_before_it_touches_disk(tmp_path, clock):
    db = tmp_path / "on.db"
    with agentmeter.Meter(
        db=str(db), clock=clock, completion_fn=simulated(clock).completion, capture_content=True
    ) as meter:
        agent(meter, None)
    rows = (
        sqlite3.connect(db)
        .execute("select step, kind, body from agentmeter_content order by id")
        .fetchall()
    )
    assert [(r[0], r[1]) for r in rows] == [
        (1, "request"),
        (1, "response"),
        (2, "request"),
        (2, "response"),
    ]
    assert "Customer" in rows[0][2] and "[REDACTED:" in rows[0][2]
    data = file_bytes(db)
    leaked = [s for s in SECRETS if s.encode() in data]
    assert leaked == []


def test_extra_redactors_apply(tmp_path, clock):
    db = tmp_path / "extra.db"
    with agentmeter.Meter(
        db=str(db),
        clock=clock,
        completion_fn=simulated(clock).completion,
        capture_content=True,
        redactors=[r"order \d+"],
    ) as meter:
        agent(meter, None)
    body = (
        sqlite3.connect(db)
        .execute("select body from agentmeter_content where kind = 'request' limit 1")
        .fetchone()[0]
    )
    assert "order 12345" not in body


def test_a_captured_run_replays_offline(tmp_path, clock):
    db = tmp_path / "cassette.db"
    with agentmeter.Meter(
        db=str(db), clock=clock, completion_fn=simulated(clock).completion, capture_content=True
    ) as meter:
        run, first, streamed = agent(meter, None)
    cassette = replay_run(str(db), run.run_id)
    with agentmeter.Meter(
        db=str(tmp_path / "again.db"), clock=clock, completion_fn=cassette
    ) as meter:
        _, again_first, again_streamed = agent(meter, None)
    content = (
        again_first["choices"][0]["message"]["content"]
        if isinstance(again_first, dict)
        else again_first.choices[0].message.content
    )
    assert content == first["choices"][0]["message"]["content"]
    assert len(again_streamed) == len(streamed)
