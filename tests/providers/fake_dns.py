"""DNS answers chosen by a test, for names no real DNS knows."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult


class StubDns(AbstractResolver):
    """DNS answers chosen by the test, for names no real DNS knows."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        return None


def dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Make aiohttp's default resolver (the one the guarded resolver wraps) answer ``answers``."""
    monkeypatch.setattr(aiohttp, "DefaultResolver", lambda: StubDns(answers))
