"""`lobbywatch enroll create|bulk` and `lobbywatch revoke`: the technicians' and administrators' commands."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lobbywatch.i18n import t
from server.provisioning import enrollment as enroll
from server.provisioning.enrollment import PROFILES
from server.registry import models
from server.registry.database import make_engine, make_sessions
from server.settings import Settings


def add_parsers(sub: Any, dispatch: Callable[[argparse.Namespace], int]) -> None:
    enrolls = sub.add_parser("enroll", help="single-use enrollment tokens for new devices (text and QR code)")
    actions = enrolls.add_subparsers(dest="action", required=True)
    one = actions.add_parser("create", help="one device: prints the token and its QR code, writes the PNG")
    one.add_argument("--branch", required=True)
    one.add_argument("--profile", default="lobby-camera", choices=PROFILES)
    one.add_argument("--device-id", help="default: <branch>-<cam|btn|env|box><n>")
    one.add_argument("--replaces", help="a broken device of the branch: the new one takes over its zones")
    many = actions.add_parser("bulk", help="many devices from a CSV (branch,profile[,device_id,replaces])")
    many.add_argument("csv")
    for parser in (one, many):
        parser.add_argument("--by", required=True, help="who asks (the audit log)")
        parser.add_argument("--out", default="enrollments", help="folder for the QR PNGs (and the bulk list)")
    enrolls.set_defaults(func=dispatch, run=enroll_command)
    revoke = sub.add_parser("revoke", help="cut a device off at the broker at once (stolen, broken)")
    revoke.add_argument("device")
    revoke.add_argument("--by", required=True)
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(func=dispatch, run=revoke_command)


def _rows(args: argparse.Namespace) -> list[dict[str, str | None]]:
    if args.action == "create":
        return [
            {"branch": args.branch, "profile": args.profile, "device_id": args.device_id, "replaces": args.replaces}
        ]
    with open(args.csv, encoding="utf-8-sig", newline="") as handle:
        return enroll.csv_rows(handle.read())


def enroll_command(args: argparse.Namespace, settings: Settings, lang: str) -> int:
    import segno
    from rich.progress import Progress

    try:
        rows = _rows(args)
    except enroll.EnrollError as exc:
        print(enroll.refusal_text(lang, exc, {}), file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.umask(0o077)  # tokens and their QR codes are secrets until used: readable by their owner only
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    made: list[dict[str, str]] = []
    failed = 0
    try:
        with Progress(disable=args.action != "bulk") as progress:
            task = progress.add_task(t(lang, "enroll.progress"), total=len(rows))
            for number, row in enumerate(rows, 1):
                progress.advance(task)
                try:
                    with sessions() as session:
                        token, enrollment = enroll.create(
                            session,
                            branch=row.get("branch") or "",
                            profile=row.get("profile") or "lobby-camera",
                            by=args.by,
                            now=datetime.now(UTC),
                            ttl=timedelta(hours=settings.enroll_ttl_h),
                            device_id=row.get("device_id"),
                            replaces=row.get("replaces"),
                            reserved=settings.broker_names(),
                        )
                except enroll.EnrollError as exc:
                    failed += 1
                    why = enroll.refusal_text(lang, exc, row)
                    progress.console.print(t(lang, "enroll.refused", line=number, why=why))
                    continue
                link = enroll.uri(settings.public_url, token, enrollment)
                png = out / f"{enrollment.device_id}.png"
                segno.make(link, error="m").save(str(png), scale=8, border=4)
                made.append(
                    {
                        "device_id": enrollment.device_id,
                        "branch": enrollment.branch_id,
                        "profile": enrollment.profile,
                        "expires_at": enrollment.expires_at.isoformat(),
                        "token": token,
                        "uri": link,
                        "qr_png": str(png),
                    }
                )
    finally:
        engine.dispose()
    if args.action == "create" and made:
        one = made[0]
        segno.make(one["uri"], error="m").terminal(compact=True)
        print(t(lang, "enroll.made", device=one["device_id"], expires=one["expires_at"], png=one["qr_png"]))
        print(one["token"])
    elif made:
        listing = out / "enrollments.csv"
        with listing.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(made[0]))
            writer.writeheader()
            writer.writerows(made)
        print(t(lang, "enroll.bulk_done", made=len(made), failed=failed, listing=listing))
    return 1 if failed else 0


def revoke_command(args: argparse.Namespace, settings: Settings, lang: str) -> int:
    from server.provisioning.broker_admin import BrokerRefused, BrokerUnreachable, admin_of

    admin = admin_of(settings)
    if admin is None:
        print(t(lang, "enroll.no_admin"), file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            if session.get(models.Device, args.device) is None:
                raise enroll.EnrollError("device_unknown", f"no device {args.device!r}", 404)
        admin.revoke_device(args.device)
        with make_sessions(engine)() as session:
            enroll.revoke(session, args.device, args.by, datetime.now(UTC), args.reason)
    except (BrokerUnreachable, BrokerRefused, enroll.EnrollError) as exc:
        print(t(lang, "enroll.revoke_failed", device=args.device, why=str(exc)), file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(t(lang, "enroll.revoked", device=args.device))
    return 0
