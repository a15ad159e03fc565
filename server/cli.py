"""`lobbywatch`: the server-side command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from lobbywatch.i18n import normalize_locale, t
from server import __version__


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.registry.site import SiteError
    from server.settings import Settings

    lang = normalize_locale(args.lang or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG"))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(t(lang, "server.config_invalid"), file=sys.stderr)
        for err in exc.errors(include_url=False):
            where = ".".join(map(str, err["loc"])) or "settings"
            print(f"  {where}: {err['msg']}", file=sys.stderr)
        return 2
    app = create_app(settings)
    print(t(lang, "server.listening", version=__version__, url=f"http://{settings.http_host}:{settings.http_port}"))
    try:
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level=args.log_level)
    except SiteError as exc:
        print(t(lang, "server.site_invalid"), file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lobby_sim.demo import run

    seconds = args.seconds if args.seconds is not None else float(os.environ.get("DEMO_SECONDS") or 0) or None
    return run(seconds, http_port=args.port, workdir=Path(args.workdir), lang=args.lang or os.environ.get("LANG"),
               broker=args.broker)


def _replay(args: argparse.Namespace) -> int:
    import json

    from server.replay import ScenarioError, replay

    try:
        summary = replay(Path(args.scenario))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary}), file=sys.stderr)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from lobbywatch.protocol.schema import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lobbywatch", description="LobbyWatch server")
    parser.add_argument("--lang", help="zh-CN or en (default: LOBBYWATCH_LANG, then LANG)")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (settings from LOBBYWATCH_* environment variables)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)
    demo = sub.add_parser("demo", help="run broker, server and three simulated branches on this machine")
    demo.add_argument("--seconds", type=float, help="stop after this many seconds (default: DEMO_SECONDS, or Ctrl-C)")
    demo.add_argument("--port", type=int, default=8000, help="HTTP port of the API")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its databases (wiped at start)")
    demo.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                      help="auto: Mosquitto when installed, else the embedded amqtt")
    demo.set_defaults(func=_demo)
    replay = sub.add_parser("replay", help="run the ingest and rules over a scenario on a simulated clock")
    replay.add_argument("scenario", help="folder with site.yaml, events.jsonl and optionally scenario.yaml")
    replay.set_defaults(func=_replay)
    schema = sub.add_parser("schema", help="write the wire contract's JSON Schemas")
    schema.add_argument("--out", default="docs/schema")
    schema.set_defaults(func=_schema)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
