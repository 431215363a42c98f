"""Conformance suite: real, unmodified third-party MQTT clients against the running emulator.

The clients are the AWS IoT Device SDK for Python v2 (awsiotsdk on awscrt, with its shadow client), paho-mqtt
(MQTT 3.1.1 and 5) and mosquitto's command-line clients, pinned by the project (requirements.txt, mk/conformance.mk).
`make test-conformance` starts the emulator and runs this suite; the fixtures here only read what it wrote:

  CONFORMANCE_INFO   the emulator's info file (endpoint, server CA, moto endpoint)
  CONFORMANCE_CA     the tenant CA (BASE.pem, BASE.key) the devices' certificates are signed with
  CONFORMANCE_DEVICESIM  the devicesim command, which issues the device certificates (devicesim device-cert)

A client that reports a protocol error fails the test it runs in (see Paho.protocol_errors and run_mosquitto).
"""

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from importlib import metadata

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import serialization

# How long a client waits for an answer of the emulator before the test fails. A bound, never an assertion:
# every wait ends as soon as the awaited event happens.
WAIT = 15.0


def _env(name, default):
    return os.environ.get(name, default)


def pytest_report_header(config):
    versions = [f"{p} {metadata.version(p)}" for p in ("awsiotsdk", "awscrt", "paho-mqtt")]
    mosq = subprocess.run(["mosquitto_pub", "--help"], capture_output=True, text=True)
    first = (mosq.stdout or mosq.stderr).splitlines()
    versions.append(first[1].strip() if len(first) > 1 else "mosquitto_pub: not found")
    return ["conformance clients: " + "; ".join(versions)]


@pytest.fixture(scope="session")
def emulator():
    with open(_env("CONFORMANCE_INFO", "build/demo/emulator.json")) as f:
        info = json.load(f)
    host, port = info["endpoint"].rsplit(":", 1)
    info["host"], info["port"] = host, int(port)
    return info


