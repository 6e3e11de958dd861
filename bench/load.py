"""Load from a separate process: wrk when installed, else the aiohttp generator."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import PYTHON, REPO

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")


def wrk_available() -> bool:
    """Whether a ``wrk`` binary is on the PATH."""
    return shutil.which("wrk") is not None


def _loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 (our own program)
        [PYTHON, "-m", "bench.loadgen", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _header_args(headers: dict[str, str]) -> list[str]:
    out: list[str] = []
    for name, value in headers.items():
        out += ["--header", f"{name}: {value}"]
    return out


def _wrk(
    url: str,
    *,
    seconds: float,
    concurrency: int,
    env: dict[str, str],
) -> dict[str, Any]:
    args = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, math.ceil(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    done = subprocess.run(  # noqa: S603 (wrk, on loopback)
        args,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=seconds + 60,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed:\n{done.stdout[-1000:]}\n{done.stderr[-1000:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    duration = raw["duration_us"] / 1e6
    bad = raw["unexpected_status"] + raw["connect_errors"] + raw["read_errors"]
    bad += raw["write_errors"] + raw["timeouts"]
    return {
        "tool": "wrk",
        "concurrency": concurrency,
        "requests": raw["requests"],
        "duration_s": duration,
        "rps": raw["requests"] / duration,
        "errors": bad,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def closed_loop(
    base_url: str,
    *,
    tool: str,
    concurrency: int,
    warmup: float,
    duration: float,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    path: str = "/v1/notifications",
    ids_file: Path | None = None,
    expect: int = 202,
) -> dict[str, Any]:
    """``concurrency`` clients for ``duration`` s after ``warmup`` s; rps and latencies.

    POSTs carry a unique Idempotency-Key each; with ``ids_file`` the clients
    GET ``path`` + a random id instead.
    """
    prefix = "b" + secrets.token_hex(6)
    if tool == "wrk":
        env = {
            "BENCH_MODE": "get" if ids_file else "post",
            "BENCH_PATH": path,
            "BENCH_BODY": json.dumps(body) if body is not None else "",
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items()),
            "BENCH_IDS": str(ids_file or ""),
            "BENCH_EXPECT": str(expect),
        }
        if warmup > 0:
            _wrk(
                base_url + path,
                seconds=warmup,
                concurrency=concurrency,
                env={**env, "BENCH_PREFIX": prefix + "w"},
            )
        return _wrk(
            base_url + path,
            seconds=duration,
            concurrency=concurrency,
            env={**env, "BENCH_PREFIX": prefix + "m"},
        )
    args = [
        "--url",
        base_url,
        "--path",
        path,
        "--prefix",
        prefix,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        *_header_args(headers),
    ]
    if body is not None:
        args += ["--body", json.dumps(body)]
    if ids_file is not None:
        args += ["--ids", str(ids_file)]
    result = _loadgen(args, timeout=warmup + duration + 60)
    ok = result["statuses"].get(str(expect), 0)
    result["errors"] = result["requests"] - ok
    result["tool"] = "aiohttp"
    return result


def open_loop(
    base_url: str,
    *,
    rate: float,
    warmup: float,
    duration: float,
    headers: dict[str, str],
    body: dict[str, Any],
) -> dict[str, Any]:
    """Requests on a fixed schedule of ``rate``/s (latency from the scheduled time)."""
    args = [
        "--url",
        base_url,
        "--prefix",
        "o" + secrets.token_hex(6),
        "--rate",
        str(rate),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--body",
        json.dumps(body),
        *_header_args(headers),
    ]
    return _loadgen(args, timeout=warmup + duration + 90)


def fill(
    base_url: str, *, count: int, concurrency: int, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Exactly ``count`` accepted POSTs (the backlog of a drain), as fast as they go."""
    args = [
        "--url",
        base_url,
        "--prefix",
        "f" + secrets.token_hex(6),
        "--count",
        str(count),
        "--concurrency",
        str(concurrency),
        "--body",
        json.dumps(body),
        *_header_args(headers),
    ]
    return _loadgen(args, timeout=600)
