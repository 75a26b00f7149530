-- The monitoring consumer's read positions in the payload and outcome logs.
-- Append-only like every table the loader role writes: each committed batch adds a row and
-- the latest row of a (consumer, source) is its position. Two consumers of one name racing
-- on one source collide on the primary key, and the loser's batch is rolled back whole.

CREATE TABLE consumer_checkpoint (
    consumer        VARCHAR NOT NULL,              -- consumer name, e.g. warehouse
    source          VARCHAR NOT NULL,              -- log read: payload@segments, outcomes@redis:vigie:outcomes
    checkpoint_seq  BIGINT NOT NULL,               -- 1, 2, ... per (consumer, source)
    position        VARCHAR NOT NULL,              -- offset of the last entry (or skipped line) processed
    entries         BIGINT NOT NULL,               -- log entries processed by the batch
    run_id          VARCHAR NOT NULL,              -- the ingest run
    committed_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, source, checkpoint_seq)
);

-- only: postgresql
GRANT SELECT, INSERT ON consumer_checkpoint TO vigie_loader;

-- only: postgresql
GRANT SELECT ON consumer_checkpoint TO vigie_reader;
