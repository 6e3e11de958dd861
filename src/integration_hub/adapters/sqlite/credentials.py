"""The CredentialStore and DataKeyStore ports on SQLite (``adapters/sql/credentials.py``)."""

from __future__ import annotations

from integration_hub.adapters.sql.credentials import SqlCredentials
from integration_hub.adapters.sql.flow import SyncRunner
from integration_hub.adapters.sqlite.database import SqliteDatabase


class SqliteCredentials(SqlCredentials):
    """Provider configuration per tenant, in the hub's database file."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SyncRunner(db))
        self.db = db
