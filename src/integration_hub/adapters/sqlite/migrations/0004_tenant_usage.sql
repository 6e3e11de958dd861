-- Fixed-window counters for per-tenant rate limits and daily quotas.
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant       TEXT NOT NULL,
    window       TEXT NOT NULL,
    window_start REAL NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (tenant, window)
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (4, (julianday('now') - 2440587.5) * 86400.0);
