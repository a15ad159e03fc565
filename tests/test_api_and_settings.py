from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from lobby_sim.broker import Mosquitto
from server.app import create_app
from server.cli import main as server_main
from server.runtime import Runtime
from server.settings import Settings
from tests.helpers import start_runtime

TOKEN = "k3Jd8s-very-random-token-for-tests"
LINK = "another-random-secret-for-links"


def test_production_refuses_missing_and_default_secrets() -> None:
    with pytest.raises(ValidationError, match="refusing to start outside dev mode: set LOBBYWATCH_API_TOKEN to"):
        Settings(mode="prod", mqtt_password="a-long-enough-mqtt-password", link_secret=LINK)
    with pytest.raises(ValidationError, match="LOBBYWATCH_API_TOKEN"):
        Settings(mode="prod", api_token="changeme", mqtt_password="a-long-enough-mqtt-password", link_secret=LINK)
    with pytest.raises(ValidationError, match="LOBBYWATCH_MQTT_PASSWORD"):
        Settings(mode="prod", api_token=TOKEN, mqtt_password="password", link_secret=LINK)
    with pytest.raises(ValidationError, match="LOBBYWATCH_INFLUX_TOKEN"):
        Settings(
            mode="prod",
            api_token=TOKEN,
            mqtt_password="a-long-enough-mqtt-password",
            storage="influxdb",
            link_secret=LINK,
        )
    with pytest.raises(ValidationError, match="LOBBYWATCH_LINK_SECRET"):
        Settings(mode="prod", api_token=TOKEN, mqtt_password="a-long-enough-mqtt-password")
    good = Settings(mode="prod", api_token=TOKEN, mqtt_password="a-long-enough-mqtt-password", link_secret=LINK)
    assert good.mode == "prod"
    assert Settings(mode="dev").api_token is None


def test_secrets_never_show_in_settings_text() -> None:
    settings = Settings(mode="prod", api_token=TOKEN, mqtt_password="a-long-enough-mqtt-password", link_secret=LINK)
    assert TOKEN not in repr(settings)
    assert "a-long-enough" not in str(settings.model_dump())


def test_serve_says_what_is_wrong_in_the_users_language(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODE", "prod")
    monkeypatch.delenv("LOBBYWATCH_API_TOKEN", raising=False)
    assert server_main(["--lang", "zh-CN", "serve"]) == 2
    err = capsys.readouterr().err
    assert "服务器设置有误" in err
    assert "LOBBYWATCH_API_TOKEN" in err
    monkeypatch.setenv("LOBBYWATCH_STORAGE", "cassandra")
    assert server_main(["--lang", "en", "serve"]) == 2
    assert "storage" in capsys.readouterr().err


@pytest.fixture
def prod_runtime(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Runtime]:
    runtime = start_runtime(tmp_path, mosquitto.port, mode="prod", api_token=TOKEN, link_secret=LINK)
    yield runtime
    runtime.stop()


def test_api_requires_the_token_outside_dev_mode(prod_runtime: Runtime) -> None:
    with TestClient(create_app(runtime=prod_runtime)) as client:
        assert client.get("/api/v1/health").status_code == 200  # for load balancers and monitoring
        for path in ("/api/v1/branches", "/api/v1/devices", "/api/v1/alerts", "/api/v1/branches/b1"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        response = client.get("/api/v1/branches", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert {b["id"] for b in response.json()} == {"b1", "b2"}
        assert client.get("/api/v1/branches/nope", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_openapi_documents_every_field(prod_runtime: Runtime) -> None:
    with TestClient(create_app(runtime=prod_runtime)) as client:
        spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/health",
        "/api/v1/branches",
        "/api/v1/branches/{branch_id}",
        "/api/v1/devices",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}",
    } <= paths
    assert "occupancy" in spec["components"]["schemas"]["ZoneLive"]["properties"]


def test_silences_through_the_api(prod_runtime: Runtime) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(runtime=prod_runtime)) as client:
        made = client.post(
            "/api/v1/silences", headers=auth, json={"branch": "b1", "minutes": 30, "by": "张工", "reason": "更换摄像头"}
        )
        assert made.status_code == 200
        assert made.json()["reason"] == "更换摄像头"
        assert [s["id"] for s in client.get("/api/v1/silences", headers=auth).json()] == [made.json()["id"]]
        refused = client.post(
            "/api/v1/silences", headers=auth, json={"branch": "nowhere", "minutes": 30, "by": "张工", "reason": "x"}
        )
        assert (refused.status_code, refused.json()["detail"]) == (409, "no branch 'nowhere'")
        assert client.delete(f"/api/v1/silences/{made.json()['id']}", headers=auth).status_code == 204
        assert client.get("/api/v1/silences", headers=auth).json() == []
        assert client.post("/api/v1/silences", json={}).status_code == 401
