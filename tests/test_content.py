"""The cassette: redaction before storage, no secret in the file, replay in order, pruning."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter import FakeClock, ReplayError
from agentmeter.cli import cli
from agentmeter.content import (
    CONTENT_COLUMNS,
    CONTENT_INSERT_SQL,
    content_rows,
    plain_bodies,
    prune,
    redact,
    redact_value,
    replay_run,
    rows_from_bodies,
)
from agentmeter.migrations import migrate
from agentmeter.recorder import connect

NOW = 1_800_000_000.0
DAY = 86_400.0

# -- redaction ------------------------------------------------------------------------------------
PII = [
    (
        "Contact me at jane.doe+billing@example.co.uk or call +1 (415) 555-0132.",
        "Contact me at [REDACTED:email] or call [REDACTED:phone].",
    ),
    ("Ping ops@acme.io about it", "Ping [REDACTED:email] about it"),
    ("My card is 4111 1111 1111 1111, exp 12/27.", "My card is [REDACTED:card], exp 12/27."),
    (
        "Visa 4012-8888-8888-1881 and Amex 378282246310005",
        "Visa [REDACTED:card] and Amex [REDACTED:card]",
    ),
    ("Mastercard 5555555555554444.", "Mastercard [REDACTED:card]."),
    (
        "London 020 7946 0958, Berlin +49 30 1234567",
        "London [REDACTED:phone], Berlin [REDACTED:phone]",
    ),
    ("call 415-555-0199 or 415.555.0100", "call [REDACTED:phone] or [REDACTED:phone]"),
    (
        "OPENAI_API_KEY=sk-proj-Ab3dEf9hIjKlMnOpQrStUvWxYz0123456789abcd",
        "OPENAI_API_KEY=[REDACTED:api_key]",
    ),
    (
        "use sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEf please",
        "use [REDACTED:api_key] please",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED:api_key]"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [REDACTED:secret]",
    ),
    ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "token [REDACTED:api_key]"),
    ("slack xoxb-2634-1234567890-AbCdEfGhIjKlMnOp", "slack [REDACTED:api_key]"),
    ("maps AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI ok", "maps [REDACTED:api_key] ok"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz",
        "Authorization: Bearer [REDACTED:bearer]",
    ),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz", "jwt [REDACTED:bearer]"),
    (
        '{"token": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}',
        '{"token": "[REDACTED:secret]"}',
    ),
    ('DB_PASSWORD="S3cr3t-P4ss!word" next', 'DB_PASSWORD="[REDACTED:secret]" next'),
    ("my password is hunter2!x, ok", "my password is [REDACTED:secret], ok"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    PII,
    ids=[f"pii-{i}-{e.split('[REDACTED:')[1].split(']')[0]}" for i, (_, e) in enumerate(PII)],
)
def test_redact_replaces_personal_data_and_credentials(text, expected):
    assert redact(text) == expected


NOT_PII = [
    "Dates 2024-01-15 and 15/01/2024, version 1.2.3, at 14:35:07",
    "It costs $1,234.56 and weighs 12.5 kg; order 1234567890123 shipped",
    "ts 1700000000 and created 1731000000",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "not a card: 4111 1111 1111 1112",
    "The key idea is simple; the token count is 12345; secret sauce.",
    "the bearer of bad news, a bearer bond",
    "keyboard layout 1234567890abcdefgh and monkey=abc123def456ghi789",
]


@pytest.mark.parametrize("text", NOT_PII, ids=[f"plain-{i}" for i in range(len(NOT_PII))])
def test_redact_leaves_ordinary_text_alone(text):
    assert redact(text) == text


def _luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it pass the Luhn test."""
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


@st.composite
def card_numbers(draw):
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    digits = _luhn_complete(draw(st.sampled_from("3456")) + body[1:])
    sep = draw(st.sampled_from(["", " ", "-"]))
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return digits, sep.join(groups)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.", max_size=30)


@settings(max_examples=200, deadline=None)
@given(card=card_numbers(), before=words, after=words)
def test_any_luhn_valid_card_is_redacted(card, before, after):
    digits, written = card
    out = redact(f"{before} {written} {after}")
    assert "[REDACTED:card]" in out
    assert digits not in re.sub(r"[ -]", "", out)


