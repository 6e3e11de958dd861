"""What every scenario of a run shares: its settings, directory, master key and log."""

from __future__ import annotations

import base64
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """The knobs of one run; ``quick()`` and ``full()`` are the two presets."""

    mode: str
    repeats: int
    warmup_s: float
    duration_s: float
    ingest_concurrency: tuple[int, ...]
    drain_n: int
    drain_concurrency: int
    celery_pools: tuple[tuple[str, int], ...]
    e2e_fractions: tuple[float, ...]
    e2e_duration_s: float
    e2e_deployments: tuple[str, ...]
    pg_workers: tuple[int, ...]
    pg_drain_n: int
    scale_sizes: tuple[int, ...]
    scale_backlog_fraction: float
    scale_rss_seconds: float
    get_concurrency: tuple[int, ...]
    webhook_events: int
    webhook_caps: tuple[int, ...]
    webhook_isolation: tuple[str, ...]

    @staticmethod
    def quick() -> Settings:
        return Settings(
            mode="quick",
            repeats=1,
            warmup_s=1,
            duration_s=3,
            ingest_concurrency=(1, 32),
            drain_n=2_000,
            drain_concurrency=32,
            celery_pools=(("threads", 32),),
            e2e_fractions=(0.25, 0.5, 0.75),
            e2e_duration_s=3,
            e2e_deployments=("serve",),
            pg_workers=(1, 2),
            pg_drain_n=1_000,
            scale_sizes=(),
            scale_backlog_fraction=0.1,
            scale_rss_seconds=0,
            get_concurrency=(),
            webhook_events=500,
            webhook_caps=(4,),
            webhook_isolation=("none", "hanging"),
        )

    @staticmethod
    def full() -> Settings:
        return Settings(
            mode="full",
            repeats=3,
            warmup_s=2,
            duration_s=6,
            ingest_concurrency=(1, 8, 32, 64),
            drain_n=20_000,
            drain_concurrency=32,
            celery_pools=(("threads", 32), ("prefork", 2)),
            e2e_fractions=(0.25, 0.5, 0.75),
            e2e_duration_s=6,
            e2e_deployments=("serve", "api+worker"),
            pg_workers=(1, 2, 4),
            pg_drain_n=20_000,
            scale_sizes=(1_000, 1_000_000),
            scale_backlog_fraction=0.1,
            scale_rss_seconds=12,
            get_concurrency=(1, 16),
            webhook_events=20_000,
            webhook_caps=(4, 32),
            webhook_isolation=("off", "none", "hanging", "fast"),
        )


@dataclass
class Context:
    """One run of the harness."""

    settings: Settings
    workdir: Path
    load_tool: str
    master_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    started: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        """Progress on stderr, with the time since the run started."""
        sys.stderr.write(f"[{time.monotonic() - self.started:7.1f}s] {message}\n")
        sys.stderr.flush()

    def hub_env(self, url: str, **extra: str) -> dict[str, str]:
        """Environment of an ``ihub`` process on the database ``url``."""
        env = {
            "IHUB_DATABASE_URL": url,
            # Credentials may be encrypted at rest: every process gets the same key.
            "IHUB_MASTER_KEY": self.master_key,
            "IHUB_LOG_LEVEL": "info",
            # The Twilio sink (bench/sink.py) listens on this machine over
            # plain http, which the outbound rule refuses unless allowed.
            "IHUB_PROVIDER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "IHUB_PROVIDER_ALLOW_HTTP": "true",
            # The same for tenants' webhook endpoints (bench/webhook_receiver.py).
            "IHUB_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "IHUB_WEBHOOKS_ALLOW_HTTP": "true",
        }
        env.update(extra)
        return env
