"""Collector configuration: one YAML file + ``VLLM_OTEL_COLLECTOR_*`` environment overrides, validated by
pydantic-settings. Precedence: command-line flags > environment > YAML file > defaults.

The keys are flat (``grpc_listen``, ``batch_rows``, ...; unchanged for existing files and variables) plus the nested
``spool``, ``limits``, ``forward`` and ``analytics`` mappings; each component reads its own typed section, built from
those keys: :attr:`Config.receivers`, :attr:`Config.pipeline`, :attr:`Config.store`, :attr:`Config.api`,
``Config.spool``, ``Config.forward``, and one :class:`~vllm_otel_collector.otlp.base.Limits`.

Environment names are the field names upper-cased with the prefix, nested fields joined by ``__``
(``VLLM_OTEL_COLLECTOR_SPOOL__MAX_BYTES=1000000``). Secrets (``auth_token``, ``api_token``, the DSN) are
``SecretStr``/redacted and never logged; a ClickHouse password can also come from ``CLICKHOUSE_PASSWORD`` or
``CLICKHOUSE_PASSWORD_FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.otlp.base import Limits
from vllm_otel_collector.yamlfile import read_yaml


def default_data_dir() -> Path:
    """``$VLLM_OTEL_DATA_DIR`` or ``$XDG_DATA_HOME/vllm-otel`` (default ``~/.local/share/vllm-otel``)."""
    if os.environ.get("VLLM_OTEL_DATA_DIR"):
        return Path(os.environ["VLLM_OTEL_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vllm-otel"


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; port 0 picks a free port. Raises ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class SpoolConfig(BaseModel):
    model_config = {"extra": "forbid"}
    max_bytes: int = Field(1 << 30, gt=0, description="spool size cap, bytes; beyond it receivers push back")
    fsync: bool = Field(True, description="fsync each spooled request before acknowledging")


class _Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class ReceiversSection(_Section):
    """OTLP/gRPC and OTLP/HTTP receivers: listen addresses (None = off), gRPC handler threads, largest request
    (bytes), TLS ``(cert, key)`` paths, bearer token (secret)."""

    grpc_listen: str | None
    http_listen: str | None
    grpc_workers: int = Field(gt=0)
    max_message_bytes: int = Field(gt=0)
    tls: tuple[str, str] | None = None
    token: SecretStr | None = None


class PipelineSection(_Section):
    """Queue, batching, writer retry and shutdown (seconds), converter choice, size limits."""

    batch_rows: int = Field(gt=0)
    flush_interval_s: float = Field(gt=0, le=60)
    max_queue_rows: int = Field(gt=0)
    retry_max_wait_s: float = Field(gt=0)
    shutdown_timeout_s: float = Field(ge=0)
    native_converter: bool = True
    limits: Limits = Limits()


class StoreSection(_Section):
    """ClickHouse: DSN (secret), database, optional cluster, TTL in days (0 = none)."""

    dsn: SecretStr
    database: str
    cluster: str | None = None
    ttl_days: int = Field(0, ge=0)


class ApiSection(_Section):
    """Read API: listen address (None = off), TLS paths, bearer token (secret; falls back to the receivers')."""

    listen: str | None
    tls: tuple[str, str] | None = None
    token: SecretStr | None = None


class ForwardConfig(BaseModel):
    model_config = {"extra": "forbid"}
    endpoint: str | None = Field(None, description="OTLP/gRPC host:port to forward to (e.g. Jaeger 127.0.0.1:4317)")
    insecure: bool = True
    ca_file: str | None = None
    headers: dict[str, str] = {}
    signals: list[str] = ["traces"]
    max_queue: int = Field(10_000, gt=0)


class Config(BaseSettings):
    """Every collector setting (see module docstring for sources)."""

    model_config = SettingsConfigDict(env_prefix="VLLM_OTEL_COLLECTOR_", env_nested_delimiter="__",
                                      extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    clickhouse: SecretStr | None = Field(None, description="DSN; default chdb://<data_dir>/clickhouse")
    database: str = "otel"
    cluster: str | None = None
    ttl_days: int = Field(0, ge=0)
    grpc_listen: str | None = "127.0.0.1:4317"
    http_listen: str | None = "127.0.0.1:4318"
    api_listen: str | None = "127.0.0.1:4319"
    auth_token: SecretStr | None = None
    api_token: SecretStr | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = Field(16 << 20, gt=0)
    batch_rows: int = Field(20000, gt=0, description="flush at this many rows (each ClickHouse insert has a fixed "
                            "cost of milliseconds: a new part)")
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    max_queue_rows: int = Field(200_000, gt=0)
    retry_max_wait_s: float = Field(5.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, ge=0)
    grpc_workers: int = Field(8, gt=0)
    native_converter: bool = Field(True, description="convert trace requests with the C hot path when it is built "
                                   "(false: always the Python reference converter)")
    spool: SpoolConfig = SpoolConfig()
    limits: Limits = Limits()
    forward: ForwardConfig = ForwardConfig()
    analytics: dict[str, Any] = Field(default_factory=dict, description="passed to the analytics plug-in")
    load_analytics: bool = Field(True, description="load the analytics plug-in and apply its migrations (0100+)")

    @field_validator("grpc_listen", "http_listen", "api_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v in (None, "", "off"):
            return None
        parse_listen(v)
        return v

    @field_validator("database")
    @classmethod
    def _db(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c == "_" for c in v):
            raise ValueError("database must be letters, digits and _")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    # -- derived -------------------------------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The ClickHouse DSN (secret: do not log; use ``store.redact_dsn``)."""
        if self.clickhouse is not None:
            return self.clickhouse.get_secret_value()
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def tls(self) -> tuple[str, str] | None:
        if self.tls_cert and self.tls_key:
            return str(self.tls_cert), str(self.tls_key)
        return None

    @property
    def receivers(self) -> ReceiversSection:
        """The receivers' section."""
        return ReceiversSection(grpc_listen=self.grpc_listen, http_listen=self.http_listen,
                                grpc_workers=self.grpc_workers, max_message_bytes=self.max_message_bytes,
                                tls=self.tls, token=self.auth_token)

    @property
    def pipeline(self) -> PipelineSection:
        """The pipeline's section (queue, batching, retry, shutdown, converter, limits)."""
        return PipelineSection(batch_rows=self.batch_rows, flush_interval_s=self.flush_interval_s,
                               max_queue_rows=self.max_queue_rows, retry_max_wait_s=self.retry_max_wait_s,
                               shutdown_timeout_s=self.shutdown_timeout_s, native_converter=self.native_converter,
                               limits=self.limits)

    @property
    def store(self) -> StoreSection:
        """The store's section."""
        return StoreSection(dsn=SecretStr(self.dsn), database=self.database, cluster=self.cluster,
                            ttl_days=self.ttl_days)

    @property
    def api(self) -> ApiSection:
        """The read API's section."""
        return ApiSection(listen=self.api_listen, tls=self.tls, token=self.api_token or self.auth_token)

    def token(self, which: str) -> str | None:
        """Bearer token for ``"receivers"`` or ``"api"`` (the API falls back to ``auth_token``)."""
        secret = self.auth_token if which == "receivers" else (self.api_token or self.auth_token)
        return secret.get_secret_value() if secret else None


_YAML_PATH: list[Path | None] = [None]


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _YAML_PATH[0]
        if path is None:
            return {}
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping at the top level")
        return data.get("collector", data) if isinstance(data.get("collector"), dict) else data


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Build a :class:`Config` from ``path`` (YAML; a top-level ``collector:`` mapping is also accepted), the
    environment and ``overrides`` (None values ignored).

    Raises:
        UserError: unreadable file or invalid values (one line naming the field).
    """
    _YAML_PATH[0] = Path(path) if path else None
    if path and not Path(path).exists():
        raise UserError(f"config file {path} does not exist")
    try:
        cfg = Config(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise UserError(f"invalid collector setting {where}: {err['msg']}") from None
    finally:
        _YAML_PATH[0] = None
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise UserError("TLS needs both tls_cert and tls_key")
    return cfg

