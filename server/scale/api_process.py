"""`lobbywatch api`: the API and the pages in processes of their own, any number behind a load balancer.

Such a process runs no ingest and owns no branch. It reads the registry and the alerts from the database the
workers share, and the live state (zones, readings, calls, devices, calibration snapshots) from the buckets the
workers write (`live_bucket`), copied into its memory as they change. What a person does to an alert is written to
the database at once; when it matters to the rules (a call acknowledged or resolved: the response time, the
button's light) it also goes to the branch's worker, as a message in the branch's partition of the stream, so
that it reaches the owner whichever worker that is, in order, and survives a worker's death. Commands to devices
go out over this process's own MQTT connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from server.live import LiveState
from server.rules.calls import RULE as CALL_RULE
from server.runtime import Runtime
from server.scale import jetstream, live_bucket, subjects
from server.scale.worker import MEMBERS
from server.settings import Settings
from server.status import ServerStatus, with_workers

log = logging.getLogger(__name__)

CONNECT_RETRY_S = 2.0
STOP_WAIT_S = 5.0  # at stop, how long what people did may still take to reach the workers
WORKERS_EVERY_S = 2.0  # the worker list read this often, for the health


class NatsLink:
    """The API process's connection to the cluster, on an event loop of its own thread."""

    def __init__(self, settings: Settings, live: LiveState, monotonic: Callable[[], float]) -> None:
        self._settings = settings
        self.mirror = live_bucket.Mirror(live, monotonic)
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="nats-link", daemon=True)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[dict[str, object]] | None = None
        self._stopping: asyncio.Event | None = None
        self._nc: Any = None
        self.sent = 0
        self.workers_alive: int | None = None  # from the worker list, every `WORKERS_EVERY_S`
        self.workers: dict[str, dict[str, Any]] = {}  # each worker's figures of its ingest, from its entry

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(STOP_WAIT_S + 5)

    def tell_worker(self, event: dict[str, object]) -> None:
        """From any thread: `event` to the worker that owns its branch, tried until the stream has it."""
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None:
            raise RuntimeError("the NATS link is not started")
        loop.call_soon_threadsafe(outbox.put_nowait, event)

    def announce_registry_change(self) -> None:
        """From any thread: forwarders and workers read the registry again (they also do every few minutes, and a
        forwarder at once for a device it does not know: a lost announcement delays, never loses)."""
        if self._loop is not None and self._nc is not None:
            asyncio.run_coroutine_threadsafe(self._announce(self._nc), self._loop)

    async def _announce(self, nc: Any) -> None:
        try:
            await nc.publish(subjects.REGISTRY_CHANGED, b"")
        except (NatsError, TimeoutError) as exc:
            log.warning("registry change not announced (%s); the others read it again within minutes", exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox, self._stopping = asyncio.Queue(), asyncio.Event()
        self._started.set()
        name = f"lobbywatch-api-{socket.gethostname()}-{os.getpid()}"
        while not self._stopping.is_set():
            try:
                nc = await jetstream.connect(self._settings, name, "api")
                break
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("NATS not reachable (%s); live state and alert events wait for it", exc)
                await asyncio.sleep(CONNECT_RETRY_S)
        else:
            return
        self._nc = nc
        tasks = [asyncio.create_task(work(nc)) for work in (self._follow, self._send, self._count_workers)]
        try:
            await self._stopping.wait()
            await asyncio.wait_for(self._outbox.join(), STOP_WAIT_S)
        except TimeoutError:
            log.error("%d alert events not passed to the workers at stop", self._outbox.qsize())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await nc.drain()

    async def _follow(self, nc: Any) -> None:
        """The live state's buckets, watched for as long as the process runs (a watch lost is made again)."""
        while True:
            try:
                values, snapshots = await live_bucket.await_buckets(nc)
                await self.mirror.follow(values, snapshots)
            except (NatsError, TimeoutError) as exc:
                log.warning("live state watch lost (%s); watching again", exc)
            await asyncio.sleep(CONNECT_RETRY_S)

    async def _count_workers(self, nc: Any) -> None:
        """The workers alive, as they list themselves (`worker.MEMBERS`): none alive makes this process's
        health say so, since it ingests nothing itself."""
        js = nc.jetstream()
        while True:
            try:
                self.workers = await _members(await js.key_value(MEMBERS))
                self.workers_alive = len(self.workers)
            except BucketNotFoundError:
                self.workers, self.workers_alive = {}, 0  # no worker has ever started
            except (NatsError, TimeoutError) as exc:
                log.warning("worker list not readable now (%s)", exc)
            await asyncio.sleep(WORKERS_EVERY_S)

    async def _send(self, nc: Any) -> None:
        assert self._outbox is not None
        js = nc.jetstream()
        while True:
            event = await self._outbox.get()
            branch = str(event["branch"])
            headers = {
                # the stream drops a second copy (this process trying again after a lost PubAck)
                subjects.ID_HEADER: f"people/{event['alert']}/{event['event']}/{event['at']}",
                subjects.TOPIC_HEADER: subjects.PEOPLE_TOPIC,
                subjects.RECEIVED_HEADER: f"{time.time():.6f}",
            }
            payload = json.dumps(event, separators=(",", ":"), default=str).encode()
            while True:
                try:
                    await js.publish(subjects.people_subject(branch), payload, headers=headers)
                    break
                except (NatsError, TimeoutError) as exc:
                    log.warning(
                        "alert %s's %s not passed to its worker yet (%s); trying again",
                        event["alert"],
                        event["event"],
                        exc,
                    )
                    await asyncio.sleep(1.0)
            self.sent += 1
            self._outbox.task_done()


async def _members(members: KeyValue) -> dict[str, dict[str, Any]]:
    """Each live worker's entry: its figures (an entry that is not a JSON object, from an older worker, counts
    as alive with no figures)."""
    found: dict[str, dict[str, Any]] = {}
    watcher = await members.watchall(ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:  # the current values are all in
                break
            try:
                figures = json.loads(entry.value or b"")
            except ValueError:
                figures = {}
            found[entry.key] = figures if isinstance(figures, dict) else {}
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found


class ApiRuntime(Runtime):
    """The server's wiring for `lobbywatch api`: no branch owned, the live state copied from the workers'."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, receive=False, **kwargs)
        self.link = NatsLink(settings, self.live, self.clock.monotonic)

    def pipeline_options(self) -> dict[str, Any]:
        return {"owned": set()}  # the workers own every branch; this process loads none

    def people_acted(self, event: dict[str, object]) -> None:
        if event.get("rule") == CALL_RULE and event.get("event") in ("acknowledged", "resolved"):
            self.link.tell_worker(event)

    def status(self) -> ServerStatus:
        own = replace(super().status(), nats_connected=self.link.connected, workers_alive=self.link.workers_alive)
        return with_workers(own, self.link.workers)

    def registry_changed(self) -> None:
        super().registry_changed()
        self.link.announce_registry_change()

    def start(self) -> None:
        self.link.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self.link.stop()
