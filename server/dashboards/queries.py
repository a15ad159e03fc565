"""Every InfluxQL query of the dashboards, by name, over the writer's schema (server/storage/points.py).

Grafana substitutes `$timeFilter`, `$__interval` and the template variables (`$region`, `$branch`, `$zone`)
before sending a query; the tests do the same and run each one against a real InfluxQL engine.
"""

from __future__ import annotations

from server.storage import points as s

BRANCH = '"branch" =~ /^$branch$/'
REGION = '"region" =~ /^$region$/'
LOBBY_KINDS = "/^(temperature|humidity|light|equipment)$/"
BY_BRANCH = 'GROUP BY "branch", "branch_label"'  # the id to link by, the label to show

# Template variables
VAR_REGION = f'SHOW TAG VALUES FROM "{s.OCCUPANCY}" WITH KEY = "region_label"'
# a branch is picked by its label ("西城支局 (bj-xicheng-001)"): the variable's regex shows the name, keeps the id
VAR_BRANCH = f'SHOW TAG VALUES FROM "{s.OCCUPANCY}" WITH KEY = "branch_label" WHERE {REGION}'
LABEL_REGEX = r"/^(?<text>.*) \((?<value>[^()]+)\)$/"  # "name (id)": shows the name, keeps the id

# Branch: now
WAITING_NOW = (
    f'SELECT last("occupancy") AS "waiting" FROM "{s.OCCUPANCY}" WHERE {BRANCH} AND $timeFilter GROUP BY "zone", "name"'
)
# the branch's own limits, for the colours of its panels (Grafana's "config from query results")
QUEUE_THRESHOLD = f'SELECT last("threshold") AS "threshold" FROM "{s.OCCUPANCY}" WHERE {BRANCH} AND $timeFilter'
WAIT_TARGET = f'SELECT last("target_min") AS "target" FROM "{s.WAIT}" WHERE {BRANCH} AND $timeFilter'
WAIT_NOW = f'SELECT last("wait_min") AS "wait" FROM "{s.WAIT}" WHERE {BRANCH} AND $timeFilter GROUP BY "zone", "name"'
WINDOWS_NOW = (
    f'SELECT last("windows_open") AS "open", last("windows_needed") AS "needed" FROM "{s.WAIT}" '
    f'WHERE {BRANCH} AND $timeFilter GROUP BY "zone", "name"'
)
# Branch: the day
OCCUPANCY_OVER_TIME = (
    f'SELECT max("occupancy") AS "waiting" FROM "{s.OCCUPANCY}" WHERE {BRANCH} AND $timeFilter '
    'GROUP BY time($__interval), "zone", "name" fill(none)'
)
WAIT_OVER_TIME = (
    f'SELECT mean("wait_min") AS "wait", mean("target_min") AS "target" FROM "{s.WAIT}" '
    f'WHERE {BRANCH} AND $timeFilter GROUP BY time($__interval), "zone", "name" fill(none)'
)
SERVICE_LEVEL = f'SELECT mean("under_target") * 100 AS "service_level" FROM "{s.WAIT}" WHERE {BRANCH} AND $timeFilter'
CALLS_OVER_TIME = (
    f'SELECT count("count") AS "calls" FROM "{s.CALL}" WHERE {BRANCH} AND "action" = \'press\' '
    'AND $timeFilter GROUP BY time($__interval), "kind" fill(none)'
)
CALL_RESPONSE = (
    f'SELECT percentile("response_s", 50) AS "p50", percentile("response_s", 90) AS "p90", '
    f'max("response_s") AS "longest" FROM "{s.CALL}" WHERE {BRANCH} AND "action" = \'answered\' '
    "AND $timeFilter"
)
CALLS_UNANSWERED = (
    f'SELECT count("subject") AS "unanswered" FROM "{s.ALERT}" WHERE {BRANCH} '
    "AND \"rule\" = 'call_unanswered' AND \"change\" = 'fired' AND $timeFilter"
)
TEMPERATURE = (
    f'SELECT mean("value") AS "temperature" FROM "{s.FACILITY}" WHERE {BRANCH} '
    'AND "kind" = \'temperature\' AND $timeFilter GROUP BY time($__interval), "sensor", "name" fill(none)'
)
HUMIDITY = (
    f'SELECT mean("value") AS "humidity" FROM "{s.FACILITY}" WHERE {BRANCH} '
    'AND "kind" = \'humidity\' AND $timeFilter GROUP BY time($__interval), "sensor", "name" fill(none)'
)
LIGHT = (
    f'SELECT mean("value") AS "light" FROM "{s.FACILITY}" WHERE {BRANCH} '
    'AND "kind" = \'light\' AND $timeFilter GROUP BY time($__interval), "sensor", "name" fill(none)'
)
EQUIPMENT = (
    f'SELECT min("up") AS "up" FROM "{s.FACILITY}" WHERE {BRANCH} AND "kind" = \'equipment\' '
    'AND $timeFilter GROUP BY time($__interval), "sensor", "name" fill(none)'
)
DEVICES_OF_BRANCH = (
    f'SELECT last("clock_skew_ms") AS "clock_skew_ms", last("outbox_depth") AS "outbox_depth", '
    f'last("cpu_pct") AS "cpu_pct" FROM "{s.DEVICE_HEALTH}" WHERE {BRANCH} AND $timeFilter '
    'GROUP BY "device", "name"'
)
ALERT_ANNOTATIONS = f'SELECT "subject", "change", "rule" FROM "{s.ALERT}" WHERE {BRANCH} AND $timeFilter'

