"""`lobbywatch forward` and `lobbywatch worker`: the scale-out's processes (docs/scale.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lobbywatch.i18n import t
from server.settings import Settings

if TYPE_CHECKING:
    from server.runtime import Runtime

LOG_LEVELS = ["debug", "info", "warning", "error"]


def add_parsers(
    sub: Any,
    settings_of: Callable[[argparse.Namespace], tuple[Settings | None, str]],
    serve: Callable[[argparse.Namespace], int],
) -> None:
    """`settings_of`: the process's settings and language from its arguments, None after saying what is wrong;
    `serve`: runs the web server, with the runtime `args.runtime_type()` gives."""

    def forward(args: argparse.Namespace) -> int:
        from server.scale.forward_process import forward

        settings, lang = _scale_settings(args, settings_of)
        if settings is None:
            return 2
        stats = asyncio.run(forward(settings, args.name))
        print(t(lang, "scale.forward_stopped", forwarded=stats.forwarded, duplicates=stats.duplicates))
        return 0

    def worker(args: argparse.Namespace) -> int:
        from server.scale.worker import work

        settings, lang = _scale_settings(args, settings_of)
        if settings is None:
            return 2
        print(t(lang, "scale.worker_stopped", **asyncio.run(work(settings, args.name))))
        return 0

    forwarder = sub.add_parser(
        "forward", help="forward devices' messages from the MQTT broker into NATS JetStream (docs/scale.md)"
    )
    forwarder.add_argument("--name", required=True, help="this forwarder's name, the same at every restart")
    forwarder.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    forwarder.set_defaults(func=forward)
    owner = sub.add_parser(
        "worker", help="own partitions of the stream: their branches' rules, alerts and timers (docs/scale.md)"
    )
    owner.add_argument("--name", required=True, help="this worker's name, unique, the same at every restart")
    owner.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    owner.set_defaults(func=worker)
    api = sub.add_parser(
        "api", help="run the API and pages only, over the scale-out's workers and NATS cluster (docs/scale.md)"
    )
    api.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    api.set_defaults(func=serve, runtime_type=_api_runtime)


def _api_runtime() -> type[Runtime]:
    from server.scale.api_process import ApiRuntime

    return ApiRuntime


def _scale_settings(
    args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], tuple[Settings | None, str]]
) -> tuple[Settings | None, str]:
    settings, lang = settings_of(args)
    if settings is not None and not settings.nats_url:
        print(t(lang, "scale.no_nats"), file=sys.stderr)
        return None, lang
    return settings, lang