@settings(max_examples=200, deadline=None)
@given(
    user=st.from_regex(r"[a-z][a-z0-9._+-]{0,15}[a-z0-9]", fullmatch=True),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
    tld=st.sampled_from(["com", "org", "io", "co.uk", "de", "travel"]),
    before=words,
)
def test_any_plain_email_is_redacted(user, host, tld, before):
    email = f"{user}@{host}.{tld}"
    out = redact(f"{before} {email} thanks")
    assert email not in out
    assert "@" not in out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()\n"))
def test_text_without_digits_or_at_signs_is_unchanged(text):
    assert redact(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_redaction_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


def test_extra_rules_redact_with_regexes_and_callables():
    employee = re.compile(r"(?P<employee_id>EMP-\d{6})")
    ticket = re.compile(r"TCK\d+")
    out = redact(
        "EMP-123456 filed TCK991 for Project Falcon",
        extra=[
            employee,
            ticket,
            lambda text: text.replace("Project Falcon", "[REDACTED:codename]"),
        ],
    )
    assert out == "[REDACTED:employee_id] filed [REDACTED:custom] for [REDACTED:codename]"


def test_an_extra_rule_of_the_wrong_kind_is_refused():
    with pytest.raises(TypeError, match="compiled regex or a callable"):
        redact("text", extra=["not a rule"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="returns the redacted text"):
        redact("text", extra=[lambda _text: None])  # type: ignore[list-item, return-value]


def test_redact_value_drops_secret_keys_and_walks_nested_data():
    value = {
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "short"},
        "messages": [{"role": "user", "content": "mail me: a.b@example.com"}],
        "amount": 4111111111111111,
        "count": 12,
        "ok": True,
        "ratio": 0.5,
        "password": None,
    }
    assert redact_value(value) == {
        "headers": {"Authorization": "[REDACTED:secret]", "X-Api-Key": "[REDACTED:secret]"},
        "messages": [{"role": "user", "content": "mail me: [REDACTED:email]"}],
        "amount": "[REDACTED:card]",
        "count": 12,
        "ok": True,
        "ratio": 0.5,
        "password": None,
    }


# -- capture --------------------------------------------------------------------------------------
SECRETS = [
    "jane.doe@example.com",
    "4111111111111111",
    "4111 1111 1111 1111",
    "+1 (415) 555-0132",
    "sk-proj-Ab3dEf9hIjKlMnOpQrStUvWxYz0123456789abcd",
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "eyJhbGciOiJIUzI1NiJ9",
    "hunter2-correct-horse",
]


def _request():
    return {
        "model": "gpt-4o",
        "api_key": "sk-proj-Ab3dEf9hIjKlMnOpQrStUvWxYz0123456789abcd",
        "extra_headers": {
            "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
        },
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {
                "role": "user",
                "content": (
                    "I'm Jane (jane.doe@example.com, +1 (415) 555-0132). Charge card 4111 1111 1111 1111. "
                    "Our key is AKIAIOSFODNN7EXAMPLE, the GitHub token ghp_16C7e42F292c6912E7710c838347Ae178B4a, "
                    "and the DB password is hunter2-correct-horse."
                ),
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}
        ],
        "max_tokens": 512,
        "temperature": 0.2,
        "metadata": {"anthropic_key": "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"},
    }


def _response(text: str, ident: str = "chatcmpl-1"):
    return {
        "id": ident,
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }


def _content_db(path: Path) -> sqlite3.Connection:
    conn = connect(str(path))
    migrate(conn)
    return conn


def test_content_rows_are_redacted_json_in_column_order():
    rows = content_rows(
        "r1", 3, NOW, _request(), _response("Sure, I emailed jane.doe@example.com.")
    )
    assert [r[:4] for r in rows] == [("r1", 3, NOW, "request"), ("r1", 3, NOW, "response")]
    assert len(rows[0]) == len(CONTENT_COLUMNS)
    request = json.loads(rows[0][4])
    assert "api_key" not in request and "extra_headers" not in request
    assert request["messages"][1]["content"] == (
        "I'm Jane ([REDACTED:email], [REDACTED:phone]). Charge card [REDACTED:card]. Our key is "
        "[REDACTED:api_key], the GitHub token [REDACTED:api_key], and the DB password is [REDACTED:secret]."
    )
    assert request["metadata"] == {"anthropic_key": "[REDACTED:api_key]"}
    assert (
        json.loads(rows[1][4])["choices"][0]["message"]["content"]
        == "Sure, I emailed [REDACTED:email]."
    )


