"""Every SQL statement of the SQLite and PostgreSQL backends, written once.

Named parameters (``:name``) and the slots of ``dialect.py`` (``{lock}``,
``{skip_locked}``, ``{one_of:NAME}``, ``notify=True``) are the only places the
two dialects differ. Time is always a parameter (the injected clock's):
SQL ``now()`` would ignore the clock tests move. Both databases support
``ON CONFLICT ... DO UPDATE ... WHERE``, ``RETURNING``, ``UPDATE ... FROM``,
``MATERIALIZED`` CTEs and ``FILTER`` (SQLite 3.35+), so those are written
once too. tests/contract/test_sql_statements.py prepares each statement on
both real databases.
"""

from __future__ import annotations

from functools import cache

from integration_hub.adapters.sql.dialect import Statement as S

# -- tenants, API keys, quotas ---------------------------------------------------------

CREATE_TENANT = S(
    "create_tenant",
    """
INSERT INTO tenants (id, name, status, created_at, config)
VALUES (:id, :name, :status, :created_at, :config)
ON CONFLICT (id) DO NOTHING
RETURNING 1
""",
)
UPDATE_TENANT = S(
    "update_tenant",
    "UPDATE tenants SET name = :name, status = :status, config = :config WHERE id = :id",
)
TENANT = S("tenant", "SELECT * FROM tenants WHERE id = :id")
TENANTS = S("tenants", "SELECT * FROM tenants ORDER BY created_at, id")
ADD_API_KEY = S(
    "add_api_key",
    "INSERT INTO api_keys (key_id, tenant, hash, created_at)"
    " VALUES (:key_id, :tenant, :hash, :created_at)",
)
API_KEY = S("api_key", "SELECT * FROM api_keys WHERE key_id = :key_id")
API_KEYS = S(
    "api_keys", "SELECT * FROM api_keys WHERE tenant = :tenant ORDER BY created_at, key_id"
)
REVOKE_API_KEY = S(
    "revoke_api_key",
    "UPDATE api_keys SET revoked_at = :now"
    " WHERE tenant = :tenant AND key_id = :key_id AND revoked_at IS NULL",
)
# The tenant row lock serialises concurrent API processes on PostgreSQL.
LOCK_TENANT = S("lock_tenant", "SELECT 1 FROM tenants WHERE id = :tenant {lock}")
USAGE = S("usage", 'SELECT "window", window_start, count FROM tenant_usage WHERE tenant = :tenant')
PUT_USAGE = S(
    "put_usage",
    """
INSERT INTO tenant_usage (tenant, "window", window_start, count)
VALUES (:tenant, :window, :window_start, :count)
ON CONFLICT (tenant, "window") DO UPDATE SET
    window_start = excluded.window_start, count = excluded.count
""",
)

# -- idempotency keys and ingest -----------------------------------------------------------

# Ours if there was no record, or if the one there is free by lifecycle.key_free
# (expired, or in progress with a lapsed lock); otherwise the conflicting row
# stays as it is (locked by this transaction on PostgreSQL until we have read
# it). The WHERE is key_free in SQL, for atomicity; tests/contract/
# test_sql_conditions.py checks the two agree on both databases.
RESERVE = S(
    "reserve",
    """
INSERT INTO idempotency_keys AS k
    (tenant, key, fingerprint, reservation, created_at, locked_until, expires_at, response)
VALUES (:tenant, :key, :fingerprint, :reservation, :now, :locked_until, :locked_until, NULL)
ON CONFLICT (tenant, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    reservation = excluded.reservation,
    created_at = excluded.created_at,
    locked_until = excluded.locked_until,
    expires_at = excluded.expires_at,
    response = NULL
WHERE k.expires_at <= :now OR (k.response IS NULL AND k.locked_until <= :now)
RETURNING 1
""",
)
# The same takeover, but the record is complete at once: the notification is
# written in the same transaction (accept_new).
RESERVE_COMPLETE = S(
    "reserve_complete",
    """
INSERT INTO idempotency_keys AS k
    (tenant, key, fingerprint, reservation, created_at, locked_until, expires_at, response)
VALUES (:tenant, :key, :fingerprint, :reservation, :now, :now, :expires_at, :response)
ON CONFLICT (tenant, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    reservation = excluded.reservation,
    created_at = excluded.created_at,
    locked_until = excluded.locked_until,
    expires_at = excluded.expires_at,
    response = excluded.response
WHERE k.expires_at <= :now OR (k.response IS NULL AND k.locked_until <= :now)
RETURNING 1
""",
)
HELD = S("held", "SELECT * FROM idempotency_keys WHERE tenant = :tenant AND key = :key")
RELEASE_KEY = S(
    "release_key",
    "DELETE FROM idempotency_keys"
    " WHERE tenant = :tenant AND key = :key AND reservation = :reservation AND response IS NULL",
)
COMPLETE_KEY = S(
    "complete_key",
    """
UPDATE idempotency_keys SET response = :response, expires_at = :expires_at, locked_until = :now
WHERE tenant = :tenant AND key = :key AND reservation = :reservation AND response IS NULL
""",
)
INSERT_NOTIFICATION = S(
    "insert_notification",
    """
INSERT INTO notifications (id, tenant, country, channel, provider, status,
    request, idempotency_key, created_at, updated_at, traceparent, tracestate)
VALUES (:id, :tenant, :country, :channel, :provider, :status,
    :request, :idempotency_key, :created_at, :updated_at, :traceparent, :tracestate)
""",
)

