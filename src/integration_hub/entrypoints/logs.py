"""Structured logs: structlog in front of the standard library, with redaction.

Every log line, whether from structlog, ``logging.getLogger`` or uvicorn,
goes through one chain: the bound context (request id, tenant, notification
id, attempt, provider, outcome), the current span's ids, a timestamp, then
the redaction processor, then JSON (not a terminal, or IHUB_LOG_FORMAT=json)
or a console rendering. Configured by the entry points, never at import.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from integration_hub import tracing

RecipientMode = Literal["hash", "redact", "plain"]
LogFormat = Literal["auto", "json", "console"]

REDACTED = "[redacted]"
# Keys whose values are secrets whatever they look like.
SECRET_KEY = re.compile(
    r"(?i)pass(word|phrase)?|secret|token|api[_-]?key|authori[sz]ation|credential|"
    r"private[_-]?key|cookie|master[_-]?key|signature"
)
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# E.164 as the API takes it (domain.models.E164), anywhere in a text.
PHONE = re.compile(r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])")
# Our API keys (ihub_<key id>_<secret>): the key id stays, it is a lookup handle.
API_KEY = re.compile(r"\b(ihub_[0-9a-f]{12})_[A-Za-z0-9_-]+")
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# One cheap scan first: most values (ids, levels, times) hold none of these.
_SUSPECT = re.compile(r"@|\+[1-9]|ihub_|(?i:bearer|basic)\s")
# Values the chain itself adds: nothing to redact there.
_OURS = frozenset({"timestamp", "level", "logger", "trace_id", "span_id"})
_MAX_DEPTH = 8


def fingerprint(kind: str, value: str) -> str:
    """A stable short hash of an address: the same recipient reads the same in every line.

    Not anonymisation: a phone number's hash can be found by trying numbers;
    IHUB_LOG_RECIPIENTS=redact drops them altogether.
    """
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:12]
    return f"<{kind}:{digest}>"


class Redactor:
    """The processor that keeps secrets and recipient addresses out of log lines."""

    def __init__(self, recipients: RecipientMode = "hash") -> None:
        self.recipients = recipients
        self._email = self._address("email")
        self._phone = self._address("phone")

    def _address(self, kind: str) -> Callable[[re.Match[str]], str]:
        if self.recipients == "redact":
            return lambda _: f"[{kind}]"
        return lambda m: fingerprint(kind, m.group(0))

    def text(self, value: str) -> str:
        """``value`` with keys, bearer tokens and (unless plain) addresses replaced."""
        if not _SUSPECT.search(value):
            return value
        value = API_KEY.sub(_key_id_only, value)
        value = BEARER.sub(_scheme_only, value)
        if self.recipients != "plain":
            value = EMAIL.sub(self._email, value)
            value = PHONE.sub(self._phone, value)
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        """Any logged value, walked through mappings and sequences."""
        if isinstance(value, str):
            return self.text(value)
        if depth >= _MAX_DEPTH:
            return value if isinstance(value, int | float | bool | None) else REDACTED
        if isinstance(value, Mapping):
            return {
                k: REDACTED if _secret_key(k) else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, int | float | bool | None):
            return value
        # Anything else is rendered with str() by the renderer: redact that text.
        return self.text(str(value))

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        """Redact every value of the event; secret-named keys entirely."""
        for key, value in list(event_dict.items()):
            if key not in _OURS:
                event_dict[key] = REDACTED if _secret_key(key) else self.value(value)
        return event_dict


def _key_id_only(m: re.Match[str]) -> str:
    return f"{m.group(1)}_{REDACTED}"


def _scheme_only(m: re.Match[str]) -> str:
    return f"{m.group(1)} {REDACTED}"


@functools.lru_cache(maxsize=1024)
def _secret_key(key: object) -> bool:
    # Keys come from a small set (the code's own), so the answer is cached.
    return isinstance(key, str) and key != "event" and bool(SECRET_KEY.search(key))


def merge_log_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The bound context (request id, tenant, notification, attempt…); the line's own win."""
    for key, value in tracing.log_context().items():
        event_dict.setdefault(key, value)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``trace_id``/``span_id`` of the active span, so a line leads to its trace."""
    event_dict.update(tracing.current_ids())
    return event_dict


def uvicorn_access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access line as fields too: method, path, status."""
    # Only here: the message itself was already formatted with these arguments.
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    uvicorn = record is not None and record.name == "uvicorn.access"
    if uvicorn and isinstance(args, tuple) and len(args) == 5:
        _, method, path, _, status = args
        event_dict.update(method=method, path=path, status=status)
    return event_dict


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn adds a second, ANSI-coloured copy of some messages.
    event_dict.pop("color_message", None)
    return event_dict


def wants_json(fmt: LogFormat, stream: Any) -> bool:
    """JSON unless asked for the console, or ``auto`` on a terminal."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return fmt == "json"


def configure(
    level: str = "info",
    fmt: LogFormat = "auto",
    recipients: RecipientMode = "hash",
    *,
    stream: Any = None,
) -> logging.Handler:
    """Route structlog and the standard library (uvicorn too) through one chain to ``stream``.

    Replaces the root logger's handlers; returns the handler installed.
    """
    stream = stream if stream is not None else sys.stderr
    json = wants_json(fmt, stream)
    shared: list[Processor] = [
        merge_log_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, uvicorn_access_fields, _drop_color_message],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            Redactor(recipients),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, unstructured copy.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def unconfigure(handler: logging.Handler) -> None:
    """Remove a handler ``configure`` installed (tests)."""
    logging.getLogger().removeHandler(handler)
