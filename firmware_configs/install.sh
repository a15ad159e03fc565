#!/bin/sh
# Installs the LobbyWatch agent on Raspberry Pi OS (bookworm), as root:
#   sudo sh install.sh [WHEEL_OR_SOURCE] [PROFILE]
# WHEEL_OR_SOURCE: a lobbywatch wheel or source folder (default: this repository); PROFILE: lobby-camera,
# call-buttons or facility-sensors (the example config copied to /etc/lobbywatch/device.yaml if none is there).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
source=${1:-$here/..}
profile=${2:-lobby-camera}
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev libgpiod2 i2c-tools >/dev/null

# A user of its own, allowed to use the camera, the GPIO pins and the I2C bus, and nothing else.
id lobbywatch >/dev/null 2>&1 || useradd --system --home-dir /var/lib/lobbywatch --shell /usr/sbin/nologin lobbywatch
for group in video gpio i2c; do getent group "$group" >/dev/null && usermod -aG "$group" lobbywatch; done

python3 -m venv /opt/lobbywatch/venv
/opt/lobbywatch/venv/bin/pip install --quiet --upgrade pip
/opt/lobbywatch/venv/bin/pip install --quiet "${source}[edge]"

install -d -m 0750 -o root -g lobbywatch /etc/lobbywatch
install -d -m 0750 -o lobbywatch -g lobbywatch /var/lib/lobbywatch
if [ ! -f /etc/lobbywatch/device.yaml ]; then
  install -m 0640 -o root -g lobbywatch "$here/$profile.yaml" /etc/lobbywatch/device.yaml
  echo "wrote /etc/lobbywatch/device.yaml from the $profile example: set device_id, the broker and the zones"
fi
# The interfaces the sensor drivers read (enable the overlays you wired in /boot/firmware/config.txt).
command -v raspi-config >/dev/null && raspi-config nonint do_i2c 0 || true
command -v raspi-config >/dev/null && raspi-config nonint do_onewire 0 || true

install -m 0644 "$here/lobbywatch-agent.service" /etc/systemd/system/lobbywatch-agent.service
systemctl daemon-reload
systemctl enable lobbywatch-agent.service
echo "installed. Put the MQTT password in /etc/lobbywatch/mqtt.password (mode 0640, group lobbywatch), then:"
echo "  lobbywatch-agent check-config /etc/lobbywatch/device.yaml && systemctl start lobbywatch-agent"
