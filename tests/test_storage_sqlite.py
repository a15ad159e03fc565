from pathlib import Path

from server.storage.points import Point
from server.storage.sqlite_store import SqliteStore


def test_line_protocol_escapes_and_types() -> None:
    point = Point.make(
        "occupancy",
        {"zone": "q 1", "branch": "b,1"},
        {"occupancy": 3, "error": 0.5, "known": True, "note": 'say "hi"', "skip": None},
        10,
    )
    assert point.line() == r'occupancy,branch=b\,1,zone=q\ 1 occupancy=3i,error=0.5,known=true,note="say \"hi\"" 10'


def test_resending_a_point_overwrites_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ts.sqlite3")
    point = Point.make("occupancy", {"branch": "b1", "zone": "q", "device": "d1"}, {"occupancy": 3}, 1_000)
    store.write([point, point])
    store.write([Point.make("occupancy", {"branch": "b1", "zone": "q", "device": "d1"}, {"occupancy": 4}, 1_000)])
    (stored,) = store.query("occupancy", "b1", 0)
    assert stored.fields == {"occupancy": 4}
    assert store.count() == 1
    store.close()


def test_query_by_branch_and_time(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ts.sqlite3")
    store.write(
        [
            Point.make("occupancy", {"branch": b, "zone": "q", "device": "d"}, {"occupancy": i}, t)
            for i, (b, t) in enumerate([("b1", 10), ("b1", 20), ("b2", 20), ("b1", 30)])
        ]
    )
    assert [p.time_ns for p in store.query("occupancy", "b1", 15)] == [20, 30]
    assert [p.time_ns for p in store.query("occupancy", "b1", 0, 30)] == [10, 20]
    assert store.query("occupancy", "b1", 0)[0].tag("zone") == "q"
    store.close()


def test_a_file_of_the_first_layout_is_moved_over_whole(tmp_path: Path) -> None:
    """The first layout kept every row's tags as its key; a file written by it is moved into numbered series in
    one transaction when opened, and reads as before, through the store and through the `points` view."""
    import json
    import sqlite3

    path = tmp_path / "ts.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE points (measurement TEXT NOT NULL, branch TEXT NOT NULL, series TEXT NOT NULL, "
            "time_ns INTEGER NOT NULL, tags TEXT NOT NULL, fields TEXT NOT NULL, "
            "PRIMARY KEY (measurement, series, time_ns)) WITHOUT ROWID;"
            "CREATE INDEX points_branch_time ON points (measurement, branch, time_ns);"
        )
        for point in [
            Point.make("occupancy", {"branch": b, "zone": "q", "device": "d"}, {"occupancy": i}, t)
            for i, (b, t) in enumerate([("b1", 10), ("b1", 20), ("b2", 20)])
        ]:
            old.execute(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?)",
                (
                    point.measurement,
                    point.tag("branch"),
                    point.series,
                    point.time_ns,
                    json.dumps(point.tags),
                    json.dumps(point.fields),
                ),
            )
    store = SqliteStore(path)
    assert [(p.time_ns, p.fields["occupancy"], p.tag("zone")) for p in store.query("occupancy", "b1", 0)] == [
        (10, 0, "q"),
        (20, 1, "q"),
    ]
    store.write([Point.make("occupancy", {"branch": "b1", "zone": "q", "device": "d"}, {"occupancy": 7}, 20)])
    assert store.count() == 3  # the resent point overwrote the moved one
    store.close()
    with sqlite3.connect(path) as moved:
        tables = {name for (name,) in moved.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"series", "samples"}
        assert moved.execute("SELECT count(*) FROM points WHERE measurement = 'occupancy'").fetchone() == (3,)
    again = SqliteStore(path)
    assert again.count("occupancy") == 3  # opened again: nothing moved twice
    again.close()
