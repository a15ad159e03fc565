"""`lobbywatch-agent`: the technician's command on the device."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import ConfigError, load_config
from lobbywatch.clock import SystemClock
from lobbywatch.i18n import normalize_locale, t


def _locale(args: argparse.Namespace) -> str:
    return normalize_locale(args.lang or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG"))


def _check(args: argparse.Namespace) -> int:
    lang = _locale(args)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(t(lang, "agent.config_invalid"), file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 2
    print(t(lang, "agent.config_ok", device=config.device_id, path=args.config))
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge_agent.agent import Agent, data_dir_writable
    from edge_agent.buttons import make_pin_factory

    lang = _locale(args)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(t(lang, "agent.config_invalid"), file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 2
    if not data_dir_writable(config.data_dir):
        print(t(config.locale, "agent.data_dir_unwritable", path=config.data_dir), file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(config, clock=SystemClock(), pin_factory=make_pin_factory(config.gpio_factory))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(t(config.locale, "agent.starting", device=config.device_id, version=__version__,
            broker=f"{config.broker.host}:{config.broker.port}"))
    agent.run(stop)
    print(t(config.locale, "agent.stopped", messages=agent.stats.messages))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lobbywatch-agent", description="LobbyWatch edge agent")
    parser.add_argument("--lang", help="zh-CN or en (default: LOBBYWATCH_LANG, then LANG)")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until stopped")
    run.add_argument("--config", required=True, help="device config file (YAML)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate a device config file and say what is wrong")
    check.add_argument("config")
    check.set_defaults(func=_check)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