# -- reads -------------------------------------------------------------------------------

NOTIFICATION = S("notification", "SELECT * FROM notifications WHERE id = :id")
TENANT_NOTIFICATION = S(
    "tenant_notification", "SELECT * FROM notifications WHERE id = :id AND tenant = :tenant"
)
ATTEMPTS = S("attempts", "SELECT * FROM attempts WHERE notification_id = :id ORDER BY number")


@cache
def listing(*, status: bool, country: bool, before: bool, delivery: bool = False) -> S:
    """One page of a tenant's notifications, newest first, with the filters given."""
    sql = ["SELECT * FROM notifications WHERE tenant = :tenant"]
    if status:
        sql.append("AND status = :status")
    if country:
        sql.append("AND country = :country")
    if delivery:
        sql.append("AND delivery_state = :delivery_state")
    if before:
        sql.append("AND id < :before_id")
    sql.append("ORDER BY id DESC LIMIT :limit")
    filters = {"status": status, "country": country, "delivery": delivery, "before": before}
    name = "_".join(["list", *(f for f, on in filters.items() if on)])
    return S(name, " ".join(sql))


# -- claims and completions ------------------------------------------------------------------

# What a change answers for its webhook event (webhooks.DATA_FIELDS): the row after it.
_EVENT_ROW = (
    "RETURNING id, tenant, country, channel, provider, status, delivery_state, attempt_count,"
    " last_error"
)

# The notification as a claim, a dead letter or a completion reads it (locked).
CLAIM_LOCK = S("claim_lock", "SELECT * FROM notifications WHERE id = :id {lock}")
CLAIM = S(
    "claim",
    """
UPDATE notifications SET status = 'PROCESSING', claim_token = :token,
    claim_expires_at = :expires_at, attempts_used = :attempts_used, attempt_count = :number,
    updated_at = :now
WHERE id = :id
RETURNING *
""",
)
START_ATTEMPT = S(
    "start_attempt",
    "INSERT INTO attempts (notification_id, number, provider, started_at)"
    " VALUES (:id, :number, :provider, :now)",
)
FAIL = S(
    "fail",
    """
UPDATE notifications SET status = 'FAILED', provider = COALESCE(:provider, provider),
    claim_token = NULL, claim_expires_at = NULL, last_error = :reason, finished_at = :now,
    updated_at = :now
WHERE id = :id
RETURNING *
""",
)
DEAD_LETTER = S(
    "dead_letter",
    """
INSERT INTO dead_letters (notification_id, tenant, reason, dead_lettered_at)
VALUES (:id, :tenant, :reason, :now)
ON CONFLICT (notification_id) DO UPDATE SET
    tenant = excluded.tenant, reason = excluded.reason,
    dead_lettered_at = excluded.dead_lettered_at
""",
)
# Narrowed to the token so that another worker's row is not locked for nothing;
# whether this holder may complete is lifecycle.may_complete on the row read.
HOLDER_LOCK = S(
    "holder_lock",
    "SELECT tenant, status, claim_token FROM notifications"
    " WHERE id = :id AND claim_token = :token {lock}",
)
FINISH_ATTEMPT = S(
    "finish_attempt",
    """
UPDATE attempts SET finished_at = :now, provider = :provider, outcome = :outcome,
    error_class = :error_class, error_code = :error_code, message = :message,
    latency_ms = :latency_ms, provider_message_id = :provider_message_id,
    provider_response = :provider_response
WHERE notification_id = :id AND number = :number
""",
)
FINISH = S(
    "finish",
    """
UPDATE notifications SET status = :status, provider = :provider, claim_token = NULL,
    claim_expires_at = NULL, last_error = :last_error, finished_at = :finished_at,
    updated_at = :now
WHERE id = :id
"""
    + _EVENT_ROW,
)