@pytest.fixture(scope="session")
def iot(emulator):
    """The IoT control plane (moto), with the emulator's test credentials."""
    # The emulator enforces AWS IoT's quotas (DescribeCertificate 10/s): retry throttling as AWS's SDKs advise.
    return boto3.client("iot", region_name=emulator["region"], endpoint_url=emulator["awsEndpoint"],
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "max_attempts": 10}))


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="conformance-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Device:
    """A device of the test tenant: its certificate and key files, client id = thing name = lower-case CN."""

    def __init__(self, emulator, directory):
        self.emulator = emulator
        self.dir = directory
        self.cert = os.path.join(directory, "device.pem")
        self.key = os.path.join(directory, "device.key")
        self.ca = os.path.join(directory, "server-ca.pem")
        with open(self.cert, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the CN of an Azure Sphere device is 128 characters, over X.520's 64
            c = x509.load_pem_x509_certificate(f.read())
            self.thing = c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value.lower()
        self.topic = f"devices/{self.thing}"
        self.cert_id = None
        self.cert_arn = None

    def paho(self, version=mqtt.MQTTv311, client_id=None, **kw):
        return Paho(self, version, client_id or self.thing, **kw)


@pytest.fixture(scope="session")
def new_device(emulator, workdir):
    """Issues a fresh device certificate (a device at its first boot) through devicesim device-cert."""
    devicesim = _env("CONFORMANCE_DEVICESIM", "build/bin/devicesim")
    ca = _env("CONFORMANCE_CA", "build/demo/tenant-ca")
    n = [0]

    def make():
        n[0] += 1
        d = os.path.join(workdir, f"device-{n[0]}")
        subprocess.run([devicesim, "device-cert", "-info", _env("CONFORMANCE_INFO", "build/demo/emulator.json"),
                        "-ca", ca, "-out", d], check=True, capture_output=True)
        return Device(emulator, d)

    return make


@pytest.fixture
def provisioned(new_device, iot):
    """A device provisioned just in time: its first connection closed, the JITR function run, then connected."""

    def make():
        dev = new_device()
        jitr_connect(dev, iot).disconnect()
        return dev

    return make


def jitr_connect(dev, iot):
    """Connects like a device at first boot: retry with backoff until CONNACK (the first attempt is closed while
    AWS IoT registers the certificate and the JITR function activates it). Returns the connected Paho client."""
    delay = 0.2
    deadline = time.monotonic() + 60
    attempts = 0
    while True:
        attempts += 1
        c = dev.paho()
        if c.connect():
            break
        assert time.monotonic() < deadline, f"not provisioned after {attempts} attempts"
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    assert attempts > 1, "the first connection of an unknown certificate must be closed (JITR)"
    # AWS IoT's certificate id is the SHA-256 of the certificate's DER: one DescribeCertificate, not one per
    # certificate of the account (a quota of 10/s).
    with open(dev.cert) as f:
        der = x509.load_pem_x509_certificate(f.read().encode()).public_bytes(serialization.Encoding.DER)
    d = iot.describe_certificate(certificateId=hashlib.sha256(der).hexdigest())["certificateDescription"]
    dev.cert_id, dev.cert_arn = d["certificateId"], d["certificateArn"]
    # AWS IoT takes one CONNECT per second per client id: the next connection of the test may come right away.
    time.sleep(1.05)
    return c


class Paho:
    """A paho-mqtt client driven from the test thread: every wait pumps the client's loop until the event happens,
    the connection is lost, or WAIT passes."""

    def __init__(self, dev, version, client_id, keepalive=60, sni_host=None, will=None, clean=True):
        self.dev = dev
        self.version = version
        kw = {"client_id": client_id, "protocol": version}
        if version != mqtt.MQTTv5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        self.keepalive = keepalive
        self.host = sni_host or dev.emulator["host"]
        ctx = ssl.create_default_context(cafile=dev.ca)
        ctx.load_cert_chain(dev.cert, dev.key)
        self.c.tls_set_context(ctx)
        if will:
            self.c.will_set(**will)
        self.connected = None  # None: no answer yet; True: CONNACK success; False: refused
        self.connack = None
        self.connack_props = None
        self.lost = False
        self.disconnect_reason = None
        self.messages = []
        self.subacks = {}
        self.pubacks = {}
        self.log = []
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.append(m)
        self.c.on_subscribe = lambda c, u, mid, codes, props: self.subacks.__setitem__(mid, codes)
        self.c.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc)
        self.c.on_log = lambda c, u, level, buf: self.log.append((level, buf))

    def _on_connect(self, c, u, flags, rc, props):
        self.connack, self.connack_props = rc, props
        self.connected = not rc.is_failure

    def _on_disconnect(self, c, u, flags, rc, props):
        self.lost = True
        self.disconnect_reason = rc

    def pump(self, done, wait=WAIT):
        deadline = time.monotonic() + wait
        while not done():
            if self.lost or time.monotonic() > deadline:
                return done()
            rc = self.c.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.lost = True
                return done()
        return True

    def connect(self):
        """Connects; True on CONNACK success, False when the broker refuses or closes the connection."""
        try:
            self.c.connect(self.host, self.dev.emulator["port"], keepalive=self.keepalive)
        except (OSError, ssl.SSLError):
            self.lost = True
            return False
        self.pump(lambda: self.connected is not None)
        return bool(self.connected) and not self.lost

    def subscribe(self, topic_or_list, qos=1):
        res, mid = self.c.subscribe(topic_or_list, qos) if isinstance(topic_or_list, str) else self.c.subscribe(topic_or_list)
        assert res == mqtt.MQTT_ERR_SUCCESS, res
        self.pump(lambda: mid in self.subacks)
        return self.subacks.get(mid)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            self.pump(lambda: info.mid in self.pubacks)
        else:
            self.pump(lambda: False, wait=0)  # write it out
        return self.pubacks.get(info.mid)

    def wait_message(self, predicate=lambda m: True):
        self.pump(lambda: any(predicate(m) for m in self.messages))
        return next((m for m in self.messages if predicate(m)), None)

    def wait_lost(self):
        """Waits until the broker ends the connection; a PINGREQ makes a silently dropped socket visible."""
        return self.pump(lambda: self.lost)

    def disconnect(self):
        if not self.lost:
            self.c.disconnect()
            self.c.loop(timeout=0.05)
        self.lost = True

    def protocol_errors(self):
        """What the client reported as a protocol error: the test fails on any."""
        errs = [b for lvl, b in self.log if lvl == mqtt.MQTT_LOG_ERR or "protocol" in b.lower() or "malformed" in b.lower()]
        if self.disconnect_reason is not None and str(self.disconnect_reason) in ("Protocol error", "Malformed packet"):
            errs.append(f"disconnect: {self.disconnect_reason}")
        return errs


@pytest.fixture
def clients():
    """Collects the paho clients of a test and fails it if any reported a protocol error."""
    made = []
    yield made
    problems = [f"{c.dev.thing[:8]}…: {e}" for c in made for e in c.protocol_errors()]
    for c in made:
        try:
            c.disconnect()
        except Exception:
            pass
    assert not problems, "client reported protocol errors: " + "; ".join(problems)


def run_mosquitto(tool, dev, *args, client_id=None, timeout=WAIT, background=False, version="mqttv311"):
    """Runs mosquitto_pub or mosquitto_sub as the device; returns the CompletedProcess (or the Popen)."""
    cmd = ["stdbuf", "-oL", tool, "-h", dev.emulator["host"], "-p", str(dev.emulator["port"]), "--cafile", dev.ca, "--cert", dev.cert,
           "--key", dev.key, "-i", client_id or dev.thing, "-V", version, *args]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def mosquitto_protocol_error(stderr):
    s = stderr.lower()
    return "protocol error" in s or "malformed" in s


class Waiter:
    """A threading.Event with a value, for the callbacks of the AWS IoT Device SDK."""

    def __init__(self):
        self.ev = threading.Event()
        self.value = None

    def __call__(self, value):
        self.value = value
        self.ev.set()

    def get(self):
        assert self.ev.wait(WAIT), "no answer from the emulator"
        return self.value
