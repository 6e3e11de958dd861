-- One data key per tenant, stored only wrapped by the master key ring.
CREATE TABLE tenant_data_keys (
    tenant      text COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
    wrapped     bytea NOT NULL,
    created_at  double precision NOT NULL,
    rotated_at  double precision
);
