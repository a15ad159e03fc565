"""Grafana dashboards, built from code, and their way into Grafana."""

from __future__ import annotations

BRANCH_UID, REGION_UID, FLEET_UID = "lobbywatch-branch", "lobbywatch-region", "lobbywatch-fleet"
DEFAULT_LOCALE = "zh-CN"


def uid(base: str, locale: str) -> str:
    """The Chinese dashboards keep the plain uid; the other languages get a suffix (`-en`)."""
    return base if locale == DEFAULT_LOCALE else f"{base}-{locale.lower()}"
