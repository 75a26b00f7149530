"""Prometheus metrics of serving, shown on BentoML's ``/metrics`` (see ``docs/metrics.md``).

These are plain ``prometheus_client`` metrics. BentoML's arbiter starts every worker with
``PROMETHEUS_MULTIPROC_DIR`` already set, so ``prometheus_client`` writes them to that
folder and the ``/metrics`` route of any worker aggregates every worker's values with
BentoML's own. Outside a BentoML worker (tests, the command line) they live in the
process's default registry. Gauges say how workers combine (``multiprocess_mode``).

Defining a metric object does no I/O; values appear once something records them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Request latency buckets, in seconds (sub-millisecond to the 10 s request deadline).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)

#: Batch size buckets, in rows.
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

REQUESTS = Counter(
    "vigie_requests_total",
    "Prediction requests by protocol, model, version and outcome (success or error code).",
    ["protocol", "model", "version", "outcome"],
)
FAILURES = Counter(
    "vigie_request_failures_total",
    "Failed prediction requests by protocol, model and error code.",
    ["protocol", "model", "code"],
)
REQUEST_DURATION = Histogram(
    "vigie_request_duration_seconds",
    "Time from a decoded request to its result, as the front end saw it.",
    ["protocol", "model"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "vigie_queue_wait_seconds",
    "Time a request waited in its model version's batching queue.",
    ["model", "version"],
    buckets=LATENCY_BUCKETS,
)
COMPUTE = Histogram(
    "vigie_compute_seconds",
    "ONNX Runtime time of one batch.",
    ["model", "version"],
    buckets=LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram(
    "vigie_batch_rows",
    "Rows in each batch the adaptive batcher formed.",
    ["model", "version"],
    buckets=ROW_BUCKETS,
)
FEATURE_LOOKUP = Histogram(
    "vigie_feature_lookup_seconds",
    "Time to fill a request's missing inputs from the online feature store.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
ENRICHED_ROWS = Counter(
    "vigie_feature_enriched_rows_total",
    "Rows whose missing inputs the platform filled from the online feature store.",
    ["model"],
)
FEATURE_STALE_ROWS = Counter(
    "vigie_feature_stale_rows_total",
    "Rows served with a feature family missing because its newest event was older than the "
    "family's bound (stream, weather).",
    ["family"],
)
FEATURE_MISSING_VALUES = Counter(
    "vigie_feature_missing_values_total",
    "Values the online store could not give (served as missing), by feature.",
    ["feature"],
)
FEATURE_AGE = Histogram(
    "vigie_feature_age_seconds",
    "Age of the newest event behind each enriched request's features, by family.",
    ["family"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 86400),
)
BATCH_SPLITS = Counter(
    "vigie_batch_splits_total",
    "Batches whose model call failed and that were split in two and retried, so that only "
    "the requests that fail alone get an error.",
    ["model", "version"],
)
LOADED_VERSIONS = Gauge(
    "vigie_loaded_versions",
    "1 for each loaded model version and the alias it serves ('pinned' if none).",
    ["model", "version", "alias"],
    multiprocess_mode="livemax",
)
RELOADS = Counter(
    "vigie_reloads_total",
    "Hot reloads of a model (an alias moved) by outcome: success or failure.",
    ["model", "outcome"],
)
ROUTED = Counter(
    "vigie_routed_total",
    "Unversioned requests by route: production, canary (staging) or shadow (mirrored).",
    ["model", "route"],
)
PAYLOAD_LOG_WRITTEN = Counter(
    "vigie_payload_log_written_total", "Payload-log entries written to the sink."
)
PAYLOAD_LOG_DROPPED = Counter(
    "vigie_payload_log_dropped_total",
    "Payload-log entries dropped because the buffer was full or the entry was unusable.",
)
PAYLOAD_LOG_BUFFERED = Gauge(
    "vigie_payload_log_buffered",
    "Payload-log entries waiting in the buffer.",
    multiprocess_mode="livesum",
)
GRPC_IN_FLIGHT = Gauge(
    "vigie_grpc_in_flight", "gRPC calls being handled.", multiprocess_mode="livesum"
)
AUTH_FAILURES = Counter(
    "vigie_auth_failures_total",
    "Refused authentications by protocol and reason (missing, invalid, forbidden).",
    ["protocol", "reason"],
)


def count_failure(protocol: str, model: str, outcome: str, *, version: str = "") -> None:
    """Count one failed request, whichever edge or stage refused it (``model`` is already a
    bounded label: a served model's name or the unknown-model label)."""
    FAILURES.labels(protocol, model, outcome).inc()
    REQUESTS.labels(protocol, model, version, outcome).inc()


def count_auth_failure(protocol: str, *, forbidden: bool, token_given: bool) -> None:
    """Count one refused authentication: ``missing`` key, ``invalid`` key, or ``forbidden``
    (a valid key without the role)."""
    reason = "forbidden" if forbidden else "invalid" if token_given else "missing"
    AUTH_FAILURES.labels(protocol, reason).inc()
