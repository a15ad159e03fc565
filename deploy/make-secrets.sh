#!/bin/sh
# Generates what a test deployment of docker-compose.yml needs and the repository must not hold:
# .env with random secrets, a CA and a certificate for the broker and the HTTPS front (Caddy), and the broker's
# dynamic-security file with its administrator (the server uses it to create and revoke device identities, and
# its own). Every secret is readable by its owner only (umask 077); the CA's key stays in deploy/secrets/ca/,
# which no container mounts: only certs/ (CA certificate, the service certificate and its key) is mounted.
# For production, use certificates from your own CA and keep .env in your secret store.
# It also writes the addresses that reach this host from outside (devices and notices use them): the broker's
# host name for enrolled devices, the pages' URL for one-tap links, Grafana's for dashboard links.
#   usage: deploy/make-secrets.sh HOST   (the name devices and phones reach this server by, e.g. lobby.example.cn)
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: deploy/make-secrets.sh HOST  (the name devices and phones reach this server by)" >&2
  echo "       deploy/make-secrets.sh localhost   only for a deployment that no device or phone reaches" >&2
  exit 2
fi
host=$1
secrets=deploy/secrets
umask 077
mkdir -p "$secrets/certs" "$secrets/mosquitto" "$secrets/ca"
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
# the addresses: added where missing (also to an .env of an older version), never changed once written
address() {
  if ! grep -q "^$1=" .env; then
    echo "$1=$2" >> .env
    echo "set $1=$2 in .env"
  fi
}
address LOBBYWATCH_BROKER_PUBLIC_HOST "$host"
address LOBBYWATCH_PUBLIC_URL "https://$host"
address LOBBYWATCH_GRAFANA_URL "http://$host:3000"
# the scale-out's NATS identities (deploy/nats/permissions.conf), added where missing. Each starts with a letter:
# nats-server parses the value of an environment variable, and one that starts with a digit is refused.
secret() {
  if ! grep -q "^$1=" .env; then
    echo "$1=p$(rand)" >> .env
    echo "added $1 to .env"
  fi
}
secret LOBBYWATCH_NATS_FORWARDER_PASSWORD
secret LOBBYWATCH_NATS_WORKER_PASSWORD
secret LOBBYWATCH_NATS_API_PASSWORD
secret LOBBYWATCH_MQTT_FORWARDER_PASSWORD
# which services `docker compose up` starts: "single" (one server process) until you choose "scale"
# (docs/scale.md: set COMPOSE_PROFILES=scale and LOBBYWATCH_UPSTREAM="api1:8000 api2:8000" in .env)
address COMPOSE_PROFILES single
address LOBBYWATCH_UPSTREAM server:8000
. ./.env
if [ ! -f "$secrets/certs/ca.crt" ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=LobbyWatch test CA" \
    -keyout "$secrets/ca/ca.key" -out "$secrets/certs/ca.crt" 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$host" -keyout "$secrets/certs/server.key" \
    -out "$secrets/ca/server.csr" 2>/dev/null
  printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" "$host" > "$secrets/ca/san.ext"
  openssl x509 -req -in "$secrets/ca/server.csr" -CA "$secrets/certs/ca.crt" -CAkey "$secrets/ca/ca.key" \
    -CAcreateserial -CAserial "$secrets/ca/ca.srl" -days 825 -extfile "$secrets/ca/san.ext" \
    -out "$secrets/certs/server.crt" 2>/dev/null
  # certificates are public; the key stays 0600. The broker image reads it as its mosquitto user (uid 1883):
  # as root, hand it that user; otherwise the broker's first start says it cannot read it.
  chmod 644 "$secrets/certs/ca.crt" "$secrets/certs/server.crt"
  chmod 600 "$secrets/certs/server.key"
  if [ "$(id -u)" -eq 0 ]; then chown 1883 "$secrets/certs/server.key"; fi
  chmod 755 "$secrets/certs"
  echo "wrote the CA (key in $secrets/ca, never mounted) and the certificate for $host in $secrets/certs"
fi
# the NATS nodes' certificate (clients and routes between the nodes), by the same CA, for their compose names
if [ ! -f "$secrets/certs/nats.crt" ]; then
  openssl req -newkey rsa:3072 -nodes -subj "/CN=nats" -keyout "$secrets/certs/nats.key" \
    -out "$secrets/ca/nats.csr" 2>/dev/null
  printf "subjectAltName=DNS:nats1,DNS:nats2,DNS:nats3,DNS:localhost,IP:127.0.0.1\n" > "$secrets/ca/nats-san.ext"
  openssl x509 -req -in "$secrets/ca/nats.csr" -CA "$secrets/certs/ca.crt" -CAkey "$secrets/ca/ca.key" \
    -CAserial "$secrets/ca/ca.srl" -days 825 -extfile "$secrets/ca/nats-san.ext" \
    -out "$secrets/certs/nats.crt" 2>/dev/null
  chmod 644 "$secrets/certs/nats.crt"
  chmod 600 "$secrets/certs/nats.key"
  echo "wrote the NATS nodes' certificate (nats1..nats3) in $secrets/certs"
fi
dynsec="$secrets/mosquitto/dynamic-security.json"
if [ ! -f "$dynsec" ]; then
  mosquitto_ctrl dynsec init "$dynsec" lobbywatch-admin "$LOBBYWATCH_MQTT_ADMIN_PASSWORD" >/dev/null
  chmod 600 "$dynsec"
  echo "wrote $dynsec (administrator lobbywatch-admin; devices get their identities when they enroll)"
fi
