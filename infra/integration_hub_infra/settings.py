"""Deployment settings, read from CDK context (`-c key=value` or cdk.json)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Node

INFRA_DIR = Path(__file__).resolve().parent.parent
PLACEHOLDER_BUNDLE = INFRA_DIR / "lambda_placeholder"

# The hub's provider calls are bounded by IHUB_PROVIDER_TIMEOUT_SECONDS; a
# worker invocation must outlive a batch of them plus the store round trips.
PROVIDER_TIMEOUT_SECONDS = 20
MIN_WORKER_TIMEOUT_SECONDS = 30
# The webhook delivery Lambda (ADR 0021): invoked every minute, it claims for
# its timeout less one request's (IHUB_WEBHOOKS_TIMEOUT_SECONDS) and a 5 s
# margin, so claiming goes on without a gap while the next invocation starts.
WEBHOOK_REQUEST_TIMEOUT_SECONDS = 15
WEBHOOKS_EVERY_SECONDS = 60
WEBHOOKS_FUNCTION_TIMEOUT_SECONDS = WEBHOOKS_EVERY_SECONDS + WEBHOOK_REQUEST_TIMEOUT_SECONDS + 5
MAX_LAMBDA_TIMEOUT_SECONDS = 900

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


class SettingsError(ValueError):
    """A context parameter of the CDK app is invalid."""


@dataclass(frozen=True)
class HubSettings:
    """Everything a HubStack needs to know that is not derived from the code."""

    prefix: str = "ihub"
    # Above the default attempt budget (5): every retry is another receive, and a
    # held claim or a crash costs one more, so 5 would dead-letter live work.
    max_receive_count: int = 10
    worker_timeout_seconds: int = 60
    oldest_message_age_alarm_seconds: int = 900
    lambda_bundle: Path = PLACEHOLDER_BUNDLE
    alarm_email: str | None = None
    destroy_data: bool = False
    # The reconciler's schedule, and how long a notification may sit RECEIVED
    # before it counts as lost (well above the normal queue latency).
    reconcile_every_minutes: int = 1
    reconcile_after_seconds: int = 300

    @property
    def visibility_timeout_seconds(self) -> int:
        # AWS guidance for Lambda event sources: at least six times the
        # function timeout, so a throttled or retried batch is not redelivered
        # while an invocation still works on it.
        return 6 * self.worker_timeout_seconds

    @property
    def uses_placeholder_bundle(self) -> bool:
        return self.lambda_bundle == PLACEHOLDER_BUNDLE

    @classmethod
    def from_context(cls, node: Node) -> HubSettings:
        """Read and check the context parameters; defaults for the missing ones."""
        defaults = cls()
        prefix = str(node.try_get_context("prefix") or defaults.prefix)
        if not _PREFIX.match(prefix):
            raise SettingsError(f"prefix {prefix!r}: lower-case letters, digits and '-'")
        max_receive = _int(node, "maxReceiveCount", defaults.max_receive_count, 1, 1000)
        worker_timeout = _int(
            node,
            "workerTimeoutSeconds",
            defaults.worker_timeout_seconds,
            MIN_WORKER_TIMEOUT_SECONDS,
            MAX_LAMBDA_TIMEOUT_SECONDS,
        )
        age = _int(
            node,
            "oldestMessageAgeAlarmSeconds",
            defaults.oldest_message_age_alarm_seconds,
            60,
            14 * 86400,
        )
        bundle_value = node.try_get_context("lambdaBundle")
        bundle = defaults.lambda_bundle
        if bundle_value:
            # Relative paths are relative to infra/, where `cdk` and `make synth` run.
            bundle = (INFRA_DIR / str(bundle_value)).resolve()
            if not bundle.is_dir():
                raise SettingsError(f"lambdaBundle {bundle_value!r} is not a directory")
        alarm_email = node.try_get_context("alarmEmail") or None
        every = _int(node, "reconcileEveryMinutes", defaults.reconcile_every_minutes, 1, 60)
        after = _int(node, "reconcileAfterSeconds", defaults.reconcile_after_seconds, 60, 86400)
        return cls(
            prefix=prefix,
            max_receive_count=max_receive,
            worker_timeout_seconds=worker_timeout,
            oldest_message_age_alarm_seconds=age,
            lambda_bundle=bundle,
            alarm_email=str(alarm_email) if alarm_email else None,
            destroy_data=_bool(node, "destroyData"),
            reconcile_every_minutes=every,
            reconcile_after_seconds=after,
        )


def parse_regions(value: Any) -> dict[str, tuple[str, ...]]:
    """`{"eu-west-1": ["ES", "FR"], ...}` (a JSON string from `-c`, or a dict
    from cdk.json) into region → countries; a country may live in one region only."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"regions is not JSON: {exc}") from exc
    if not isinstance(value, dict) or not value:
        raise SettingsError('regions must be an object like {"eu-west-1": ["ES", "FR"]}')
    regions: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for region, countries in value.items():
        if not isinstance(region, str) or not _REGION.match(region):
            raise SettingsError(f"regions: {region!r} is not an AWS region name")
        if not isinstance(countries, list) or not countries:
            raise SettingsError(f"regions: {region} needs a non-empty list of countries")
        codes: list[str] = []
        for country in countries:
            code = str(country).strip().upper()
            # The hub accepts UK as an alias and stores the ISO code GB.
            code = "GB" if code == "UK" else code
            if not _COUNTRY.match(code):
                raise SettingsError(f"regions: {country!r} is not a two-letter country code")
            if code in seen:
                # A tenant's notifications for one country must live in one table.
                raise SettingsError(f"regions: {code} is in both {seen[code]} and {region}")
            seen[code] = region
            codes.append(code)
        regions[region] = tuple(codes)
    return regions


def _int(node: Node, key: str, default: int, low: int, high: int) -> int:
    raw = node.try_get_context(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise SettingsError(f"{key} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{key} must be between {low} and {high}, not {value}")
    return value


def _bool(node: Node, key: str) -> bool:
    raw = node.try_get_context(key)
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in {"1", "true", "yes"} if raw is not None else False
