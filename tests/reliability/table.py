"""Print the results of `make reliability` (JSON lines) as the table of docs/reliability.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> None:
    """One Markdown row per scenario and backend."""
    print("| scenario | backend | requests | faults injected | retryable answers | lost |")
    print("|---|---|---|---|---|---|")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["retryable_errors"].items())) or "-"
        print(
            f"| {r['scenario']} | {r['backend']} | {r['requests']} | {r['faults']} | {errors}"
            f" | {r['lost']} |"
        )
    print()
    print(
        "| scenario | backend | acknowledged | end states | deliveries | duplicated"
        " | crash-window duplicates | wrong state |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        print(
            f"| {r['scenario']} | {r['backend']} | {r['acknowledged']} | {states}"
            f" | {r['deliveries']} | {r['duplicated']} | {r['crash_window_duplicates']}"
            f" | {r['wrong_state']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reliability-results.jsonl")
