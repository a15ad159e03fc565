"""`lobbywatch`: the server-side command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from lobbywatch.cli_errors import run_command
from lobbywatch.cli_help import LocalizedParser, chosen_lang, parse
from lobbywatch.i18n import normalize_locale, t
from lobbywatch.logs import log_format, setup_logging
from lobbywatch.validation import lines, problems
from server import __version__

if TYPE_CHECKING:
    from server.settings import Settings


def _process(args: argparse.Namespace) -> tuple[Settings | None, str]:
    """A long-running process's settings and language, its log set up; None after saying what is wrong."""
    lang = chosen_lang(args)
    try:
        setup_logging(args.log_level, log_format())
    except ValueError as exc:
        print(t(lang, "server.config_invalid"), file=sys.stderr)
        print(f"  {exc}", file=sys.stderr)
        return None, lang
    return _settings(lang), lang


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.registry.site import SiteError
    from server.runtime import Runtime

    settings, lang = _process(args)
    if settings is None:
        return 2
    if args.command == "api" and not settings.nats_url:
        print(t(lang, "scale.no_nats"), file=sys.stderr)
        return 2
    app = create_app(settings, runtime_type=args.runtime_type() if args.command == "api" else Runtime)
    print(t(lang, "server.listening", version=__version__, url=f"http://{settings.http_host}:{settings.http_port}"))
    try:
        # log_config=None: uvicorn's lines go through the handler set up above (text or JSON), not its own
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level=args.log_level, log_config=None)
    except SiteError as exc:
        print(t(lang, "server.site_invalid"), file=sys.stderr)
        print(exc.text(lang), file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lobby_sim.demo import run

    seconds = args.seconds if args.seconds is not None else float(os.environ.get("DEMO_SECONDS") or 0) or None
    return run(seconds, http_port=args.port, workdir=Path(args.workdir), lang=chosen_lang(args), broker=args.broker)


def _replay(args: argparse.Namespace) -> int:
    import json

    from server.replay import ScenarioError, replay

    try:
        summary = replay(Path(args.scenario))
    except ScenarioError as exc:  # a scenario author's file: its details stay in English, as the format's docs
        print(t(chosen_lang(args), "replay.failed", why=exc), file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary}), file=sys.stderr)
    return 0


