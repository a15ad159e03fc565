import os
import re
import string
from pathlib import Path

import pytest

from lobbywatch.i18n import LOCALES, catalog, normalize_locale, t


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_locale_has_every_message_with_the_same_placeholders() -> None:
    reference = catalog("en")
    for locale in LOCALES:
        messages = catalog(locale)
        assert messages.keys() == reference.keys(), f"{locale} differs: {messages.keys() ^ reference.keys()}"
        for key, text in messages.items():
            assert placeholders(text) == placeholders(reference[key]), f"{locale}:{key}"


def test_chinese_catalog_is_chinese() -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    untranslated = [key for key, text in catalog("zh-CN").items() if not han.search(text)]
    assert untranslated == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [("zh_CN.UTF-8", "zh-CN"), ("zh-TW", "zh-CN"), ("en-US,en;q=0.9", "en"), (None, "zh-CN"), ("fr", "zh-CN")],
)
def test_locale_normalisation(given: str | None, expected: str) -> None:
    assert normalize_locale(given) == expected


def test_translate_fills_placeholders() -> None:
    assert t("en", "agent.config_ok", device="d1", path="x.yaml") == "Config of device d1 in x.yaml is valid."
    assert "d1" in t("zh-CN", "agent.config_ok", device="d1", path="x.yaml")
    with pytest.raises(KeyError):
        t("en", "no.such.key")


def test_every_command_line_help_text_is_in_both_catalogs_as_the_code_says_it() -> None:
    import edge_agent.cli
    import server.cli
    from lobbywatch.cli_help import walk

    found = walk(server.cli.build_parser()) | walk(edge_agent.cli.build_parser())
    assert len(found) > 70
    english, chinese = catalog("en"), catalog("zh-CN")
    assert {k: english.get(k) for k in found} == found  # the English catalog says what the code says
    assert [k for k in found if k not in chinese] == []


def test_help_and_argument_errors_come_in_the_readers_language() -> None:
    import subprocess
    import sys

    env = {**os.environ, "LANG": "zh_CN.UTF-8"}
    env.pop("LOBBYWATCH_LANG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False, timeout=60)

    shown = run("-m", "edge_agent.cli", "enroll", "--help")
    assert shown.returncode == 0
    assert "用法：lobbywatch-agent enroll" in shown.stdout
    assert "硬件序列号（默认：从主板读取）" in shown.stdout
    assert "显示此帮助并退出" in shown.stdout
    refused = run("-m", "server.cli", "backup", "restore")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == "lobbywatch backup restore：错误：缺少必需的参数：folder"
    english = run("-m", "server.cli", "--lang", "en", "backup", "--bogus")
    assert english.stderr.splitlines()[-1] == "lobbywatch backup: error: the following arguments are required: action"


def test_refusals_name_their_reason_in_the_readers_language(tmp_path: Path) -> None:
    """Not only the headline: why a user, a backup or a calibration was refused reads in Chinese too."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "LANG": "zh_CN.UTF-8",
        "LOBBYWATCH_MODE": "dev",
        "LOBBYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
    }
    env.pop("LOBBYWATCH_LANG", None)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], env=env, input=stdin, capture_output=True, text=True, check=False, timeout=60
        )

    user = run("-m", "server.cli", "user", "wang", "--role", "duty_supervisor", "--password-stdin", stdin="x" * 20)
    assert user.returncode == 2
    assert "duty_supervisor 需要 --branch 或 --region：其负责的支局" in user.stderr
    backup = run("-m", "server.cli", "backup", "verify", str(tmp_path / "nowhere"))
    assert backup.returncode == 2
    assert "这不是 LobbyWatch 备份文件夹" in backup.stderr
    config = tmp_path / "device.yaml"
    config.write_text(
        "device_id: dev-001\n"
        f"data_dir: {tmp_path / 'data'}\n"
        "camera: {source: '0', zones: [{key: queue, polygon: [[0, 0], [100, 0], [100, 100]]}]}\n"
    )
    calibrated = run("-m", "edge_agent.cli", "calibrate", "--config", str(config), "--dataset", str(tmp_path))
    assert calibrated.returncode == 2
    assert f"{tmp_path} 不是数据集文件夹：缺少 roi.json" in calibrated.stderr
    for said in (user.stderr, backup.stderr, calibrated.stderr):
        assert "Traceback" not in said
