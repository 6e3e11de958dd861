"""Processes of a benchmark run: started, waited for, and always stopped by their id."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

_started: list[Proc] = []


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process in its own session, logging to a file in the run's directory."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        workdir: Path,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        full_env = {**os.environ, **(env or {})}
        # The bench package lives at the repository root, next to src/.
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
        )
        self.started_at = time.time()
        self.popen = subprocess.Popen(  # noqa: S603 (our own programs)
            args,
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        _started.append(self)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM its process group, then SIGKILL after ``timeout``; its exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            # The leader is gone; children it left in its group go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()
        if self in _started:
            _started.remove(self)
        return self.popen.returncode

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all() -> None:
    """Stop every process this harness started and has not stopped yet."""
    for proc in list(reversed(_started)):
        proc.stop(timeout=5.0)


def wait_http(url: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers anything below 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")


def read_ready(proc: Proc, timeout: float = 30.0) -> str:
    """The ``ready ...`` line a helper prints on stdout once it listens."""
    assert proc.popen.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.popen.stdout.readline().decode().strip()
        if line.startswith("ready"):
            return line
        if not line and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
    raise TimeoutError(f"{proc.name} did not get ready in {timeout:.0f}s")


def run(args: list[str], *, workdir: Path, env: dict[str, str], stdin: str | None = None) -> str:
    """Run a short command to completion; its stdout (raises with stderr on failure)."""
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(  # noqa: S603 (our own programs)
        args,
        cwd=workdir,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout
