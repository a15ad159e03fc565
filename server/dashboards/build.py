"""The Grafana dashboards, built from code with grafana-foundation-sdk's typed builders (so they follow
Grafana's dashboard model), in every shipped language; `dashboards/*.json` is their output.

Branch (a lobby now and over the day), region (branches ranked by service level) and fleet (devices, for the
technicians). Time zone: the browser's (each branch office's screen is in its own zone); units and thresholds
on every panel; large stat values for a wall screen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from lobbywatch.i18n import LOCALES, catalog, t
from server.dashboards import BRANCH_UID, FLEET_UID, REGION_UID, panels, uid
from server.dashboards import queries as q
from server.dashboards.influxql import DATASOURCE, Annotation, Query

FOLDER = "LobbyWatch"


def branch(locale: str) -> dash.Dashboard:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    people = minutes = panels.steps((None, "green"))  # and the branch's own limit: _own_limit
    board = (
        panels.base(tr("dash.branch.title"), BRANCH_UID, locale, tr)
        .with_variable(panels.variable("branch", tr("dash.var.branch"), q.VAR_BRANCH, q.LABEL_REGEX))
        .annotation(
            dash.AnnotationQuery()
            .name(tr("dash.alerts"))
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .target(Annotation(q.ALERT_ANNOTATIONS, "subject", "rule"))
        )
        .with_row(dash.Row(tr("dash.branch.now")))
        .with_panel(
            panels.own_limit(
                panels.stat_panel(tr("dash.branch.waiting_now"), q.WAITING_NOW, "none", people, 6, alias="$tag_name"),
                q.QUEUE_THRESHOLD,
                "threshold",
            )
        )
        .with_panel(
            panels.own_limit(
                panels.stat_panel(tr("dash.branch.wait_now"), q.WAIT_NOW, "m", minutes, 6, alias="$tag_name"),
                q.WAIT_TARGET,
                "target",
            )
        )
        .with_panel(
            panels.renamed(
                panels.stat_panel(
                    tr("dash.branch.windows"),
                    q.WINDOWS_NOW,
                    "none",
                    panels.steps((None, "blue")),
                    6,
                    alias="$tag_name $col",
                ),
                tr,
                "open",
                "needed",
            )
        )
        .with_panel(
            panels.stat_panel(
                tr("dash.branch.service_level"),
                q.SERVICE_LEVEL,
                "percent",
                panels.steps((None, "red"), (80, "orange"), (90, "green")),
                6,
            )
        )
        .with_row(dash.Row(tr("dash.branch.day")))
        .with_panel(
            panels.own_limit(
                panels.series_panel(
                    tr("dash.branch.waiting"), q.OCCUPANCY_OVER_TIME, "none", people, alias="$tag_name"
                ),
                q.QUEUE_THRESHOLD,
                "threshold",
            )
        )
        .with_panel(
            panels.renamed(
                panels.series_panel(tr("dash.branch.wait"), q.WAIT_OVER_TIME, "m", minutes, alias="$tag_name $col"),
                tr,
                "wait",
                "target",
            )
        )
        .with_row(dash.Row(tr("dash.branch.calls")))
        .with_panel(
            panels.series_panel(
                tr("dash.branch.calls_over_time"),
                q.CALLS_OVER_TIME,
                "none",
                panels.steps((None, "blue")),
                w=12,
                alias="$tag_kind",
                bars=True,
            )
            .override_by_name("accessibility", [panels.shown_as(tr("call.accessibility"))])
            .override_by_name("help", [panels.shown_as(tr("call.help"))])
            .override_by_name("priority", [panels.shown_as(tr("call.priority"))])
        )
        .with_panel(
            panels.stat_panel(
                tr("dash.branch.response"),
                q.CALL_RESPONSE,
                "s",
                panels.steps((None, "green"), (60, "orange"), (120, "red")),
                8,
                h=8,
            )
        )
        .with_panel(
            panels.stat_panel(
                tr("dash.branch.unanswered"),
                q.CALLS_UNANSWERED,
                "none",
                panels.steps((None, "green"), (1, "red")),
                4,
                h=8,
            )
        )
        .with_row(dash.Row(tr("dash.branch.facility")))
        .with_panel(
            panels.series_panel(
                tr("dash.branch.temperature"),
                q.TEMPERATURE,
                "celsius",
                panels.steps((None, "blue"), (18, "green"), (28, "red")),
                w=8,
                alias="$tag_name",
            )
        )
        .with_panel(
            panels.series_panel(
                tr("dash.branch.humidity"),
                q.HUMIDITY,
                "humidity",
                panels.steps((None, "orange"), (30, "green"), (70, "orange")),
                w=8,
                alias="$tag_name",
            )
        )
        .with_panel(
            panels.series_panel(
                tr("dash.branch.light"),
                q.LIGHT,
                "lux",
                panels.steps((None, "red"), (300, "green")),
                w=8,
                alias="$tag_name",
            )
        )
        .with_panel(
            panels.series_panel(
                tr("dash.branch.equipment"),
                q.EQUIPMENT,
                "bool_on_off",
                panels.steps((None, "red"), (1, "green")),
                w=12,
                alias="$tag_name",
            )
        )
        .with_panel(
            panels.table_panel(tr("dash.branch.devices"), [Query("A", q.DEVICES_OF_BRANCH, "table")], tr, w=12, h=8)
        )
    )
    return board


def region(locale: str) -> dash.Dashboard:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    ranking = [
        Query("A", q.RANK_SERVICE_LEVEL, "table"),
        Query("B", q.RANK_P90_WAIT, "table"),
        Query("C", q.RANK_LONGEST_QUEUE, "table"),
        Query("D", q.RANK_UNANSWERED, "table"),
        Query("E", q.RANK_FACILITY_UPTIME, "table"),
    ]
    ranked = panels.table_panel(tr("dash.region.ranking"), ranking, tr, h=14, link_branch=True).sort_by(
        [common_b.TableSortByFieldState().display_name(tr("dash.region.service_level")).desc(True)]
    )
    for name, unit in (
        ("service_level", "percent"),
        ("p90_wait", "m"),
        ("longest_queue", "none"),
        ("unanswered_calls", "none"),
        ("facility_uptime", "percent"),
    ):
        ranked = ranked.override_by_name(
            name,
            [
                model.DynamicConfigValue(id_val="unit", value=unit),
                model.DynamicConfigValue(id_val="displayName", value=tr(f"dash.region.{name}")),
            ],
        )
    return (
        panels.base(tr("dash.region.title"), REGION_UID, locale, tr)
        .with_panel(ranked)
        .with_panel(
            panels.series_panel(
                tr("dash.region.p90_over_time"),
                q.REGION_WAIT_OVER_TIME,
                "m",
                panels.steps((None, "green"), (15, "orange"), (25, "red")),
                w=24,
                alias="$tag_branch_label",
            )
        )
    )


def fleet(locale: str) -> dash.Dashboard:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    devices = [
        Query("A", q.FLEET_STATUS, "table"),
        Query("B", q.FLEET_HEALTH, "table"),
        Query("C", q.FLEET_CAMERAS, "table"),
    ]
    listing = panels.table_panel(tr("dash.fleet.devices"), devices, tr, h=14).sort_by(
        [common_b.TableSortByFieldState().display_name(tr("dash.fleet.field.online"))]
    )  # offline devices first
    for field, unit in q.FLEET_FIELDS.items():  # a person reads names, units and words, not fields and 0/1
        shown = [model.DynamicConfigValue(id_val="displayName", value=tr(f"dash.fleet.field.{field}"))]
        if unit:
            shown.append(model.DynamicConfigValue(id_val="unit", value=unit))
        if field in ("online", "camera_ok"):
            words = {"1": (tr(f"dash.fleet.yes.{field}"), "green"), "0": (tr(f"dash.fleet.no.{field}"), "red")}
            options = {
                v: {"text": text, "color": color, "index": i} for i, (v, (text, color)) in enumerate(words.items())
            }
            shown.append(model.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": options}]))
            shown.append(model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}))
        listing = listing.override_by_name(field, shown)
    return (
        panels.base(tr("dash.fleet.title"), FLEET_UID, locale, tr)
        .with_panel(panels.stat_panel(tr("dash.fleet.online"), q.FLEET_ONLINE, "none", panels.steps((None, "blue")), 6))
        .with_panel(listing)
        .with_panel(
            panels.series_panel(
                tr("dash.fleet.clock_skew"),
                q.FLEET_CLOCK_SKEW,
                "ms",
                panels.steps((None, "green"), (5000, "red")),
                alias="$tag_device",
            )
        )
        .with_panel(
            panels.series_panel(
                tr("dash.fleet.outbox"),
                q.FLEET_OUTBOX,
                "none",
                panels.steps((None, "green"), (1000, "orange")),
                alias="$tag_device",
            )
        )
    )


BUILDERS = {BRANCH_UID: branch, REGION_UID: region, FLEET_UID: fleet}


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, as Grafana's JSON, keyed by uid."""
    built: dict[str, dict[str, Any]] = {}
    for locale in LOCALES:
        for base, make in BUILDERS.items():
            board: cogbuilder.Builder[model.Dashboard] = make(locale)
            built[uid(base, locale)] = described(json.loads(json.dumps(board.build(), cls=JSONEncoder)), locale)
    return built


def described(board: dict[str, Any], locale: str) -> dict[str, Any]:
    """Each panel with what it shows and how to read it (the ⓘ beside its title): `<its title's key>.desc`."""
    words = catalog(locale)
    keys = {text: key for key, text in words.items() if key.startswith("dash.") and f"{key}.desc" in words}
    for panel in board["panels"]:
        if panel["title"] in keys:
            panel["description"] = words[f"{keys[panel['title']]}.desc"]
    return board


def render(board: dict[str, Any]) -> str:
    """The stable, reviewable form: sorted keys, two-space indent, no per-install fields."""
    clean = {k: v for k, v in board.items() if k not in ("id", "version", "iteration")}
    return json.dumps(clean, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in dashboards().items():
        path = folder / f"{name}.json"
        path.write_text(render(board), encoding="utf-8")
        written.append(path)
    return written


def stale(folder: Path) -> list[str]:
    """Dashboards whose file differs from what the code builds (or is missing)."""
    out = []
    for name, board in dashboards().items():
        path = folder / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(board):
            out.append(name)
    return out
