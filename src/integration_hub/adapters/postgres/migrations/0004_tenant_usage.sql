-- Fixed-window counters for per-tenant rate limits and daily quotas.
CREATE TABLE tenant_usage (
    tenant       text COLLATE "C" NOT NULL,
    "window"     text NOT NULL,
    window_start double precision NOT NULL,
    count        integer NOT NULL,
    PRIMARY KEY (tenant, "window")
);
