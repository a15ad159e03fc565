"""The parts the dashboards are built of: panels with units and thresholds, the branch's own limits read with the
data, series renamed into the reader's words, variables, and what every dashboard has (links, time, variables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from server.dashboards import BRANCH_UID, uid
from server.dashboards import queries as q
from server.dashboards.influxql import DATASOURCE, Query

Tr = Callable[..., str]
PanelT = TypeVar("PanelT", stat.Panel, timeseries.Panel)


def shown_as(text: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="displayName", value=text)


def steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def stat_panel(
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


def series_panel(
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


def table_panel(
    title: str, targets: list[Query], tr: Tr, w: int = 24, h: int = 10, link_branch: bool = False
) -> table.Panel:
    panel = table.Panel().title(title).datasource(DATASOURCE).span(w).height(h)
    for target in targets:
        panel = panel.with_target(target)
    # one row per branch or device out of several queries
    panel = panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    if link_branch:  # the label is shown and opens the branch; the id it carries is for the link only
        link = f"/d/{BRANCH_UID}?var-branch=${{__data.fields.branch}}&${{__url_time_range}}"
        panel = panel.override_by_name(
            "branch_label",
            [
                shown_as(tr("dash.region.branch_label")),
                model.DynamicConfigValue(id_val="links", value=[{"title": tr("dash.open_branch"), "url": link}]),
            ],
        ).override_by_name("branch", [model.DynamicConfigValue(id_val="custom.hidden", value=True)])
    return panel


def own_limit(panel: PanelT, query: str, column: str, colour: str = "red") -> PanelT:
    """The branch's own limit (its zone's "too long", its wait target), read with the data, as the step where the
    colour turns: every branch is measured against what it set, not one country-wide number."""
    mapping = {"fieldName": column, "handlerKey": "threshold1", "handlerArguments": {"threshold": {"color": colour}}}
    return panel.with_target(Query("LIMIT", query)).with_transformation(
        model.DataTransformerConfig(id_val="configFromData", options={"configRefId": "LIMIT", "mappings": [mapping]})
    )


def renamed(panel: PanelT, tr: Tr, *columns: str) -> PanelT:
    """Series named "<zone name> <column>" read "<zone name> · <the column's word>"."""
    for name in columns:
        panel = panel.with_transformation(
            model.DataTransformerConfig(
                id_val="renameByRegex",
                options={"regex": f"^(.*) {name}$", "renamePattern": f"$1 · {tr(f'dash.col.{name}')}"},
            )
        )
    return panel


def variable(name: str, label: str, query: str, regex: str = "") -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .query(query)
        .regex(regex)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def datasource(tr: Tr) -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label(tr("dash.var.datasource")).type("influxdb")


def base(title: str, base_uid: str, locale: str, tr: Tr) -> dash.Dashboard:
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
        .with_variable(datasource(tr))
        .with_variable(dash.ConstantVariable("lobby").value(""))  # the pages' address: set by `dashboards push`
        .with_variable(variable("region", tr("dash.var.region"), q.VAR_REGION, q.LABEL_REGEX))
    )
