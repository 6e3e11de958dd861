"""The embedded backend: store, queue and outbox in one SQLite file (WAL)."""
