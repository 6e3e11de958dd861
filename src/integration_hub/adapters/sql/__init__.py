"""One SQL store, queue, outbox, retention and credentials for SQLite and PostgreSQL.

``statements.py`` holds every statement once; ``dialect.py`` compiles them
for each database; the transactions are flows (``tenants.py``, ``work.py``,
``queue.py``, ``retention.py``, ``credentials.py``) that ``flow.py`` drives
synchronously on SQLite's writer thread or asynchronously on asyncpg. See
ADR 0018.
"""
