-- DuckDB answers time-window and calendar-day filters on fact_flight with sequential scans
-- pruned by its automatic min-max zone maps, not with ART indexes: EXPLAIN on DuckDB 1.5
-- shows a SEQ_SCAN for `sched_dep_utc` ranges and even for `date_key = <day>` with both
-- indexes present. They only cost: maintaining them was a third of a full-year load
-- (insert and commit of 336,776 facts: 0.88 s with them, 0.57 s without). PostgreSQL
-- keeps both (its planner uses them for the same queries). The primary key and the
-- natural-key index stay on both engines: they serve point lookups.

-- only: duckdb
DROP INDEX IF EXISTS ix_fact_flight_sched_dep_utc;

-- only: duckdb
DROP INDEX IF EXISTS ix_fact_flight_date_key;
