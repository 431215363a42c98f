#!/bin/sh
# What the dev container adds to its image — Debian 12 (bookworm) with Python 3.11.7 (python:3.11.7-bookworm), Go
# 1.26 and Node.js 24 with npm 11 (copied from the golang and node images, see Dockerfile) — so that `make setup`,
# `make demo` and `make test` run: the Makefile installs the rest itself (Go modules, the CDK CLI and Node.js 24 from
# package-lock.json, the Python venv from requirements.txt, the device and conformance apt packages through sudo).
# Run as root; USERNAME gets passwordless sudo for those apt installs.
set -eu
USERNAME="${USERNAME:-dev}"
USER_UID="${USER_UID:-1000}"

apt-get update
# sudo: the Makefile's apt installs as a non-root user; git, make, curl, ca-certificates: the usual tools; procps:
# ps/kill for the emulator's clean-up; libc6-dev: the C headers go build needs once gcc is there (make setup installs
# gcc for the device build without its recommends, and cgo then fails on a minimal Debian without them).
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	ca-certificates curl git make sudo procps libc6-dev
rm -rf /var/lib/apt/lists/*

# requirements.txt pins packages that need Python 3.11.5 or later (soupsieve 4.1.3: Requires-Python >=3.11.5);
# Debian 12's own python3 is 3.11.2, hence the python image.
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))'; then
	echo "install.sh: $(python3 --version 2>&1) found, Python 3.11.5 or later needed (see the Dockerfile's base image)" >&2
	exit 1
fi

# `npm ci` must link the pinned node-linux-<arch> package's `node` into node_modules/.bin: npm 11 does, npm 10 and
# older (Debian 12's npm 9 included) install the package but leave the link out, and `make setup` then stops with
# "Node.js 24 did not install from package-lock.json".
npm_major=$(npm --version 2>/dev/null | cut -d. -f1)
if [ "${npm_major:-0}" -lt 11 ]; then
	echo "install.sh: npm ${npm_major:-missing} found, npm 11 or later needed (see the Dockerfile's node stage)" >&2
	exit 1
fi

if ! id "$USERNAME" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --uid "$USER_UID" "$USERNAME"
fi
echo "$USERNAME ALL=(root) NOPASSWD:ALL" > "/etc/sudoers.d/$USERNAME"
chmod 0440 "/etc/sudoers.d/$USERNAME"
