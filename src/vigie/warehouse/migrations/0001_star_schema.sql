-- The flight star schema, lineage and quarantine.
-- Surrogate keys of dimensions are 63-bit hashes of the natural key (see docs/data-model.md):
-- deterministic on every backend, so re-runs and both engines agree; 0 is the unknown member.

CREATE TABLE dim_date (
    date_key      INTEGER PRIMARY KEY,          -- yyyymmdd
    full_date     DATE NOT NULL UNIQUE,
    year          SMALLINT NOT NULL,
    quarter       SMALLINT NOT NULL,
    month         SMALLINT NOT NULL,
    month_name    VARCHAR NOT NULL,
    day           SMALLINT NOT NULL,
    day_of_week   SMALLINT NOT NULL,            -- ISO: 1 = Monday
    day_of_year   SMALLINT NOT NULL,
    iso_week      SMALLINT NOT NULL,
    is_weekend    BOOLEAN NOT NULL
);

CREATE TABLE dim_carrier (
    carrier_key   BIGINT PRIMARY KEY,
    carrier_code  VARCHAR NOT NULL UNIQUE,
    carrier_name  VARCHAR,
    is_inferred   BOOLEAN NOT NULL DEFAULT FALSE,  -- referenced before its member arrived
    run_id        VARCHAR NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE dim_airport (
    airport_key   BIGINT PRIMARY KEY,
    faa_code      VARCHAR NOT NULL UNIQUE,
    airport_name  VARCHAR,
    latitude      DOUBLE PRECISION,
    longitude     DOUBLE PRECISION,
    altitude_ft   INTEGER,
    utc_offset_h  SMALLINT,
    dst_rule      VARCHAR,
    tz_name       VARCHAR,
    is_inferred   BOOLEAN NOT NULL DEFAULT FALSE,
    is_corrected  BOOLEAN NOT NULL DEFAULT FALSE,
    run_id        VARCHAR NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE dim_plane (
    plane_key     BIGINT PRIMARY KEY,
    tailnum_pseudonym VARCHAR NOT NULL UNIQUE,     -- keyed HMAC of tailnum, never the tailnum
    year_built    SMALLINT,
    plane_type    VARCHAR,
    manufacturer  VARCHAR,
    model         VARCHAR,
    engines       SMALLINT,
    seats         INTEGER,
    speed_mph     INTEGER,
    engine_type   VARCHAR,
    is_inferred   BOOLEAN NOT NULL DEFAULT FALSE,
    is_corrected  BOOLEAN NOT NULL DEFAULT FALSE,
    run_id        VARCHAR NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE dim_weather_hour (
    weather_key   BIGINT PRIMARY KEY,
    origin_code   VARCHAR NOT NULL,
    time_hour_utc TIMESTAMPTZ NOT NULL,
    local_date    DATE NOT NULL,
    local_hour    SMALLINT NOT NULL,
    temp_f        DOUBLE PRECISION,
    dewpoint_f    DOUBLE PRECISION,
    humidity_pct  DOUBLE PRECISION,
    wind_dir_deg  SMALLINT,
    wind_speed_mph DOUBLE PRECISION,
    wind_gust_mph DOUBLE PRECISION,
    precip_in     DOUBLE PRECISION,
    pressure_mb   DOUBLE PRECISION,
    visibility_mi DOUBLE PRECISION,
    is_corrected  BOOLEAN NOT NULL DEFAULT FALSE,
    run_id        VARCHAR NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (origin_code, time_hour_utc)
);

CREATE TABLE fact_flight (
    flight_key        BIGINT PRIMARY KEY,           -- hash of the natural key below
    flight_date       DATE NOT NULL,                -- local New York date of scheduled departure
    carrier_code      VARCHAR NOT NULL,
    flight_number     INTEGER NOT NULL,
    origin_code       VARCHAR NOT NULL,
    date_key          INTEGER NOT NULL,
    carrier_key       BIGINT NOT NULL,
    origin_airport_key BIGINT NOT NULL,
    dest_airport_key  BIGINT NOT NULL,
    plane_key         BIGINT NOT NULL,
    weather_key       BIGINT NOT NULL,
    dest_code         VARCHAR NOT NULL,
    sched_dep_local   TIMESTAMP NOT NULL,
    sched_dep_utc     TIMESTAMPTZ NOT NULL,
    sched_arr_local   TIMESTAMP,
    sched_arr_utc     TIMESTAMPTZ,
    dep_utc           TIMESTAMPTZ,
    arr_utc           TIMESTAMPTZ,
    dep_delay_min     INTEGER,
    arr_delay_min     INTEGER,
    air_time_min      INTEGER,
    distance_mi       INTEGER NOT NULL,
    flight_status     VARCHAR NOT NULL,             -- arrived | cancelled | diverted
    is_delayed_15     BOOLEAN,                      -- arrived more than 15 minutes late
    is_corrected      BOOLEAN NOT NULL DEFAULT FALSE,
    corrections       VARCHAR,
    run_id            VARCHAR NOT NULL,
    loaded_at         TIMESTAMPTZ NOT NULL
);

CREATE INDEX ix_fact_flight_sched_dep_utc ON fact_flight (sched_dep_utc);
CREATE INDEX ix_fact_flight_date_key ON fact_flight (date_key);
CREATE INDEX ix_fact_flight_natural ON fact_flight (flight_date, carrier_code, flight_number, origin_code);

-- only: postgresql
ALTER TABLE fact_flight
    ADD CONSTRAINT fk_flight_date FOREIGN KEY (date_key) REFERENCES dim_date (date_key),
    ADD CONSTRAINT fk_flight_carrier FOREIGN KEY (carrier_key) REFERENCES dim_carrier (carrier_key),
    ADD CONSTRAINT fk_flight_origin FOREIGN KEY (origin_airport_key) REFERENCES dim_airport (airport_key),
    ADD CONSTRAINT fk_flight_dest FOREIGN KEY (dest_airport_key) REFERENCES dim_airport (airport_key),
    ADD CONSTRAINT fk_flight_plane FOREIGN KEY (plane_key) REFERENCES dim_plane (plane_key),
    ADD CONSTRAINT fk_flight_weather FOREIGN KEY (weather_key) REFERENCES dim_weather_hour (weather_key);

CREATE TABLE pipeline_run (
    run_id        VARCHAR PRIMARY KEY,
    pipeline      VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,               -- running | success | failed
    actor         VARCHAR NOT NULL,
    code_version  VARCHAR NOT NULL,
    window_from   DATE,
    window_to     DATE,
    input_hashes  VARCHAR NOT NULL,               -- JSON: partition -> sha256
    policy_hash   VARCHAR NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    duration_s    DOUBLE PRECISION,
    error         VARCHAR
);

CREATE TABLE pipeline_run_table (
    run_id           VARCHAR NOT NULL,
    table_name       VARCHAR NOT NULL,
    rows_in          BIGINT NOT NULL,
    rows_loaded      BIGINT NOT NULL,
    rows_inserted    BIGINT NOT NULL,
    rows_corrected   BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    PRIMARY KEY (run_id, table_name)
);

CREATE TABLE quarantine (
    quarantine_id   BIGINT PRIMARY KEY,           -- hash of (source_table, partition, row, checks)
    source_table    VARCHAR NOT NULL,
    record_key      VARCHAR NOT NULL,             -- natural key, or the source row number
    source_partition VARCHAR NOT NULL,
    checks          VARCHAR NOT NULL,             -- comma-separated failed check names
    reasons         VARCHAR NOT NULL,             -- JSON list of {check, column, message}
    record          VARCHAR NOT NULL,             -- JSON of the record, identifiers pseudonymised
    run_id          VARCHAR NOT NULL,
    quarantined_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX ix_quarantine_table ON quarantine (source_table, run_id);
