"""Getting the dashboards into an existing Grafana through grafana-client, and an edited one back.

`push` makes the data source, the folder and the dashboards match what the code builds, touching only what
differs (run it twice: the second run changes nothing); with `dry_run` it only says what it would change.
`pull` saves a dashboard as Grafana has it, in the same stable form as `build`, so an edit made in Grafana
shows up as a reviewable diff of `dashboards/<uid>.json`, to be carried into server/dashboards/build.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException
from niquests.exceptions import RequestException

from server.dashboards.build import FOLDER, render

FOLDER_UID = "lobbywatch"
DATASOURCE_UID = "lobbywatch-influxdb"
Action = Literal["create", "update", "unchanged"]


class SyncError(RuntimeError):
    """Grafana refused or could not be reached; the message says which object and why."""


class Unreachable(SyncError):
    """No answer from Grafana at all (refused, timed out, name unknown, TLS failed): nothing was changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: BaseException) -> str:
    """The innermost cause in one line ("[Errno 111] Connection refused"), not urllib3's nested repr of it."""
    while True:
        inner = next((a for a in exc.args if isinstance(a, BaseException)), None) or exc.__context__
        if inner is None:
            break
        exc = inner
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.rpartition("Failed to establish a new connection: ")[2]


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["datasource", "folder", "dashboard"]
    name: str
    action: Action


@dataclass(frozen=True, slots=True)
class InfluxSource:
    url: str
    database: str  # the 1.x database, or the 2.x bucket through its DBRP mapping
    token: str | None = None  # InfluxDB 2 token; never printed

    def definition(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "uid": DATASOURCE_UID,
            "name": "LobbyWatch InfluxDB",
            "type": "influxdb",
            "access": "proxy",
            "url": self.url,
            "isDefault": True,
            "jsonData": {"version": "InfluxQL", "dbName": self.database, "httpMode": "POST"},
        }
        if self.token:
            spec["jsonData"]["httpHeaderName1"] = "Authorization"
            spec["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        return spec


def connect(url: str, credential: str | tuple[str, str] | None) -> GrafanaApi:
    api: GrafanaApi = GrafanaApi.from_url(url, credential=credential)
    return api


def _get(call: Any, *args: Any) -> Any | None:
    """What Grafana has, or None where it has nothing by that uid."""
    try:
        return call(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def with_lobby(boards: dict[str, dict[str, Any]], url: str) -> dict[str, dict[str, Any]]:
    """The dashboards with their link to the lobby pages pointing at this deployment's address."""

    def pointed(variable: dict[str, Any]) -> dict[str, Any]:
        return {**variable, "query": url.rstrip("/")} if variable.get("name") == "lobby" else variable

    return {
        name: {**board, "templating": {"list": [pointed(v) for v in board["templating"]["list"]]}}
        for name, board in boards.items()
    }


def push(
    api: GrafanaApi, boards: dict[str, dict[str, Any]], source: InfluxSource | None, dry_run: bool = False
) -> list[Change]:
    changes: list[Change] = []
    try:
        if source is not None:
            changes.append(_datasource(api, source, dry_run))
        changes.append(_folder(api, dry_run))
        for name, board in boards.items():
            changes.append(_dashboard(api, name, board, dry_run))
    except GrafanaException as exc:
        done = ", ".join(f"{c.kind} {c.name}" for c in changes) or "nothing"
        raise SyncError(
            f"Grafana answered {exc.status_code or 'nothing'}: {exc.message} (done before that: {done})"
        ) from None
    except RequestException as exc:
        raise Unreachable(_reason(exc)) from None
    return changes


def _datasource(api: GrafanaApi, source: InfluxSource, dry_run: bool) -> Change:
    wanted = source.definition()
    have = _get(api.datasource.get_datasource_by_uid, DATASOURCE_UID)
    if have is None:
        if not dry_run:
            api.datasource.create_datasource(wanted)
        return Change("datasource", DATASOURCE_UID, "create")
    compared = ("name", "type", "url", "access", "isDefault")
    same = all(have.get(k) == wanted[k] for k in compared) and all(
        have.get("jsonData", {}).get(k) == v for k, v in wanted["jsonData"].items()
    )
    # the token is write-only in Grafana: it cannot be compared, so it is sent again only with another change
    if same:
        return Change("datasource", DATASOURCE_UID, "unchanged")
    if not dry_run:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, wanted)
    return Change("datasource", DATASOURCE_UID, "update")


def _folder(api: GrafanaApi, dry_run: bool) -> Change:
    have = _get(api.folder.get_folder, FOLDER_UID)
    if have is None:
        if not dry_run:
            api.folder.create_folder(FOLDER, uid=FOLDER_UID)
        return Change("folder", FOLDER, "create")
    if have.get("title") == FOLDER:
        return Change("folder", FOLDER, "unchanged")
    if not dry_run:
        api.folder.update_folder(FOLDER_UID, title=FOLDER, overwrite=True)
    return Change("folder", FOLDER, "update")


def _dashboard(api: GrafanaApi, name: str, board: dict[str, Any], dry_run: bool) -> Change:
    have = _get(api.dashboard.get_dashboard, name)
    if (
        have is not None
        and render(have["dashboard"]) == render(board)
        and have.get("meta", {}).get("folderUid") == FOLDER_UID
    ):
        return Change("dashboard", name, "unchanged")
    if not dry_run:
        api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": "lobbywatch dashboards push",
            }
        )
    return Change("dashboard", name, "create" if have is None else "update")


def pull(api: GrafanaApi, name: str, folder: Path) -> Path:
    try:
        have = api.dashboard.get_dashboard(name)
    except GrafanaException as exc:
        raise SyncError(f"cannot get dashboard {name!r}: {exc.status_code or ''} {exc.message}".strip()) from None
    except RequestException as exc:
        raise Unreachable(_reason(exc)) from None
    path = folder / f"{name}.json"
    path.write_text(render(have["dashboard"]), encoding="utf-8")
    return path


def summary(changes: list[Change]) -> str:
    return json.dumps(
        {
            "changed": sum(c.action != "unchanged" for c in changes),
            "unchanged": sum(c.action == "unchanged" for c in changes),
        }
    )
