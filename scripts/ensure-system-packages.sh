#!/bin/sh
# The real servers the tests talk to, from Debian's packages: Mosquitto, VictoriaMetrics (InfluxDB v2 write
# API), InfluxDB 1.6 (InfluxQL), Prometheus (scrapes /metrics), PostgreSQL, OpenSSL,
# Chromium (the page tests drive it with Playwright). Installs only what is missing; starts PostgreSQL if needed.
set -eu
need=""
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
command -v mosquitto_passwd >/dev/null || need="$need mosquitto"
command -v mosquitto_sub >/dev/null || need="$need mosquitto-clients"
[ -x /usr/bin/victoria-metrics ] || need="$need victoria-metrics"
[ -x /usr/bin/influxd ] || need="$need influxdb"
[ -x /usr/bin/prometheus ] || need="$need prometheus"
command -v openssl >/dev/null || need="$need openssl"
command -v pg_ctlcluster >/dev/null || need="$need postgresql"
[ -x /usr/bin/chromium ] || need="$need chromium"
# a Chinese font: the screenshots in docs/ (scripts/screenshots.py) and any page test that reads Chinese
fc-list :lang=zh family 2>/dev/null | grep -q . || need="$need fonts-wqy-zenhei"
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages:$need (run as root, or: sudo apt-get install$need)" >&2
    exit 1
  fi
  echo "installing Debian packages:$need"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
# The package may start a system Mosquitto on 1883; the tests start their own on free ports and do not need it.
if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
