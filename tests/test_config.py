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
    with pytest.raises(ConfigError, match=r"broker\.hots: Extra inputs are not permitted"):
        load_config(path)


def test_wrong_type_is_an_error_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: dev-001\nbuttons:\n  - {key: bell, kind: accessibility, pin: seventeen}\n")
    with pytest.raises(ConfigError, match=r"buttons\.0\.pin"):
        load_config(path)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: dev-001\ncamera: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line [23]"):
        load_config(path)


def test_shared_pin_and_bad_zone_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
device_id: dev-001
buttons:
  - {key: a, kind: help, pin: 5}
  - {key: b, kind: priority, pin: 5}
""")
    with pytest.raises(ConfigError, match="share a GPIO pin"):
        load_config(path)
    path = write(tmp_path, "device_id: dev-001\ncamera: {source: '0', zones: [{key: q, polygon: [[0, 0], [1, 1]]}]}\n")
    with pytest.raises(ConfigError, match=r"camera\.zones\.0\.polygon"):
        load_config(path)


def test_check_config_command_in_both_languages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "device_id: dev-001\nunknown: 1\n")
    assert agent_main(["--lang", "zh-CN", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "设备配置文件有误" in err
    assert "unknown: Extra inputs are not permitted" in err
    assert agent_main(["--lang", "en", "check-config", str(EXAMPLES[0])]) == 0
    assert "is valid" in capsys.readouterr().out
