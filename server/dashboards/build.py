"""The Grafana dashboards, built from code with grafana-foundation-sdk's typed builders (so they follow
Grafana's dashboard model), in every shipped language; `dashboards/*.json` is their output.

Branch (a lobby now and over the day), region (branches ranked by service level) and fleet (devices, for the
technicians). Time zone: the browser's (each branch office's screen is in its own zone); units and thresholds
on every panel; large stat values for a wall screen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from lobbywatch.i18n import LOCALES, catalog, t
from server.dashboards import BRANCH_UID, FLEET_UID, REGION_UID, uid
from server.dashboards import queries as q
from server.dashboards.influxql import DATASOURCE, Annotation, Query

FOLDER = "LobbyWatch"
Tr = Callable[..., str]


def _steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _stat(
    title: str, query: str, unit: str, thresholds: dash.ThresholdsConfig, w: int, h: int = 6, alias: str | None = None
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query("A", query, alias=alias))
        .unit(unit)
        .thresholds(thresholds)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .span(w)
        .height(h)
    )


def _series(
    title: str,
    query: str,
    unit: str,
    thresholds: dash.ThresholdsConfig,
    w: int = 12,
    h: int = 8,
    alias: str | None = None,
    bars: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query("A", query, alias=alias))
        .unit(unit)
        .thresholds(thresholds)
        .span(w)
        .height(h)
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS)
    return panel


def _table(
    title: str, targets: list[Query], tr: Tr, w: int = 24, h: int = 10, link_branch: bool = False
) -> table.Panel:
    panel = table.Panel().title(title).datasource(DATASOURCE).span(w).height(h)
    for target in targets:
        panel = panel.with_target(target)
    # one row per branch or device out of several queries
    panel = panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    if link_branch:
        link = f"/d/{BRANCH_UID}?var-branch=${{__value.text}}&${{__url_time_range}}"
        panel = panel.override_by_name(
            "branch", [model.DynamicConfigValue(id_val="links", value=[{"title": tr("dash.open_branch"), "url": link}])]
        )
    return panel


def _variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def _datasource(tr: Tr) -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label(tr("dash.var.datasource")).type("influxdb")


def _base(title: str, base_uid: str, locale: str, tr: Tr) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid(base_uid, locale))
        .tags(["lobbywatch"])
        .timezone("browser")
        .time("now/d", "now")
        .refresh("30s")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink(tr("dash.all"))
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["lobbywatch"])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(True)
        )
        .link(
            dash.DashboardLink(tr("dash.lobby"))
            .type(model.DashboardLinkType.LINK)
            .url("${lobby}/lobby")
            .tooltip(tr("dash.lobby_tip"))
            .target_blank(True)
        )
        .with_variable(_datasource(tr))
        .with_variable(dash.ConstantVariable("lobby").value(""))  # the pages' address: set by `dashboards push`
        .with_variable(_variable("region", tr("dash.var.region"), q.VAR_REGION))
    )


def branch(locale: str) -> dash.Dashboard:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    people = _steps((None, "green"), (8, "orange"), (12, "red"))
    minutes = _steps((None, "green"), (15, "orange"), (25, "red"))
    board = (
        _base(tr("dash.branch.title"), BRANCH_UID, locale, tr)
        .with_variable(_variable("branch", tr("dash.var.branch"), q.VAR_BRANCH))
        .annotation(
            dash.AnnotationQuery()
            .name(tr("dash.alerts"))
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .target(Annotation(q.ALERT_ANNOTATIONS, "subject", "rule"))
        )
        .with_row(dash.Row(tr("dash.branch.now")))
        .with_panel(_stat(tr("dash.branch.waiting_now"), q.WAITING_NOW, "none", people, 6, alias="$tag_zone"))
        .with_panel(_stat(tr("dash.branch.wait_now"), q.WAIT_NOW, "m", minutes, 6, alias="$tag_zone"))
        .with_panel(
            _stat(tr("dash.branch.windows"), q.WINDOWS_NOW, "none", _steps((None, "blue")), 6, alias="$tag_zone $col")
        )
        .with_panel(
            _stat(
                tr("dash.branch.service_level"),
                q.SERVICE_LEVEL,
                "percent",
                _steps((None, "red"), (80, "orange"), (90, "green")),
                6,
            )
        )
        .with_row(dash.Row(tr("dash.branch.day")))
        .with_panel(_series(tr("dash.branch.waiting"), q.OCCUPANCY_OVER_TIME, "none", people, alias="$tag_zone"))
        .with_panel(_series(tr("dash.branch.wait"), q.WAIT_OVER_TIME, "m", minutes, alias="$tag_zone $col"))
        .with_row(dash.Row(tr("dash.branch.calls")))
        .with_panel(
            _series(
                tr("dash.branch.calls_over_time"),
                q.CALLS_OVER_TIME,
                "none",
                _steps((None, "blue")),
                w=12,
                alias="$tag_kind",
                bars=True,
            )
        )
        .with_panel(
            _stat(
                tr("dash.branch.response"),
                q.CALL_RESPONSE,
                "s",
                _steps((None, "green"), (60, "orange"), (120, "red")),
                8,
                h=8,
            )
        )
        .with_panel(
            _stat(tr("dash.branch.unanswered"), q.CALLS_UNANSWERED, "none", _steps((None, "green"), (1, "red")), 4, h=8)
        )
        .with_row(dash.Row(tr("dash.branch.facility")))
        .with_panel(
            _series(
                tr("dash.branch.temperature"),
                q.TEMPERATURE,
                "celsius",
                _steps((None, "blue"), (18, "green"), (28, "red")),
                w=8,
                alias="$tag_sensor",
            )
        )
        .with_panel(
            _series(
                tr("dash.branch.humidity"),
                q.HUMIDITY,
                "humidity",
                _steps((None, "orange"), (30, "green"), (70, "orange")),
                w=8,
                alias="$tag_sensor",
            )
        )
        .with_panel(
            _series(
                tr("dash.branch.light"), q.LIGHT, "lux", _steps((None, "red"), (300, "green")), w=8, alias="$tag_sensor"
            )
        )
        .with_panel(
            _series(
                tr("dash.branch.equipment"),
                q.EQUIPMENT,
                "bool_on_off",
                _steps((None, "red"), (1, "green")),
                w=12,
                alias="$tag_sensor",
            )
        )
        .with_panel(_table(tr("dash.branch.devices"), [Query("A", q.DEVICES_OF_BRANCH, "table")], tr, w=12, h=8))
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
    ranked = _table(tr("dash.region.ranking"), ranking, tr, h=14, link_branch=True).sort_by(
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
        _base(tr("dash.region.title"), REGION_UID, locale, tr)
        .with_panel(ranked)
        .with_panel(
            _series(
                tr("dash.region.p90_over_time"),
                q.REGION_WAIT_OVER_TIME,
                "m",
                _steps((None, "green"), (15, "orange"), (25, "red")),
                w=24,
                alias="$tag_branch",
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
    listing = _table(tr("dash.fleet.devices"), devices, tr, h=14).sort_by(
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
        _base(tr("dash.fleet.title"), FLEET_UID, locale, tr)
        .with_panel(_stat(tr("dash.fleet.online"), q.FLEET_ONLINE, "none", _steps((None, "blue")), 6))
        .with_panel(listing)
        .with_panel(
            _series(
                tr("dash.fleet.clock_skew"),
                q.FLEET_CLOCK_SKEW,
                "ms",
                _steps((None, "green"), (5000, "red")),
                alias="$tag_device",
            )
        )
        .with_panel(
            _series(
                tr("dash.fleet.outbox"),
                q.FLEET_OUTBOX,
                "none",
                _steps((None, "green"), (1000, "orange")),
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
