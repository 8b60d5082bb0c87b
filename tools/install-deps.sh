#!/bin/sh
# Install what a fresh Debian 12 machine lacks to build, run and test
# nova-accel: libvirt's headers (libvirt-python builds against them), the
# daemons the integration tests start (libvirtd, virtlogd, PostgreSQL), the
# schema validator, qemu-img (nova's libvirt driver in tox -e e2e),
# systemd-analyze (tox -e packaging verifies the agent's unit), and
# tox. Run as root; safe to run again.
set -eu
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (apt-get installs system packages)" >&2
    exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    pkg-config libvirt-dev python3-venv python3-dev gcc \
    libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 \
    libvirt-clients libxml2-utils iproute2 postgresql qemu-utils \
    systemd >/dev/null
python3 -m pip install --quiet --disable-pip-version-check 'tox>=4'
