"""The Markdown report and the plots of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.procs import REPO
from bench.stats import summary

ANALYSIS = Path(__file__).with_name("analysis.md")

TARGETS = {
    "ingest": 0.6,
    "drain_bare": 0.4,
    "drain_celery": 4.0,
    "e2e_p99_ms": 250.0,
    "webhooks_hanging_cost": 0.05,
}


def fmt(s: dict[str, Any] | None, digits: int = 0, unit: str = "") -> str:
    """``median (min–max)`` of a summary, or ``median`` alone for a single run."""
    if not s or s.get("median") is None:
        return "–"
    med, lo, hi = s["median"], s["min"], s["max"]
    if s.get("n", 1) <= 1 or lo == hi:
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f}{unit} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def verdict(value: float | None, target: float, *, at_most: bool = False) -> str:
    """MET or MISSED against a target."""
    if value is None:
        return "not measured"
    ok = value <= target if at_most else value >= target
    return "**met**" if ok else "**missed**"


def machine_table(m: dict[str, Any]) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    rows = [
        ("CPU", m["cpu"]),
        ("cores", m["cores"]),
        ("memory", f"{m['memory_gib']} GiB"),
        ("OS", m["os"]),
        ("Python", m["python"]),
        ("SQLite", m["sqlite"]),
        ("PostgreSQL", m["postgresql"] or "not reachable"),
        ("load generator", m.get("wrk") or "aiohttp (bench/loadgen.py)"),
        ("libraries", libs),
        ("commit", f"{m['commit']}{' (work tree modified)' if m['worktree_modified'] else ''}"),
    ]
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def headline(sc: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The targets table."""
    lines = ["| target | measured: median (min–max over repetitions) | |", "|---|---|---|"]
    facts: dict[str, Any] = {}
    ingest = sc.get("ingest") or {}
    if ingest.get("points"):
        best = max(ingest["points"], key=lambda p: p["hub"]["rps"]["median"] or 0)
        facts["ingest_best"] = best
        lines.append(
            f"| ingest hub / no-op ≥ 0.6 (as shipped, c={best['concurrency']}, the hub's best)"
            f" | {fmt(best['ratio'], 2)} | {verdict(best['ratio']['median'], 0.6)} |"
        )
        fixed = max(ingest["points"], key=lambda p: p["hub-nodelay"]["rps"]["median"] or 0)
        lines.append(
            f"| same, both with TCP_NODELAY (c={fixed['concurrency']})"
            f" | {fmt(fixed['ratio_nodelay'], 2)}"
            f" | {verdict(fixed['ratio_nodelay']['median'], 0.6)} |"
        )
    drain = sc.get("drain") or {}
    if drain.get("summary"):
        r = drain["summary"]["ratios"]
        lines.append(
            f"| drain hub / bare loop ≥ 0.4 (SQLite, from worker start)"
            f" | {fmt(r['hub-w1/bare/rate'], 2)}"
            f" | {verdict(r['hub-w1/bare/rate']['median'], 0.4)} |"
        )
        lines.append(
            f"| drain hub / best Celery ≥ 4 (SQLite, from worker start)"
            f" | {fmt(r['hub-w1/celery/rate'], 2)}"
            f" | {verdict(r['hub-w1/celery/rate']['median'], 4.0)} |"
        )
    e2e = sc.get("e2e") or {}
    for p in e2e.get("points", []):
        if p["fraction"] == 0.5:
            lines.append(
                f"| end to end p99 ≤ 250 ms at 50 % (`ihub {p['deployment']}`)"
                if p["deployment"] == "serve"
                else "| end to end p99 ≤ 250 ms at 50 % (`ihub api` + `ihub worker`)"
            )
            lines[-1] += (
                f" | {fmt(p['e2e_p99_ms'], 0, ' ms')}"
                f" | {verdict(p['e2e_p99_ms']['median'], 250, at_most=True)} |"
            )
    wh = sc.get("webhooks") or {}
    fan = (wh.get("fanout") or {}).get("summary")
    if fan:
        for cap in wh["fanout"]["caps"]:
            shipped = " as shipped" if cap == 4 else ""
            lines.append(
                f"| webhook fan-out hub / bare aiohttp loop (one endpoint, {cap} in"
                f" flight{shipped}; from process start) | {fmt(fan['ratios'][f'c{cap}/rate'], 2)}"
                " | no target |"
            )
    iso = (wh.get("isolation") or {}).get("summary")
    if iso and "hanging/none/rate" in iso["ratios"]:
        r = iso["ratios"]["hanging/none/rate"]
        cost = None if r["median"] is None else 1 - r["median"]
        if cost is None:
            said = ""
        elif cost >= 0:
            said = f" (the drain {cost:.0%} slower)"
        else:
            said = f" (the drain {-cost:.0%} faster: no cost measured)"
        lines.append(
            "| a hanging webhook endpoint costs the drain < 5 % (hanging / none ≥ 0.95,"
            f" SQLite, from worker start) | {fmt(r, 2)}{said}"
            f" | {verdict(cost, TARGETS['webhooks_hanging_cost'], at_most=True)} |"
        )
    return lines, facts


