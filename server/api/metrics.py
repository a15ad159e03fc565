"""/metrics in Prometheus' text format: what the server says of itself (`Runtime.status()`) and the open alerts,
read when Prometheus scrapes, so the ingest carries no metrics code of its own."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from server.api.deps import RuntimeDep, roles
from server.runtime import Runtime

metrics = APIRouter()

STATES = ("firing", "acknowledged")
SEVERITIES = ("critical", "warning", "info")


class RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        status = self._runtime.status()
        yield CounterMetricFamily("lobbywatch_messages_received", "MQTT messages taken in", value=status.received)
        yield CounterMetricFamily("lobbywatch_points_stored", "time-series points written", value=status.stored_points)
        refused = CounterMetricFamily("lobbywatch_messages_refused", "messages refused, by cause", labels=["cause"])
        for cause, count in sorted(status.refused.items()):
            refused.add_metric([cause], count)
        yield refused
        yield CounterMetricFamily(
            "lobbywatch_messages_duplicate", "messages dropped as already seen", value=status.duplicates
        )
        yield GaugeMetricFamily(
            "lobbywatch_ingest_backlog", "messages received and waiting to be processed", value=status.ingest_backlog
        )
        yield GaugeMetricFamily(
            "lobbywatch_ingest_stalled_seconds",
            "how long the ingest has not advanced with work waiting",
            value=status.stalled_s,
        )
        yield GaugeMetricFamily(
            "lobbywatch_broker_connected", "1 while connected to the MQTT broker", value=int(status.broker_connected)
        )
        buckets, total = status.store_seconds
        yield HistogramMetricFamily(
            "lobbywatch_store_write_seconds",
            "time of each time-series write that went through",
            buckets=[("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in buckets],
            sum_value=total,
        )
        alerts = GaugeMetricFamily(
            "lobbywatch_alerts_open", "open alerts, by state and severity", labels=["state", "severity"]
        )
        found = self._runtime.alert_views.open_by_state()
        for state in STATES:
            for severity in SEVERITIES:
                alerts.add_metric([state, severity], found.get((state, severity), 0))
        yield alerts
        failed = CounterMetricFamily(
            "lobbywatch_notifications_failed", "notices not delivered after every retry, by channel", labels=["channel"]
        )
        for channel, count in sorted(status.notifications_failed_by_channel.items()):
            failed.add_metric([channel], count)
        yield failed
        yield CounterMetricFamily(
            "lobbywatch_notifications_delivered", "notices delivered", value=status.notifications_delivered
        )
        yield GaugeMetricFamily("lobbywatch_devices_online", "devices connected now", value=status.devices_online)
        yield GaugeMetricFamily(
            "lobbywatch_devices_known", "devices the ingest has heard of", value=status.devices_known
        )


@metrics.get(
    "/metrics",
    include_in_schema=False,
    dependencies=[roles("administrator", "technician")],
)
def scrape(runtime: RuntimeDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