# DONE with a provider message id: the provider accepted it, so its delivery
# state starts at 'sent' in the same write (ports/receipts.py).
FINISH_SENT = S(
    "finish_sent",
    """
UPDATE notifications SET status = :status, provider = :provider, claim_token = NULL,
    claim_expires_at = NULL, last_error = :last_error, finished_at = :finished_at,
    updated_at = :now, delivery_state = 'sent', delivery_updated_at = :now, sent_at = :now,
    provider_message_id = :provider_message_id
WHERE id = :id
"""
    + _EVENT_ROW,
)

# -- delivery receipts ----------------------------------------------------------------------------

# The notification a receipt names, locked so that concurrent receipts for it
# serialise (PostgreSQL). Should a provider ever reuse a message id, the
# latest sent wins (the index is not unique: see the migration).
RECEIPT_TARGET = S(
    "receipt_target",
    """
SELECT id, channel, request, delivery_state, sent_at FROM notifications
WHERE tenant = :tenant AND provider = :provider AND provider_message_id = :provider_message_id
ORDER BY sent_at DESC, id DESC
LIMIT 1
{lock}
""",
)
# Inserts nothing (0 rows) when this event is already recorded: the unique
# (notification_id, identity) is the duplicate check.
ADD_DELIVERY_EVENT = S(
    "add_delivery_event",
    """
INSERT INTO delivery_events (notification_id, provider, state, raw_status, error_code,
    occurred_at, received_at, identity)
VALUES (:id, :provider, :state, :raw_status, :error_code, :occurred_at, :received_at, :identity)
ON CONFLICT (notification_id, identity) DO NOTHING
""",
)
SET_DELIVERY_STATE = S(
    "set_delivery_state",
    """
UPDATE notifications SET delivery_state = :state, delivery_updated_at = :now
WHERE id = :id
"""
    + _EVENT_ROW,
)
DELIVERY_EVENTS = S(
    "delivery_events",
    """
SELECT e.* FROM delivery_events e
JOIN notifications n ON n.id = e.notification_id
WHERE e.notification_id = :id AND n.tenant = :tenant
ORDER BY e.received_at, e.seq
LIMIT :limit
""",
)
# Candidates for expiry, oldest sent first; on PostgreSQL rows a receipt holds
# right now are skipped (it is about to give them an outcome anyway).
EXPIRY_DUE = S(
    "expiry_due",
    """
SELECT id, tenant, provider_message_id, delivery_state, sent_at FROM notifications
WHERE delivery_state = 'sent' AND sent_at <= :cutoff
ORDER BY sent_at
LIMIT :limit
{skip_locked}
""",
)
# The 'sent' guard again: a receipt that won meanwhile is not overwritten.
EXPIRE = S(
    "expire",
    """
UPDATE notifications SET delivery_state = 'expired', delivery_updated_at = :now
WHERE id = :id AND delivery_state = 'sent'
"""
    + _EVENT_ROW,
)

# -- suppression lists ---------------------------------------------------------------------------

ADD_SUPPRESSION = S(
    "add_suppression",
    """
INSERT INTO suppressions (tenant, channel, address, reason, source, note, created_at)
VALUES (:tenant, :channel, :address, :reason, :source, :note, :created_at)
ON CONFLICT (tenant, channel, address) DO NOTHING
""",
)
SUPPRESSION = S(
    "suppression",
    "SELECT * FROM suppressions WHERE tenant = :tenant AND channel = :channel"
    " AND address = :address",
)
REMOVE_SUPPRESSION = S(
    "remove_suppression",
    "DELETE FROM suppressions WHERE tenant = :tenant AND channel = :channel AND address = :address",
)


@cache
def suppression_listing(*, channel: bool, after: bool) -> S:
    """One page of a tenant's suppressions in (channel, address) order, the filters given."""
    sql = ["SELECT * FROM suppressions WHERE tenant = :tenant"]
    if channel:
        sql.append("AND channel = :channel")
    if after:
        sql.append("AND (channel, address) > (:after_channel, :after_address)")
    sql.append("ORDER BY channel, address LIMIT :limit")
    filters = {"channel": channel, "after": after}
    name = "_".join(["list_suppressions", *(f for f, on in filters.items() if on)])
    return S(name, " ".join(sql))


# -- dead letters and redrive -------------------------------------------------------------------

