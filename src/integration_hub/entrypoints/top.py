"""``ihub top``: a running hub's throughput, queue and provider health, in a terminal.

It reads the hub's own ``/metrics`` (one URL or several: an API and its
workers), not the database: it needs no credentials to the store, sees
exactly what Prometheus sees, and works against every backend. Counters are
added up over the URLs; the store's gauges, which every process reports
alike, are taken once (max). Rates are the change between two scrapes.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

K = TypeVar("K")


class ScrapeError(Exception):
    """A /metrics URL did not answer with an exposition."""


@dataclass
class Sample:
    """Totals and gauges of one scrape (of one URL, or merged over several)."""

    at: float
    accepted: float = 0.0
    finished: dict[str, float] = field(default_factory=dict)  # outcome -> total
    attempts: dict[tuple[str, str], float] = field(default_factory=dict)  # provider, outcome
    queue: dict[str, float] = field(default_factory=dict)  # state -> messages
    oldest_age_seconds: float | None = None
    dead_letters: float | None = None
    in_flight: float = 0.0
    store_up: bool | None = None

    def merge(self, other: Sample) -> Sample:
        """Counters added up, store gauges (the same on every process) taken once."""
        return Sample(
            at=max(self.at, other.at),
            accepted=self.accepted + other.accepted,
            finished=_add(self.finished, other.finished),
            attempts=_add(self.attempts, other.attempts),
            queue=_max(self.queue, other.queue),
            oldest_age_seconds=_opt_max(self.oldest_age_seconds, other.oldest_age_seconds),
            dead_letters=_opt_max(self.dead_letters, other.dead_letters),
            in_flight=self.in_flight + other.in_flight,
            store_up=_all_up(self.store_up, other.store_up),
        )


def _add(a: dict[K, float], b: dict[K, float]) -> dict[K, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def _max(a: dict[K, float], b: dict[K, float]) -> dict[K, float]:
    return {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in a.keys() | b.keys()}


def _all_up(a: bool | None, b: bool | None) -> bool | None:
    return b if a is None else a if b is None else a and b


def _opt_max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def parse(text: str, at: float) -> Sample:
    """A Sample from a text exposition, taken at ``at`` (monotonic seconds)."""
    s = Sample(at=at)
    finished: dict[str, float] = defaultdict(float)
    attempts: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for m in family.samples:
            if m.name == "ihub_notifications_accepted_total":
                s.accepted += m.value
            elif m.name == "ihub_notifications_finished_total":
                finished[m.labels.get("outcome", "")] += m.value
            elif m.name == "ihub_attempts_total":
                attempts[(m.labels.get("provider", ""), m.labels.get("outcome", ""))] += m.value
            elif m.name == "ihub_queue_messages":
                s.queue[m.labels.get("state", "")] = m.value
            elif m.name == "ihub_queue_oldest_message_age_seconds":
                s.oldest_age_seconds = m.value
            elif m.name == "ihub_dead_letters":
                s.dead_letters = m.value
            elif m.name == "ihub_attempts_in_flight":
                s.in_flight += m.value
            elif m.name == "ihub_store_up":
                s.store_up = m.value >= 1
    s.finished, s.attempts = dict(finished), dict(attempts)
    return s


def scrape(urls: Sequence[str], token: str | None = None, *, timeout: float = 5.0) -> Sample:
    """GET every URL and merge what they expose."""
    merged: Sample | None = None
    for url in urls:
        request = urllib.request.Request(url)  # noqa: S310 - the operator's own URL
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
                text = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            exc.close()
            hint = " (set IHUB_METRICS_TOKEN or --token)" if exc.code == 401 else ""
            raise ScrapeError(f"{url}: HTTP {exc.code}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ScrapeError(f"{url}: {getattr(exc, 'reason', exc)}") from None
        sample = parse(text, time.monotonic())
        merged = sample if merged is None else merged.merge(sample)
    if merged is None:
        raise ScrapeError("no /metrics URL given")
    return merged


@dataclass(frozen=True)
class ProviderRow:
    """One provider's calls over the interval."""

    provider: str
    calls_per_second: float
    errors_per_second: float
    error_rate: float | None  # None when it made no call in the interval


@dataclass(frozen=True)
class Frame:
    """What one screen shows: rates over the last interval, and the current gauges."""

    interval_seconds: float
    accepted_per_second: float
    done_per_second: float
    failed_per_second: float
    queue: dict[str, float]
    oldest_age_seconds: float | None
    dead_letters: float | None
    in_flight: float
    store_up: bool | None
    providers: list[ProviderRow]


def _delta(now: float, before: float) -> float:
    # A counter that went down belongs to a restarted process: it counted
    # ``now`` since its start.
    return now - before if now >= before else now


