"""A description of the machine and software a run measured."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import REPO


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _postgres_version() -> str | None:
    from bench.backends import _Pg, postgres_admin_url

    try:
        conn = _Pg(postgres_admin_url())
    except Exception:
        return None
    try:
        return str(conn.fetch("SHOW server_version")[0][0])
    finally:
        conn.close()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 (read-only git queries)
            ["git", *args],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _wrk_version() -> str | None:
    try:
        done = subprocess.run(
            ["wrk", "--version"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].split(" [")[0] if text else None


def describe() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, SQLite, PostgreSQL and library versions."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "wrk": _wrk_version(),
        "libraries": {
            name: _version(name)
            for name in (
                "fastapi",
                "uvicorn",
                "pydantic",
                "aiohttp",
                "asyncpg",
                "celery",
                "redis",
                "urllib3",
            )
        },
        "commit": _git("rev-parse", "--short", "HEAD"),
        "worktree_modified": bool(status),
    }
