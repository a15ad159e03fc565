"""Alerts under a fault against alerts without it: the server's webhook notices of alerts fired, against a
replay (the production ingest and rules, `server.replay`) of the same messages in the order they were made."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Iterable
from datetime import datetime
from pathlib import Path

import yaml

from bench.webhook import Notices
from lobbywatch.protocol.topics import Topic
from server.replay import Replayer, load_scenario

Message = tuple[str, bytes]  # topic, payload as sent
Fired = tuple[str, str, str, datetime]  # rule, branch, subject, the device time of the message that fired it
RULE = "queue_too_long"  # the rule the fault suite's lobbies break; other alerts (offline devices) are the fault's


def fired(notices: Notices) -> Counter[Fired]:
    """The webhook's notices of `RULE` alerts fired."""
    return Counter(
        (n["rule"], n["branch_id"], n["subject"], datetime.fromisoformat(n["at_utc"]))
        for n in notices.notices()
        if n.get("change") == "fired" and n.get("rule") == RULE
    )


def expected_fired(site: dict[str, object], messages: Iterable[tuple[str, bytes]], folder: Path) -> Counter[Fired]:
    """Replay `messages` (topic, payload as sent) in device-time order, each arriving when it was made."""
    made = sorted(((datetime.fromisoformat(json.loads(p)["ts"]), t, p) for t, p in messages), key=lambda m: m[0])
    fired: Counter[Fired] = Counter()
    if not made:
        return fired
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.yaml").write_text(yaml.safe_dump(site))
    start = made[0][0]
    (folder / "scenario.yaml").write_text(yaml.safe_dump({"start": start.isoformat(), "tick_s": 5}))
    with (folder / "events.jsonl").open("w") as events:
        for ts, topic, payload in made:
            line = {"t": (ts - start).total_seconds(), "topic": topic, "payload": json.loads(payload)}
            events.write(json.dumps(line) + "\n")

    def keep(event: dict[str, object]) -> None:
        if event.get("event") == "fired" and event.get("rule") == RULE:
            fired[
                (
                    str(event["rule"]),
                    str(event["branch"]),
                    str(event["subject"]),
                    datetime.fromisoformat(str(event["at"])),
                )
            ] += 1

    logging.getLogger("server.delivery.notify").setLevel(logging.ERROR)
    Replayer(load_scenario(folder), keep).run()
    return fired


def compare(expected: Counter[Fired], notified: Counter[Fired]) -> dict[str, int]:
    """The alerts notified against those `expected` of the same reports (notified twice: duplicated; notified
    and not expected: unexpected)."""
    return {
        "alerts_expected": sum(expected.values()),
        "alerts_missing": sum((expected - notified).values()),
        "alerts_duplicated": sum(n - 1 for n in notified.values() if n > 1),
        "alerts_unexpected": sum(n for key, n in notified.items() if key not in expected),
    }


def without(messages: Iterable[Message], dropped: Collection[tuple[str, datetime]]) -> list[Message]:
    """`messages` less those `dropped` (device, device time): what reached the server to fire its alerts from."""
    gone = set(dropped)
    return [
        (topic, payload)
        for topic, payload in messages
        if (Topic.parse(topic).device, datetime.fromisoformat(json.loads(payload)["ts"])) not in gone
    ]
