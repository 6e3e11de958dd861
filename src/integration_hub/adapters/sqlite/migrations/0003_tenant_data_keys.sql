-- One data key per tenant, stored only wrapped by the master key ring.
CREATE TABLE IF NOT EXISTS tenant_data_keys (
    tenant      TEXT PRIMARY KEY REFERENCES tenants(id),
    wrapped     BLOB NOT NULL,
    created_at  REAL NOT NULL,
    rotated_at  REAL
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (3, (julianday('now') - 2440587.5) * 86400.0);
