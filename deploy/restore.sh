#!/bin/sh
# Restores a backup made by deploy/backup.sh into this deployment (docs/operations.md, "Backups"): stops what
# writes, checks every checksum before changing anything, restores the registry (replacing what it holds), the
# broker's device identities (the file it replaces is kept beside it) and InfluxDB's bucket, then starts all.
# On a new host, first unpack the secrets:  tar -C deploy -xzf BACKUP/secrets.tar.gz && cp BACKUP/env .env
#   usage: deploy/restore.sh BACKUP_DIR
set -eu
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: deploy/restore.sh BACKUP_DIR  (a folder deploy/backup.sh wrote)" >&2
  exit 2
fi
backup=$(cd "$1" && pwd)

echo "checking the backup..."
docker compose run --rm --no-deps --user "$(id -u):$(id -g)" -v "$backup:/backup:ro" server \
  sh -c 'lobbywatch backup verify /backup/lobbywatch-backup-*'

echo "stopping what writes..."
docker compose stop   # every service of either shape (single or scale): nothing writes while it restores
docker compose up -d postgres influxdb

echo "registry and broker identities..."
# as root in the container: the restored file goes back to the owner of the one it replaces (Mosquitto's user)
docker compose run --rm --no-deps --user 0 \
  -v "$PWD/deploy/secrets/mosquitto:/dynsec" -v "$backup:/backup:ro" \
  server sh -c 'lobbywatch backup restore /backup/lobbywatch-backup-* --replace --dynsec-file /dynsec/dynamic-security.json'

echo "time series..."
docker compose cp "$backup/influxdb" influxdb:/tmp/lw-restore
docker compose exec -T influxdb sh -c \
  'INFLUX_TOKEN="$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" influx restore /tmp/lw-restore --full; s=$?; rm -rf /tmp/lw-restore; exit $s'

echo "starting..."
docker compose up -d
echo "restored from $backup"
