"""The registry and alert store on SQLite and on a real PostgreSQL."""

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import SystemClock
from server.alerts.catalog import first_role, severity
from server.alerts.service import AlertService
from server.delivery.notify import Notice
from server.registry import models
from server.registry.directory import Directory
from server.registry.site import SiteError, SiteSpec, import_site, load_site
from server.rules.transitions import Change, Transition
from tests.helpers import site


def test_site_import_is_idempotent_and_feeds_the_directory(sessions: sessionmaker[Session]) -> None:
    spec = SiteSpec.model_validate(site())
    with sessions() as session:
        import_site(session, spec)
        import_site(session, spec)
        assert session.query(models.Zone).count() == 2
    directory = Directory(sessions)
    assert directory.devices["dev-b1-cam"].branch_id == "b1"
    assert directory.devices["dev-b1-cam"].zones["queue"].rules.queue.fire_at == 5
    assert directory.branches["b2"].locale == "en"


def test_alerts_are_stored_once_per_cause_with_a_timeline(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        import_site(session, SiteSpec.model_validate(site()))
    directory = Directory(sessions)
    notices: list[Notice] = []
    alerts = AlertService(sessions, notices.append, "http://lw.example", SystemClock(), "http://grafana.example")
    branch, zone = directory.branches["b2"], directory.devices["dev-b2-cam"].zones["queue"]
    facts = (("threshold", 5), ("minutes", 0.0))
    for change, at, value, peak in [
        (Change.FIRED, 1_800_000_000.0, 6, 6),
        (Change.FIRED, 1_800_000_060.0, 9, 9),  # after a restart: the same alert
        (Change.RESOLVED, 1_800_000_600.0, 1, 9),
    ]:
        alerts.apply(Transition("queue_too_long", "b2", "queue", change, at, value, peak, facts), branch, zone.name)
    with sessions() as session:
        (alert,) = session.query(models.Alert).all()
        assert (alert.state, alert.peak) == ("resolved", 9)  # the second firing updated it ...
        assert [e.kind for e in alert.events] == ["fired", "resolved"]
    assert [n.change for n in notices] == ["fired", "resolved"]  # ... and told nobody a second time
    assert notices[0].title == "Tianhe Office: queue too long in window queue — open a flexible window"
    assert notices[0].at_local.endswith("+08:00")
    # b2 reads English: its dashboard in English
    assert notices[0].dashboard_url == "http://grafana.example/d/lobbywatch-branch-en?var-branch=b2"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("regions: [{id: r1, name: R}]\nbranches: [{id: b1, name: B, region: r2}]\n", "names unknown region r2"),
        (
            "regions: [{id: r1, name: R}]\nbranches: [{id: b1, name: B, region: r1, timezone: Mars/Base}]\n",
            "unknown time zone Mars/Base",
        ),
        ("defaults: {threshold: 5, clear_below: 5}\n", "clear_below"),
        (
            "regions: [{id: a, name: A, parent: b}, {id: b, name: B, parent: a}]\n",
            "regions nest in a circle: a > b > a",
        ),
        ("regions: [{id: a, name: A, parent: nowhere}]\n", "region a names unknown parent region nowhere"),
    ],
)
def test_broken_site_file_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(SiteError, match=problem):
        load_site(path)


def test_the_migrations_build_exactly_the_schema_of_the_models(sessions: sessionmaker[Session]) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from server.registry.models import Base

    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() is not None  # made by migrations, not create_all
        assert compare_metadata(context, Base.metadata) == []  # a model change without a migration fails here


