"""Real servers started by the tests on free ports: VictoriaMetrics (InfluxDB v2 write API), InfluxDB 1.6 and
Prometheus (scraping /metrics)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from lobby_sim.broker import free_port, wait_for_port


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed: `make test` installs it (apt-get install {package})")
    return path


class ServerProcess:
    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self._argv = argv
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(self._argv, stdout=self._log.open("ab"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, 20)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(15)
            self._process = None


class VictoriaMetrics(ServerProcess):
    def __init__(self, data: Path) -> None:
        port = free_port()
        super().__init__(
            [
                _binary("victoria-metrics", "victoria-metrics"),
                f"-storageDataPath={data}",
                f"-httpListenAddr=127.0.0.1:{port}",
            ],
            port,
            data.parent / "victoria-metrics.log",
        )

    def export(self, metric_regex: str) -> list[dict[str, object]]:
        import json

        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        response = httpx.get(
            f"{self.url}/api/v1/export", params={"match[]": f'{{__name__=~"{metric_regex}"}}'}, timeout=10
        )
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]


PROMETHEUS_CONF = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: lobbywatch
    metrics_path: /metrics
    authorization:
      credentials_file: {token_file}
    static_configs:
      - targets: ["{target}"]
"""


class Prometheus(ServerProcess):
    """Debian's Prometheus, scraping one target every second with a bearer token."""

    def __init__(self, folder: Path, target: str, token: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "token").write_text(token, encoding="utf-8")
        config = folder / "prometheus.yml"
        config.write_text(PROMETHEUS_CONF.format(token_file=folder / "token", target=target), encoding="utf-8")
        port = free_port()
        super().__init__(
            [
                _binary("prometheus", "prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            folder / "prometheus.log",
        )

    def query(self, expression: str) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result

    def targets(self) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        response.raise_for_status()
        active: list[dict[str, object]] = response.json()["data"]["activeTargets"]
        return active


INFLUX_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
"""


class Influx1(ServerProcess):
    """InfluxDB 1.6 from Debian: a real InfluxQL engine (no /api/v2)."""

    def __init__(self, folder: Path) -> None:
        port, rpc = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "influxdb.conf"
        conf.write_text(INFLUX_CONF.format(rpc=rpc, dir=folder, port=port))
        super().__init__([_binary("influxd", "influxdb"), "-config", str(conf)], port, folder / "influxd.log")

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("influxd did not answer /ping")

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        response = httpx.post(f"{self.url}/query", params=params, timeout=10)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result


class InfluxWriteStandIn:
    """A real HTTP server answering InfluxDB 2's write endpoint the way InfluxDB does when lines are wrong:
    it keeps each field's type, writes the lines that agree and answers 400 "partial write: field type
    conflict" naming the rest (VictoriaMetrics, the other stand-in, takes any type and so cannot refuse)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stand_in = self
        self.lines: set[str] = set()  # a point written again overwrites itself, as in InfluxDB
        self.types: dict[tuple[str, str], str] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import gzip

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                refused = stand_in.take(body.decode())
                if refused:
                    message = f"partial write: field type conflict: {refused[0]} dropped={len(refused)}"
                    self.send_response(400)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"code": "invalid", "message": message}).encode())
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="influx-stand-in")
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self, text: str) -> list[str]:
        import re

        refused = []
        for line in filter(None, text.splitlines()):
            head, rest = re.split(r"(?<!\\) ", line, maxsplit=1)
            fields, _time = rest.rsplit(" ", 1)
            measurement = re.split(r"(?<!\\),", head)[0]
            kinds = {}
            for pair in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', fields):  # commas outside quoted strings
                name, value = pair.split("=", 1)
                kinds[name] = (
                    "string"
                    if value.startswith('"')
                    else "integer"
                    if value.endswith("i")
                    else "boolean"
                    if value in ("true", "false")
                    else "float"
                )
            clash = [n for n, k in kinds.items() if self.types.get((measurement, n), k) != k]
            if clash:
                refused.append(
                    f'input field "{clash[0]}" on measurement "{measurement}" is type '
                    f"{kinds[clash[0]]}, already exists as type {self.types[(measurement, clash[0])]}"
                )
                continue
            self.types.update({(measurement, n): k for n, k in kinds.items()})
            self.lines.add(line)
        return refused

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
