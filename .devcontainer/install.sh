#!/bin/sh
# What the dev container adds to Debian 12 (bookworm) with Go 1.26 (the golang:1.26.8-bookworm image) so that
# `make setup`, `make demo` and `make test` run: the Makefile installs the rest itself (Go modules, the CDK CLI and
# Node.js 24 from package-lock.json, the Python venv from requirements.txt, the device and conformance apt
# packages through sudo). Run as root; USERNAME gets passwordless sudo for those apt installs.
set -eu
USERNAME="${USERNAME:-dev}"
USER_UID="${USER_UID:-1000}"

apt-get update
# python3-venv: the project venv (make's .stamps/venv); nodejs + npm: only to run `npm ci`, which installs the pinned
# Node.js 24 the CDK CLI and jsii run on; sudo: the Makefile's apt installs as a non-root user; git, make, curl,
# ca-certificates: the usual tools; procps: ps/kill for the emulator's clean-up.
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	ca-certificates curl git make sudo procps \
	python3 python3-venv python3-pip \
	nodejs npm
rm -rf /var/lib/apt/lists/*

if ! id "$USERNAME" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --uid "$USER_UID" "$USERNAME"
fi
echo "$USERNAME ALL=(root) NOPASSWD:ALL" > "/etc/sudoers.d/$USERNAME"
chmod 0440 "/etc/sudoers.d/$USERNAME"
