"""Server settings from environment variables (`LOBBYWATCH_*`), refusing default secrets outside dev mode."""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lobbywatch.validation import refuse

# Values that must never protect a production deployment (copied from examples and tutorials).
KNOWN_DEFAULTS = frozenset({"", "changeme", "change-me", "secret", "password", "admin", "lobbywatch", "token"})
MIN_SECRET_LENGTH = 16


# Settings that were taken away, and what replaces them: set, they stop the server rather than being silently
# ignored. (Why each went is in docs/upgrading.md: an MQTT shared subscription spread one device's messages and one
# branch's rules over several servers, making false gaps and split alerts.)
REMOVED = {"LOBBYWATCH_MQTT_SHARED_GROUP": "`lobbywatch forward` + `lobbywatch worker` (docs/scale.md)"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOBBYWATCH_", extra="forbid", frozen=True)

    mode: Literal["dev", "prod"] = Field("prod", description="dev allows anonymous access and default secrets")
    database_url: str = Field("sqlite:///lobbywatch.sqlite3", description="registry and alerts (SQLAlchemy URL)")
    site_file: Path | None = Field(None, description="site config (YAML) imported into the registry at start")

    storage: Literal["sqlite", "influxdb"] = Field("sqlite", description="where time series go")
    timeseries_path: Path = Field(Path("timeseries.sqlite3"), description="SQLite time-series file")
    influx_url: str = Field("http://127.0.0.1:8086", description="InfluxDB 2 URL")
    influx_org: str = Field("lobbywatch")
    influx_bucket: str = Field("lobbywatch")
    influx_token: SecretStr | None = None
    spool_path: Path = Field(Path("influx-spool.sqlite3"), description="points InfluxDB refused, kept for retry")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_username: str | None = "lobbywatch-server"
    mqtt_password: SecretStr | None = None
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_client_id: str = Field("lobbywatch-ingest-1", description="unique per ingest worker; keeps its session")

    nats_url: str | None = Field(
        None,
        description="NATS servers with JetStream, comma-separated, for `lobbywatch forward` and `worker` (the "
        "scale-out, docs/scale.md); `serve` without it runs everything in one process",
    )
    nats_user: str | None = Field(
        None,
        description="the NATS user; unset: `forwarder` for `lobbywatch forward`, `worker` for `lobbywatch worker` "
        "(their rights: deploy/nats/permissions.conf)",
    )
    nats_password: SecretStr | None = None
    nats_ca_file: Path | None = Field(None, description="CA of the NATS servers' TLS certificates (tls:// URLs)")
    nats_partitions: int = Field(64, ge=1, le=1024, description="partitions of the stream, fixed when it is made")
    nats_replicas: int = Field(3, ge=1, le=5, description="copies of the stream (3 in production)")
    heartbeat_file: Path | None = Field(
        None, description="a forwarder or worker touches this file every 5 s while connected (containers' health check)"
    )

    mqtt_admin_username: str | None = Field(
        None, description="the broker's dynamic-security administrator; unset: no enrollment, no revocation"
    )
    mqtt_admin_password: SecretStr | None = None
    broker_public_host: str = Field("mqtt.lobbywatch.example", description="the broker as devices reach it")
    broker_public_port: int = Field(8883, description="devices connect here (8883: MQTT over TLS)")
    broker_public_tls: bool = True
    broker_ca_file: Path | None = Field(None, description="CA certificate handed to enrolled devices (PEM)")
    enroll_ttl_h: float = Field(72.0, gt=0, le=24 * 30, description="how long an enrollment token works")

    ts_max_age_days: float = Field(
        35.0, gt=0, le=3650, description="device timestamps older than this are refused (and kept as dead letters)"
    )
    ts_max_ahead_s: float = Field(
        3600.0, gt=0, le=86400 * 7, description="device timestamps further ahead of the server's clock are refused"
    )

    ingest_stall_s: float = Field(
        30.0, gt=0, description="messages waiting this long without a batch stored: /health says degraded"
    )

    resend_after_s: float = Field(10.0, gt=0, description="a sequence gap open this long is asked of the device")
    resend_retry_s: float = Field(60.0, gt=0, description="and asked again this often while it stays open")

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str = Field("http://127.0.0.1:8000", description="base of links in notifications")
    grafana_url: str | None = Field(None, description="base of dashboard links in notifications")
    api_token: SecretStr | None = Field(None, description="bearer token for the API (required outside dev mode)")
    webhook_url: str | None = Field(None, description="alerts are POSTed here as JSON")
    link_secret: SecretStr | None = Field(None, description="signs one-tap acknowledgement links (required in prod)")
    link_ttl_h: float = Field(24.0, gt=0, description="how long an acknowledgement link works")
    group_wait_s: float = Field(
        15.0,
        ge=0,
        le=300,
        description="a non-critical notice waits this long for others of its branch, to go as "
        "one message (critical ones never wait)",
    )
    group_interval_s: float = Field(
        60.0, ge=0, description="a person gets at most one message per branch this often; the rest are grouped"
    )
    report_send_at: time = Field(
        time(7, 30),
        description="local time at which yesterday's report (and on Mondays last week's) goes to "
        "the branch managers; before opening",
    )
    reports_by_mail: bool = Field(True, description="send the scheduled reports at all")
    admin_locale: Literal["zh-CN", "en"] = Field("zh-CN", description="language of the administrators' messages")
    admin_notify_urls: list[str] = Field(
        default_factory=list, description="apprise URLs of the administrators, told when a channel keeps failing"
    )

    def broker_names(self) -> frozenset[str]:
        """The server's own names at the broker: no device may be enrolled under one of them."""
        return frozenset(n for n in (self.mqtt_username, self.mqtt_admin_username, self.mqtt_client_id) if n)

    @model_validator(mode="after")
    def _none_removed(self) -> Settings:
        set_now = sorted(name for name in REMOVED if name in os.environ)
        if set_now:
            raise refuse("settings_removed", names=set_now, instead="; ".join(REMOVED[name] for name in set_now))
        return self

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        if self.mode == "dev":
            return self
        weak = [
            name
            for name, needed, secret in (
                ("LOBBYWATCH_API_TOKEN", True, self.api_token),
                ("LOBBYWATCH_MQTT_PASSWORD", bool(self.mqtt_username), self.mqtt_password),
                ("LOBBYWATCH_LINK_SECRET", True, self.link_secret),
                ("LOBBYWATCH_MQTT_ADMIN_PASSWORD", bool(self.mqtt_admin_username), self.mqtt_admin_password),
                ("LOBBYWATCH_NATS_PASSWORD", bool(self.nats_url), self.nats_password),
                ("LOBBYWATCH_INFLUX_TOKEN", self.storage == "influxdb", self.influx_token),
            )
            if needed and not _strong(secret)
        ]
        if weak:
            raise refuse("weak_secrets", names=weak, length=MIN_SECRET_LENGTH)
        return self


def _strong(secret: SecretStr | None) -> bool:
    if secret is None:
        return False
    value = secret.get_secret_value()
    return value.lower() not in KNOWN_DEFAULTS and len(value) >= MIN_SECRET_LENGTH
