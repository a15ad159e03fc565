"""Real servers started by the tests on free ports: VictoriaMetrics (InfluxDB v2 write API) and InfluxDB 1.6."""

from __future__ import annotations

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
            [_binary("victoria-metrics", "victoria-metrics"), f"-storageDataPath={data}",
             f"-httpListenAddr=127.0.0.1:{port}"],
            port, data.parent / "victoria-metrics.log",
        )

    def export(self, metric_regex: str) -> list[dict[str, object]]:
        import json

        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        response = httpx.get(f"{self.url}/api/v1/export", params={"match[]": f'{{__name__=~"{metric_regex}"}}'},
                             timeout=10)
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]


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
