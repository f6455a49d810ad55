"""The README's generated parts match the code (AGENTMETER_UPDATE_DOCS=1 rewrites them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from agentmeter.migrations import schema_sql
from agentmeter.policy.metrics import METRICS

README = Path(__file__).resolve().parent.parent / "README.md"


def metrics_table() -> str:
    lines = [
        "| metric | unit | default stat | stats | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in METRICS.values():
        lines.append(
            f"| `{m.name}` | {m.unit} | `{m.default_stat}` | {', '.join(m.stats)} | {m.description} |"
        )
    return "\n".join(lines)


BLOCKS = {
    "metrics": metrics_table,
    "schema": lambda: "```sql\n" + schema_sql() + "\n```",
}


def check_block(name: str) -> None:
    text = README.read_text()
    pattern = re.compile(rf"(<!-- {name}:start -->\n)(.*?)(\n<!-- {name}:end -->)", re.S)
    match = pattern.search(text)
    assert match, f"README.md has no {name} block"
    want = BLOCKS[name]()
    if match.group(2) != want:
        if os.environ.get("AGENTMETER_UPDATE_DOCS"):
            README.write_text(text[: match.start(2)] + want + text[match.end(2) :])
            return
        raise AssertionError(
            f"README.md's {name} block is out of date; run AGENTMETER_UPDATE_DOCS=1 pytest {__file__}"
        )


def test_metrics_table_is_current():
    check_block("metrics")


def test_schema_is_current():
    check_block("schema")
