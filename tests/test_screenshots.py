"""The script that refreshes docs/screenshots/ works on a fresh machine: a demo, chromium, a Chinese font, three
pictures of the pages as a person sees them (decoded here, at the phone's and the desktop's size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]


def test_the_screenshot_script_photographs_the_three_pages(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py"), "--out", str(tmp_path), "--seconds", "15"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(written) == ["fleet.png", "lobby-phone.png", "reports.png"]
    widths = {}
    for name in written:
        image = cv2.imread(str(tmp_path / name))
        assert image is not None, name
        widths[name] = image.shape[1]
        assert image.shape[0] >= 600, name  # a whole page, not a blank strip
        assert image.std() > 10, name  # something drawn on it
    assert widths == {"lobby-phone.png": 780, "fleet.png": 1280, "reports.png": 1280}  # a phone at 2x, a desktop