def test_a_zone_key_belongs_to_one_device_of_a_branch(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("""
regions: [{id: r1, name: R}]
branches:
  - id: b1
    name: B
    region: r1
    devices:
      - {id: cam-one, zones: [{key: queue, name: Q}]}
      - {id: cam-two, zones: [{key: queue, name: Q2}]}
""")
    with pytest.raises(SiteError, match="zone queue is on devices cam-one and cam-two"):
        load_site(path)


REGIONAL_SITE = """
defaults: {threshold: 8, for_s: 300, clear_below: 5, clear_for_s: 120}
regions:
  - id: city
    name: City
    defaults:
      wait_target_min: 12
      call_deadlines_s: {accessibility: 45}
      escalation: {step_after_min: 3}
      contacts: [{name: city-duty, role: city_office, urls: ["json://127.0.0.1:9/"]}]
      routing: {queue_too_long: {role: branch_manager, severity: info}}
  - id: district
    name: District
    parent: city
    defaults:
      windows_open: 4
      queue_too_long: {threshold: 12, for_s: 240, clear_below: 7, clear_for_s: 60}
      call_deadlines_s: {help: 90}
branches:
  - id: plain
    name: Takes everything from its regions
    region: district
    devices: [{id: cam-plain, zones: [{key: queue, name: Q}]}]
  - id: own
    name: Sets its own
    region: district
    windows_open: 2
    wait_target_min: 20
    call_deadlines_s: {accessibility: 30}
    queue_too_long: {threshold: 6, for_s: 120, clear_below: 3, clear_for_s: 60}
    routing: {queue_too_long: {severity: warning}, call_unanswered: {severity: critical}}
    contacts: [{name: own-supervisor, role: duty_supervisor, urls: ["json://127.0.0.1:9/"]}]
    devices:
      - id: cam-own
        zones: [{key: queue, name: Q}, {key: vip, name: V, queue_too_long: {threshold: 2, clear_below: 0}}]
  - id: elsewhere
    name: In the city only
    region: city
    devices: [{id: cam-else, zones: [{key: queue, name: Q}]}]
"""


def test_branches_take_what_they_leave_unset_from_their_regions(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(REGIONAL_SITE)
    with sessions() as session:
        import_site(session, load_site(path))
    directory = Directory(sessions)

    plain = directory.zone("plain", "queue")
    assert plain is not None
    assert (plain.rules.queue.fire_at, plain.rules.windows_open) == (12, 4)  # the district's
    assert plain.rules.wait is not None
    assert plain.rules.wait.fire_at == 12
    assert directory.branches["plain"].call_deadlines_s == {"accessibility": 45, "help": 90, "priority": 120}
    assert directory.branches["plain"].escalation.step_after_s == 180
    assert [c.name for c in directory.branches["plain"].contacts] == ["city-duty"]

    own = directory.zone("own", "queue")
    vip = directory.zone("own", "vip")
    assert own is not None
    assert vip is not None
    assert (own.rules.queue.fire_at, own.rules.windows_open) == (6, 2)
    assert own.rules.wait is not None
    assert own.rules.wait.fire_at == 20
    assert vip.rules.queue.fire_at == 2  # the zone's own rule beats the branch's
    assert directory.branches["own"].call_deadlines_s == {"accessibility": 30, "help": 90, "priority": 120}
    assert [c.name for c in directory.branches["own"].contacts] == ["city-duty", "own-supervisor"]

    queue = Transition("queue_too_long", "plain", "queue", Change.FIRED, 0.0, 9, 9, ())
    help_call = Transition("call_unanswered", "own", "desk", Change.FIRED, 0.0, 1, 1, (("kind", "help"),))
    plain_entry, own_entry = directory.branches["plain"], directory.branches["own"]
    assert (severity(queue, plain_entry), first_role("queue_too_long", {}, plain_entry)) == ("info", "branch_manager")
    # the branch's severity beats the region's, and the region's role still holds
    assert (severity(queue, own_entry), first_role("queue_too_long", {}, own_entry)) == ("warning", "branch_manager")
    assert severity(help_call, own_entry) == "critical"  # help calls are warnings unless the branch says so
    assert severity(help_call, plain_entry) == "warning"
    assert first_role("facility", {"role": "technician"}, own_entry) == "technician"  # a device's own fault

    elsewhere = directory.zone("elsewhere", "queue")
    assert elsewhere is not None
    assert (elsewhere.rules.queue.fire_at, elsewhere.rules.windows_open) == (8, 2)  # site default, built-in
