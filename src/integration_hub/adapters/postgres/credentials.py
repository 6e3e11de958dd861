"""The CredentialStore and DataKeyStore ports on PostgreSQL (``adapters/sql/credentials.py``)."""

from __future__ import annotations

from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql.credentials import SqlCredentials
from integration_hub.adapters.sql.flow import AsyncRunner


class PostgresCredentials(SqlCredentials):
    """Provider configuration and wrapped data keys per tenant, in the hub's database."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(AsyncRunner(db))
        self.db = db
