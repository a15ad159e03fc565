"""Refresh the screenshots in docs/screenshots/: the phone lobby page, the fleet page and the report page, in
Chinese, from a running demo (the embedded broker and storage), through Debian's chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--seconds 45] [--lang zh-CN]

It runs the demo until the ramp bell and a queue have fired alerts (about 45 s), then signs in as the demo's
administrator and photographs each page. A Chinese font must be installed (`fonts-wqy-zenhei`, which
scripts/ensure-system-packages.sh installs): without one, chromium draws boxes, and the script refuses.
The last line is JSON: the files written and their sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lobby_sim.demo import TICK_S, Demo  # noqa: E402

PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=900)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def chinese_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    found = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True, check=False)  # noqa: S603
    return bool(found.stdout.strip())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sign_in(browser: Browser, url: str, password: str, viewport: ViewportSize, lang: str) -> Page:
    page = browser.new_page(viewport=viewport, locale=lang, device_scale_factor=2 if viewport is PHONE else 1)
    page.goto(f"{url}/login?next=/lobby")
    page.fill("#login", "demo")
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/lobby")
    return page


def shoot(demo: Demo, out: Path, lang: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            phone = sign_in(browser, demo.url, demo.password, PHONE, lang)
            phone.wait_for_selector("#cards article", timeout=30_000)  # the alert cards
            shots.append(out / "lobby-phone.png")
            phone.screenshot(path=str(shots[-1]), full_page=True)
            desk = sign_in(browser, demo.url, demo.password, DESKTOP, lang)
            for name, path in (("fleet", "/lobby/fleet"), ("reports", "/lobby/reports")):
                desk.goto(f"{demo.url}{path}")
                desk.wait_for_load_state("networkidle")
                shots.append(out / f"{name}.png")
                desk.screenshot(path=str(shots[-1]), full_page=True)
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--seconds", type=float, default=45.0, help="demo time before the pictures (alerts fire)")
    parser.add_argument("--lang", default="zh-CN", choices=["zh-CN", "en"])
    args = parser.parse_args(argv)
    if args.lang == "zh-CN" and not chinese_font():
        print("no Chinese font (fc-list :lang=zh is empty): apt-get install fonts-wqy-zenhei", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lobbywatch-shots-") as work:
        demo = Demo(Path(work) / "demo", free_port(), args.lang)
        try:
            demo.start()
            started = last = time.monotonic()
            while (now := time.monotonic()) - started < args.seconds:
                demo.step(now - started, now - last)
                last = now
                time.sleep(TICK_S)
            shots = shoot(demo, args.out, args.lang)
        finally:
            demo.shutdown()
    print(json.dumps({str(p.relative_to(args.out)): p.stat().st_size for p in shots}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