DEAD_LETTERS = S(
    "dead_letters", "SELECT * FROM dead_letters ORDER BY dead_lettered_at DESC LIMIT :limit"
)
TENANT_DEAD_LETTERS = S(
    "tenant_dead_letters",
    "SELECT * FROM dead_letters WHERE tenant = :tenant ORDER BY dead_lettered_at DESC LIMIT :limit",
)
COUNT_DEAD_LETTERS = S("count_dead_letters", "SELECT COUNT(*) FROM dead_letters")
# Locks both rows on PostgreSQL: a concurrent redrive that deleted the dead
# letter first makes this one find nothing.
REDRIVE_LOCK = S(
    "redrive_lock",
    """
SELECT d.tenant, n.status FROM dead_letters d
JOIN notifications n ON n.id = d.notification_id
WHERE d.notification_id = :id
{lock}
""",
)
REDRIVE = S(
    "redrive",
    """
UPDATE notifications SET status = 'RECEIVED', attempts_used = 0, finished_at = NULL,
    updated_at = :now
WHERE id = :id
"""
    + _EVENT_ROW,
)
DELETE_DEAD_LETTER = S("delete_dead_letter", "DELETE FROM dead_letters WHERE notification_id = :id")

# -- the queue and the outbox ---------------------------------------------------------------------

# A new message, or one redriven: its receive count starts again.
ENQUEUE_FRESH = S(
    "enqueue_fresh",
    """
INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)
VALUES (:id, :tenant, :available_at, :now, 0)
ON CONFLICT (notification_id) DO UPDATE SET
    available_at = excluded.available_at, receipt = NULL, receive_count = 0
""",
    notify=True,
)
ENQUEUE = S(
    "enqueue",
    """
INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)
VALUES (:id, :tenant, :available_at, :now, 0)
ON CONFLICT (notification_id) DO UPDATE SET
    available_at = excluded.available_at, receipt = NULL
""",
    notify=True,
)
# The batch is picked once (MATERIALIZED: a LIMIT subquery under a join could
# otherwise be re-run) and locked with SKIP LOCKED on PostgreSQL, so that
# concurrent receivers take disjoint batches. One receipt per batch, suffixed
# per message. RETURNING may not name a FROM table on SQLite, hence the
# subquery for the time each message became available (the order answered).
RECEIVE = S(
    "receive",
    """
WITH picked AS MATERIALIZED (
    SELECT notification_id, available_at FROM queue
    WHERE available_at <= :now
    ORDER BY available_at
    LIMIT :limit
    {skip_locked}
)
UPDATE queue SET
    available_at = :lease_until,
    receive_count = queue.receive_count + 1,
    receipt = :receipt || '-' || queue.notification_id
FROM picked
WHERE queue.notification_id = picked.notification_id
RETURNING queue.notification_id, queue.tenant, queue.receipt, queue.receive_count,
    (SELECT p.available_at FROM picked AS p WHERE p.notification_id = queue.notification_id)
        AS was_available_at
""",
)
ACK = S("ack", "DELETE FROM queue WHERE notification_id = :id AND receipt = :receipt")
RELEASE = S(
    "release",
    "UPDATE queue SET available_at = :available_at, receipt = NULL"
    " WHERE notification_id = :id AND receipt = :receipt",
)
NEXT_AVAILABLE = S("next_available", "SELECT MIN(available_at) FROM queue")
STATS = S(
    "stats",
    """
SELECT
    COUNT(*) FILTER (WHERE available_at <= :now) AS visible,
    COUNT(*) FILTER (WHERE available_at > :now AND receipt IS NOT NULL) AS in_flight,
    COUNT(*) FILTER (WHERE available_at > :now AND receipt IS NULL) AS delayed,
    MIN(enqueued_at) AS oldest
FROM queue
""",
)
APPEND = S(
    "append",
    """
INSERT INTO outbox (notification_id, tenant, channel, recipient, subject, body, attempt,
    provider_message_id, delivered_at)
VALUES (:notification_id, :tenant, :channel, :recipient, :subject, :body, :attempt,
    :provider_message_id, :delivered_at)
""",
)
OUTBOX = S("outbox", "SELECT * FROM outbox ORDER BY seq DESC LIMIT :limit")
TENANT_OUTBOX = S(
    "tenant_outbox", "SELECT * FROM outbox WHERE tenant = :tenant ORDER BY seq DESC LIMIT :limit"
)

# -- retention ------------------------------------------------------------------------------------