def _user(args: argparse.Namespace) -> int:
    import getpass
    from datetime import UTC, datetime

    from server.registry.database import make_engine, make_sessions
    from server.registry.users import UserError, add_user
    from server.settings import Settings

    lang = chosen_lang(args)
    try:
        settings = Settings()
    except ValidationError as exc:
        print("\n".join([t(lang, "server.config_invalid"), *lines(problems(exc), lang)]), file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():  # getpass would read the pipe, or fail on its end
        print(t(lang, "server.user.no_terminal"), file=sys.stderr)
        return 2
    else:
        try:
            password = getpass.getpass(t(lang, "server.user.password"))
            again = getpass.getpass(t(lang, "server.user.again"))
        except EOFError:
            print(t(lang, "server.user.no_terminal"), file=sys.stderr)
            return 2
        if again != password:
            print(t(lang, "server.user.mismatch"), file=sys.stderr)
            return 2
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            add_user(
                session,
                args.login,
                args.name or args.login,
                args.role,
                password,
                datetime.now(UTC),
                locale=normalize_locale(args.locale),
                regions=args.region,
                branches=args.branch,
            )
    except UserError as exc:
        print(t(lang, "server.user.refused", why=exc.text(lang)), file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(t(lang, "server.user.added", login=args.login, role=args.role))
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    from server.dashboards import build

    lang = chosen_lang(args)
    folder = Path(args.out)
    if args.action == "build":
        if args.check:
            stale = build.stale(folder)
            for name in stale:
                print(t(lang, "dashboards.stale", name=name, folder=folder), file=sys.stderr)
            return 1 if stale else 0
        for path in build.write(folder):
            print(path)
        return 0
    from server.dashboards import grafana_sync as sync

    token = os.environ.get("GRAFANA_TOKEN")
    user, password = os.environ.get("GRAFANA_USER"), os.environ.get("GRAFANA_PASSWORD")
    credential: str | tuple[str, str] | None = token or ((user, password) if user and password else None)
    api = sync.connect(args.url, credential)
    try:
        if args.action == "pull":
            print(sync.pull(api, args.uid, folder))
            return 0
        source = None
        if args.influx_url:
            source = sync.InfluxSource(args.influx_url, args.influx_db, os.environ.get("LOBBYWATCH_INFLUX_TOKEN"))
        boards = sync.with_lobby(build.dashboards(), args.lobby_url) if args.lobby_url else build.dashboards()
        changes = sync.push(api, boards, source, dry_run=args.dry_run)
    except sync.Unreachable as exc:
        print(t(lang, "dashboards.unreachable", url=args.url, why=exc.reason), file=sys.stderr)
        return 2
    except sync.SyncError as exc:
        print(t(lang, "dashboards.failed", why=str(exc)), file=sys.stderr)
        return 2
    for change in changes:
        key = f"dashboards.{'would_' if args.dry_run else ''}{change.action}"
        print(t(lang, key, kind=change.kind, name=change.name))
    print(sync.summary(changes))
    return 0


def _settings(lang: str) -> Settings | None:
    from server.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        print("\n".join([t(lang, "server.config_invalid"), *lines(problems(exc), lang)]), file=sys.stderr)
        return None


def _people_change(args: argparse.Namespace) -> int:
    """`lobbywatch token`, `tokens`, `revoke-token`, `deactivate`: audited, on the registry."""
    from datetime import UTC, datetime

    from server.registry import users
    from server.registry.database import make_engine, make_sessions

    lang = chosen_lang(args)
    settings = _settings(lang)
    if settings is None:
        return 2
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            now = datetime.now(UTC)
            if args.command == "token":
                token = users.issue_token(session, args.login, args.name, now, args.days, by=args.by)
                print(t(lang, "server.token.made", login=args.login))
                print(token)
            elif args.command == "tokens":
                for row in users.tokens(session, args.login):
                    state = (
                        t(lang, "server.token.revoked_at", at=f"{row.revoked_at:%Y-%m-%d}")
                        if row.revoked_at
                        else t(lang, "server.token.expires", at=f"{row.expires_at:%Y-%m-%d}")
                        if row.expires_at
                        else t(lang, "server.token.no_expiry")
                    )
                    print(f"{users.token_id(row.token_hash)}  {row.login}  {row.name}  {state}")
            elif args.command == "revoke-token":
                row = users.revoke_token(session, args.id, args.by, now)
                print(t(lang, "server.token.revoked", id=users.token_id(row.token_hash), login=row.login))
            else:
                users.deactivate(session, args.login, args.by, now)
                print(t(lang, "server.user.deactivated", login=args.login))
    except users.UserError as exc:
        print(t(lang, "server.user.refused", why=exc.text(lang)), file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def _fleet(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console
    from rich.table import Table

    lang = chosen_lang(args)
    token = os.environ.get("LOBBYWATCH_API_TOKEN")
    params: dict[str, str] = {"attention": "true"} if args.attention else {}
    if args.branch:
        params["branch"] = args.branch
    try:
        response = httpx.get(
            f"{args.url.rstrip('/')}/api/v1/fleet",
            params=params,
            timeout=20,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        print(t(lang, "fleet.failed", why=f"{exc.response.status_code} {exc.response.text[:200]}"), file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(t(lang, "fleet.failed", why=str(exc)), file=sys.stderr)
        return 2
    table = Table(title=t(lang, "page.fleet.title"))
    for key in ("device", "branch", "state", "last_seen", "versions", "clock", "outbox", "camera", "attention"):
        table.add_column(t(lang, f"fleet.col.{key}"))
    for row in response.json():
        table.add_row(
            row["device"],
            row["branch"],
            t(lang, "page.fleet.online" if row["online"] else "page.fleet.offline"),
            (row["last_seen"] or "–")[:19],
            f"{row['agent_version'] or '–'} / {row['config_version'] or '–'}",
            "–" if row["clock_offset_ms"] is None else f"{row['clock_offset_ms']:.0f} ms",
            "–" if row["outbox_depth"] is None else str(row["outbox_depth"]),
            {True: "OK", False: "✗", None: "–"}[row["camera_ok"]],
            "; ".join(t(lang, f"page.fleet.why.{why}") for why in row["attention"]) or "–",
        )
    Console(width=200).print(table)
    return 0


def _provisioning(args: argparse.Namespace) -> int:
    lang = chosen_lang(args)
    settings = _settings(lang)
    if settings is None:
        return 2
    result: int = args.run(args, settings, lang)
    return result


def _schema(args: argparse.Namespace) -> int:
    from lobbywatch.protocol.schema import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def _people_and_devices(sub: Any) -> None:
    user = sub.add_parser("user", help="add a person who signs in to the pages, or change one (same login)")
    user.add_argument("login")
    user.add_argument("--name", help="shown as the owner of the alerts they take (default: the login)")
    user.add_argument(
        "--role",
        required=True,
        choices=["administrator", "technician", "branch_manager", "duty_supervisor", "read_only"],
    )
    user.add_argument("--region", action="append", default=[], help="sees this region's branches (repeatable)")
    user.add_argument("--branch", action="append", default=[], help="sees this branch (repeatable)")
    user.add_argument("--locale", default="zh-CN", help="zh-CN or en")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(func=_user)
    fleet = sub.add_parser(
        "fleet", help="every device, those that need attention first (token from LOBBYWATCH_API_TOKEN)"
    )
    fleet.add_argument(
        "--url",
        default=os.environ.get("LOBBYWATCH_URL", "http://127.0.0.1:8000"),
        help="the server (default LOBBYWATCH_URL)",
    )
    fleet.add_argument("--branch")
    fleet.add_argument("--attention", action="store_true", help="only devices that need attention")
    fleet.set_defaults(func=_fleet)
    token = sub.add_parser("token", help="an API token for a person (integrations act as that person and role)")
    token.add_argument("login")
    token.add_argument("--name", required=True, help="what it is for (the audit log)")
    token.add_argument("--days", type=float, default=90, help="how long it works (default 90, at most 400)")
    token.add_argument("--by", default="lobbywatch token", help="who asks (the audit log)")
    token.set_defaults(func=_people_change)
    listed = sub.add_parser("tokens", help="list API tokens (their ids, never the tokens), of one person or all")
    listed.add_argument("login", nargs="?")
    listed.set_defaults(func=_people_change)
    revoked = sub.add_parser("revoke-token", help="revoke an API token at once, by the id `tokens` shows")
    revoked.add_argument("id")
    revoked.add_argument("--by", required=True, help="who revokes it (the audit log)")
    revoked.set_defaults(func=_people_change)
    off = sub.add_parser("deactivate", help="switch a person off: their sessions and tokens end at once")
    off.add_argument("login")
    off.add_argument("--by", required=True, help="who switches them off (the audit log)")
    off.set_defaults(func=_people_change)
    boards = sub.add_parser("dashboards", help="build the Grafana dashboards, push them into Grafana, pull one back")
    boards_sub = boards.add_subparsers(dest="action", required=True)
    built = boards_sub.add_parser("build", help="write dashboards/*.json from server/dashboards/build.py")
    built.add_argument("--check", action="store_true", help="only say which files differ from the code (exit 1)")
    pushed = boards_sub.add_parser(
        "push",
        help="make Grafana's data source, folder and dashboards match the code; "
        "credentials from GRAFANA_TOKEN, or GRAFANA_USER and GRAFANA_PASSWORD",
    )
    pushed.add_argument("--url", required=True, help="Grafana's base URL, e.g. https://grafana.example.cn")
    pushed.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    pushed.add_argument(
        "--influx-url", help="also make the data source, pointing here (token from LOBBYWATCH_INFLUX_TOKEN)"
    )
    pushed.add_argument("--influx-db", default="lobbywatch", help="database, or bucket through its DBRP mapping")
    pushed.add_argument("--lobby-url", default=os.environ.get("LOBBYWATCH_PUBLIC_URL"), help="the pages' address")
    pulled = boards_sub.add_parser("pull", help="save a dashboard edited in Grafana as dashboards/<uid>.json")
    pulled.add_argument("uid")
    pulled.add_argument("--url", required=True)
    for sub_parser in (built, pushed, pulled):
        sub_parser.add_argument("--out", default="dashboards", help="the dashboards folder")
    boards.set_defaults(func=_dashboards)


def build_parser() -> argparse.ArgumentParser:
    parser = LocalizedParser(prog="lobbywatch", description="LobbyWatch server")
    parser.add_argument("--lang", help="zh-CN or en (default: LOBBYWATCH_LANG, then LANG)")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (settings from LOBBYWATCH_* environment variables)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)
    from server.scale.cli import add_parsers as add_scale_parsers

    add_scale_parsers(sub, _process, _serve)
    demo = sub.add_parser("demo", help="run broker, server and three simulated branches on this machine")
    demo.add_argument("--seconds", type=float, help="stop after this many seconds (default: DEMO_SECONDS, or Ctrl-C)")
    demo.add_argument("--port", type=int, default=8000, help="HTTP port of the API")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its databases (wiped at start)")
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="auto: Mosquitto when installed, else the embedded amqtt",
    )
    demo.set_defaults(func=_demo)
    replay = sub.add_parser("replay", help="run the ingest and rules over a scenario on a simulated clock")
    replay.add_argument("scenario", help="folder with site.yaml, events.jsonl and optionally scenario.yaml")
    replay.set_defaults(func=_replay)
    _people_and_devices(sub)
    from server.backup.commands import add_parsers as add_backup_parsers
    from server.provisioning.commands import add_parsers

    add_parsers(sub, _provisioning)
    add_backup_parsers(sub, _provisioning)
    schema = sub.add_parser("schema", help="write the wire contract's JSON Schemas")
    schema.add_argument("--out", default="docs/schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    return run_command(args.func, args, args.lang)


if __name__ == "__main__":
    raise SystemExit(main())
