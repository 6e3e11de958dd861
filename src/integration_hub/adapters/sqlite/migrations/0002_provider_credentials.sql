-- Per-tenant provider configuration (credentials included). Stored as JSON
-- here; envelope encryption at rest replaces the column's content later
-- without changing the CredentialStore port.
CREATE TABLE IF NOT EXISTS provider_credentials (
    tenant     TEXT NOT NULL REFERENCES tenants(id),
    provider   TEXT NOT NULL,
    config     TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, provider)
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (2, (julianday('now') - 2440587.5) * 86400.0);