def frame(before: Sample, now: Sample) -> Frame:
    """Rates between two samples."""
    dt = max(now.at - before.at, 1e-9)

    def rate(a: float, b: float) -> float:
        return _delta(a, b) / dt

    providers: dict[str, list[float]] = {}
    for (provider, outcome), total in now.attempts.items():
        change = _delta(total, before.attempts.get((provider, outcome), 0.0))
        calls, errors = providers.setdefault(provider, [0.0, 0.0])
        providers[provider] = [calls + change, errors + (change if outcome != "delivered" else 0)]
    rows = [
        ProviderRow(name, calls / dt, errors / dt, errors / calls if calls else None)
        for name, (calls, errors) in sorted(providers.items())
    ]
    return Frame(
        interval_seconds=dt,
        accepted_per_second=rate(now.accepted, before.accepted),
        done_per_second=rate(now.finished.get("done", 0.0), before.finished.get("done", 0.0)),
        failed_per_second=rate(now.finished.get("failed", 0.0), before.finished.get("failed", 0.0)),
        queue=dict(now.queue),
        oldest_age_seconds=now.oldest_age_seconds,
        dead_letters=now.dead_letters,
        in_flight=now.in_flight,
        store_up=now.store_up,
        providers=rows,
    )


def as_dict(f: Frame) -> dict[str, object]:
    """The frame as JSON-ready data (``ihub top --once --json``)."""
    return asdict(f)


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(f: Frame, source: str, error: str | None = None) -> RenderableType:
    """One screen of ``ihub top``."""
    summary = Table.grid(padding=(0, 3))
    for _ in range(4):
        summary.add_column(justify="right")
        summary.add_column()
    summary.add_row(
        "accepted/s", _num(f.accepted_per_second, "{:,.1f}"),
        "done/s", _num(f.done_per_second, "{:,.1f}"),
        "failed/s", _num(f.failed_per_second, "{:,.1f}"),
        "in flight", _num(f.in_flight),
    )  # fmt: skip
    summary.add_row(
        "queued", _num(f.queue.get("visible")),
        "leased", _num(f.queue.get("in_flight")),
        "delayed", _num(f.queue.get("delayed")),
        "oldest", _age(f.oldest_age_seconds),
    )  # fmt: skip
    dead = Text(_num(f.dead_letters), style="bold red" if f.dead_letters else "")
    store = {
        True: Text("up", style="green"),
        False: Text("DOWN", style="bold red"),
        None: Text("–"),
    }[f.store_up]
    summary.add_row("dead letters", dead, "store", store, "", "", "", "")

    providers = Table("provider", "calls/s", "errors/s", "error rate", expand=False)
    for row in f.providers:
        rate = row.error_rate
        style = "bold red" if rate is not None and rate > 0.2 else ""
        providers.add_row(
            row.provider,
            f"{row.calls_per_second:,.1f}",
            f"{row.errors_per_second:,.1f}",
            Text("–" if rate is None else f"{rate:.0%}", style=style),
        )
    if not f.providers:
        providers.add_row("(no provider calls yet)", "", "", "")
    parts: list[RenderableType] = [summary, Text(""), providers]
    if error:
        parts.append(Text(f"last scrape failed: {error}", style="bold red"))
    title = f"Integration Hub · rates over {f.interval_seconds:.1f} s"
    return Panel(
        Group(*parts), title=title, title_align="left", subtitle=source, subtitle_align="right"
    )


def default_url(host: str, port: int) -> str:
    """The API's /metrics for IHUB_HOST and IHUB_PORT (a wildcard bind means this machine)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading a bind address, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def describe(urls: Iterable[str]) -> str:
    """The sources, for the panel title."""
    return " + ".join(urls)


def run(
    urls: Sequence[str],
    token: str | None,
    *,
    interval: float,
    once: bool,
    console: Console | None,
) -> Frame:
    """Show frames until Ctrl-C; ``once`` prints one frame (two scrapes apart) and returns it.

    With ``once`` and no console, nothing is printed: the caller shows the frame.
    """
    source = describe(urls)
    before = scrape(urls, token)
    if once:
        time.sleep(interval)
        f = frame(before, scrape(urls, token))
        if console is not None:
            console.print(render(f, source))
        return f
    f = frame(before, before)
    with Live(render(f, source), console=console or Console(), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                error = None
                try:
                    now = scrape(urls, token)
                    f, before = frame(before, now), now
                except ScrapeError as exc:
                    error = str(exc)  # keep the last frame; the hub may be restarting
                live.update(render(f, source, error), refresh=True)
        except KeyboardInterrupt:
            return f
