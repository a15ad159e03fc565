"""`lobbywatch backup create|verify|restore`: the operator's commands (docs/operations.md, "Backups")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lobbywatch.i18n import t
from lobbywatch.validation import Refused
from server.backup import archive
from server.backup.registry_dump import RestoreRefused
from server.registry.database import make_engine
from server.settings import Settings


def add_parsers(sub: Any, dispatch: Callable[[argparse.Namespace], int]) -> None:
    backup = sub.add_parser("backup", help="back up the registry and the broker's device identities; restore them")
    actions = backup.add_subparsers(dest="action", required=True)
    made = actions.add_parser("create", help="a new backup folder (mode 0700) under --out")
    made.add_argument("--out", required=True, type=Path)
    checked = actions.add_parser("verify", help="check every file of a backup against its manifest")
    checked.add_argument("folder", type=Path)
    back = actions.add_parser("restore", help="into an empty registry database (or --replace), after a check")
    back.add_argument("folder", type=Path)
    back.add_argument("--replace", action="store_true", help="drop everything the database holds first")
    for parser in (made, back):
        parser.add_argument(
            "--dynsec-file", type=Path, help="Mosquitto's dynamic-security.json (stop Mosquitto before a restore)"
        )
    backup.set_defaults(func=dispatch, run=backup_command)


def backup_command(args: argparse.Namespace, settings: Settings, lang: str) -> int:
    def progress(table: str, rows: int) -> None:
        print(t(lang, "backup.progress", table=table, rows=rows), file=sys.stderr)

    now = datetime.now(UTC)
    try:
        if args.action == "verify":
            manifest = archive.verify(args.folder)
            print(t(lang, "backup.verified", folder=args.folder, made=manifest.created_at, files=len(manifest.files)))
            return 0
        # never upgraded here: a backup takes the schema as it is, a restore builds it at the backup's revision
        engine = make_engine(settings.database_url, upgrade=False)
        try:
            if args.action == "create":
                folder = archive.create(engine, args.out, now, args.dynsec_file, progress)
                print(t(lang, "backup.created", folder=folder))
                return 0
            manifest = archive.restore(engine, args.folder, now, args.dynsec_file, args.replace, progress)
        finally:
            engine.dispose()
    except (archive.BackupDamaged, RestoreRefused, FileNotFoundError, FileExistsError) as exc:
        why = exc.text(lang) if isinstance(exc, Refused) else str(exc)
        print(t(lang, "backup.failed", why=why), file=sys.stderr)
        return 2
    rows = sum(manifest.tables.values())
    print(t(lang, "backup.restored", folder=args.folder, made=manifest.created_at, rows=rows))
    if args.dynsec_file is not None:
        print(t(lang, "backup.restart_broker", file=args.dynsec_file))
    return 0
