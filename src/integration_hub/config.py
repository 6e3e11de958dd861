"""Settings, read from ``IHUB_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integration_hub.domain import outbound
from integration_hub.domain.receipts import OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS


def keyword_list(value: str) -> tuple[str, ...]:
    """A comma-separated keyword setting as its keywords, blanks dropped."""
    return tuple(word.strip() for word in value.split(",") if word.strip())


class ConfigurationError(Exception):
    """The settings name something this installation cannot provide."""


class Settings(BaseSettings):
    """Every knob of the hub; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="IHUB_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./ihub.db", description="where state and queue live"
    )
    host: str = Field(default="127.0.0.1", description="API bind address")
    port: int = Field(default=8000, ge=0, le=65535, description="API port")

    worker_concurrency: int = Field(default=32, ge=1, description="provider calls in flight")
    worker_batch_size: int = Field(default=32, ge=1, le=1000, description="ids per receive")
    visibility_timeout_seconds: float = Field(
        default=60.0, gt=0, description="lease on a received message and on its claim"
    )
    poll_interval_seconds: float = Field(
        default=0.5, gt=0, description="idle wait between receives when the queue is empty"
    )
    provider_timeout_seconds: float = Field(
        default=20.0, gt=0, description="upper bound on one provider call"
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="time in-flight work gets after SIGTERM"
    )

    max_attempts: int = Field(default=5, ge=1, description="default attempt budget per tenant")
    backoff_base_seconds: float = Field(default=1.0, gt=0, description="first retry ceiling")
    backoff_cap_seconds: float = Field(default=300.0, gt=0, description="largest retry delay")

    idempotency_ttl_seconds: float = Field(
        default=86400.0, gt=0, description="how long Idempotency-Keys are remembered"
    )
    idempotency_lock_seconds: float = Field(
        default=10.0, gt=0, description="how long an in-flight key answers 409"
    )
    max_body_bytes: int = Field(default=65536, ge=1024, description="request body limit")
    max_in_flight_requests: int = Field(
        default=256,
        ge=0,
        description="API requests served at once per process, beyond it 503 (0: no bound)",
    )
    tenant_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="how long API and worker processes cache tenant configuration and API-key"
        " records (a revoked key or disabled tenant is refused within this time)",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="log lines as JSON, or for a console; auto: JSON unless a TTY"
    )
    log_recipients: Literal["hash", "redact", "plain"] = Field(
        default="hash", description="recipient addresses in logs: hashed, replaced, or as is"
    )
    access_log: bool = Field(
        default=True,
        description="log one line per HTTP request (off when a proxy logs them: ~4 % of the"
        " API's CPU under load)",
    )

    database_pool_size: int = Field(
        default=10, ge=1, description="PostgreSQL connections per process (plus one to LISTEN)"
    )
    sqlite_busy_timeout_seconds: float = Field(
        default=5.0, gt=0, description="SQLite: how long a write waits for the lock before 503"
    )
    database_timeout_seconds: float = Field(
        default=5.0, gt=0, description="PostgreSQL connect and pool-acquire timeout"
    )
    auto_migrate: bool = Field(
        default=True, description="apply database migrations at startup (else `ihub migrate`)"
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="master key(s) for provider credentials: base64 of 32 bytes, or"
        " kid:base64[,kid:base64] with the primary first",
    )
    master_key_file: str | None = Field(
        default=None,
        description="key file (mode 0600); default for SQLite: <database>.master.key beside it",
    )
    kms_key_id: str | None = Field(
        default=None,
        description="AWS KMS key (id, ARN or alias) for credentials; wins over the local key",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token of the /admin/v1 API (disabled when unset)"
    )
    retention_interval_seconds: float = Field(
        default=3600.0, ge=0, description="how often workers purge old data; 0 turns it off"
    )
    retention_finished_seconds: float = Field(
        default=30 * 86400.0,
        gt=0,
        description="age after which `ihub purge` deletes finished notifications",
    )
    aws_region: str | None = Field(
        default=None,
        description="AWS region for dynamodb:// (else ?region= in the URL, else AWS_REGION)",
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        description="AWS endpoint override for DynamoDB and SQS, e.g. a local moto_server",
    )
    reconcile_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="DynamoDB: re-enqueue notifications left RECEIVED this long (reconciler)",
    )

    metrics_tenant_label: str = Field(
        default="top:100",
        pattern=r"^(?i:on|off|top:[1-9][0-9]*)$",
        description="tenant label on metrics: on, off (one series for all) or top:N"
        " (the first N tenants, the rest as other)",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="bearer token /metrics requires (open when unset; never a tenant key)",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="also serve /metrics on this port (on IHUB_HOST), e.g. for `ihub worker`",
    )

    # -- The worker's outcome journal (docs/reliability.md, the duplicate-delivery window)
    worker_journal: bool = Field(
        default=True,
        description="workers write each delivered outcome to a local fsynced journal before"
        " recording it, and replay it at start: a killed worker's delivery is not sent again",
    )
    worker_journal_dir: str | None = Field(
        default=None,
        description="the journal's directory (local disk, kept across restarts); default:"
        " <database>.outcomes beside a SQLite file, else ./ihub-outcomes",
    )

    # Outbound requests (SSRF rule): docs/security.md, "Outbound requests".
    provider_allowed_networks: str = Field(
        default="",
        description="comma-separated CIDRs providers may connect to although internal"
        " (loopback, private, link-local...), e.g. 127.0.0.0/8 for a local fake provider;"
        " empty: none",
    )
    provider_allow_http: bool = Field(
        default=False,
        description="accept plain http:// provider URLs (local development only; https otherwise)",
    )

    @field_validator("provider_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        # Checked at startup: a typo must not silently leave the rule wider or narrower.
        outbound.parse_networks(value.split(","))
        return value

    # Slow clients: deadlines for a request's head and body, connections per API process.
    request_head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="time a client has to send a request head, from connecting (or from the"
        " first byte of a later request on a keep-alive connection); then 408 and closed",
    )
    request_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="time a client has to send a request body once its head arrived (a deadline,"
        " not an idle time: a trickle is cut off too); then 408 and closed",
    )
    max_connections: int = Field(
        default=1000,
        gt=0,
        description="open connections per API process; a new one beyond it is answered 503"
        " and closed before anything of it is read (keep it below `ulimit -n`)",
    )

    # -- Delivery receipts and suppression lists (docs/receipts.md)
    public_url: str | None = Field(
        default=None,
        description="the hub's public base URL as providers call it (http(s), no query or"
        " fragment), e.g. https://hub.example.com: receipt endpoints check signatures over it"
        " and answer 503 without it",
    )
    receipt_timeout_hours: float = Field(
        default=72.0,
        gt=0,
        description="a notification still `sent` this long after the provider accepted it"
        " becomes `expired` (by the workers' periodic purge and `ihub purge`)",
    )
    opt_out_keywords: str = Field(
        default=",".join(OPT_OUT_KEYWORDS),
        description="comma-separated inbound SMS keywords that add the sender to the"
        " tenant's SMS suppression list (case and accents ignored)",
    )
    opt_in_keywords: str = Field(
        default=",".join(OPT_IN_KEYWORDS),
        description="comma-separated inbound SMS keywords that lift the sender's opt-out",
    )
    sns_test_ca_file: str | None = Field(
        default=None,
        description="tests only: a CA file trusted for SNS signing certificates instead of"
        " the system's (off by default)",
    )
    sns_test_connect_to: str | None = Field(
        default=None,
        description="tests only: host:port every SNS host name connects to instead of its"
        " DNS answer (off by default)",
    )

    # -- Status webhooks to tenants (docs/webhooks.md)
    webhooks_in_worker: bool = Field(
        default=True,
        description="`ihub worker` also runs the webhook delivery loop (its own concurrency"
        " budget); false: run `ihub webhooks-worker` on its own",
    )
    webhooks_concurrency: int = Field(
        default=32, gt=0, description="webhook requests in flight per process, all endpoints"
    )
    webhooks_per_endpoint: int = Field(
        default=4, gt=0, description="webhook requests in flight to one endpoint"
    )
    webhooks_per_tenant: int = Field(
        default=16, gt=0, description="webhook requests in flight to one tenant's endpoints"
    )
    webhooks_timeout_seconds: float = Field(
        default=15.0, gt=0, le=60, description="one webhook request, connecting to the end"
    )
    webhooks_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="how often the delivery loop looks for due deliveries when it is idle",
    )
    webhooks_rotation_overlap_hours: float = Field(
        default=24.0,
        ge=0,
        description="after a secret rotation the old secret signs too for this long",
    )
    webhooks_disable_after_days: float = Field(
        default=5.0, gt=0, description="an endpoint failing every attempt this long is disabled"
    )
    webhooks_disable_after_failures: int = Field(
        default=1000,
        gt=0,
        description="an endpoint failing this many attempts in a row is disabled",
    )
    webhooks_allowed_networks: str = Field(
        default="",
        description="comma-separated CIDRs webhook endpoints may resolve to although internal"
        " (loopback, private, link-local...), for tests and private deployments; empty: none",
    )
    webhooks_allow_http: bool = Field(
        default=False,
        description="accept plain http:// webhook URLs (local development only; https otherwise)",
    )

    @field_validator("webhooks_allowed_networks")
    @classmethod
    def _webhook_networks(cls, value: str) -> str:
        outbound.parse_networks(value.split(","))
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("IHUB_PUBLIC_URL must be an http(s) URL with a host")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("IHUB_PUBLIC_URL must not have a query or a fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError("IHUB_PUBLIC_URL must not carry a user or password")
        return value.strip().rstrip("/")

    @field_validator("opt_out_keywords", "opt_in_keywords")
    @classmethod
    def _keywords(cls, value: str) -> str:
        if not keyword_list(value):
            raise ValueError("name at least one keyword")
        return value

    @field_validator("sns_test_connect_to")
    @classmethod
    def _connect_to(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, _, port = value.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("IHUB_SNS_TEST_CONNECT_TO must be host:port")
        return value.strip()

    @property
    def receipt_timeout(self) -> timedelta:
        """IHUB_RECEIPT_TIMEOUT_HOURS as a duration."""
        return timedelta(hours=self.receipt_timeout_hours)

    @property
    def opt_out(self) -> tuple[str, ...]:
        """The opt-out keywords."""
        return keyword_list(self.opt_out_keywords)

    @property
    def opt_in(self) -> tuple[str, ...]:
        """The opt-in keywords."""
        return keyword_list(self.opt_in_keywords)

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> Self:
        # A claim whose lease ends before the provider call does is taken over
        # by another worker: the same message would be sent twice.
        if self.visibility_timeout_seconds <= self.provider_timeout_seconds:
            raise ValueError(
                "IHUB_VISIBILITY_TIMEOUT_SECONDS must be greater than IHUB_PROVIDER_TIMEOUT_SECONDS"
            )
        return self
