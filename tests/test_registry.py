"""The registry and alert store on SQLite and on a real PostgreSQL."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import SystemClock
from server.alerts.notify import Notice
from server.alerts.service import AlertService
from server.ingest.directory import Directory
from server.registry import models
from server.registry.database import make_engine, make_sessions
from server.registry.site import SiteError, SiteSpec, import_site, load_site
from server.rules.threshold import Change, Transition
from tests.helpers import site

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
        yield make_sessions(engine)
        engine.dispose()
        return
    name = f"lw_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield make_sessions(engine)
    engine.dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")


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
    for change, at, value, peak in [(Change.FIRED, 1_800_000_000.0, 6, 6),
                                    (Change.FIRED, 1_800_000_060.0, 9, 9),  # after a restart: the same alert
                                    (Change.RESOLVED, 1_800_000_600.0, 1, 9)]:
        alerts.apply(Transition("queue_too_long", "b2", "queue", change, at, value, peak, facts), branch, zone.name)
    with sessions() as session:
        (alert,) = session.query(models.Alert).all()
        assert (alert.state, alert.peak) == ("resolved", 9)
        assert [e.kind for e in alert.events] == ["fired", "fired", "resolved"]
    assert [n.change for n in notices] == ["fired", "fired", "resolved"]
    assert notices[0].title == "Tianhe Office: queue too long in window queue — open a flexible window"
    assert notices[0].at_local.endswith("+08:00")
    assert notices[0].dashboard_url == "http://grafana.example/d/lobbywatch-branch?var-branch=b2"


def test_broken_site_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("regions: [{id: r1, name: R}]\nbranches: [{id: b1, name: B, region: r2}]\n")
    with pytest.raises(SiteError, match="unknown region 'r2'"):
        load_site(path)
    path.write_text("regions: [{id: r1, name: R}]\nbranches: [{id: b1, name: B, region: r1, timezone: Mars/Base}]\n")
    with pytest.raises(SiteError, match="unknown time zone 'Mars/Base'"):
        load_site(path)
    path.write_text("defaults: {threshold: 5, clear_below: 5}\n")
    with pytest.raises(SiteError, match="clear_below"):
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
    with pytest.raises(SiteError, match="zone 'queue' is on devices 'cam-one' and 'cam-two'"):
        load_site(path)
