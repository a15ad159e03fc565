"""Enrollment from the technicians' pages in Debian's chromium, against the real server on SQLite: one device's
printable QR label (decoded from the rendered page with OpenCV), and a CSV import sent in parts with progress."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from lobby_sim.broker import Mosquitto
from server.provisioning.enrollment import token_hash
from server.registry import models
from server.registry.users import add_user
from tests.helpers import PASSWORD, Web, fits_the_screen, sign_in, site, start_runtime


@pytest.fixture
def web(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Web]:
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=site())
    with runtime.sessions() as session:
        now = datetime.now(UTC)
        add_user(session, "li", "李工", "technician", PASSWORD, now)
        add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, now, branches=["b1"])
    web = Web(runtime)
    yield web
    web.stop()
    runtime.stop()


def decoded_qr(page: Page, selector: str) -> str:
    """What a phone would read from the label as the browser drew it."""
    shot = page.locator(selector).screenshot()
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_GRAYSCALE)
    # OpenCV's classic detector misses about 3 in 100 of these codes (the token is random, so the code differs
    # on each run, and CI failed once on it); the ArUco-based one read 300 of 300 in a trial.
    text, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return str(text)


def test_a_technician_prints_a_qr_label_for_a_new_camera(browser: Browser, web: Web) -> None:
    page = sign_in(browser, web, "li")
    page.get_by_role("link", name="设备", exact=True).click()
    page.get_by_role("link", name="登记新设备").click()
    assert fits_the_screen(page)
    page.select_option("#branch", "b1")
    page.select_option("#profile", "lobby-camera")
    with page.expect_response("**/lobby/enroll") as answered:
        page.get_by_role("button", name="生成登记令牌和标签").click()
    assert answered.value.headers["cache-control"] == "no-store"  # the token is a secret until used
    label = page.locator("article.label")
    expect(label).to_contain_text("b1-cam1")
    expect(label).to_contain_text("阜成门支局 (b1)")
    expect(label).to_contain_text("大厅摄像头")
    expect(label).to_contain_text("有效期至")
    token = page.locator(".label .token").inner_text()
    assert token.startswith("LW1-")

    facts = parse_qs(urlparse(decoded_qr(page, "article.label svg")).query)
    assert facts["token"] == [token]
    assert (facts["device"], facts["branch"], facts["profile"]) == (["b1-cam1"], ["b1"], ["lobby-camera"])
    with web.runtime.sessions() as session:
        made = session.scalars(select(models.Enrollment).filter_by(token_hash=token_hash(token))).one()
        assert (made.device_id, made.created_by) == ("b1-cam1", "李工")

    page.goto(f"{web.url}/lobby/enroll")  # the same id again: refused in words, nothing made
    page.fill("#device_id", "b1-cam1")
    page.get_by_role("button", name="生成登记令牌和标签").click()
    expect(page.get_by_role("alert")).to_contain_text("设备编号 b1-cam1 已存在或正在等待登记")


def test_a_csv_of_many_devices_is_imported_in_parts_with_progress_and_each_refusal_named(
    browser: Browser, web: Web, tmp_path: Path
) -> None:
    rows = [["b1", "lobby-camera", ""]] * 55 + [
        ["b2", "lobby-camera", ""],
        ["nowhere", "", ""],
        ["b1", "toaster", ""],
        ["b1", "call-buttons", "b1-bell"],
    ]
    text = "branch,profile,device_id\n" + "\n".join(",".join(row) for row in rows) + "\n"
    page = sign_in(browser, web, "li")
    page.goto(f"{web.url}/lobby/enroll")
    page.set_input_files("#csv", files=[{"name": "devices.csv", "mimeType": "text/csv", "buffer": text.encode()}])
    parts: list[int] = []
    page.on("request", lambda r: parts.append(1) if r.url.endswith("/lobby/enroll/rows") else None)
    page.get_by_role("button", name="导入").click()
    expect(page.locator("#import-status")).to_have_text("完成：生成 57 个，拒绝 2 个。", timeout=30_000)
    assert len(parts) == 2  # 59 rows in parts of 50: the bar moved between them
    assert page.locator("#progress").evaluate("bar => [bar.value, bar.max]") == [59, 59]
    expect(page.locator("#refused li")).to_have_text(
        [
            "第 57 行未创建：没有支局 nowhere",
            "第 58 行未创建：没有设备类型 toaster（可选：lobby-camera, call-buttons, facility-sensors, combined）",
        ]
    )
    expect(page.locator("article.label")).to_have_count(57)
    expect(page.locator("article.label[data-device='b1-bell']")).to_contain_text("呼叫按钮")

    with page.expect_download() as downloading:
        page.get_by_role("button", name="下载令牌清单（CSV）").click()
    saved = tmp_path / "enrollments.csv"
    downloading.value.save_as(saved)
    listed = list(csv.DictReader(saved.open(encoding="utf-8-sig")))
    assert len(listed) == 57
    with web.runtime.sessions() as session:
        kept = {e.token_hash: e.device_id for e in session.scalars(select(models.Enrollment))}
    assert {kept[token_hash(r["token"])] for r in listed} == {r["device_id"] for r in listed}
    assert "b1-bell" in {r["device_id"] for r in listed}


def test_supervisors_cannot_enroll(browser: Browser, web: Web) -> None:
    page = sign_in(browser, web, "wang")
    refused = page.goto(f"{web.url}/lobby/enroll")
    assert refused is not None
    assert refused.status == 403
    answer = page.request.post(f"{web.url}/lobby/enroll/rows", data={"csrf": "x", "text": "branch\nb1\n"})
    assert answer.status == 403
    with web.runtime.sessions() as session:
        assert session.scalars(select(models.Enrollment)).first() is None
