#!/bin/bash
# Runs once, after InfluxDB's first setup: map an InfluxQL database to the bucket, so that the dashboards'
# InfluxQL queries and the server's reads work through the v1 compatibility API.
set -euo pipefail
bucket_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create --bucket-id "${bucket_id}" --db "${DOCKER_INFLUXDB_INIT_BUCKET}" --rp autogen --default
