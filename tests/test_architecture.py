"""Dependencies run one way, and exactly one module per side talks MQTT."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("lobbywatch", "edge_agent", "server", "lobby_sim")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def importers(package: str, target: str) -> list[str]:
    return [
        str(p.relative_to(ROOT))
        for p in modules(package)
        if any(i == target or i.startswith(target + ".") for i in imports(p))
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("lobbywatch", "edge_agent"),
        ("lobbywatch", "server"),
        ("lobbywatch", "lobby_sim"),
        ("edge_agent", "server"),
        ("edge_agent", "lobby_sim"),
        ("server", "edge_agent"),
    ],
)
def test_dependencies_run_one_way(package: str, forbidden: str) -> None:
    assert importers(package, forbidden) == []


def test_only_lobby_sim_demo_and_the_cli_reach_across() -> None:
    # the demo composes both sides; the server's CLI starts it lazily
    assert importers("server", "lobby_sim") == ["server/cli.py"]


def test_paho_stays_in_the_modules_that_speak_mqtt() -> None:
    assert importers("edge_agent", "paho") == ["edge_agent/transport/link.py"]
    # the ingest reads the devices (its connection, and the paho client made cheaper per message that it
    # uses); the broker admin manages their identities through dynamic security
    assert importers("server", "paho") == [
        "server/ingest/mqtt_client.py",
        "server/ingest/mqtt_source.py",
        "server/provisioning/broker_admin.py",
    ]


PURE = [
    "lobbywatch/protocol/topics.py",
    "lobbywatch/protocol/messages.py",
    "edge_agent/reporting.py",
    "edge_agent/debounce.py",
    "edge_agent/transport/backoff.py",
    "server/ingest/repair.py",
    "server/zone_shapes.py",
    "lobby_sim/lobby.py",
    # the rules and the branch processors: no I/O and no threads, whole packages
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "server" / "rules").glob("*.py")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "server" / "processing").glob("*.py")),
]
IO_LIBRARIES = (
    "paho",
    "fastapi",
    "sqlalchemy",
    "sqlite3",
    "httpx",
    "influxdb_client",
    "gpiozero",
    "cv2",
    "socket",
    "threading",
)


@pytest.mark.parametrize("module", PURE)
def test_pure_logic_imports_no_io(module: str) -> None:
    used = imports(ROOT / module)
    assert not [i for i in used if i.split(".")[0] in IO_LIBRARIES]


def test_the_edge_installs_without_server_dependencies() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = " ".join(project["optional-dependencies"]["edge"] + project["dependencies"])
    for server_only in ("fastapi", "sqlalchemy", "influxdb-client", "uvicorn"):
        assert server_only not in edge


# The server's packages (and top-level modules) from the bottom up: each may import only from layers below its
# own. Pure rules and the stores at the bottom; the site read model and registry on them; delivery to people;
# alerts, then ingest
# (which raises alerts), reports and provisioning; the runtime and replay that wire them; the fleet view, the
# API and the pages over the runtime; the app and the CLI on top.
SERVER_LAYERS = (
    {"settings", "tokens", "commands", "status", "storage", "live", "rules", "zone_shapes", "collector"},
    {"registry", "dashboards"},
    {"delivery", "processing"},
    {"alerts"},
    {"ingest", "reports", "provisioning"},
    {"fleet"},
    {"runtime"},
    {"replay", "scale", "backup"},
    {"api"},
    {"web"},
    {"app"},
    {"cli"},
)


def server_part(path: Path) -> str:
    """The package (or top-level module) of the server a file belongs to."""
    parts = path.relative_to(ROOT / "server").parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def server_imports(path: Path) -> set[str]:
    """The server packages a file imports, `from server import fleet` included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "server":
            names = [f"server.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("server.")}
    return found - {"__version__"}  # server/__init__.py's, for everyone


def test_server_layers_are_imported_downwards_only() -> None:
    layer = {part: n for n, parts in enumerate(SERVER_LAYERS) for part in parts}
    upward = []
    for path in modules("server"):
        part = server_part(path)
        if part == "__init__":
            continue
        assert part in layer, f"{part} (from {path}) has no place in SERVER_LAYERS: give it one"
        for target in server_imports(path) - {part}:
            if layer[target] >= layer[part]:
                upward.append(f"{path.relative_to(ROOT)} imports server.{target}")
    assert upward == []


MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def test_modules_and_classes_stay_small_enough_to_read() -> None:
    too_big = []
    for package in (*PACKAGES, "bench"):
        for path in modules(package):
            text = path.read_text(encoding="utf-8")
            if len(text.splitlines()) > MAX_MODULE_LINES:
                too_big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    size = node.end_lineno - node.lineno + 1
                    if size > MAX_CLASS_LINES:
                        too_big.append(f"{path.relative_to(ROOT)}: class {node.name}, {size} lines")
    assert too_big == []


INGEST_OBJECTS = re.compile(r"runtime\.(pipeline|worker|source|rejects|dispatcher|alert_worker|store\.write)\b")


def test_the_api_and_pages_read_snapshots_never_the_ingests_objects() -> None:
    """What the API and the pages show comes from the live state, the status snapshot, the registry and the store,
    and commands go through `DeviceCommands`: so that they can run in a process of their own."""
    readers = [
        *modules("server/api"),
        *modules("server/web"),
        ROOT / "server" / "fleet.py",
        ROOT / "lobby_sim" / "demo.py",
    ]
    reaching = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in readers
        for match in INGEST_OBJECTS.finditer(path.read_text(encoding="utf-8"))
    ]
    assert reaching == []