# Rows a worker holds right now (PostgreSQL) are skipped and left for the next run.
FINISHED = S(
    "finished",
    """
SELECT id FROM notifications
WHERE finished_at < :cutoff AND status IN ('DONE', 'FAILED')
ORDER BY finished_at
LIMIT :limit
{skip_locked}
""",
)


def _purge(table: str, column: str, name: str = "") -> S:
    sql = f"DELETE FROM {table} WHERE {column} {{one_of:ids}}"  # noqa: S608  # names are constants
    return S(name or f"purge_{table}", sql)


# What points at a finished notification, in deletion order (the notification last).
PURGE_DEPENDENTS = (
    (
        "webhook_attempts",
        S(
            "purge_webhook_attempts",
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM"
            " webhook_deliveries WHERE notification_id {one_of:ids})",
        ),
    ),
    ("webhook_deliveries", _purge("webhook_deliveries", "notification_id")),
    ("webhook_events", _purge("webhook_events", "notification_id")),
    ("attempts", _purge("attempts", "notification_id")),
    ("dead_letters", _purge("dead_letters", "notification_id")),
    ("outbox", _purge("outbox", "notification_id")),
    ("delivery_events", _purge("delivery_events", "notification_id")),
    ("queue", _purge("queue", "notification_id")),
    ("notifications", _purge("notifications", "id")),
)
# Events of no notification (webhook.test, endpoint.disabled) older than the
# cut-off, with their deliveries and attempts.
UNOWNED_EVENTS = S(
    "unowned_webhook_events",
    """
SELECT id FROM webhook_events
WHERE notification_id IS NULL AND occurred_at < :cutoff
ORDER BY occurred_at
LIMIT :limit
{skip_locked}
""",
)
PURGE_UNOWNED = (
    (
        "webhook_attempts",
        S(
            "purge_unowned_webhook_attempts",
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM"
            " webhook_deliveries WHERE event_id {one_of:ids})",
        ),
    ),
    ("webhook_deliveries", _purge("webhook_deliveries", "event_id", "purge_unowned_deliveries")),
    ("webhook_events", _purge("webhook_events", "id", "purge_unowned_webhook_events")),
)
PURGE_KEYS = S(
    "purge_keys",
    """
DELETE FROM idempotency_keys WHERE (tenant, key) IN (
    SELECT tenant, key FROM idempotency_keys
    WHERE expires_at <= :now
    LIMIT :limit
    {skip_locked}
)
""",
)

# -- provider credentials and data keys ------------------------------------------------------------

CREDENTIALS = S(
    "credentials",
    "SELECT config FROM provider_credentials WHERE tenant = :tenant AND provider = :provider",
)
# Inserts nothing (and returns no row) when the tenant does not exist.
PUT_CREDENTIALS = S(
    "put_credentials",
    """
INSERT INTO provider_credentials (tenant, provider, config, updated_at)
SELECT id, :provider, :config, :now FROM tenants WHERE id = :tenant
ON CONFLICT (tenant, provider) DO UPDATE SET
    config = excluded.config, updated_at = excluded.updated_at
RETURNING 1
""",
)
CREDENTIAL_PROVIDERS = S(
    "credential_providers",
    "SELECT provider FROM provider_credentials WHERE tenant = :tenant ORDER BY provider",
)
DATA_KEY = S("data_key", "SELECT wrapped FROM tenant_data_keys WHERE tenant = :tenant")
# A racing insert makes ours wait (PostgreSQL), then do nothing; the read that
# follows sees the winner's key.
ADD_DATA_KEY = S(
    "add_data_key",
    "INSERT INTO tenant_data_keys (tenant, wrapped, created_at) VALUES (:tenant, :wrapped, :now)"
    " ON CONFLICT (tenant) DO NOTHING",
)
DATA_KEYS = S("data_keys", "SELECT tenant, wrapped FROM tenant_data_keys ORDER BY tenant")
REPLACE_DATA_KEY = S(
    "replace_data_key",
    "UPDATE tenant_data_keys SET wrapped = :new, rotated_at = :now"
    " WHERE tenant = :tenant AND wrapped = :old",
)


def every() -> list[S]:
    """Every statement of this module, the listing in each of its shapes too."""
    found = [v for v in globals().values() if isinstance(v, S)]
    found += [s for _, s in PURGE_DEPENDENTS + PURGE_UNOWNED]
    flags = (False, True)
    found += [
        listing(status=a, country=b, before=c, delivery=d)
        for a in flags
        for b in flags
        for c in flags
        for d in flags
    ]
    found += [suppression_listing(channel=a, after=b) for a in flags for b in flags]
    return found
