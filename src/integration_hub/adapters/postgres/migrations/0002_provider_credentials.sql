-- Per-tenant provider configuration (credentials included), as on SQLite.
-- Stored as JSON text; envelope encryption at rest replaces the column's
-- content later without changing the CredentialStore port.
CREATE TABLE provider_credentials (
    tenant     text COLLATE "C" NOT NULL REFERENCES tenants (id),
    provider   text COLLATE "C" NOT NULL,
    config     text NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant, provider)
);
