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
