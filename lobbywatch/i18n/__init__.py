"""Message catalogs for everything a person reads, in zh-CN and en.

Catalogs are flat JSON files (`<locale>.json`, key -> text with `{name}` placeholders) so translators edit
them without tooling; a test keeps the locales' keys and placeholders in step.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

LOCALES: Final = ("zh-CN", "en")
DEFAULT_LOCALE: Final = "zh-CN"
_FALLBACK: Final = "en"


@cache
def catalog(locale: str) -> dict[str, str]:
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {locale!r}; known: {', '.join(LOCALES)}")
    text = resources.files(__package__).joinpath(f"{locale}.json").read_text(encoding="utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def normalize_locale(value: str | None) -> str:
    """Map what a browser or a config says (zh, zh_CN, en-US, ...) to a shipped locale."""
    if not value:
        return DEFAULT_LOCALE
    tag = value.replace("_", "-").split(",")[0].split(";")[0].strip().lower()
    if tag.startswith("zh"):
        return "zh-CN"
    if tag.startswith("en"):
        return "en"
    return DEFAULT_LOCALE


def t(locale: str, key: str, **params: object) -> str:
    text = catalog(locale).get(key) or catalog(_FALLBACK).get(key)
    if text is None:
        raise KeyError(f"no message {key!r} in any catalog")
    return text.format(**params)
