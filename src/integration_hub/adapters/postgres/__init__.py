"""The self-hosted backend: store, queue and outbox in one PostgreSQL database.

Many API and worker processes share the database: the queue hands out
messages with ``FOR UPDATE SKIP LOCKED`` and wakes idle workers with
``LISTEN/NOTIFY``. Nothing here is imported unless the URL names PostgreSQL,
so the embedded install does not need ``asyncpg``.
"""
