"""The drift sidecar's Prometheus metrics (served at ``/metrics`` on port 3001).

One :class:`SidecarMetrics` per sidecar, on its own registry (the sidecar is a single
process, so no multiprocess collection is needed). Names are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

#: Prediction quantiles exported per version.
QUANTILES = ("0.5", "0.9", "0.99")

_VERSION = ("model", "version")


class SidecarMetrics:
    """Gauges and counters of one drift sidecar."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.share_drifted = Gauge(
            "vigie_drift_share_drifted_features",
            "Share of monitored features that drifted in the latest window",
            _VERSION,
            registry=r,
        )
        self.feature_score = Gauge(
            "vigie_drift_feature_score",
            "Drift score of each feature in the latest window (its stattest's statistic)",
            (*_VERSION, "feature", "stattest"),
            registry=r,
        )
        self.feature_drifted = Gauge(
            "vigie_drift_feature_drifted",
            "1 when the feature drifted in the latest window",
            (*_VERSION, "feature"),
            registry=r,
        )
        self.drift_detected = Gauge(
            "vigie_drift_detected",
            "1 when the latest window has dataset drift",
            _VERSION,
            registry=r,
        )
        self.consecutive = Gauge(
            "vigie_drift_consecutive_windows",
            "Consecutive windows with dataset drift, up to the latest",
            _VERSION,
            registry=r,
        )
        self.prediction_mean = Gauge(
            "vigie_prediction_mean", "Mean model output in the latest window", _VERSION, registry=r
        )
        self.prediction_quantile = Gauge(
            "vigie_prediction_quantile",
            "Quantiles of the model output in the latest window",
            (*_VERSION, "quantile"),
            registry=r,
        )
        self.prediction_drift_score = Gauge(
            "vigie_prediction_drift_score",
            "Drift score of the model output against its output on the reference sample",
            _VERSION,
            registry=r,
        )
        self.prediction_drift = Gauge(
            "vigie_prediction_drift_detected",
            "1 when the model output drifted in the latest window",
            _VERSION,
            registry=r,
        )
        self.quality = Gauge(
            "vigie_model_quality",
            "Quality on the latest window with enough labels (roc_auc, brier, mae, ...)",
            (*_VERSION, "metric"),
            registry=r,
        )
        self.quality_gate = Gauge(
            "vigie_model_quality_gate",
            "The spec's quality gate threshold (bound: min or max)",
            ("model", "metric", "bound"),
            registry=r,
        )
        self.label_coverage = Gauge(
            "vigie_label_coverage",
            "Share of rows with their label, in the newest window older than the label delay",
            _VERSION,
            registry=r,
        )
        self.window_lag = Gauge(
            "vigie_window_lag_seconds",
            "Seconds between now and the newest prediction analysed",
            _VERSION,
            registry=r,
        )
        self.window_rows = Gauge(
            "vigie_window_rows", "Rows in the latest analysed window", _VERSION, registry=r
        )
        self.windows = Counter("vigie_windows_analysed", "Windows analysed", _VERSION, registry=r)
        self.rows = Counter("vigie_rows_analysed", "Rows analysed", _VERSION, registry=r)
        self.last_analysis = Gauge(
            "vigie_sidecar_last_analysis_timestamp_seconds",
            "Unix time of the last window analysis",
            registry=r,
        )
        self.last_poll = Gauge(
            "vigie_sidecar_last_poll_timestamp_seconds",
            "Unix time of the last successful read of the payload log and outcomes",
            registry=r,
        )
        self.bad_input = Counter(
            "vigie_sidecar_bad_input",
            "Bad input counted and skipped, by kind",
            ("kind",),
            registry=r,
        )
        self.retraining_requests = Counter(
            "vigie_retraining_requests", "Retraining requests emitted", ("model",), registry=r
        )
        self.entries_read = Counter(
            "vigie_sidecar_payload_entries_read", "Payload-log entries read", registry=r
        )
        self.outcomes_read = Counter(
            "vigie_sidecar_outcomes_read", "Outcome events read", registry=r
        )
        self.reports = Counter(
            "vigie_sidecar_reports",
            "Evidently reports published, by outcome",
            ("outcome",),
            registry=r,
        )
        self.read_errors = Counter(
            "vigie_sidecar_read_errors",
            "Failed reads of the payload log or the outcomes (source down)",
            ("source",),
            registry=r,
        )

    def record_window(self, result: Mapping[str, Any], *, count: bool = True) -> None:
        """Set the per-version gauges from one analysed window's result.

        Args:
            result: The window's result.
            count: Also count the window and its rows (False when restoring the gauges of
                windows analysed before a restart).
        """
        labels = (result["model"], result["version"])
        drift = result["drift"]
        self.share_drifted.labels(*labels).set(drift["share_drifted"])
        self.drift_detected.labels(*labels).set(1.0 if drift["dataset_drift"] else 0.0)
        for feature in drift["features"]:
            if feature["score"] is not None:  # None: no value at all in the window
                self.feature_score.labels(*labels, feature["name"], feature["stattest"]).set(
                    feature["score"]
                )
            self.feature_drifted.labels(*labels, feature["name"]).set(
                1.0 if feature["drifted"] else 0.0
            )
        self.consecutive.labels(*labels).set(result["consecutive_drift"])
        prediction = result["prediction"]
        if prediction["mean"] is not None:
            self.prediction_mean.labels(*labels).set(prediction["mean"])
        for quantile, value in prediction["quantiles"].items():
            if value is not None:
                self.prediction_quantile.labels(*labels, quantile).set(value)
        if prediction["drift"]["score"] is not None:
            self.prediction_drift_score.labels(*labels).set(prediction["drift"]["score"])
        self.prediction_drift.labels(*labels).set(1.0 if prediction["drift"]["drifted"] else 0.0)
        self.window_rows.labels(*labels).set(result["rows"])
        if count:
            self.windows.labels(*labels).inc()
            self.rows.labels(*labels).inc(result["rows"])

    def record_quality(self, result: Mapping[str, Any]) -> None:
        """Set the quality gauges from a window whose labels have (partly) arrived."""
        quality = result.get("quality")
        if not quality:
            return
        labels = (result["model"], result["version"])
        for metric, value in quality["metrics"].items():
            self.quality.labels(*labels, metric).set(value)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
