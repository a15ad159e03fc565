"""A backup folder: the registry's rows, the broker's dynamic-security.json (every device's identity: lose it and
every device is locked out), and a manifest with a SHA-256 of each file, checked before anything is restored.
Readable by its owner only: it holds password hashes and the names of every device."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lobbywatch.validation import Refused
from server import __version__
from server.backup import registry_dump
from server.backup.registry_dump import Progress

FORMAT = 1
MANIFEST = "manifest.json"
BROKER_FILE = "broker/dynamic-security.json"


class BackupDamaged(Refused):
    """A backup that must not be restored: a file missing or changed since it was made. The message names it."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    server_version: str
    revision: str
    tables: dict[str, int]
    files: dict[str, str]  # path in the folder -> SHA-256

    @property
    def has_broker(self) -> bool:
        return BROKER_FILE in self.files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create(engine: Engine, out: Path, now: datetime, dynsec: Path | None, progress: Progress | None = None) -> Path:
    """A new folder under `out`, named by the time; returns it."""
    if dynsec is not None and not dynsec.is_file():
        raise FileNotFoundError(f"no broker file at {dynsec} (Mosquitto's dynamic-security.json)")
    folder = out / f"lobbywatch-backup-{now.strftime('%Y%m%dT%H%M%SZ')}"
    before = os.umask(0o077)  # every file of it the owner's only; the process's own umask given back after
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=False)
        revision, tables = registry_dump.dump(engine, folder / "registry", progress)
        if dynsec is not None:
            (folder / "broker").mkdir(mode=0o700)
            shutil.copyfile(dynsec, folder / BROKER_FILE)
    finally:
        os.umask(before)
    files = {str(path.relative_to(folder)): _sha256(path) for path in sorted(folder.rglob("*")) if path.is_file()}
    manifest = {
        "format": FORMAT,
        "created_at": now.isoformat(),
        "server_version": __version__,
        "registry": {"revision": revision, "dialect": engine.dialect.name, "tables": tables},
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return folder


def verify(folder: Path) -> Manifest:
    """The manifest, once every file it lists is there with its checksum."""
    try:
        raw: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupDamaged("backup.error.no_manifest", path=folder / MANIFEST) from None
    except ValueError as exc:
        raise BackupDamaged("backup.error.bad_manifest", path=folder / MANIFEST, why=exc) from None
    if raw.get("format") != FORMAT:
        raise BackupDamaged("backup.error.format", path=folder / MANIFEST, found=raw.get("format"), known=FORMAT)
    for name, expected in raw["files"].items():
        path = folder / name
        if not path.is_file():
            raise BackupDamaged("backup.error.missing", path=path)
        if _sha256(path) != expected:
            raise BackupDamaged("backup.error.changed", path=path)
    registry = raw["registry"]
    return Manifest(raw["created_at"], raw["server_version"], registry["revision"], registry["tables"], raw["files"])


def restore(
    engine: Engine,
    folder: Path,
    now: datetime,
    dynsec: Path | None,
    replace: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Checked first; then the registry, then the broker file (the one it replaces kept beside it)."""
    manifest = verify(folder)
    if dynsec is not None and not manifest.has_broker:
        raise BackupDamaged("backup.error.no_broker_file", folder=folder, target=dynsec)
    registry_dump.restore(engine, folder / "registry", manifest.revision, replace, progress)
    if dynsec is not None:
        put_broker_file(folder / BROKER_FILE, dynsec, now)
    return manifest


def put_broker_file(source: Path, target: Path, now: datetime) -> None:
    """Atomically, as Mosquitto's own user can read it; a file already there is kept as <name>.before-<time>."""
    target.parent.mkdir(parents=True, exist_ok=True)
    before = target.stat() if target.exists() else None
    if before is not None:
        shutil.copy2(target, target.with_name(f"{target.name}.before-{now.strftime('%Y%m%dT%H%M%SZ')}"))
    staged = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(source, staged)
    os.chmod(staged, 0o600 if before is None else before.st_mode & 0o777)
    if before is not None:
        with suppress(PermissionError):  # not root: the file stays ours, as the one before was
            os.chown(staged, before.st_uid, before.st_gid)
    staged.replace(target)
