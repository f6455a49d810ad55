"""What-if replay: a recorded run fed through another policy set (or price table) on a simulated clock.

The recorded calls go, in id order, through a fresh ``Engine``: each decide happens at the time the
live run decided (``decided_at``), with the prompt size it saw and the worst case it would reserve;
each call is observed at its recorded ``ts`` with its recorded tokens and latency. Time is only ever
passed in, so a replay is deterministic and runs as fast as the engine can decide.

What the counterfactual run is made of:

- a call the replayed policies send to another model is repriced from its recorded tokens at that
  model's rates (``cost_nano_usd``); tokens and latency stay as recorded (what another model would
  have answered, or how fast, is unknown);
- a compaction is reported, but the prompt it would have shortened is billed as recorded;
- a halt stops the run: that call and every later one count as not made;
- a pause the live run did not take counts as a call not made (what the agent would have done after
  waiting is unknown), and the replay goes on. A pause the live run took too was waited out live:
  the recorded call is what came after it, so it counts as made;
- attempts recorded without a decide of their own follow the decision of the failed attempt they
  retry, or else stay as recorded (the agent did not consult the policies for them); in a run
  recorded without policies every call is decided at its start (``ts - latency``);
- decides that made no call (a halt, a pause raised to the agent) are known from their recorded
  decision rows and replayed at their time, so the same policies reproduce them too.

With the policy set and prices the run was recorded with, the replay reproduces the recorded
decisions exactly (compared on step, policy, action and transition) and the recorded cost.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from .decision import UNRECORDED_ACTIVE, Decision, slot_setters
from .errors import ConfigError, ReplayError
from .policy.engine import Engine, Observation, Reservation
from .policy.spec import PolicySet, load_policies
from .pricing import PriceTable, cost_nano_usd, nano_to_usd
from .replay_inputs import load_pricing, open_db, price_table
from .usage import Usage

__all__ = [
    "ReplayDecision",
    "ReplayResult",
    "iter_differences",
    "load_pricing",
    "open_db",
    "print_replay",
    "replay",
]

# Rows that record an act (a compaction done), not a policy's decision.
_ACTS = ("compaction",)
# Mirrors ``Run._report``: a still-active stateful action is recorded once, when it fires.
_UNRECORDED_ACTIVE = UNRECORDED_ACTIVE

_CALL_COLUMNS = (
    "step, ts, requested_model, model, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_tokens, reasoning_tokens, cache_write_1h_tokens, usage_status, cost_nano_usd, "
    "latency_ms, ttft_ms, status, prompt_hash, max_tokens, decided_at, decided_prompt_tokens, tags, id"
)
# What the engine also reads of a call (stream smoothness, the version that answered, a cache
# hit); a flight recorder from before they were recorded (migration m004) reads as none.
_SAMPLE_COLUMNS = ("itl_p90_ms", "model_version", "cache_hit")
_SAMPLE_DEFAULTS = ("NULL", "NULL", "0")


def _call_columns(conn: sqlite3.Connection) -> str:
    have = {row[1] for row in conn.execute("PRAGMA table_info(agentmeter_calls)")}
    extra = (
        column if column in have else default
        for column, default in zip(_SAMPLE_COLUMNS, _SAMPLE_DEFAULTS, strict=True)
    )
    return f"{_CALL_COLUMNS}, {', '.join(extra)}"


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    """One policy action before one call: recorded live, or what the replayed policies would do."""

    step: int | None
    ts: float
    policy: str
    action: str
    transition: str
    reason: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None

    @property
    def key(self) -> tuple[int | None, str, str, str]:
        """What two decisions are compared on: step, policy, action, transition."""
        return (self.step, self.policy, self.action, self.transition)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# A replay under policies that fire on every call keeps a ReplayDecision per call and more: built
# through the slots like ``decision.new_fired`` (the dataclass ``__init__`` costs ~2 us).
(
    _rd_step,
    _rd_ts,
    _rd_policy,
    _rd_action,
    _rd_transition,
    _rd_reason,
    _rd_metric,
    _rd_value,
    _rd_threshold,
) = slot_setters(
    ReplayDecision,
    ("step", "ts", "policy", "action", "transition", "reason", "metric", "value", "threshold"),
)


def _replay_decision(
    step: int | None,
    ts: float,
    policy: str,
    action: str,
    transition: str,
    reason: str,
    metric: str | None,
    value: float | None,
    threshold: float | None,
) -> ReplayDecision:
    """``ReplayDecision(...)`` with every field given, without the dataclass ``__init__``."""
    d: ReplayDecision = object.__new__(ReplayDecision)
    _rd_step(d, step)
    _rd_ts(d, ts)
    _rd_policy(d, policy)
    _rd_action(d, action)
    _rd_transition(d, transition)
    _rd_reason(d, reason)
    _rd_metric(d, metric)
    _rd_value(d, value)
    _rd_threshold(d, threshold)
    return d


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A what-if replay of one run: the decisions that would fire and what the run would cost.

    ``recorded_cost`` and ``counterfactual_cost`` are exact USD over the calls whose cost is known
    (``*_unknown_cost_calls`` count the others). ``kept`` / ``removed`` / ``added`` compare the
    recorded decisions with the replayed ones as multisets of ``ReplayDecision.key``.
    """

    run_id: str
    policies: str
    policy_digest: str
    started_at: float | None
    calls: int
    calls_made: int
    calls_not_made: int
    calls_rerouted: int
    recorded_cost: Decimal
    counterfactual_cost: Decimal
    recorded_unknown_cost_calls: int
    counterfactual_unknown_cost_calls: int
    decisions: tuple[ReplayDecision, ...]
    recorded: tuple[ReplayDecision, ...]
    kept: tuple[ReplayDecision, ...]
    removed: tuple[ReplayDecision, ...]
    added: tuple[ReplayDecision, ...]
    halted_at_step: int | None
    recorded_halted_at_step: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def saved(self) -> Decimal:
        """Recorded cost minus counterfactual cost (negative when the replay costs more)."""
        return self.recorded_cost - self.counterfactual_cost

    @property
    def reproduces(self) -> bool:
        """True when the replayed decisions are exactly the recorded ones."""
        return not self.removed and not self.added

    def summary(self) -> str:
        """One line: both costs, the difference, the decisions kept, removed and added, the calls."""
        delta = self.counterfactual_cost - self.recorded_cost
        sign = "-" if delta < 0 else "+"
        share = f", {sign}{abs(delta) / self.recorded_cost:.0%}" if self.recorded_cost else ""
        change = f"{sign}${abs(delta):.4f}{share}" if delta else "the same"
        return (
            f"recorded ${self.recorded_cost:.4f}, counterfactual ${self.counterfactual_cost:.4f} "
            f"({change}); decisions: {len(self.kept)} kept, "
            f"{len(self.removed)} removed, {len(self.added)} added; calls: {self.calls_made:,} of "
            f"{self.calls:,} made, {self.calls_rerouted:,} on another model"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data (costs as strings, exact) for ``--json``."""
        return {
            "run_id": self.run_id,
            "policies": self.policies,
            "policy_digest": self.policy_digest,
            "calls": self.calls,
            "calls_made": self.calls_made,
            "calls_not_made": self.calls_not_made,
            "calls_rerouted": self.calls_rerouted,
            "recorded_cost_usd": str(self.recorded_cost),
            "counterfactual_cost_usd": str(self.counterfactual_cost),
            "saved_usd": str(self.saved),
            "recorded_unknown_cost_calls": self.recorded_unknown_cost_calls,
            "counterfactual_unknown_cost_calls": self.counterfactual_unknown_cost_calls,
            "halted_at_step": self.halted_at_step,
            "recorded_halted_at_step": self.recorded_halted_at_step,
            "reproduces": self.reproduces,
            "decisions": [d.as_dict() for d in self.decisions],
            "kept": [d.as_dict() for d in self.kept],
            "removed": [d.as_dict() for d in self.removed],
            "added": [d.as_dict() for d in self.added],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------
# Recorded decisions


@dataclass(slots=True)
class _Group:
    """The recorded decision rows of one decide (same step, same time)."""

    step: int | None
    ts: float
    rows: list[ReplayDecision]
    details: list[dict[str, Any]]

    @property
    def paused(self) -> bool:
        return any(d.action == "pause" for d in self.rows)

    def detail(self, key: str) -> Any:
        for d in self.details:
            if d.get(key) is not None:
                return d[key]
        return None


def _recorded(
    conn: sqlite3.Connection, run_id: str
) -> tuple[list[ReplayDecision], list[_Group], int]:
    """The run's comparable decisions, every decide's rows grouped, and how many were external.

    External rows are denials by budgets shared with other processes (``detail.shared``): a
    replay of one run cannot see what the others spent, so they are left out of the comparison.
    """
    decisions: list[ReplayDecision] = []
    groups: list[_Group] = []
    external = 0
    for step, ts, policy, metric, value, threshold, action, detail_text in conn.execute(
        "SELECT step, ts, policy, metric, value, threshold, action, detail "
        "FROM agentmeter_decisions WHERE run_id = ? ORDER BY id",
        (run_id,),
    ):
        if policy in _ACTS:
            continue
        try:
            detail = json.loads(detail_text) if detail_text else {}
        except ValueError:
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        decision = ReplayDecision(
            step=step,
            ts=ts,
            policy=policy,
            action=action,
            transition=str(detail.get("transition", "fire")),
            reason=str(detail.get("reason", "")),
            metric=metric,
            value=value,
            threshold=threshold,
        )
        if detail.get("shared"):
            external += 1
        else:
            decisions.append(decision)
        if groups and groups[-1].step == step and groups[-1].ts == ts:
            groups[-1].rows.append(decision)
            groups[-1].details.append(detail)
        else:
            groups.append(_Group(step, ts, [decision], [detail]))
    return decisions, groups, external


def _compare(
    recorded: list[ReplayDecision], replayed: list[ReplayDecision]
) -> tuple[list[ReplayDecision], list[ReplayDecision], list[ReplayDecision]]:
    """(kept, removed, added) as multisets of decision keys, each in its own order."""
    recorded_keys = Counter(d.key for d in recorded)
    replayed_keys = Counter(d.key for d in replayed)
    common = recorded_keys & replayed_keys
    kept: list[ReplayDecision] = []
    added: list[ReplayDecision] = []
    budget = Counter(common)
    for d in replayed:
        if budget[d.key] > 0:
            budget[d.key] -= 1
            kept.append(d)
        else:
            added.append(d)
    budget = Counter(common)
    removed: list[ReplayDecision] = []
    for d in recorded:
        if budget[d.key] > 0:
            budget[d.key] -= 1
        else:
            removed.append(d)
    return kept, removed, added


# --------------------------------------------------------------------------------------------
# The replay


def replay(
    conn_or_path: sqlite3.Connection | str | os.PathLike[str],
    run_id: str,
    *,
    policies: str | os.PathLike[str] | PolicySet,
    pricing: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str] | PriceTable | None = None,
) -> ReplayResult:
    """Replay run ``run_id`` under ``policies`` (a path, built-in name, YAML text or ``PolicySet``).

    ``pricing``: per-million-token overrides like a policy file's ``pricing:`` section, a YAML file
    with one, or a ``PriceTable``; when given, every call is repriced with it (the recorded cost
    stays as recorded). Without it, the policy file's prices apply to worst cases and reroutes.
    """
    policy_set = load_policies(policies)  # type: ignore[arg-type]
    if policy_set is None:
        raise ConfigError("replay needs a policy set: a file path, a built-in name or YAML text")
    prices = price_table(policy_set, pricing)
    conn, opened = open_db(conn_or_path)
    try:
        return _Replayer(conn, run_id, policy_set, prices, reprice_all=pricing is not None).run()
    finally:
        if opened:
            conn.close()


class _Replayer:
    """One replay: a fresh engine, the run's recorded decisions, and running totals."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        policy_set: PolicySet,
        prices: PriceTable,
        *,
        reprice_all: bool,
    ) -> None:
        self.conn = conn
        self.run_id = run_id
        self.policy_set = policy_set
        self.prices = prices
        self.reprice_all = reprice_all
        self.engine = Engine(policy_set)
        self.replayed: list[ReplayDecision] = []
        self.halted_at: int | None = None
        self.notes: list[str] = []
        run_row = conn.execute(
            "SELECT started_at, tags, policy_hash FROM agentmeter_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        self.started_at: float | None = run_row[0] if run_row else None
        self.run_tags = _parse_tags(run_row[1]) if run_row else {}
        self.policy_hash: str | None = run_row[2] if run_row else None

    # -- deciding --------------------------------------------------------------------------------
    def decide(
        self,
        now: float,
        model: str,
        tags: Mapping[str, Any],
        prompt_tokens: int | None,
        max_tokens: int | None,
        step: int | None,
        worst_case_nano: int | None = None,
    ) -> tuple[Decision, Reservation | None]:
        """``Engine.decide`` as the live run called it; what fires is collected."""
        worst_case: Callable[[str], int | None] | None = None
        if not self.engine.hard_caps:
            pass  # the engine asks for a worst case only to reserve against a hard cap
        elif worst_case_nano is not None and prompt_tokens is None:

            def worst_case(_chosen: str) -> int | None:
                return worst_case_nano
        else:
            worst_case = _WorstCase(self.prices, prompt_tokens or 0, max_tokens)
        decision, reservation = self.engine.decide(
            now=now,
            model=model,
            run_id=self.run_id,
            tags=tags,
            prompt_tokens=prompt_tokens,
            worst_case=worst_case,
            step=step,
        )
        if decision.fired:
            self.collect(decision, now, step)
        return decision, reservation

    def collect(self, decision: Decision, now: float, step: int | None) -> None:
        """Keep what a decision fired, as ``Run._report`` records it."""
        append = self.replayed.append
        for f in decision.fired:
            if f.transition == "active" and f.action in _UNRECORDED_ACTIVE:
                continue
            append(
                _replay_decision(
                    step,
                    now,
                    f.policy,
                    f.action,
                    f.transition,
                    f.reason,
                    f.metric,
                    f.value,
                    f.threshold,
                )
            )
        if decision.halt:
            self.halted_at = step

    def phantom(
        self, group: _Group, next_call: tuple[Any, ...] | None, last_call: tuple[Any, ...] | None
    ) -> None:
        """Replay a recorded decide that made no call (a halt, a pause raised to the agent)."""
        same_step = next_call if next_call is not None and next_call[0] == group.step else None
        source = same_step or last_call or next_call
        model = group.detail("requested_model") or (source[2] if source else None)
        if model is None:
            self.notes.append(
                f"step {group.step}: a decision with no call and no model was skipped"
            )
            return
        prompt = group.detail("prompt_tokens")
        if prompt is None and same_step is not None:
            prompt = same_step[18]
        max_tokens = group.detail("max_tokens")
        if max_tokens is None and source is not None:
            max_tokens = source[16]
        self.feed(group.ts)
        decision, reservation = self.decide(
            group.ts,
            model,
            self.run_tags,
            prompt,
            max_tokens,
            group.step,
            worst_case_nano=group.detail("worst_case_nano_usd"),
        )
        self.engine.release(reservation)
        if next_call is None and not decision.halt and decision.pause_s <= 0:
            self.notes.append(
                f"the recorded run stopped at step {group.step} ({', '.join(d.policy for d in group.rows)}); "
                "under these policies it would have gone on, with calls never recorded"
            )

    def feed(self, upto: float) -> None:
        """Give the engine the quality feedback recorded up to ``upto``, as the live run had it."""
        feedback = self.feedback
        while feedback and feedback[0][0] <= upto:
            ts, negative, model = feedback.popleft()
            self.engine.observe(
                Observation(ts, self.run_id, model, self.run_tags, {"negative": negative})
            )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        conn = self.conn
        run_id = self.run_id
        try:
            self.feedback: deque[tuple[float, int, str | None]] = deque(
                conn.execute(
                    "SELECT ts, negative, model FROM agentmeter_feedback WHERE run_id = ? ORDER BY id",
                    (run_id,),
                ).fetchall()
            )
        except sqlite3.OperationalError:  # a database from before feedback existed
            self.feedback = deque()
        if (
            self.started_at is None
            and not conn.execute(
                "SELECT 1 FROM agentmeter_calls WHERE run_id = ? LIMIT 1", (run_id,)
            ).fetchone()
        ):
            raise ReplayError(f"no run {run_id!r} in the flight recorder")
        recorded, groups, external = _recorded(conn, run_id)
        if external:
            self.notes.append(
                f"{external} recorded decision(s) came from budgets shared with other processes; "
                "a replay of one run cannot see their spend, so they are not compared"
            )
        pending = deque(groups)
        # Recorded under policies, only calls with a decide of their own were decided live; a run
        # recorded without policies is decided call by call, at each call's start.
        decided_run = self.policy_hash is not None or (
            conn.execute(
                "SELECT 1 FROM agentmeter_calls WHERE run_id = ? AND decided_at IS NOT NULL LIMIT 1",
                (run_id,),
            ).fetchone()
            is not None
        )
        cursor = conn.execute(
            f"SELECT {_call_columns(conn)} FROM agentmeter_calls WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        cursor.arraysize = 4096
        engine = self.engine
        engine_observe = engine.observe
        engine_decide = engine.decide
        collect = self.collect
        hard_caps = engine.hard_caps
        prices = self.prices
        reprice_all = self.reprice_all
        tag_cache: dict[str, dict[str, Any]] = {}
        feedback = self.feedback

        calls = made = rerouted = 0
        recorded_nano = counter_nano = 0
        recorded_unknown = counter_unknown = 0
        halted = False
        # The decision that later attempts without a decide of their own follow.
        current_model: str | None = None
        current_made = True
        previous: tuple[Any, ...] | None = None

        for row in _rows(cursor):
            (
                step, ts, requested, model, inp, out, cread, cwrite, reasoning, cw1h,
                usage_status, cost, latency, ttft, status, phash, max_tokens, decided_at,
                decided_prompt, tags_text, call_id, itl_p90, model_version, cache_hit,
            ) = row  # fmt: skip
            calls += 1
            if cost is None:
                recorded_unknown += 1
            else:
                recorded_nano += cost
            while pending and _before(pending[0], step, decided_at):
                self.phantom(pending.popleft(), row, previous)
                if self.halted_at is not None:
                    break
            if self.halted_at is not None:
                halted = True
                break
            tags = tag_cache.get(tags_text)
            if tags is None:
                tags = tag_cache[tags_text] = _parse_tags(tags_text)
            reservation = None
            if decided_at is not None or not decided_run:
                if decided_at is not None:
                    now = decided_at
                else:  # never decided live: decide at its start, on the prompt it sent
                    now = ts - (latency or 0.0) / 1000.0
                    if decided_prompt is None and usage_status != "unknown":
                        decided_prompt = inp + cread + cwrite
                if feedback:
                    self.feed(now)
                live_paused = False
                if pending and pending[0].step == step and pending[0].ts == decided_at:
                    live_paused = pending.popleft().paused
                decision, reservation = engine_decide(
                    now=now,
                    model=requested or model,
                    run_id=run_id,
                    tags=tags,
                    prompt_tokens=decided_prompt,
                    worst_case=_WorstCase(prices, decided_prompt or 0, max_tokens)
                    if hard_caps
                    else None,
                    step=step,
                )
                if decision.fired:
                    collect(decision, now, step)
                if decision.halt:
                    halted = True
                    break
                current_model = decision.model
                current_made = decision.pause_s <= 0 or live_paused
            elif not (
                previous is not None
                and previous[14] != "ok"
                and previous[2] == requested
                and current_model is not None
            ):
                current_model, current_made = model, True  # recorded without a decide: as it was
            previous = row
            if not current_made:
                self.engine.release(reservation)
                continue
            made += 1
            chosen = current_model or model
            known = usage_status != "unknown"
            if chosen != model:
                rerouted += 1
            if reprice_all or chosen != model:
                cost = (
                    cost_nano_usd(
                        chosen, _usage(inp, out, cread, cwrite, reasoning, cw1h), prices=prices
                    )
                    if known
                    else None
                )
            if cost is None:
                counter_unknown += 1
            else:
                counter_nano += cost
            prompt = inp + cread + cwrite if known else None
            engine_observe(
                Observation(
                    ts,
                    run_id,
                    chosen,
                    tags,
                    {
                        "cost": cost,
                        "input_tokens": inp if known else None,
                        "output_tokens": out if known else None,
                        "cache_read_tokens": cread if known else None,
                        "cache_write_tokens": cwrite if known else None,
                        "reasoning_tokens": reasoning if known else None,
                        "prompt_tokens": prompt,
                        "total_tokens": prompt + out if known else None,
                        "latency_ms": latency,
                        "ttft_ms": ttft,
                        "error": 0 if status == "ok" else 1,
                        "cost_unknown": 1 if cost is None else 0,
                        "prompt_hash": phash,
                        "itl_p90_ms": itl_p90,
                        # a call rerouted by the replay was answered by another model
                        "model_version": model_version if chosen == model else chosen,
                        "cache_hit": 1 if cache_hit else 0,
                    },
                ),
                reservation,
            )

        if halted:  # the calls after a halt are not made, only counted with their recorded cost
            rest, rest_nano, rest_unknown = conn.execute(
                "SELECT count(*), coalesce(sum(cost_nano_usd), 0), count(*) - count(cost_nano_usd) "
                "FROM agentmeter_calls WHERE run_id = ? AND id > ?",
                (run_id, call_id),
            ).fetchone()
            calls += rest
            recorded_nano += rest_nano
            recorded_unknown += rest_unknown
        while pending and self.halted_at is None and not halted:
            self.phantom(pending.popleft(), None, previous)

        recorded_halt = next((d.step for d in reversed(recorded) if d.action == "halt"), None)
        kept, removed, added = _compare(recorded, self.replayed)
        return ReplayResult(
            run_id=run_id,
            policies=self.policy_set.source,
            policy_digest=self.policy_set.digest,
            started_at=self.started_at,
            calls=calls,
            calls_made=made,
            calls_not_made=calls - made,
            calls_rerouted=rerouted,
            recorded_cost=nano_to_usd(recorded_nano),
            counterfactual_cost=nano_to_usd(counter_nano),
            recorded_unknown_cost_calls=recorded_unknown,
            counterfactual_unknown_cost_calls=counter_unknown,
            decisions=tuple(self.replayed),
            recorded=tuple(recorded),
            kept=tuple(kept),
            removed=tuple(removed),
            added=tuple(added),
            halted_at_step=self.halted_at,
            recorded_halted_at_step=recorded_halt,
            notes=tuple(self.notes),
        )


class _WorstCase:
    """The worst-case cost of the call being decided, on whichever model the engine picks."""

    __slots__ = ("max_tokens", "prices", "prompt_tokens")

    def __init__(self, prices: PriceTable, prompt_tokens: int, max_tokens: int | None) -> None:
        self.prices = prices
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens

    def __call__(self, model: str) -> int | None:
        return self.prices.worst_case_nano_usd(model, self.prompt_tokens, self.max_tokens)


def _rows(cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
    """The cursor's rows, fetched in blocks (fewer round trips into the sqlite3 module)."""
    fetch = cursor.fetchmany
    while True:
        block = fetch()
        if not block:
            return
        yield from block


def _before(group: _Group, step: int | None, decided_at: float | None) -> bool:
    """True when a recorded decide comes before (and is not) the decide of this call."""
    if group.step is None or step is None:
        return decided_at is not None and group.ts < decided_at
    if group.step != step:
        return group.step < step
    return decided_at is not None and group.ts < decided_at


def _usage(
    inp: int, out: int, cread: int, cwrite: int, reasoning: int | None, cw1h: int | None
) -> Usage:
    return Usage(
        input_tokens=inp or 0,
        output_tokens=out or 0,
        cache_read_tokens=cread or 0,
        cache_write_tokens=cwrite or 0,
        reasoning_tokens=reasoning or 0,
        cache_write_1h_tokens=cw1h or 0,
    )


def _parse_tags(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


from .replay_view import iter_differences, print_replay  # noqa: E402  (the display half)
