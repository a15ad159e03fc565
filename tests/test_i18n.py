import re
import string

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
