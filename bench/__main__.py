"""``python -m bench [--quick] [--only SCENARIO ...]``: run the benchmarks, write the report.

Full mode writes ``bench/results/full.json``, ``docs/benchmarks.md`` and
``docs/bench-*.png``; quick mode writes ``bench/results/quick.json`` and
``bench/results/quick.md`` (plots go to ``bench/results/quick/``, not kept).
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import load, machine, report
from bench.backends import postgres_available
from bench.context import Context, Settings
from bench.procs import REPO, stop_all

SCENARIOS = ("ingest", "drain", "e2e", "postgres", "scale", "webhooks")


def _run_scenario(ctx: Context, name: str) -> dict[str, Any]:
    if name == "ingest":
        from bench.scenarios import ingest

        return ingest.run(ctx, "sqlite")
    if name == "drain":
        from bench.scenarios import drain

        return drain.run(ctx, "sqlite")
    if name == "e2e":
        from bench.scenarios import e2e

        return e2e.run(ctx)
    if name == "postgres":
        from bench.scenarios import drain

        why = postgres_available()
        if why is not None:
            return {"skipped": f"PostgreSQL not reachable: {why}"}
        return drain.run(ctx, "postgresql")
    if name == "scale":
        from bench.scenarios import scale

        return scale.run(ctx)
    if name == "webhooks":
        from bench.scenarios import webhooks

        return webhooks.run(ctx)
    raise ValueError(name)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small version (~2 min)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub in each scenario")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default by mode)")
    parser.add_argument(
        "--report", action="store_true", help="only re-render the report from the saved JSON"
    )
    args = parser.parse_args()
    if args.report:
        saved = REPO / "bench" / "results" / ("quick.json" if args.quick else "full.json")
        report.write(json.loads(saved.read_text()), quick=args.quick)
        return 0

    settings = Settings.quick() if args.quick else Settings.full()
    workdir = Path(tempfile.mkdtemp(prefix="ihub-bench-"))
    tool = "wrk" if load.wrk_available() else "aiohttp"
    ctx = Context(settings=settings, workdir=workdir, load_tool=tool)
    ctx.results["profile"] = args.profile

    atexit.register(stop_all)

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    names = args.only or [n for n in SCENARIOS if n != "scale" or settings.scale_sizes]
    out: dict[str, Any] = {
        "mode": settings.mode,
        "settings": settings.__dict__,
        "machine": machine.describe(),
        "load_tool": tool,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": {},
    }
    ctx.log(f"{settings.mode} run in {workdir}; load from {tool}; scenarios {', '.join(names)}")
    failed = False
    try:
        for name in names:
            t0 = time.monotonic()
            try:
                result = _run_scenario(ctx, name)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                stop_all()
            result["seconds"] = round(time.monotonic() - t0, 1)
            out["scenarios"][name] = result
            ctx.results[name] = result
            ctx.log(f"{name} done in {result['seconds']} s")
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out["seconds"] = round(time.monotonic() - ctx.started, 1)

    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out or results_dir / f"{settings.mode}.json"
    if args.only and args.out is None:
        json_path = results_dir / f"{settings.mode}-{'-'.join(args.only)}.json"
    json_path.write_text(json.dumps(out, indent=1, sort_keys=True, default=str) + "\n")
    if not args.only:
        report.write(out, quick=args.quick)
    ctx.log(f"results in {json_path.relative_to(REPO)}; {out['seconds']} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
