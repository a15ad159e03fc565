"""/api/v1/reports: service-level reports of a branch or a region, for a day or a week, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from server.api.deps import Authorized, CallerDep, RuntimeDep
from server.reports.build import Period, PeriodKind, branches_in, make_report, region_reports
from server.reports.service_level import BranchReport
from server.runtime import Runtime

reports = APIRouter(prefix="/api/v1/reports", dependencies=[Authorized])

PeriodQuery = Annotated[PeriodKind, Query(description="day, or week (Monday to Sunday)")]
DateQuery = Annotated[
    date | None, Query(description="a day of the period, local to the branch; default: yesterday, or last week")
]
FormatQuery = Annotated[Literal["json", "csv"], Query(description="json, or csv (one row per branch)")]


def default_day(runtime: Runtime, timezone: str, kind: PeriodKind) -> date:
    today = runtime.clock.now().astimezone(ZoneInfo(timezone)).date()
    return today - timedelta(days=7 if kind == "week" else 1)


def _period(runtime: Runtime, timezone: str, kind: PeriodKind, day: date | None) -> Period:
    try:
        period = Period.of(kind, day or default_day(runtime, timezone, kind))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if period.first > runtime.clock.now().astimezone(ZoneInfo(timezone)).date():
        raise HTTPException(422, f"{period.first} is in the future: there is nothing to report yet")
    return period


def as_csv(rows: list[BranchReport], filename: str) -> Response:
    flat = [r.row() for r in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    return Response(
        text.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


@reports.get("/branches/{branch_id}", summary="A branch's service level over a day or a week")
def branch_report(
    runtime: RuntimeDep,
    caller: CallerDep,
    branch_id: str,
    period: PeriodQuery = "day",
    date: DateQuery = None,
    format: FormatQuery = "json",
) -> Any:
    branch = runtime.directory.branches.get(branch_id)
    if branch is None:
        raise HTTPException(404, f"no branch {branch_id!r}")
    caller.check_branch(runtime, branch_id)
    chosen = _period(runtime, branch.timezone, period, date)
    report = make_report(runtime.store, runtime.sessions, branch, chosen, runtime.clock.now())
    if format == "csv":
        return as_csv([report.figures], f"lobbywatch-{branch_id}-{chosen.kind}-{chosen.first}")
    return {**asdict(report.figures), "chart": asdict(report.chart)}


@reports.get("/regions/{region_id}", summary="Every branch of a region (and the regions in it), best first")
def region_report(
    runtime: RuntimeDep,
    caller: CallerDep,
    region_id: str,
    period: PeriodQuery = "day",
    date: DateQuery = None,
    format: FormatQuery = "json",
) -> Any:
    branches = [b for b in branches_in(runtime.directory, region_id) if caller.sees(runtime, b.id)]
    if region_id not in runtime.directory.region_parents:
        raise HTTPException(404, f"no region {region_id!r}")
    timezone = branches[0].timezone if branches else "Asia/Shanghai"
    chosen = _period(runtime, timezone, period, date)
    ranked = region_reports(runtime.store, runtime.sessions, branches, chosen, runtime.clock.now())
    if format == "csv":
        return as_csv(ranked, f"lobbywatch-{region_id}-{chosen.kind}-{chosen.first}")
    return {
        "region": region_id,
        "period": chosen.kind,
        "start": chosen.first.isoformat(),
        "branches": [asdict(r) for r in ranked],
    }