def test_bodies_copied_on_the_agent_thread_give_the_same_rows_later():
    request = _request()
    bodies = plain_bodies(request, _response("done"))
    request["messages"].append({"role": "user", "content": "added after the call"})
    rows = rows_from_bodies("r1", 3, NOW, *bodies)
    assert rows == content_rows("r1", 3, NOW, _request(), _response("done"))
    assert "added after the call" not in rows[0][4]


def test_a_failed_call_has_a_request_row_only():
    assert [r[3] for r in content_rows("r1", 1, NOW, {"model": "m", "messages": []}, None)] == [
        "request"
    ]


def test_a_litellm_response_object_is_stored_as_its_fields():
    import litellm

    response = litellm.ModelResponse(**_response("hello from litellm"))
    (_, row) = content_rows("r1", 1, NOW, {"model": "gpt-4o"}, response)
    body = json.loads(row[4])
    assert body["choices"][0]["message"]["content"] == "hello from litellm"
    assert body["usage"]["total_tokens"] == 150


def test_no_seeded_secret_reaches_the_database_file(tmp_path):
    path = tmp_path / "agent.db"
    conn = _content_db(path)
    for step in range(1, 4):
        rows = content_rows(
            "r1",
            step,
            NOW + step,
            _request(),
            _response(f"Noted, jane.doe@example.com, card 4111111111111111 #{step}"),
        )
        conn.executemany(CONTENT_INSERT_SQL, rows)
    assert conn.execute("SELECT count(*) FROM agentmeter_content").fetchone()[0] == 6
    conn.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("agent.db"))
    assert b"[REDACTED:email]" in data
    for secret in SECRETS:
        assert secret.encode() not in data, secret


# -- replaying a cassette -------------------------------------------------------------------------
def _captured(path: Path, run_id: str = "r1", answers=("first", "second", "third")) -> None:
    conn = _content_db(path)
    for step, answer in enumerate(answers, 1):
        conn.executemany(
            CONTENT_INSERT_SQL,
            content_rows(
                run_id,
                step,
                NOW + step,
                {"model": "gpt-4o", "messages": []},
                _response(answer, f"id-{step}"),
            ),
        )
    conn.close()


def test_replay_run_serves_the_recorded_responses_in_order(tmp_path):
    path = tmp_path / "agent.db"
    _captured(path)
    completion = replay_run(path, "r1")
    answers = [
        completion(model="gpt-4o", messages=[{"role": "user", "content": str(i)}]) for i in range(3)
    ]
    assert [a.choices[0].message.content for a in answers] == ["first", "second", "third"]
    assert [a.id for a in answers] == ["id-1", "id-2", "id-3"]
    assert answers[0].usage.total_tokens == 150
    assert completion.requests[2] == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "2"}],
    }
    with pytest.raises(ReplayError, match="no more recorded responses: all 3 were served"):
        completion(model="gpt-4o", messages=[])


def test_replay_run_can_serve_plain_dicts(tmp_path):
    path = tmp_path / "agent.db"
    _captured(path, answers=("only",))
    completion = replay_run(str(path), "r1", as_dict=True)
    assert completion(model="gpt-4o")["choices"][0]["message"]["content"] == "only"
    assert completion.remaining == 0


def test_a_recorded_stream_is_served_as_chunks(tmp_path):
    path = tmp_path / "agent.db"
    conn = _content_db(path)
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        for piece in ("Hel", "lo")
    ]
    conn.executemany(
        CONTENT_INSERT_SQL, content_rows("r1", 1, NOW, {"model": "gpt-4o", "stream": True}, chunks)
    )
    conn.close()
    stream = replay_run(path, "r1")(model="gpt-4o", stream=True)
    assert "".join(chunk.choices[0].delta.content for chunk in stream) == "Hello"


