"""Hard caps shared by every process writing one database file (policies with ``shared: true``).

Before a call, one ``BEGIN IMMEDIATE`` transaction (which every process takes in turn) reads what
the cap's scope has spent in its window plus what in-flight calls hold, and either refuses the call
or inserts a reservation for its worst case. The writer deletes the reservation in the same
transaction that commits the call with its real cost, so at every moment the database shows each
call either as a reservation or as spend, never as neither. A reservation of a process that died
expires after ``ttl_s``.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from .recorder import connect

if TYPE_CHECKING:
    from .decision import Decision
    from .policy.engine import Reservation
    from .policy.spec import PolicyRule, Threshold
    from .run import Run

__all__ = ["Denial", "Ledger", "reserve_shared", "shared_caps"]


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a shared cap refused a call: what the scope spent and holds, against the cap."""

    rule: PolicyRule
    condition: Threshold
    scope: str
    spent_nano_usd: int
    held_nano_usd: int
    worst_case_nano_usd: int


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class Ledger:
    """The shared-cap check and reservation, against one SQLite file."""

    def __init__(self, path: str, *, writer: str, ttl_s: float = 600.0) -> None:
        self.path = path
        self.writer = writer
        self.ttl_s = ttl_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn

    def reserve(
        self,
        caps: list[tuple[PolicyRule, Threshold, str, Any]],
        worst_case_nano_usd: int,
        now: float,
    ) -> tuple[str | None, Denial | None]:
        """Reserve ``worst_case_nano_usd`` against every cap, or say which one refuses.

        ``caps``: (rule, condition, scope kind, scope value). Returns (reservation ref, None) or
        (None, Denial).
        """
        with self._lock:
            return self._reserve(caps, worst_case_nano_usd, now)

    @retry(
        retry=retry_if_exception(_locked),
        wait=wait_random_exponential(multiplier=0.002, max=0.2),
        stop=stop_after_delay(30),
        reraise=True,
    )
    def _reserve(
        self, caps: list[tuple[PolicyRule, Threshold, str, Any]], worst: int, now: float
    ) -> tuple[str | None, Denial | None]:
        conn = self._connection()
        ref = uuid.uuid4().hex
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = []
            for rule, cond, kind, key in caps:
                scope = f"{rule.name}|{kind}|{key}"
                spent = self._spent(conn, cond, kind, key, now)
                (held,) = conn.execute(
                    "SELECT coalesce(sum(nano_usd), 0) FROM agentmeter_reservations "
                    "WHERE scope = ? AND expires_at > ?",
                    (scope, now),
                ).fetchone()
                if spent + held + worst > cond.raw:
                    conn.execute("ROLLBACK")
                    return None, Denial(rule, cond, scope, spent, held, worst)
                rows.append((ref, scope, worst, now, now + self.ttl_s, self.writer))
            conn.executemany(
                "INSERT INTO agentmeter_reservations (ref, scope, nano_usd, created_at, expires_at, "
                "writer) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return ref, None

    @staticmethod
    def _spent(conn: sqlite3.Connection, cond: Threshold, kind: str, key: Any, now: float) -> int:
        from .storage import SQLITE

        seconds = cond.spec.seconds if cond.spec is not None else None
        where, params = SQLITE.spend_filter(seconds, kind, key, now)
        (spent,) = conn.execute(
            f"SELECT coalesce(sum(cost_nano_usd), 0) FROM agentmeter_calls WHERE {where}", params
        ).fetchone()
        return int(spent)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def shared_caps(
    rules: tuple[PolicyRule, ...], run_id: str, model: str, tags: Mapping[str, Any]
) -> list[tuple[PolicyRule, Threshold, str, Any]]:
    """The shared hard caps that apply to a call, with their scope values."""
    out = []
    for rule in rules:
        if not rule.shared:
            continue
        for cond in rule.conditions:
            if cond.metric != "cost_usd" or cond.stat != "sum" or not cond.above:
                continue
            kind = cond.scope
            key: Any = "" if kind == "all" else model if kind == "model" else tags.get(kind[4:])
            if key is None:
                continue
            out.append((rule, cond, kind, str(key) if kind.startswith("tag:") else key))
    return out


def reserve_shared(
    run: Run,
    decision: Decision,
    reservation: Reservation | None,
    model: str,
    tags: Mapping[str, Any] | None,
    prompt_tokens: int | None,
    max_tokens: int | None,
    now: float,
) -> tuple[Decision, Reservation | None]:
    """Check and reserve the shared caps in the database (across processes)."""
    from dataclasses import replace

    from .decision import Fired

    meter = run.meter
    engine = meter.engine
    assert engine is not None and meter.ledger is not None
    caps = shared_caps(engine.rules, run.run_id, model, {**run.tags, **(tags or {})})
    if not caps:
        return decision, reservation
    worst = meter.prices.worst_case_nano_usd(decision.model, prompt_tokens or 0, max_tokens) or 0
    try:
        ref, denial = meter.ledger.reserve(caps, worst, now)
    except Exception as exc:  # the database is unusable: the in-memory caps still hold
        meter.warn_once(
            "ledger", f"agentmeter: shared caps fall back to this process only ({exc!r})"
        )
        return decision, reservation
    if denial is None:
        run._local.shared_ref = ref
        return decision, reservation
    engine.release(reservation)
    kinds = {a.kind for a in denial.rule.actions}
    action = "halt" if "halt" in kinds else "pause"
    cond = denial.condition
    fired = Fired(
        policy=denial.rule.name,
        metric=cond.metric,
        stat=cond.stat,
        value=(denial.spent_nano_usd + denial.held_nano_usd + worst) * 1e-9,
        threshold=cond.threshold,
        action=action,
        scope=denial.scope.split("|", 1)[1],
        transition="fire",
        note=(
            f"{denial.rule.name}: every process together spent ${denial.spent_nano_usd / 1e9:,.4f} + "
            f"in flight ${denial.held_nano_usd / 1e9:,.4f} + this call's worst case ${worst / 1e9:,.4f} "
            f"would exceed ${cond.threshold:,.2f} (shared {denial.scope.split('|', 1)[1]})"
        ),
        detail={
            "shared": True,
            "spent_nano_usd": denial.spent_nano_usd,
            "held_nano_usd": denial.held_nano_usd,
        },
    )
    pause_s = 1.0 if action == "pause" else 0.0
    return (
        replace(
            decision,
            halt=action == "halt",
            pause_s=pause_s,
            resume_at=now + pause_s if pause_s else None,
            fired=(*decision.fired, fired),
            reserved_nano_usd=0,
        ),
        None,
    )
