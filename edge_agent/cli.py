"""`lobbywatch-agent`: the technician's command on the device."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import ConfigError, DeviceConfig, counting_zone, load_config
from edge_agent.counting.zones import Zone
from lobbywatch.cli_errors import run_command
from lobbywatch.cli_help import LocalizedParser, parse
from lobbywatch.clock import SystemClock
from lobbywatch.i18n import catalog, normalize_locale, t
from lobbywatch.logs import log_format, setup_logging


def _locale(args: argparse.Namespace) -> str:
    return normalize_locale(args.lang or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG"))


def _check(args: argparse.Namespace) -> int:
    lang = _locale(args)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(t(lang, "agent.config_invalid"), file=sys.stderr)
        print(exc.text(lang), file=sys.stderr)
        return 2
    print(t(lang, "agent.config_ok", device=config.device_id, path=args.config))
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge_agent.agent import Agent
    from edge_agent.buttons import make_pin_factory
    from edge_agent.config import data_dir_writable

    lang = _locale(args)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(t(lang, "agent.config_invalid"), file=sys.stderr)
        print(exc.text(lang), file=sys.stderr)
        return 2
    if not data_dir_writable(config.data_dir):
        print(t(config.locale, "agent.data_dir_unwritable", path=config.data_dir), file=sys.stderr)
        return 2
    try:
        setup_logging(args.log_level, log_format())
    except ValueError as exc:
        print(t(config.locale, "agent.config_invalid"), file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 2
    agent = Agent(config, clock=SystemClock(), pin_factory=make_pin_factory(config.gpio_factory))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        t(
            config.locale,
            "agent.starting",
            device=config.device_id,
            version=__version__,
            broker=f"{config.broker.host}:{config.broker.port}",
        )
    )
    agent.run(stop)
    print(t(config.locale, "agent.stopped", messages=agent.stats.messages))
    # asked to restart: end non-zero so that systemd starts it again even where Restart=on-failure
    return 75 if agent.restart_requested else 0


def _load(args: argparse.Namespace, lang: str) -> DeviceConfig | None:
    try:
        return load_config(Path(args.config))
    except ConfigError as exc:
        print(t(lang, "agent.config_invalid"), file=sys.stderr)
        print(exc.text(lang), file=sys.stderr)
        return None


def _zone(config: DeviceConfig, key: str | None, lang: str) -> Zone | None:
    if config.camera is None:
        print(t(lang, "agent.no_camera"), file=sys.stderr)
        return None
    zones = {z.key: z for z in config.camera.zones}
    chosen = zones.get(key) if key else config.camera.zones[0]
    if chosen is None:
        print(t(lang, "agent.unknown_zone", zone=key, zones=", ".join(zones)), file=sys.stderr)
        return None
    return counting_zone(chosen, config.camera.ignore)


def _snapshot(args: argparse.Namespace) -> int:
    import time

    from edge_agent.counting.dataset import write_snapshots
    from edge_agent.frames import open_source

    lang = _locale(args)
    config = _load(args, lang)
    zone = _zone(config, args.zone, lang) if config else None
    if config is None or zone is None or config.camera is None:
        return 2
    source = open_source(config.camera.source, config.camera.loop)
    frames = []
    try:
        for i in range(args.count):
            frame = source.read()
            if frame is None:
                print(t(lang, "agent.camera_unreadable", source=config.camera.source), file=sys.stderr)
                return 1
            frames.append(frame)
            print(t(lang, "agent.snapshot_taken", n=i + 1, total=args.count), flush=True)
            if i + 1 < args.count:
                time.sleep(args.every)
    finally:
        source.close()
    counts = write_snapshots(Path(args.out), zone, frames)
    print(t(lang, "agent.snapshots_written", path=counts, zone=zone.key))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from edge_agent.counting.calibration import CalibrationError, CalibrationStore, calibrate, calibrate_heads
    from edge_agent.counting.counter import prefer_heads
    from edge_agent.counting.dataset import DatasetError, load_dataset
    from edge_agent.counting.heads import HeadsError

    lang = _locale(args)
    config = _load(args, lang)
    zone = _zone(config, args.zone, lang) if config else None
    if config is None or zone is None:
        return 2
    try:
        labelled = load_dataset(Path(args.dataset))
        if [list(p) for p in labelled.zone.polygon] != [list(p) for p in zone.polygon]:
            print(t(lang, "agent.calibration_other_polygon", zone=zone.key), file=sys.stderr)
        print(t(lang, "agent.calibrating", n=len(labelled.frames), zone=zone.key), flush=True)
        calibration, background = calibrate(zone, labelled.frames, labelled.counts)
        store = CalibrationStore(config.data_dir)
        path = store.save(calibration, background)
        heads = calibrate_heads(store, zone, labelled.frames, labelled.counts, labelled.points)
    except (DatasetError, CalibrationError) as exc:
        print(t(lang, "agent.calibration_failed"), file=sys.stderr)
        print(exc.text(lang), file=sys.stderr)
        return 2
    print(t(lang, "agent.calibrated", zone=zone.key, path=path, error=round(calibration.model.residual_sd, 2)))
    if isinstance(heads, HeadsError):
        print(heads.text(lang))
    else:
        method = "heads" if prefer_heads(heads, calibration) else "regression"
        print(
            t(
                lang,
                "agent.calibrated_heads",
                zone=zone.key,
                heads=heads.heads,
                error=round(heads.residual_sd, 2),
                method=t(lang, f"agent.method.{method}"),
            )
        )
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from edge_agent.enroll import EnrollFailed, hardware_serial, install, parse_claim, read_boot_file, request_identity

    lang = _locale(args)
    config_path = Path(args.config)
    try:
        if config_path.exists() and not args.force:
            raise EnrollFailed("already_configured", str(config_path))
        text = args.token or read_boot_file()
        if text is None:
            raise EnrollFailed("no_token", "no token given and no enrollment file on the boot partition")
        claim = parse_claim(text, args.server or os.environ.get("LOBBYWATCH_SERVER_URL"))
        serial = args.serial or hardware_serial()
        print(t(lang, "agent.enroll.asking", server=claim.server, serial=serial))
        config = install(request_identity(claim, serial, __version__), config_path)
    except EnrollFailed as exc:
        key = f"agent.enroll.error.{exc.code}"
        known = key in catalog(lang)
        print(t(lang, "agent.enroll.failed", why=t(lang, key) if known else exc.code), file=sys.stderr)
        print(f"  {exc}", file=sys.stderr)
        return 2
    print(t(lang, "agent.enroll.done", device=config["device_id"], path=config_path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = LocalizedParser(prog="lobbywatch-agent", description="LobbyWatch edge agent")
    parser.add_argument("--lang", help="zh-CN or en (default: LOBBYWATCH_LANG, then LANG)")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until stopped")
    run.add_argument("--config", required=True, help="device config file (YAML)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate a device config file and say what is wrong")
    check.add_argument("config")
    check.set_defaults(func=_check)
    snap = sub.add_parser("snapshot", help="take snapshots of a zone to label for calibration (kept on the device)")
    snap.add_argument("--config", required=True)
    snap.add_argument("--out", required=True, help="folder to write (frames/, roi.json, counts.csv to fill in)")
    snap.add_argument("--zone", help="zone key (default: the first zone)")
    snap.add_argument("--count", type=int, default=12, help="how many snapshots (default 12)")
    snap.add_argument("--every", type=float, default=60.0, help="seconds between snapshots (default 60)")
    snap.set_defaults(func=_snapshot)
    cal = sub.add_parser("calibrate", help="fit a zone's counting calibration from labelled snapshots")
    cal.add_argument("--config", required=True)
    cal.add_argument("--dataset", required=True, help="folder with frames/, counts.csv (filled in) and roi.json")
    cal.add_argument("--zone", help="zone key (default: the first zone)")
    cal.set_defaults(func=_calibrate)
    enroll = sub.add_parser("enroll", help="get this device's identity and config from the server with a token")
    enroll.add_argument(
        "token", nargs="?", help="the token, or the QR code's text (default: the enrollment file on the boot partition)"
    )
    enroll.add_argument(
        "--server", help="the server's URL (default: from the QR text or file, or LOBBYWATCH_SERVER_URL)"
    )
    enroll.add_argument("--config", default="/etc/lobbywatch/device.yaml", help="where to write the config")
    enroll.add_argument("--serial", help="the hardware serial (default: read from the board)")
    enroll.add_argument("--force", action="store_true", help="replace an existing config")
    enroll.set_defaults(func=_enroll)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    return run_command(args.func, args, args.lang)


if __name__ == "__main__":
    raise SystemExit(main())