ISOLATION_ORDER = ("off", "none", "hanging", "fast")


def webhooks_section(res: dict[str, Any]) -> list[str]:
    """Scenario 6: the fan-out pair per cap, then the drain per endpoint variant."""
    fan, iso = res["fanout"], res["isolation"]
    out = [
        f"### Fan-out: {fan['n']:,} events to one endpoint",
        "",
        "*From start*: from the start of the process to the last delivery; *loop*: from"
        " the loop's start (the hub built) to its end; *steady*: first delivery to last.",
        "",
        "| variant | in flight | from start /s | loop /s | steady /s | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    fan_variants = fan["summary"]["variants"]
    for name in (f"{kind}-c{cap}" for cap in fan["caps"] for kind in ("hub", "bare")):
        v = fan_variants[name]
        out.append(
            f"| {name} | {name.split('-c')[1]} | {fmt(v['rate'])} | {fmt(v['loop_rate'])}"
            f" | {fmt(v['steady_rate'])} | {fmt(v['seconds'], 1)} |"
        )
    out += [
        "",
        "| hub / bare (per repetition, side by side) | from start | loop | steady |",
        "|---|---:|---:|---:|",
    ]
    ratios = fan["summary"]["ratios"]
    for cap in fan["caps"]:
        out.append(
            f"| {cap} in flight | {fmt(ratios[f'c{cap}/rate'], 2)}"
            f" | {fmt(ratios[f'c{cap}/loop_rate'], 2)} | {fmt(ratios[f'c{cap}/steady_rate'], 2)} |"
        )
    bad = [r for r in fan["raw"] if r["done"] != fan["n"] or r["receiver_posts"] != fan["n"]]
    out += [
        "",
        "Every run delivered each event exactly once (deliveries succeeded and the"
        " receiver's count both equal N)."
        if not bad
        else f"Runs where the succeeded deliveries or the receiver's count differed from N:"
        f" {len(bad)} ({', '.join(r['variant'] for r in bad)}).",
        "",
        f"### Isolation: the drain of {iso['n']:,} notifications beside the delivery loop",
        "",
        "*Webhooks at drain end*: the tenant's deliveries by status when the last"
        " notification finished; *hanging*: requests the hanging receiver held then.",
        "",
        "| variant | from start /s | steady /s | seconds | peak RSS MiB"
        " | webhooks at drain end | hanging |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    iso_variants = iso["summary"]["variants"]
    for name in sorted(iso_variants, key=ISOLATION_ORDER.index):
        v = iso_variants[name]
        runs = [r for r in iso["raw"] if r["variant"] == name]
        states = sorted({k for r in runs for k in r.get("webhooks", {})})
        seen = ", ".join(
            f"{k} {fmt(summary([r.get('webhooks', {}).get(k, 0) for r in runs]))}" for k in states
        )
        out.append(
            f"| {name} | {fmt(v['rate'])} | {fmt(v['steady_rate'])} | {fmt(v['seconds'], 1)}"
            f" | {fmt(v['peak_rss_mib'])} | {seen or 'none'} | {fmt(v['hanging_requests'])} |"
        )
    out += [
        "",
        "| variant / none (per repetition, side by side) | from start | steady |",
        "|---|---:|---:|",
    ]
    ratios = iso["summary"]["ratios"]
    for key in sorted({k.rsplit("/", 1)[0] for k in ratios}):
        out.append(
            f"| {key.replace('/', ' / ')} | {fmt(ratios[key + '/rate'], 2)}"
            f" | {fmt(ratios[key + '/steady_rate'], 2)} |"
        )
    bad = [r for r in iso["raw"] if r["done"] != iso["n"] or r["sink_posts"] != iso["n"]]
    out += [
        "",
        "Every run delivered each notification exactly once to the sink."
        if not bad
        else f"Runs where DONE or the sink's count differed from N: {len(bad)}"
        f" ({', '.join(r['variant'] for r in bad)}).",
    ]
    return out


def ingest_section(res: dict[str, Any]) -> list[str]:
    out = [
        f"Load: {res['tool']}, closed loop, one connection per client; backend: {res['backend']}."
        " Each cell: median (min–max).",
        "",
        "| clients | hub req/s | no-op req/s | hub / no-op | hub p50 / p99 / p99.9 ms"
        " | no-op p50 / p99 / p99.9 ms |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for p in res["points"]:
        h, n = p["hub"], p["noop"]
        out.append(
            f"| {p['concurrency']} | {fmt(h['rps'])} | {fmt(n['rps'])} | {fmt(p['ratio'], 2)}"
            f" | {fmt(h['p50_ms'], 1)} / {fmt(h['p99_ms'], 1)} / {fmt(h['p999_ms'], 1)}"
            f" | {fmt(n['p50_ms'], 1)} / {fmt(n['p99_ms'], 1)} / {fmt(n['p999_ms'], 1)} |"
        )
    out += [
        "",
        "Control, measured in the same run: both servers bound by `bench/nodelay.py`, which"
        " sets TCP_NODELAY itself (the fix of the ~40 ms Nagle stall an earlier run found;"
        " `runner.bind` ships it now, so the gain column should read about 1×):",
        "",
        "| clients | hub req/s | no-op req/s | hub / no-op | hub gain vs shipped"
        " | hub p50 / p99 / p99.9 ms | no-op p50 / p99 / p99.9 ms |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for p in res["points"]:
        h, n = p["hub-nodelay"], p["noop-nodelay"]
        out.append(
            f"| {p['concurrency']} | {fmt(h['rps'])} | {fmt(n['rps'])}"
            f" | {fmt(p['ratio_nodelay'], 2)} | {fmt(p['nodelay_gain'], 2, '×')}"
            f" | {fmt(h['p50_ms'], 1)} / {fmt(h['p99_ms'], 1)} / {fmt(h['p999_ms'], 1)}"
            f" | {fmt(n['p50_ms'], 1)} / {fmt(n['p99_ms'], 1)} / {fmt(n['p999_ms'], 1)} |"
        )
    errors = sum(r["errors"] for r in res["raw"])
    out += ["", f"Requests answered with anything but the expected status: {errors}."]
    return out


def drain_section(res: dict[str, Any]) -> list[str]:
    out = [
        f"{res['n']:,} notifications on {res['backend']}; 32 in flight per process."
        " *From start*: from the start of the worker process(es) to the last completion;"
        " *steady*: from the first completion to the last.",
        "",
        "| variant | from start /s | steady /s | seconds | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in res["summary"]["variants"].items():
        out.append(
            f"| {name} | {fmt(v['rate'])} | {fmt(v['steady_rate'])} | {fmt(v['seconds'], 1)}"
            f" | {fmt(v['peak_rss_mib'])} |"
        )
    out += ["", "| ratio (per repetition, side by side) | from start | steady |", "|---|---:|---:|"]
    ratios = res["summary"]["ratios"]
    for key in sorted({k.rsplit("/", 1)[0] for k in ratios}):
        out.append(
            f"| {key.replace('/', ' / ')} | {fmt(ratios[key + '/rate'], 2)}"
            f" | {fmt(ratios[key + '/steady_rate'], 2)} |"
        )
    bad = [r for r in res["raw"] if r["done"] != res["n"] or r["sink_posts"] != res["n"]]
    out += [
        "",
        "Every run delivered each notification exactly once to the sink (DONE count and"
        " sink count both equal N)."
        if not bad
        else f"Runs where DONE or the sink's count differed from N: {len(bad)}"
        f" ({', '.join(r['variant'] for r in bad)}).",
    ]
    return out


def e2e_section(res: dict[str, Any]) -> list[str]:
    out = [
        f"Offered load relative to the ingest maximum of {res['ingest_max_rps']:.0f} req/s"
        f" ({res['ingest_max_source']}); open loop (requests on a fixed schedule).",
        "",
        "| deployment | offered | offered req/s | accepted req/s | 202→DONE p50 ms | p90 ms"
        " | p99 ms | ingest p50 / p99 ms | unfinished |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in res["points"]:
        out.append(
            f"| {p['deployment']} | {p['fraction']:.0%} | {fmt(p['offered_rps'])}"
            f" | {fmt(p['accepted_rps'])} | {fmt(p['e2e_p50_ms'], 1)} | {fmt(p['e2e_p90_ms'], 1)}"
            f" | {fmt(p['e2e_p99_ms'], 1)}"
            f" | {fmt(p['ingest_p50_ms'], 1)} / {fmt(p['ingest_p99_ms'], 1)}"
            f" | {fmt(p['unfinished'])} |"
        )
    return out


def scale_section(res: dict[str, Any]) -> list[str]:
    out = [
        "| stored | file MiB | bytes / notification | MiB per million | ingest req/s (c=32)"
        " | GET p50 / p99 ms (c=1) | GET req/s (c=16) | GET p99 ms (c=16)"
        " | worker peak RSS MiB | worker: drained of backlog in the window |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in res["sizes"]:
        c1, c16 = s.get("get_c1", {}), s.get("get_c16", {})
        out.append(
            f"| {s['stored']:,} | {s['db_bytes'] / 2**20:,.1f} | {s['bytes_per_notification']:,.0f}"
            f" | {s['bytes_per_notification'] * 1e6 / 2**20:,.0f} | {fmt(s['ingest_rps'])}"
            f" | {fmt(c1.get('p50_ms'), 2)} / {fmt(c1.get('p99_ms'), 2)}"
            f" | {fmt(c16.get('rps'))} | {fmt(c16.get('p99_ms'), 1)}"
            f" | {s['worker']['peak_rss_mib']:.0f}"
            f" | {s['worker']['drained']:,} of {s['backlog']:,} ({s['worker']['rate']:,.0f}/s) |"
        )
    return out


def plots(out: dict[str, Any], target: Path, prefix: str) -> list[str]:
    """Write the PNGs; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sc = out["scenarios"]
    ingest = sc.get("ingest") or {}
    if ingest.get("points"):
        pts = ingest["points"]
        cs = [p["concurrency"] for p in pts]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        for name, style in (
            ("hub", "o-"),
            ("noop", "s--"),
            ("hub-nodelay", "o-"),
            ("noop-nodelay", "s--"),
        ):
            med = [p[name]["rps"]["median"] for p in pts]
            lo = [p[name]["rps"]["median"] - p[name]["rps"]["min"] for p in pts]
            hi = [p[name]["rps"]["max"] - p[name]["rps"]["median"] for p in pts]
            axes[0].errorbar(cs, med, yerr=[lo, hi], fmt=style, label=name, capsize=3)
        axes[0].set(xscale="log", xlabel="concurrent clients", ylabel="requests/s")
        axes[0].set_title("ingest throughput (median, min–max)")
        axes[0].legend()
        for ax, names, title in (
            (axes[1], ("hub", "noop"), "latency as shipped"),
            (axes[2], ("hub-nodelay", "noop-nodelay"), "latency with TCP_NODELAY"),
        ):
            for name, style in zip(names, ("-", "--"), strict=True):
                for q, marker in (("p50_ms", "o"), ("p99_ms", "^"), ("p999_ms", "v")):
                    ax.plot(
                        cs,
                        [p[name][q]["median"] for p in pts],
                        style,
                        marker=marker,
                        label=f"{name} {q.removesuffix('_ms')}",
                    )
            ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms")
            ax.set_title(title)
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{prefix}ingest.png"
        fig.savefig(target / name, dpi=80)
        plt.close(fig)
        written.append(name)
    e2e = sc.get("e2e") or {}
    if e2e.get("points"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for dep in sorted({p["deployment"] for p in e2e["points"]}):
            pts = [p for p in e2e["points"] if p["deployment"] == dep]
            x = [p["offered_rps"]["median"] for p in pts]
            axes[0].plot(x, [p["accepted_rps"]["median"] for p in pts], "o-", label=dep)
            for q, style in (("e2e_p50_ms", "o-"), ("e2e_p99_ms", "^--")):
                axes[1].plot(
                    x,
                    [p[q]["median"] for p in pts],
                    style,
                    label=f"{dep} {q.split('_')[1]}",
                )
        axes[0].set(xlabel="offered requests/s", ylabel="accepted requests/s")
        axes[0].set_title("end to end: accepted vs offered")
        axes[0].legend()
        axes[1].axhline(250, color="grey", linestyle=":", label="target p99")
        axes[1].set(xlabel="offered requests/s", ylabel="202 → DONE ms", yscale="log")
        axes[1].set_title("end to end latency (median of repetitions)")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        name = f"{prefix}e2e.png"
        fig.savefig(target / name, dpi=80)
        plt.close(fig)
        written.append(name)
    bars = []
    for key in ("drain", "postgres"):
        res = sc.get(key) or {}
        for variant, v in (res.get("summary") or {}).get("variants", {}).items():
            bars.append((f"{res['backend']}\n{variant}", v["rate"], v["steady_rate"]))
    if bars:
        fig, ax = plt.subplots(figsize=(max(8, len(bars) * 1.3), 4.5))
        xs = range(len(bars))
        for offset, idx, label in ((-0.2, 1, "from worker start"), (0.2, 2, "steady")):
            med = [b[idx]["median"] or 0 for b in bars]
            lo = [(b[idx]["median"] or 0) - (b[idx]["min"] or 0) for b in bars]
            hi = [(b[idx]["max"] or 0) - (b[idx]["median"] or 0) for b in bars]
            ax.bar([x + offset for x in xs], med, 0.4, yerr=[lo, hi], capsize=3, label=label)
        ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=7)
        ax.set(ylabel="notifications/s")
        ax.set_title("drain throughput (median, min–max)")
        ax.legend()
        fig.tight_layout()
        name = f"{prefix}drain.png"
        fig.savefig(target / name, dpi=80)
        plt.close(fig)
        written.append(name)
    return written


def render(out: dict[str, Any], images: list[str], image_dir: str, quick: bool) -> str:
    sc = out["scenarios"]
    s = out["settings"]
    lines = [
        "# Benchmarks" + (" (quick run)" if quick else ""),
        "",
        "Generated by "
        + ("`make bench-quick`" if quick else "`make bench`")
        + f" ({out['started']}, {out['seconds']:.0f} s); raw results in"
        f" `bench/results/{out['mode']}.json`. Regenerate with `make bench` (full, about"
        " an hour with the webhooks scenario) or `make bench-quick` (a little over two"
        " minutes, writes"
        " `bench/results/quick.{json,md}` only). The harness is in `bench/`; run one"
        " scenario with `.venv/bin/python -m bench --only ingest` (or `drain`, `e2e`,"
        " `postgres`, `scale`, `webhooks`; add `--quick`).",
        "",
        "The machine is shared and noisy (other test suites run beside it), so absolute"
        " numbers move between runs; the ratios compare runs made side by side in the same"
        " repetition, alternating order, and are the numbers to trust. Every number is the"
        f" median over {s['repeats']} repetition(s) with the min–max spread in brackets."
        f" Ingest points run {s['duration_s']:.0f} s after a {s['warmup_s']:.0f} s warm-up"
        " that is not counted. Load always comes from a separate process on loopback.",
        "",
        "## Machine",
        "",
        *machine_table(out["machine"]),
        "",
        "## Targets",
        "",
    ]
    table, _ = headline(sc)
    lines += table
    lines += ["", "## 1. Ingest: `POST /v1/notifications` against a no-op", ""]
    if (sc.get("ingest") or {}).get("points"):
        lines += [
            "`ihub api` (uvicorn, one process) on a SQLite file, tenant created with"
            " `ihub tenants create`, every request authenticated, validated, routed (ES →"
            " email), idempotent with a unique `Idempotency-Key`, durably stored and"
            " enqueued before its 202. The no-op (`bench/noop_app.py`) is the same stack"
            " (FastAPI, the same `uvicorn.Config`, the hub's own `runner.bind` socket, the"
            " same `NotificationRequest` model) answering 202 without doing anything.",
            "",
            *ingest_section(sc["ingest"]),
        ]
    else:
        lines.append(f"Not run: {(sc.get('ingest') or {}).get('error', 'not selected')}.")
    lines += ["", "## 2. Drain: a backlog into a Twilio-like sink (SQLite)", ""]
    if (sc.get("drain") or {}).get("summary"):
        lines += [
            "The backlog is accepted through the API with no worker running, then frozen;"
            " each run drains an identical copy. The hub: `ihub worker` (concurrency 32) with"
            " the tenant's SMS on the real Twilio adapter (`ihub tenants set-provider` and"
            " `set-credentials`, `base_url` the sink `bench/sink.py`). The limit:"
            " `bench/bare_loop.py`, the same POSTs from a bare aiohttp loop. The peer:"
            " `bench/celery_peer.py`, Celery + Redis, a task per row that loads it, POSTs it"
            " with urllib3 and marks it done, in a SQLite table with the same pragmas.",
            "",
            *drain_section(sc["drain"]),
        ]
    else:
        lines.append(f"Not run: {(sc.get('drain') or {}).get('error', 'not selected')}.")
    lines += ["", "## 3. End to end: 202 → DONE under sustained load", ""]
    if (sc.get("e2e") or {}).get("points"):
        lines += e2e_section(sc["e2e"])
    else:
        lines.append(f"Not run: {(sc.get('e2e') or {}).get('error', 'not selected')}.")
    lines += ["", "## 4. Scale: 1,000 against 1,000,000 stored notifications (SQLite)", ""]
    if (sc.get("scale") or {}).get("sizes"):
        lines += [
            "A seed of 500 notifications goes through the real path; bulk copies of its rows"
            " fill the file (90 % DONE with attempts and idempotency keys, 10 % RECEIVED and"
            " queued). The API runs under `bench/nodelay.py` (TCP_NODELAY set explicitly, as"
            " `runner.bind` now does too); GETs pick random"
            " DONE ids from the whole file. The worker runs"
            f" {s['scale_rss_seconds']:.0f} s on its own copy of the backlog.",
            "",
            *scale_section(sc["scale"]),
        ]
    else:
        why = (sc.get("scale") or {}).get("error", "full mode only")
        lines.append(f"Not run: {why}.")
    lines += ["", "## 5. PostgreSQL: drain with 1, 2 and 4 worker processes", ""]
    pg = sc.get("postgres") or {}
    if pg.get("summary"):
        lines += [
            "The same drain on a throwaway `ihub_bench_*` database (created, copied per run"
            " with `CREATE DATABASE … TEMPLATE`, dropped afterwards).",
            "",
            *drain_section(pg),
        ]
    else:
        lines.append(f"Not run: {pg.get('skipped') or pg.get('error') or 'not selected'}.")
    lines += [
        "",
        "## 6. Webhooks: fan-out to a receiver, and a hanging endpoint's cost to the drain"
        " (SQLite)",
        "",
    ]
    wh = sc.get("webhooks") or {}
    if wh.get("fanout"):
        lines += [
            "One backlog is accepted through the API with no worker running (each accept"
            " writes its `notification.accepted` event in the same transaction) and frozen."
            " *Fan-out*: a copy gets one endpoint of the tenant (its secret sealed as the"
            " service seals it) at `bench/webhook_receiver.py`, an aiohttp app in its own"
            " process answering 200 at once; `bench/webhook_loop.py` runs the hub's delivery"
            " loop (`Hub.webhook_deliverer()`, driven by `run` as `ihub worker` drives it:"
            " fan-out, claims, the secret unsealed, Standard Webhooks signatures, the"
            " aiohttp sender behind the outbound rule, every attempt recorded) until the"
            " store shows nothing pending. The limit: `bench/webhook_bare.py` POSTs the same"
            " bodies to the same receiver at the same concurrency with nothing else. One"
            " endpoint is held to its in-flight cap (`IHUB_WEBHOOKS_PER_ENDPOINT`, 4 as"
            " shipped), so each pair runs at each cap. *Isolation*: the drain of scenario 2"
            " (`ihub worker`, concurrency 32, its delivery loop running beside dispatch by"
            " default) on copies that differ only in the tenant's endpoint: `none`;"
            " `hanging`, at a receiver path that never answers (the sender's timeout is"
            " 15 s, longer than the drain), so its slots stay taken and every event of"
            " the tenant is fanned out to it; `fast`, at the 200 receiver; and `off`,"
            " no endpoint and `IHUB_WEBHOOKS_IN_WORKER=false`. Variants alternate order"
            " between repetitions.",
            "",
            *webhooks_section(wh),
        ]
    else:
        lines.append(f"Not run: {wh.get('error', 'not selected')}.")
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({image_dir}{name})" for name in images]
    if not quick and ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().strip()]
    return "\n".join(lines) + "\n"


def write(out: dict[str, Any], *, quick: bool) -> None:
    """``docs/benchmarks.md`` and ``docs/bench-*.png`` (quick: under ``bench/results``)."""
    if quick:
        plot_dir = REPO / "bench" / "results" / "quick"
        plot_dir.mkdir(parents=True, exist_ok=True)
        images = plots(out, plot_dir, "bench-")
        text = render(out, images, "quick/", quick=True)
        (REPO / "bench" / "results" / "quick.md").write_text(text)
        return
    images = plots(out, REPO / "docs", "bench-")
    (REPO / "docs" / "benchmarks.md").write_text(render(out, images, "", quick=False))
