import re
from pathlib import Path

import pytest

from edge_agent.cli import main as agent_main
from edge_agent.config import ConfigError, load_config

EXAMPLES = sorted((Path(__file__).parent.parent / "firmware_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.device_id
    assert config.broker.tls, "examples are for production: TLS on"


def test_there_is_an_example_per_hardware_profile() -> None:
    assert {p.stem for p in EXAMPLES} >= {"lobby-camera", "call-buttons", "facility-sensors"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: dev-001\nbroker:\n  hots: example.org\n")
    with pytest.raises(ConfigError, match=r"broker\.hots: not a known setting") as refused:
        load_config(path)
    assert refused.value.text("zh-CN").splitlines() == [
        f"{path}：1 处问题",
        "  broker.hots: 不是已知的设置项（拼写有误？）",
    ]


def test_every_problem_reads_in_chinese(tmp_path: Path) -> None:
    """pydantic's own checks and ours, worded from the catalogs: no English left in a technician's screen."""
    path = write(
        tmp_path,
        """
device_id: dev-001
broker: {port: 0, keepalive_s: 1}
buttons:
  - {key: a, kind: help, pin: 5}
  - {key: b, kind: priority, pin: 5}
  - {key: c, kind: elevator, pin: x}
reporting: {queue_keepalive_s: -1}
""",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    shown = refused.value.text("zh-CN").splitlines()[1:]
    assert len(shown) >= 4
    assert all(re.search(r"[\u4e00-\u9fff]", line) for line in shown), shown
    assert not any(re.search(r"\b(must|should|Input|valid|permitted)\b", line) for line in shown), shown
    assert refused.value.text("en") == str(refused.value)


def test_wrong_type_is_an_error_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: dev-001\nbuttons:\n  - {key: bell, kind: accessibility, pin: seventeen}\n")
    with pytest.raises(ConfigError, match=r"buttons\.0\.pin"):
        load_config(path)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: dev-001\ncamera: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line [23]"):
        load_config(path)


def test_shared_pin_and_bad_zone_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
device_id: dev-001
buttons:
  - {key: a, kind: help, pin: 5}
  - {key: b, kind: priority, pin: 5}
""",
    )
    with pytest.raises(ConfigError, match="share a GPIO pin") as refused:
        load_config(path)
    assert "两个按钮共用了同一个 GPIO 引脚；已用引脚：5, 5" in refused.value.text("zh-CN")
    path = write(tmp_path, "device_id: dev-001\ncamera: {source: '0', zones: [{key: q, polygon: [[0, 0], [1, 1]]}]}\n")
    with pytest.raises(ConfigError, match=r"camera\.zones\.0\.polygon"):
        load_config(path)


def test_check_config_command_in_both_languages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "device_id: dev-001\nunknown: 1\n")
    assert agent_main(["--lang", "zh-CN", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "设备配置文件有误" in err
    assert "unknown: 不是已知的设置项" in err
    assert agent_main(["--lang", "en", "check-config", str(EXAMPLES[0])]) == 0
    assert "is valid" in capsys.readouterr().out


def test_snapshot_then_calibrate_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A technician's round trip on the simulated lobby: snapshots, counts written in, calibration stored."""
    import csv

    import cv2

    from edge_agent.counting.calibration import CalibrationStore
    from lobby_sim.render import QUEUE_ZONE, LobbyRenderer

    renderer = LobbyRenderer(seed=2)
    truth = [0, 2, 5, 9, 14, 20, 27, 33, 4, 11]
    video = tmp_path / "camera"
    video.mkdir()
    for i, n in enumerate(truth):
        cv2.imwrite(str(video / f"{i:03d}.png"), renderer.render(n, 1, 3))
    config = write(
        tmp_path,
        f"""
device_id: dev-001
data_dir: {tmp_path / "data"}
camera:
  source: "{video}"
  zones: [{{key: queue, polygon: {[list(p) for p in QUEUE_ZONE]}}}]
""",
    )
    out = tmp_path / "labels"
    assert (
        agent_main(
            [
                "--lang",
                "en",
                "snapshot",
                "--config",
                str(config),
                "--out",
                str(out),
                "--count",
                str(len(truth)),
                "--every",
                "0",
            ]
        )
        == 0
    )
    assert "how many people stand in zone queue" in capsys.readouterr().out
    assert agent_main(["--lang", "en", "calibrate", "--config", str(config), "--dataset", str(out)]) == 2
    assert "has no count" in capsys.readouterr().err  # nothing filled in yet: refused, nothing changed
    with (out / "counts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "count"])
        writer.writerows([f"{i:06d}", n] for i, n in enumerate(truth, 1))
    assert agent_main(["--lang", "zh-CN", "calibrate", "--config", str(config), "--dataset", str(out)]) == 0
    assert "区域 queue 已标定" in capsys.readouterr().out
    assert CalibrationStore(tmp_path / "data").load("queue") is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"device_id: dev-001\nlocale: \xff\xfe\n", "not UTF-8 text"),
        (b"device_id: dev-001\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (
            b"device_id: dev-001\ncamera:\n  source: '0'\n  zones:\n    - {key: queue, polygon: [[0, 0], [1e30, 0], "
            b"[10, 10]]}\n",
            "camera.zones.0.polygon.1.0",
        ),
        (b"device_id: dev-001\nreporting: {facility_interval_s: .inf}\n", "reporting.facility_interval_s"),
        (b"device_id: dev-001\noutbox: {max_age_days: .nan}\n", "outbox.max_age_days"),
        (b"device_id: lobbywatch-server\n", "reserved for the system"),
    ],
    ids=["not-utf8", "deep", "huge-coordinate", "infinite-interval", "nan", "reserved-id"],
)
def test_check_config_names_the_problem_and_never_crashes(
    tmp_path: Path, text: bytes, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "device.yaml"
    path.write_bytes(text)
    assert agent_main(["--lang", "en", "check-config", str(path)]) != 0
    said = capsys.readouterr()
    assert problem in said.out + said.err
    assert "Traceback" not in said.out + said.err


def test_the_readme_documents_every_server_setting() -> None:
    """A row names its first variable in full and the next ones by their tail (`LOBBYWATCH_MQTT_HOST` / `_PORT`)."""
    import re

    from server.settings import Settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set()
    for row in (line for line in readme.splitlines() if line.startswith("| `LOBBYWATCH_")):
        names = re.findall(r"`(_?[A-Z][A-Z0-9_]*)`", row.split("|")[1])
        full = [n for n in names if n.startswith("LOBBYWATCH_")]
        documented |= set(full)
        for tail in (n for n in names if n.startswith("_")):
            first = full[0]
            cuts = [i for i, c in enumerate(first) if c == "_"]  # the tail replaces the part after a cut
            documented |= {first[:i] + tail for i in cuts}
    wanted = {f"LOBBYWATCH_{name.upper()}" for name in Settings.model_fields}
    assert sorted(wanted - documented) == []
