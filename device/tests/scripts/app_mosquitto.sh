#!/bin/sh
# The host app against a real MQTT broker (Debian's mosquitto) behind mutual TLS: the broker requires a
# client certificate from the test device CA and takes the certificate CN as the user name. Passes when the
# app connects, publishes one telemetry message that the broker acknowledges, and exits 0, and the broker's
# log shows the lower-case device ID as client id and the telemetry topic. --skip-s3: mosquitto has no presign
# function to answer the S3 URL requests.
# Usage: app_mosquitto.sh MOSQUITTO APP PKI_DIR WORK_DIR
set -eu
mosquitto=$1 app=$2 pki=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
pki=$(cd "$pki" && pwd) work=$(cd "$work" && pwd)
device_id=$(cat "$pki/device-id.txt")

# A free port on 127.0.0.1, chosen by the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/mosquitto.conf" <<CONF
# Run as the invoking user: mosquitto started as root would switch to its own user, who cannot read the keys.
user $(id -un)
listener $port 127.0.0.1
cafile $pki/device-ca.pem
certfile $pki/server.pem
keyfile $pki/server.key
require_certificate true
use_identity_as_username true
allow_anonymous false
log_dest file $work/mosquitto.log
log_type all
persistence false
CONF
"$mosquitto" -c "$work/mosquitto.conf" &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT

# Wait until the broker listens (bounded by attempts, not by a timing assertion).
i=0
until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "mosquitto did not start"; cat "$work/mosquitto.log"; exit 1; }
    sleep 0.1
done

"$app" --cert "$pki/device-upper.pem" --key "$pki/device-upper.key" --ca "$pki/server-ca.pem" \
    --endpoint localhost --port "$port" --publish-count 1 --skip-s3
kill $broker; wait $broker 2>/dev/null || true
grep "New client connected" "$work/mosquitto.log"
grep -q "New client connected .* as $device_id " "$work/mosquitto.log" || { echo "client id is not the device ID"; exit 1; }
grep -q "Received PUBLISH from $device_id .*'devices/$device_id/telemetry'" "$work/mosquitto.log" || { echo "no telemetry"; exit 1; }
grep -q "Received SUBSCRIBE from $device_id" "$work/mosquitto.log" || { echo "no subscription"; exit 1; }
echo "mosquitto: mutual TLS session as $device_id, telemetry received"