# Region: one row per branch, ranked by service level
RANK_SERVICE_LEVEL = (
    f'SELECT mean("under_target") * 100 AS "service_level" FROM "{s.WAIT}" WHERE {REGION} AND $timeFilter {BY_BRANCH}'
)
RANK_P90_WAIT = (
    f'SELECT percentile("wait_min", 90) AS "p90_wait" FROM "{s.WAIT}" WHERE {REGION} AND $timeFilter {BY_BRANCH}'
)
RANK_LONGEST_QUEUE = (
    f'SELECT max("occupancy") AS "longest_queue" FROM "{s.OCCUPANCY}" WHERE {REGION} AND $timeFilter {BY_BRANCH}'
)
RANK_UNANSWERED = (
    f'SELECT count("subject") AS "unanswered_calls" FROM "{s.ALERT}" WHERE {REGION} '
    f"AND \"rule\" = 'call_unanswered' AND \"change\" = 'fired' AND $timeFilter {BY_BRANCH}"
)
RANK_FACILITY_UPTIME = (
    f'SELECT mean("up") * 100 AS "facility_uptime" FROM "{s.FACILITY}" WHERE {REGION} '
    f'AND "kind" =~ {LOBBY_KINDS} AND $timeFilter {BY_BRANCH}'
)
REGION_WAIT_OVER_TIME = (
    f'SELECT percentile("wait_min", 90) AS "p90_wait" FROM "{s.WAIT}" WHERE {REGION} '
    'AND $timeFilter GROUP BY time($__interval), "branch", "branch_label" fill(none)'
)

# Fleet: every device
FLEET_ONLINE = (
    f'SELECT sum("up") AS "online" FROM (SELECT last("up") AS "up" FROM "{s.DEVICE_STATUS}" '
    f'WHERE {REGION} GROUP BY "device")'
)
FLEET_STATUS = f'SELECT last("up") AS "online" FROM "{s.DEVICE_STATUS}" WHERE {REGION} GROUP BY "branch", "device"'
FLEET_HEALTH = (
    f'SELECT last("uptime_s") AS "uptime_s", last("clock_skew_ms") AS "clock_skew_ms", '
    f'last("outbox_depth") AS "outbox_depth", last("cpu_pct") AS "cpu_pct", '
    f'last("mem_rss_mb") AS "mem_rss_mb", last("agent_version") AS "agent_version" '
    f'FROM "{s.DEVICE_HEALTH}" WHERE {REGION} AND $timeFilter GROUP BY "branch", "device"'
)
FLEET_CAMERAS = (
    f'SELECT last("up") AS "camera_ok" FROM "{s.FACILITY}" WHERE {REGION} AND "kind" = \'camera\' '
    'AND $timeFilter GROUP BY "branch", "device"'
)
FLEET_CLOCK_SKEW = (
    f'SELECT max("clock_skew_ms") AS "clock_skew_ms" FROM "{s.DEVICE_HEALTH}" WHERE {REGION} '
    'AND $timeFilter GROUP BY time($__interval), "device" fill(none)'
)
FLEET_OUTBOX = (
    f'SELECT max("outbox_depth") AS "outbox_depth" FROM "{s.DEVICE_HEALTH}" WHERE {REGION} '
    'AND $timeFilter GROUP BY time($__interval), "device" fill(none)'
)
FLEET_FIELDS = {  # the fleet table's fields (FLEET_STATUS, FLEET_HEALTH, FLEET_CAMERAS), with their units
    "branch": "",
    "device": "",
    "online": "",
    "camera_ok": "",
    "uptime_s": "s",
    "clock_skew_ms": "ms",
    "outbox_depth": "none",
    "cpu_pct": "percent",
    "mem_rss_mb": "decmbytes",
    "agent_version": "",
}
