"""Summarise a py-spy profile in its ``raw`` (collapsed stacks) format.

    py-spy record --pid PID --duration 10 --threads --format raw -o prof.txt
    python -m bench.profile_summary prof.txt [--top 25] [--match integration_hub]

Prints, per thread when the profile has thread frames (``--threads``), the
share of samples each function is on the stack (inclusive) and at the top of
the stack (self).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

_THREAD = re.compile(r"^(thread|process) \(")


def parse(path: str) -> dict[str, list[tuple[list[str], int]]]:
    """Stacks with their sample counts, by thread."""
    threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            thread = "all"
            while frames and _THREAD.match(frames[0]):
                head = frames.pop(0)
                if head.startswith("thread"):
                    thread = head
            threads[thread].append((frames, int(count)))
    return threads


def _short(frame: str) -> str:
    return re.sub(r"\s+\((.*):(\d+)\)$", r" (\1)", frame)


def summarise(path: str, top: int, match: str | None) -> str:
    """The report as text."""
    out = []
    threads = parse(path)
    grand = sum(c for stacks in threads.values() for _, c in stacks)
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        total = sum(c for _, c in stacks)
        inclusive: Counter[str] = Counter()
        self_time: Counter[str] = Counter()
        for frames, count in stacks:
            names = [_short(f) for f in frames]
            for name in set(names):
                inclusive[name] += count
            if names:
                self_time[names[-1]] += count
        out.append(f"== {thread}: {total} samples ({100 * total / grand:.0f} % of all)")
        out.append("  inclusive:")
        shown = 0
        for name, count in inclusive.most_common():
            if match and match not in name:
                continue
            out.append(f"    {100 * count / total:5.1f} %  {name}")
            shown += 1
            if shown >= top:
                break
        out.append("  self:")
        for name, count in self_time.most_common(top):
            out.append(f"    {100 * count / total:5.1f} %  {name}")
    return "\n".join(out)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=None, help="only frames containing this")
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.match))


if __name__ == "__main__":
    main()