def test_replay_run_drives_an_agent_through_a_meter(tmp_path, make_meter):
    path = tmp_path / "cassette.db"
    _captured(path, answers=("plan", "act"))
    meter = make_meter(completion_fn=replay_run(path, "r1"))
    with meter.run("offline") as run:
        first = run.completion(model="gpt-4o", messages=[{"role": "user", "content": "go"}])
        second = run.completion(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    assert (first.choices[0].message.content, second.choices[0].message.content) == ("plan", "act")
    assert run.last_record is not None and run.last_record.usage is not None
    assert run.last_record.usage.output_tokens == 30


def test_replay_run_without_captured_content_raises(tmp_path):
    path = tmp_path / "agent.db"
    _captured(path)
    with pytest.raises(ReplayError, match="run other has no captured content"):
        replay_run(path, "other")


def test_replay_run_on_a_recorder_without_the_content_table_raises(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE agentmeter_calls (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(ReplayError, match="predates content capture"):
        replay_run(path, "r1")


# -- retention -----------------------------------------------------------------------------------
def _calls(conn: sqlite3.Connection, count: int) -> None:
    conn.executemany(
        "INSERT INTO agentmeter_calls (run_id, step, ts, usage_status, cost_status, status) "
        "VALUES ('r1', ?, ?, 'reported', 'ok', 'ok')",
        [(i, NOW - 40 * DAY + i) for i in range(count)],
    )


def test_prune_deletes_old_content_and_keeps_the_calls(tmp_path):
    path = tmp_path / "agent.db"
    conn = _content_db(path)
    _calls(conn, 5)
    old = content_rows(
        "r1",
        1,
        NOW - 40 * DAY,
        {"messages": [{"content": "OLD-BODY-MARKER " * 50}]},
        _response("old"),
    )
    new = content_rows(
        "r1", 2, NOW - 2 * DAY, {"messages": [{"content": "new body"}]}, _response("new")
    )
    conn.executemany(CONTENT_INSERT_SQL, old + new)

    assert prune(conn, 30 * DAY, clock=FakeClock(NOW)) == 2
    assert conn.execute("SELECT step, kind FROM agentmeter_content ORDER BY id").fetchall() == [
        (2, "request"),
        (2, "response"),
    ]
    assert conn.execute("SELECT count(*) FROM agentmeter_calls").fetchone()[0] == 5
    conn.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("agent.db"))
    assert b"OLD-BODY-MARKER" not in data  # overwritten, not just unlinked from the b-tree


def test_prune_is_a_no_op_on_a_recorder_without_content(tmp_path):
    conn = sqlite3.connect(tmp_path / "old.db")
    assert prune(conn, 0, clock=FakeClock(NOW)) == 0


def test_prune_refuses_a_negative_age():
    with pytest.raises(ValueError, match="before_s must be >= 0"):
        prune(sqlite3.connect(":memory:"), -1)


def test_cli_prune_deletes_content_older_than_the_age(tmp_path):
    path = tmp_path / "agent.db"
    conn = _content_db(path)
    _calls(conn, 3)
    conn.executemany(
        CONTENT_INSERT_SQL, content_rows("r1", 1, 1000.0, {"model": "m"}, _response("x"))
    )
    conn.close()
    result = CliRunner().invoke(cli, ["prune", "--before", "30d", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"deleted 2 captured content rows older than 30d from {path}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--before", "soon"],
            "Invalid value for --before: expected a duration like '30s', '10m' or '24h', got 'soon'",
        ),
        (
            ["--before", "30d", "--db", "/nonexistent/agent.db"],
            "Error: no flight recorder at /nonexistent/agent.db",
        ),
    ],
    ids=["bad-age", "missing-db"],
)
def test_cli_prune_errors_are_one_line(args, message, tmp_path):
    if "--db" not in args:
        path = tmp_path / "agent.db"
        _content_db(path).close()
        args = [*args, "--db", str(path)]
    result = CliRunner().invoke(cli, ["prune", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_content_migration_creates_the_table_and_its_indexes():
    conn = sqlite3.connect(":memory:")
    migrate(conn)
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'agentmeter_content%'"
        )
    }
    assert names == {"agentmeter_content", "agentmeter_content_run", "agentmeter_content_ts"}
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(CONTENT_INSERT_SQL, ("r1", 1, NOW, "prompt", "{}"))
