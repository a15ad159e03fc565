#!/bin/sh
# Generates what a test deployment of docker-compose.yml needs and the repository must not hold:
# .env with random secrets, a CA and a broker certificate, and the broker's dynamic-security file with its
# administrator (the server uses it to create and revoke device identities, and its own).
# For production, use certificates from your own CA and keep .env in your secret store.
#   usage: deploy/make-secrets.sh [broker-host-name]
set -eu
cd "$(dirname "$0")/.."
host=${1:-localhost}
secrets=deploy/secrets
mkdir -p "$secrets/certs" "$secrets/mosquitto"
umask 077
rand() { openssl rand -base64 36 | tr -d '/+=' | cut -c1-32; }
if [ ! -f .env ]; then
  cat > .env <<ENV
INFLUXDB_ADMIN_PASSWORD=$(rand)
INFLUXDB_TOKEN=$(rand)
POSTGRES_PASSWORD=$(rand)
GRAFANA_ADMIN_PASSWORD=$(rand)
LOBBYWATCH_MQTT_PASSWORD=$(rand)
LOBBYWATCH_MQTT_ADMIN_PASSWORD=$(rand)
LOBBYWATCH_API_TOKEN=$(rand)
LOBBYWATCH_LINK_SECRET=$(rand)
ENV
  echo "wrote .env"
fi
. ./.env
if [ ! -f "$secrets/certs/ca.crt" ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=LobbyWatch test CA" \
    -keyout "$secrets/certs/ca.key" -out "$secrets/certs/ca.crt"
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$host" -keyout "$secrets/certs/server.key" \
    -out "$secrets/certs/server.csr"
  printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" "$host" > "$secrets/certs/san.ext"
  openssl x509 -req -in "$secrets/certs/server.csr" -CA "$secrets/certs/ca.crt" -CAkey "$secrets/certs/ca.key" \
    -CAcreateserial -days 825 -extfile "$secrets/certs/san.ext" -out "$secrets/certs/server.crt"
  chmod 644 "$secrets/certs/ca.crt" "$secrets/certs/server.crt" "$secrets/certs/server.key"
  echo "wrote the CA and the broker certificate for $host in $secrets/certs"
fi
dynsec="$secrets/mosquitto/dynamic-security.json"
if [ ! -f "$dynsec" ]; then
  mosquitto_ctrl dynsec init "$dynsec" lobbywatch-admin "$LOBBYWATCH_MQTT_ADMIN_PASSWORD" >/dev/null
  chmod 600 "$dynsec"
  echo "wrote $dynsec (administrator lobbywatch-admin; devices get their identities when they enroll)"
fi
