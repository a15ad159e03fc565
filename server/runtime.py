"""The composition root: the server's parts wired together from settings, the one wiring used by `serve`, the
demo, the replay, the benchmarks and the tests.

A replay runs it `synchronous` on a simulated clock: the same parts, with the two thread hand-offs (the alert
writer and the delivery queue) replaced by direct calls, so that simulated time stays deterministic.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from lobbywatch.clock import Clock, SystemClock
from lobbywatch.i18n import t
from server.alerts.service import AlertService
from server.alerts.views import AlertViews
from server.alerts.worker import AlertWorker
from server.commands import DeviceCommands
from server.delivery.notify import Channel, Delivered, Dispatcher, LogChannel, Notice, WebhookChannel
from server.delivery.people import Sender, ack_links, people_channel
from server.fleet import Fleet
from server.ingest.dead_letters import DeadLetters
from server.ingest.mqtt_source import MqttSettings, MqttSource, Received
from server.ingest.pipeline import Pipeline
from server.ingest.rejects import Rejects
from server.ingest.repair import GapRepair, ResendRequest
from server.ingest.worker import IngestWorker
from server.live import LiveState
from server.provisioning.broker_admin import BrokerAdmin, BrokerRefused, BrokerUnreachable, admin_of
from server.registry.database import make_engine, make_sessions
from server.registry.directory import Directory
from server.registry.site import import_site, load_site
from server.reports.mailer import ReportMailer
from server.rules.calls import RULE as CALL_RULE
from server.settings import Settings
from server.status import ServerStatus
from server.storage.base import TimeSeriesStore

log = logging.getLogger(__name__)


def make_store(settings: Settings, dead_letters: DeadLetters | None = None, *, spooled: bool = True) -> TimeSeriesStore:
    """`spooled`: InfluxDB's points go through a local spool on disk (False: straight to InfluxDB, see
    `server.storage.influx_store`)."""
    if settings.storage == "influxdb":
        from server.storage.influx_store import InfluxStore

        def set_aside(line: str, reason: str) -> None:
            if dead_letters is not None:
                dead_letters.add("storage_refused", None, "influxdb", reason, line.encode())

        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        return InfluxStore(
            settings.influx_url,
            token,
            settings.influx_org,
            settings.influx_bucket,
            settings.spool_path if spooled else None,
            set_aside=set_aside,
        )
    from server.storage.sqlite_store import SqliteStore

    return SqliteStore(settings.timeseries_path)


class Runtime:
    pipeline_type: type[Pipeline] = Pipeline
    shares_live = False  # a scale-out worker: its live state's changes are shared with the API processes
    spools_points = True  # InfluxDB's points through a local spool (a worker: none, JetStream holds them)

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        channels: Sequence[Channel] | None = None,
        *,
        synchronous: bool = False,
        sender: Sender | None = None,
        hearing: Callable[[], bool] | None = None,
        store: TimeSeriesStore | None = None,
        receive: bool = True,
    ):
        """`channels`: where notices go (default: the log, the webhook if set, the people); `sender`: sends the
        people's messages (default: Apprise); `hearing`: whether the server hears the broker (default: its MQTT
        connection); `store`: the time-series store (default: from the settings); `receive`: take devices'
        messages from the MQTT broker (False: a scale-out worker, whose messages come from JetStream)."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.synchronous = synchronous
        # every event a person might follow (alerts' changes, calls answered, the broker lost and back)
        self.observers: list[Callable[[dict[str, object]], None]] = []
        self.on_notice: Callable[[Notice], None] | None = None  # each notice as it is made (synchronous only)
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessions(self.engine)
        if settings.site_file is not None:
            with self.sessions() as session:
                import_site(session, load_site(settings.site_file))
        self.directory = Directory(self.sessions)
        self.broker_admin: BrokerAdmin | None = admin_of(settings)
        self.dead_letters = DeadLetters(self.sessions, self.clock)
        self.store = store or make_store(settings, self.dead_letters, spooled=self.spools_points)
        secret = settings.link_secret.get_secret_value() if settings.link_secret else secrets.token_hex(32)
        self.link_secret = secret.encode()  # in dev mode without one: random, links die with the process
        self.ack_link = ack_links(self.clock, settings.public_url, settings.link_ttl_h, self.link_secret)
        self.people = people = people_channel(
            self.directory,
            self.clock,
            self.ack_link,
            admin_urls=settings.admin_notify_urls,
            group_wait_s=settings.group_wait_s,
            group_interval_s=settings.group_interval_s,
            sender=sender,
        )
        if channels is None:
            channels = [LogChannel()]
            if settings.webhook_url:
                channels.append(WebhookChannel(settings.webhook_url))
            channels.append(people)
        # synchronous: a failed delivery is retried at once, not after a wait of the real clock
        self.dispatcher = Dispatcher(
            channels, self._delivered, sleep=(lambda _s: False) if synchronous else None, now=self.clock.now
        )
        self.alerts = AlertService(
            self.sessions,
            self._deliver_now if synchronous else self.dispatcher.submit,
            settings.public_url,
            self.clock,
            settings.grafana_url,
            on_event=self._alert_event,
        )
        self.alert_worker = AlertWorker(self.alerts)
        self.alert_views = AlertViews(self.sessions)
        self.live = LiveState(track=self.shares_live)
        self.rejects = Rejects()
        self._hearing = hearing or self.source_connected
        self.pipeline = self.make_pipeline()
        self.mailer = ReportMailer(
            store=self.store,
            sessions=self.sessions,
            branches=lambda: list(self.directory.branches.values()),
            contacts=self.directory.contacts_of,
            send=people.send,
            clock=self.clock,
            public_url=settings.public_url,
            send_at=settings.report_send_at,
        )
        self.worker = IngestWorker(self.pipeline, self._ack, ask_resend=self._ask_resend)
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        self.source = MqttSource(
            MqttSettings(
                host=settings.mqtt_host,
                port=settings.mqtt_port,
                client_id=settings.mqtt_client_id,
                username=settings.mqtt_username,
                password=password,
                tls=settings.mqtt_tls,
                ca_file=settings.mqtt_ca_file,
                protocol=settings.mqtt_protocol,
                receive=receive,
            ),
            self.worker.put,
        )
        self.commands = DeviceCommands(self.source.publish)
        self.fleet = Fleet(self.sessions, self.directory, self.live, self.commands, self.clock)

    def pipeline_options(self) -> dict[str, Any]:
        """What a kind of runtime adds to the pipeline's wiring (a scale-out worker: its partitions)."""
        return {}

    def make_pipeline(self) -> Pipeline:
        """The ingest as a server starts it: its branches' state from what the registry holds."""
        pipeline = self.pipeline_type(
            directory=self.directory,
            store=self.store,
            alerts=self.alerts if self.synchronous else self.alert_worker,
            live=self.live,
            rejects=self.rejects,
            sessions=self.sessions,
            clock=self.clock,
            repair=GapRepair(self.settings.resend_after_s, self.settings.resend_retry_s),
            dead_letters=self.dead_letters,
            max_age_s=self.settings.ts_max_age_days * 86400,
            max_ahead_s=self.settings.ts_max_ahead_s,
            hearing=self._hearing,
            **self.pipeline_options(),
        )
        pipeline.broker.on_system = self._system
        pipeline.on_call = self._observe
        return pipeline

    def status(self) -> ServerStatus:
        stats, pipeline = self.pipeline.stats, self.pipeline
        online, known, missing = self.live.device_counts()
        return ServerStatus(
            broker_connected=self.source.connected.is_set(),
            stalled_s=self.worker.stalled_s(),
            ingest_backlog=self.worker.backlog(),
            ingest_backlog_peak=self.worker.peak_backlog,
            in_flight=self.worker.in_flight,
            alert_backlog=self.alert_worker.backlog(),
            received=stats.received,
            stored_points=stats.stored_points,
            duplicates=stats.duplicates,
            late=stats.late,
            missing=missing,
            resend_requests=pipeline.repair.requests,
            internal_errors=stats.internal_errors,
            store_refused=stats.store_refused,
            last_store_error=stats.last_store_error,
            last_registry_error=stats.last_registry_error,
            dead_letters_not_kept=pipeline.dead_letters.not_kept,
            notifications_delivered=self.dispatcher.delivered,
            notifications_failed=self.dispatcher.failed,
            refused=self.rejects.snapshot(),
            notifications_failed_by_channel=dict(self.dispatcher.failed_by_channel),
            devices_online=online,
            devices_known=known,
            store_seconds=stats.store_seconds.snapshot(),
            lag_ms=pipeline.lag.percentiles(50, 99),
            storage=self.store.health(),
        )

    def restarted(self) -> None:
        """A simulated restart of the server process (the replay's): what lived in memory is gone, the ingest
        starts again from the registry."""
        self.live = LiveState()
        self.pipeline = self.make_pipeline()
        self.fleet = Fleet(self.sessions, self.directory, self.live, self.commands, self.clock)
        self.worker = IngestWorker(self.pipeline, self._ack, ask_resend=self._ask_resend)

    def _observe(self, event: dict[str, object]) -> None:
        for observer in self.observers:
            observer(event)

    def _deliver_now(self, notice: Notice) -> None:
        if self.on_notice is not None:
            self.on_notice(notice)
        self.dispatcher.deliver_now(notice)

    def _delivered(self, outcomes: Sequence[Delivered]) -> None:
        self.alerts.record_deliveries(outcomes)

    def _alert_event(self, event: dict[str, object]) -> None:
        self._observe(event)
        self.people_acted(event)

    def people_acted(self, event: dict[str, object]) -> None:
        """A call acknowledged: the call is answered (the rules take its response time) and the button's LED
        says help is coming; resolved by hand: it goes off."""
        self.pipeline.alert_event(event)
        device = event.get("device")
        if event.get("rule") != CALL_RULE or not isinstance(device, str):
            return
        state = {"acknowledged": "help_coming", "resolved": "off"}.get(str(event.get("event")))
        if state is None:
            return
        self.commands.send(device, "indicate", {"button": str(event["subject"]), "state": state})

    def registry_changed(self) -> None:
        """Devices were enrolled, replaced or revoked here: read the registry again (and, scaled out, tell the
        other processes)."""
        self.directory.reload()

    def source_connected(self) -> bool:
        return self.source.connected.is_set()  # the source is made after the pipeline: looked up when asked

    def _system(self, event: dict[str, object]) -> None:
        """The server's own broker connection lost for a while, and back: one message to the administrators
        (not one alert per device, whose wills the broker sent as it stopped)."""
        self._observe(event)
        if event["event"] == "broker_down":
            log.error(
                "the MQTT broker has been unreachable for %s s; devices are not judged offline meanwhile",
                event["down_s"],
            )
        else:
            log.warning("the MQTT broker is reachable again after %s s", event["down_s"])
        locale = self.settings.admin_locale
        self.people.tell_admins(
            t(locale, f"system.{event['event']}.title"), t(locale, f"system.{event['event']}.body", **event)
        )

    def _ask_resend(self, request: ResendRequest) -> None:
        sent = self.commands.send(request.device, "resend", {"stream": request.stream, "ranges": request.ranges})
        missing = sum(last - first + 1 for first, last in request.ranges)
        log.info("asking %s to resend %d missing messages (%s)", request.device, missing, sent)

    def _ack(self, batch: Sequence[Received]) -> None:
        self.source.ack(batch)

    def start(self) -> None:
        password = self.settings.mqtt_password
        if self.broker_admin is not None and self.settings.mqtt_username and password is not None:
            try:
                self.broker_admin.ensure_server(
                    self.settings.mqtt_username, password.get_secret_value(), self.settings.mqtt_client_id
                )
            except (BrokerUnreachable, BrokerRefused) as exc:  # the ingest retries its connection and says so
                log.error("could not check the server's broker identity: %s", exc)
        self.dispatcher.start()
        self.alert_worker.start()
        self.worker.start()
        if self.settings.reports_by_mail:
            self.mailer.start()
        self.source.start()

    def stop(self) -> None:
        if self.settings.reports_by_mail:
            self.mailer.stop()
        self.worker.stop()
        self.source.stop()
        self.alert_worker.stop()
        self.dispatcher.stop()
        self.store.close()
        self.engine.dispose()
