"""The stream and its partitions' consumers, made through JetStream's JSON API (nats-py's typed configs have
no priority groups yet). Made idempotently by every worker at start; a forwarder may only read the stream's
description (deploy/nats/permissions.conf), so it waits for a worker to have made it."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from server.scale import subjects
from server.settings import Settings

log = logging.getLogger(__name__)

NS = 1_000_000_000
API_TRIES = 3  # for the idempotent requests of `ensure`
GROUP = "owner"  # the consumers' one priority group: its pinned client owns the partition


class JetStreamError(RuntimeError):
    """JetStream refused an API request; the message is the server's own description."""


@dataclass(frozen=True)
class Layout:
    partitions: int = subjects.DEFAULT_PARTITIONS
    replicas: int = 3
    # a bound on the disk the backlog may take; past it publishers are refused (the forwarders then leave
    # messages with the MQTT broker, unacknowledged) rather than old messages dropped
    max_bytes: int = 20 * 1024**3
    duplicate_window_s: float = 120.0  # a forwarder's republish after a crash comes well within this
    # how long an owner may stop pulling before another worker is pinned in its place. The server waits it out
    # after a kill -9 too, although the connection closed: the other workers unpin a dead worker's partitions
    # before that (liveness.py). 5 s was too short for a worker draining a flood before its event loop got a
    # 0.5 ms GIL switch interval (worker.py); 15 s is what was measured since, a shorter one not yet.
    priority_timeout_s: float = 15.0
    # a message delivered and not acknowledged this long is delivered again: short, because after a failover
    # a device whose messages the dead owner had in hand waits this long (and 1 s) for them to come again
    ack_wait_s: float = 5.0
    max_ack_pending: int = 2_000  # per partition: what an owner may hold unacknowledged (its memory bound)

    def stream_config(self) -> dict[str, Any]:
        return {
            "name": subjects.STREAM,
            "subjects": [f"{subjects.IN}.*.*.*"],
            "subject_transform": subjects.partition_transform(self.partitions),
            # a message is gone once its partition's owner acknowledged it (the store has it by then)
            "retention": "workqueue",
            "storage": "file",
            "num_replicas": self.replicas,
            "max_bytes": self.max_bytes,
            "discard": "new",
            "duplicate_window": int(self.duplicate_window_s * NS),
        }

    def consumer_config(self, partition: int) -> dict[str, Any]:
        name = subjects.consumer_name(partition)
        return {
            "name": name,
            "durable_name": name,
            "filter_subject": subjects.partition_filter(partition),
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait_s * NS),
            "max_deliver": -1,
            "max_ack_pending": self.max_ack_pending,
            "max_waiting": 512,
            "priority_groups": [GROUP],
            "priority_policy": "pinned_client",
            "priority_timeout": int(self.priority_timeout_s * NS),
        }


async def api(
    nc: Client, subject: str, body: dict[str, Any] | None = None, timeout: float = 10.0, tries: int = 1
) -> dict[str, Any]:
    """A JetStream API request; with `tries`, asked again when it times out (a cluster busy electing a leader, or
    loaded). Only for requests that may be repeated: info, and creations with the same config; never an unpin,
    whose repeat could release the pin another worker was given meanwhile."""
    attempt = 1
    while True:
        try:
            reply = await nc.request(f"$JS.API.{subject}", json.dumps(body or {}).encode(), timeout=timeout)
            break
        except TimeoutError:
            if attempt >= tries:
                raise
            log.warning("JetStream %s: no answer in %.0f s (try %d of %d)", subject, timeout, attempt, tries)
            attempt += 1
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        error = answer["error"]
        raise JetStreamError(f"{subject}: {error.get('description')} (code {error.get('err_code')})")
    return answer


async def ensure(nc: Client, layout: Layout) -> None:
    """The stream and one durable consumer per partition, as `layout` says; a stream made with another number of
    partitions is refused (moving branches between partitions needs a migration, docs/scale.md)."""
    found = await _stream(nc)
    if found is None:
        await api(nc, f"STREAM.CREATE.{subjects.STREAM}", layout.stream_config(), tries=API_TRIES)
    else:
        _check_partitions(found, layout)
    for partition in range(layout.partitions):
        config = layout.consumer_config(partition)
        await api(
            nc,
            f"CONSUMER.CREATE.{subjects.STREAM}.{config['name']}",
            {"stream_name": subjects.STREAM, "config": config},
            tries=API_TRIES,
        )


async def await_stream(nc: Client, layout: Layout, every_s: float = 2.0) -> None:
    """Until the stream is there (a worker makes it), partitioned as `layout` says: a forwarder's check at start."""
    waited = 0
    while (found := await _stream(nc)) is None:
        if waited % 15 == 0:
            log.warning("stream %s not made yet: waiting for a worker to make it", subjects.STREAM)
        waited += 1
        await asyncio.sleep(every_s)
    _check_partitions(found, layout)


async def _stream(nc: Client) -> dict[str, Any] | None:
    try:
        return await api(nc, f"STREAM.INFO.{subjects.STREAM}", tries=API_TRIES)
    except JetStreamError as exc:
        if "not found" not in str(exc):
            raise
        return None


def _check_partitions(found: dict[str, Any], layout: Layout) -> None:
    transform = found["config"].get("subject_transform")
    if transform != subjects.partition_transform(layout.partitions):
        raise JetStreamError(
            f"stream {subjects.STREAM} is partitioned as {transform}, not into {layout.partitions} partitions"
        )


async def connect(settings: Settings, name: str, role: str) -> Client:
    """A connection to the NATS cluster of the settings, reconnecting for ever (a node lost is routine), as the
    user of `role` (`forwarder`, `worker`) unless the settings name another."""
    if not settings.nats_url:
        raise ValueError("LOBBYWATCH_NATS_URL is not set: the scale-out needs a NATS cluster (docs/scale.md)")
    tls = None
    if settings.nats_ca_file is not None:
        tls = ssl.create_default_context(cafile=str(settings.nats_ca_file))
    client = Client()
    await client.connect(
        servers=[url.strip() for url in settings.nats_url.split(",") if url.strip()],
        name=name,
        user=(settings.nats_user or role) if settings.nats_password else None,
        password=settings.nats_password.get_secret_value() if settings.nats_password else None,
        tls=tls,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    return client


def layout(settings: Settings) -> Layout:
    return Layout(partitions=settings.nats_partitions, replicas=settings.nats_replicas)
