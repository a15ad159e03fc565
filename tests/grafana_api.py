"""The part of Grafana's HTTP API that `lobbywatch dashboards push/pull` uses, served for real over HTTP.

Grafana cannot run on these machines; this is the thinnest stand-in: the endpoints, status codes and payload
shapes of Grafana's documented API (health, data sources by uid, folders, dashboards by uid and /db), keeping
what it is sent in memory, refusing requests without the token, and recording every request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GrafanaApi(ThreadingHTTPServer):
    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"dashboard": ..., "meta": ...}
        self.requests: list[tuple[str, str]] = []
        self.received_auth: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: GrafanaApi

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self, method: str) -> None:
        api = self.server
        api.requests.append((method, self.path))
        api.received_auth.append(self.headers.get("Authorization", ""))
        if self.path == "/api/health":
            return self._reply(200, {"database": "ok", "version": "11.3.0"})
        if self.headers.get("Authorization") != f"Bearer {api.token}":
            return self._reply(401, {"message": "Unauthorized"})
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "datasources"]:
            return self._datasources(method, parts[2:])
        if parts[:2] == ["api", "folders"]:
            return self._folders(method, parts[2:])
        if parts[:2] == ["api", "dashboards"]:
            return self._dashboards(method, parts[2:])
        return self._reply(404, {"message": "Not found"})

    def _datasources(self, method: str, rest: list[str]) -> None:
        store = self.server.datasources
        if method == "GET" and rest[:1] == ["uid"]:
            found = store.get(rest[1])
            return self._reply(200, found) if found else self._reply(404, {"message": "Data source not found"})
        if method == "POST" and not rest:
            body = self._body()
            body["id"] = len(store) + 1
            body.pop("secureJsonData", None)  # write-only in Grafana: never given back
            store[body["uid"]] = body
            return self._reply(200, {"datasource": body, "id": body["id"], "message": "Datasource added"})
        if method == "PUT" and rest[:1] == ["uid"] and rest[1] in store:
            body = self._body()
            body.pop("secureJsonData", None)
            store[rest[1]] = {**body, "id": store[rest[1]]["id"]}
            return self._reply(200, {"message": "Datasource updated"})
        return self._reply(404, {"message": "Not found"})

    def _folders(self, method: str, rest: list[str]) -> None:
        store = self.server.folders
        if method == "GET" and rest:
            found = store.get(rest[0])
            return self._reply(200, found) if found else self._reply(404, {"message": "folder not found"})
        if method == "POST" and not rest:
            body = self._body()
            folder = {"uid": body["uid"], "title": body["title"], "id": len(store) + 1}
            store[folder["uid"]] = folder
            return self._reply(200, folder)
        return self._reply(404, {"message": "Not found"})

    def _dashboards(self, method: str, rest: list[str]) -> None:
        store = self.server.dashboards
        if method == "GET" and rest[:1] == ["uid"]:
            found = store.get(rest[1])
            return self._reply(200, found) if found else self._reply(404, {"message": "Dashboard not found"})
        if method == "POST" and rest == ["db"]:
            body = self._body()
            board = body["dashboard"]
            if body.get("folderUid") not in self.server.folders:
                return self._reply(400, {"message": "folder not found"})
            before = store.get(board["uid"])
            version = (before["dashboard"]["version"] + 1) if before else 1
            saved = {**board, "id": len(store) + 1, "version": version}
            store[board["uid"]] = {"dashboard": saved, "meta": {"folderUid": body["folderUid"], "version": version}}
            return self._reply(200, {"uid": board["uid"], "version": version, "status": "success"})
        return self._reply(404, {"message": "Not found"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")
