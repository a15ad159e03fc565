#!/bin/sh
# Backs up a docker-compose deployment into OUT/lobbywatch-<UTC time>/, readable by its owner only:
#   registry/ + broker/   the registry's rows and Mosquitto's dynamic-security.json (every device's identity:
#                         lose it and every device is locked out), by `lobbywatch backup create` in the server's
#                         image, with a manifest of SHA-256 checksums;
#   influxdb/             the time series, by InfluxDB's own `influx backup` (a consistent online backup);
#   secrets.tar.gz, .env  the deployment's secrets and certificates (the CA the devices trust among them).
# Store it encrypted, off this host. Restore with deploy/restore.sh (docs/operations.md, "Backups").
#   usage: deploy/backup.sh OUT_DIR
set -eu
cd "$(dirname "$0")/.."
if [ $# -ne 1 ]; then
  echo "usage: deploy/backup.sh OUT_DIR" >&2
  exit 2
fi
umask 077
target="$1/lobbywatch-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$target"
target=$(cd "$target" && pwd)

echo "registry and broker identities..."
# as root in the container: Mosquitto's file is its own user's; what is written is handed to you after
docker compose run --rm --no-deps --user 0 \
  -v "$PWD/deploy/secrets/mosquitto:/dynsec:ro" -v "$target:/backup" \
  server sh -c 'lobbywatch backup create --out /backup --dynsec-file /dynsec/dynamic-security.json && chown -R "$1" /backup' \
  sh "$(id -u):$(id -g)"

echo "time series..."
# the operator token from the container's own environment: never on a command line
docker compose exec -T influxdb sh -c \
  'rm -rf /tmp/lw-backup && INFLUX_TOKEN="$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" influx backup /tmp/lw-backup' >/dev/null
docker compose cp influxdb:/tmp/lw-backup "$target/influxdb"
docker compose exec -T influxdb rm -rf /tmp/lw-backup

echo "secrets..."
tar -C deploy -czf "$target/secrets.tar.gz" secrets
cp .env "$target/env"

docker compose run --rm --no-deps --user "$(id -u):$(id -g)" -v "$target:/backup:ro" server \
  sh -c 'lobbywatch backup verify /backup/lobbywatch-backup-*'
echo "backup written to $target"
