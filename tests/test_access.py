"""Who may read and do what through the API: people with their own tokens see their own branches only, act only
where their role allows, act as themselves, and every change is in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from lobby_sim.broker import Mosquitto
from server.registry import models
from server.registry.users import add_user, issue_token
from tests.helpers import PASSWORD, Device, Web, eventually, site, start_runtime

ADMIN_TOKEN = "deployment-token-for-the-tests-0123456789"


class Served:
    def __init__(self, tmp_path: Path, port: int) -> None:
        self.runtime = start_runtime(tmp_path, port, site_spec=site(), api_token=ADMIN_TOKEN)
        now = datetime.now(UTC)
        self.tokens: dict[str, str] = {}
        with self.runtime.sessions() as session:
            for login, name, role, branches in (
                ("wang", "王芳", "duty_supervisor", ["b1"]),
                ("zhao", "Zhao Lei", "branch_manager", ["b2"]),
                ("audit", "审计", "read_only", ["b1"]),
                ("li", "李工", "technician", []),
            ):
                add_user(session, login, name, role, PASSWORD, now, branches=branches)
                self.tokens[login] = issue_token(session, login, "tests", now)
        self.web = Web(self.runtime)

    def get(self, path: str, who: str | None = None, **params: object) -> httpx.Response:
        return httpx.get(f"{self.web.url}/api/v1{path}", params=params, headers=self._auth(who))

    def post(self, path: str, body: dict[str, object], who: str | None = None) -> httpx.Response:
        return httpx.post(f"{self.web.url}/api/v1{path}", json=body, headers=self._auth(who))

    def _auth(self, who: str | None) -> dict[str, str]:
        token = self.tokens[who] if who else ADMIN_TOKEN
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Served]:
    world = Served(tmp_path, mosquitto.port)
    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        device.queue(9)  # b1's queue alert
        eventually(world.runtime.alerts.open_alerts, what="b1's alert")
    finally:
        device.close()
    yield world
    world.web.stop()
    world.runtime.stop()


def test_a_manager_cannot_read_another_branch(served: Served) -> None:
    assert [b["id"] for b in served.get("/branches", "zhao").json()] == ["b2"]
    refused = served.get("/branches/b1", "zhao")
    assert (refused.status_code, refused.json()["detail"]) == (403, "branch 'b1' is not one of yours")
    assert served.get("/alerts", "zhao").json() == []
    (alert,) = served.get("/alerts", "wang").json()
    assert served.get(f"/alerts/{alert['id']}", "zhao").status_code == 403
    assert served.get("/reports/branches/b1", "zhao").status_code == 403
    assert [d["id"] for d in served.get("/devices", "zhao").json()] == ["dev-b2-cam"]
    assert [b["id"] for b in served.get("/branches", "li").json()] == ["b1", "b2"]  # technicians go everywhere


def test_people_act_as_themselves_where_their_role_allows(served: Served) -> None:
    (alert,) = served.get("/alerts", "wang").json()
    looked = served.post(f"/alerts/{alert['id']}/acknowledge", {"by": "someone else"}, "audit")
    assert (looked.status_code, looked.json()["detail"]) == (403, "a read_only can look, not act")
    other = served.post(f"/alerts/{alert['id']}/acknowledge", {"by": "x"}, "zhao")
    assert other.status_code == 403
    done = served.post(f"/alerts/{alert['id']}/acknowledge", {"by": "pretending to be the boss"}, "wang")
    assert done.status_code == 200
    assert done.json()["owner"] == "王芳"  # the token's person, whatever the body says
    assert served.post("/enrollments", {"branch": "b1", "by": "x"}, "wang").status_code == 403
    assert (
        served.post("/silences", {"branch": "b2", "minutes": 30, "by": "x", "reason": "r"}, "wang").status_code == 403
    )


def test_tokens_are_checked_and_changes_are_audited(served: Served) -> None:
    assert httpx.get(f"{served.web.url}/api/v1/branches").status_code == 401
    assert (
        httpx.get(f"{served.web.url}/api/v1/branches", headers={"Authorization": "Bearer lwt_not-a-token"}).status_code
        == 401
    )
    with served.runtime.sessions() as session:
        for row in session.query(models.ApiToken).filter_by(login="zhao"):
            row.revoked_at = datetime.now(UTC)
        session.commit()
    assert served.get("/branches", "zhao").status_code == 401
    (alert,) = served.get("/alerts", "wang").json()
    served.post(f"/alerts/{alert['id']}/resolve", {"by": "x", "note": "开了 3 号窗口"}, "wang")
    served.post("/silences", {"branch": "b1", "minutes": 30, "by": "x", "reason": "换摄像头"}, "wang")
    assert served.get("/audit", "wang").status_code == 403  # administrators only
    log = served.get("/audit").json()
    assert [(e["who"], e["action"], e["target"]) for e in log[:2]] == [
        ("王芳", "silence.create", "branch b1"),
        ("王芳", "alert.resolve", f"alert {alert['id']}"),
    ]
    assert any(e["action"] == "user.save" and e["target"] == "zhao" for e in log)
