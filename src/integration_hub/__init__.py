"""Integration Hub: a multi-country, multi-tenant notification integration hub."""

from __future__ import annotations

__version__ = "0.1.0"
