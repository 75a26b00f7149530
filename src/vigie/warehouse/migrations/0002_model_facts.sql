-- Tables filled by serving and monitoring: model versions, predictions, outcomes (labels),
-- and least-privilege roles on PostgreSQL.

CREATE TABLE dim_model_version (
    model_version_key BIGINT PRIMARY KEY,          -- hash of (model_name, version)
    model_name        VARCHAR NOT NULL,
    version           VARCHAR NOT NULL,
    artifact_sha256   VARCHAR,
    snapshot_hash     VARCHAR,
    parent_version    VARCHAR,
    registered_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (model_name, version)
);

CREATE TABLE fact_prediction (
    prediction_id     VARCHAR PRIMARY KEY,         -- request id + row index
    model_version_key BIGINT NOT NULL,
    flight_key        BIGINT,                      -- null when the request named no known flight
    predicted_at      TIMESTAMPTZ NOT NULL,
    protocol          VARCHAR NOT NULL,            -- rest | v2-rest | v2-grpc
    route             VARCHAR NOT NULL,            -- production | canary | shadow
    prediction        DOUBLE PRECISION NOT NULL,
    features          VARCHAR NOT NULL,            -- JSON of the inputs, identifiers pseudonymised
    client_pseudonym  VARCHAR,
    latency_ms        DOUBLE PRECISION
);

CREATE INDEX ix_fact_prediction_time ON fact_prediction (predicted_at);
CREATE INDEX ix_fact_prediction_flight ON fact_prediction (flight_key);
CREATE INDEX ix_fact_prediction_version ON fact_prediction (model_version_key, predicted_at);

CREATE TABLE fact_outcome (
    flight_key        BIGINT PRIMARY KEY,          -- one label per flight
    observed_at       TIMESTAMPTZ NOT NULL,        -- when the label became known (arrival)
    arr_delay_min     INTEGER NOT NULL,
    is_delayed_15     BOOLEAN NOT NULL,
    source            VARCHAR NOT NULL
);

CREATE INDEX ix_fact_outcome_observed ON fact_outcome (observed_at);

-- only: postgresql
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigie_loader') THEN
        CREATE ROLE vigie_loader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigie_reader') THEN
        CREATE ROLE vigie_reader NOLOGIN;
    END IF;
END
$$;

-- only: postgresql
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO vigie_loader, vigie_reader', current_schema());
    EXECUTE format('GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA %I TO vigie_loader',
                   current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO vigie_reader', current_schema());
    EXECUTE format('REVOKE ALL ON schema_migrations FROM vigie_loader, vigie_reader');
    EXECUTE format('GRANT SELECT ON schema_migrations TO vigie_loader, vigie_reader');
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO vigie_reader',
                   current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT ON TABLES TO vigie_loader',
                   current_schema());
END
$$;
