"""The emulator's message broker against AWS IoT Core's rules, with paho-mqtt (3.1.1 and 5), mosquitto's clients and
the AWS IoT Device SDK for Python v2. Each rule's AWS page is cited in emulator/iotcore/broker/limits.go."""

import json
import signal
import time

import paho.mqtt.client as mqtt
import pytest
from awscrt import mqtt as crt_mqtt
from awsiot import mqtt_connection_builder

from conftest import WAIT, jitr_connect, mosquitto_protocol_error, run_mosquitto

V3, V5 = mqtt.MQTTv311, mqtt.MQTTv5
VERSIONS = [pytest.param(V3, id="paho-3.1.1"), pytest.param(V5, id="paho-5")]


def connected(dev, clients, version=V3, **kw):
    c = dev.paho(version, **kw)
    clients.append(c)
    assert c.connect(), f"connect refused: {c.connack}"
    return c


# --- connect, just-in-time registration ----------------------------------------------------------------------------

def test_jitr_first_connection_closed_then_connected(new_device, iot, clients):
    dev = new_device()
    first = dev.paho()
    clients.append(first)
    assert not first.connect(), "the first connection of an unknown certificate must be closed"
    assert first.connack is None, "closed without CONNACK, as AWS IoT does"
    c = jitr_connect(dev, iot)
    clients.append(c)
    assert iot.describe_certificate(certificateId=dev.cert_id)["certificateDescription"]["status"] == "ACTIVE"


def test_device_sdk_connects_publishes_and_receives(provisioned):
    dev = provisioned()
    interrupted = []
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=dev.emulator["host"], port=dev.emulator["port"], cert_filepath=dev.cert, pri_key_filepath=dev.key,
        ca_filepath=dev.ca, client_id=dev.thing, clean_session=True, keep_alive_secs=30,
        on_connection_interrupted=lambda connection, error, **kw: interrupted.append(error))
    conn.connect().result(WAIT)
    got = []
    sub, _ = conn.subscribe(dev.topic + "/sdk", crt_mqtt.QoS.AT_LEAST_ONCE, lambda topic, payload, **kw: got.append(payload))
    assert sub.result(WAIT)["qos"] == crt_mqtt.QoS.AT_LEAST_ONCE
    pub, _ = conn.publish(dev.topic + "/sdk", b"from the SDK", crt_mqtt.QoS.AT_LEAST_ONCE)
    pub.result(WAIT)
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.disconnect().result(WAIT)
    assert got == [b"from the SDK"]
    assert not interrupted, f"the SDK reported {interrupted}"


@pytest.mark.parametrize("version", VERSIONS)
def test_own_topic_publish_subscribe(provisioned, clients, version):
    dev = provisioned()
    c = connected(dev, clients, version)
    assert c.subscribe(dev.topic + "/#")[0].value == 1
    rc = c.publish(dev.topic + "/telemetry", b"hello")
    assert rc is not None and not rc.is_failure and rc.value == 0, f"PUBACK reason {rc}"
    assert c.wait_message(lambda m: m.payload == b"hello") is not None


def test_mqtt5_puback_has_no_echoed_user_properties(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients, V5)
    props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
    props.UserProperty = ("k", "v")
    info = c.c.publish(dev.topic + "/props", b"x", qos=1, properties=props)
    seen = {}
    c.c.on_publish = lambda cl, u, mid, rc, p: seen.__setitem__(mid, (rc, p))
    c.pump(lambda: info.mid in seen)
    rc, p = seen[info.mid]
    assert rc.value == 0
    assert not getattr(p, "UserProperty", None), f"PUBACK echoed user properties {p}"


def test_mqtt5_connack_advertises_limits(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients, V5, keepalive=5)
    p = c.connack_props
    assert p.MaximumQoS == 1
    assert p.RetainAvailable == 1
    assert p.ReceiveMaximum == 100
    assert p.ServerKeepAlive == 30, "a keep-alive under 30 s is raised to 30 s"


def mosquitto_sub_ready(dev, topic, *extra):
    """Starts mosquitto_sub (debug output on) and returns it once its SUBACK arrived."""
    sub = run_mosquitto("mosquitto_sub", dev, "-d", "-t", topic, "-q", "1", *extra, background=True)
    for line in sub.stdout:
        if "received suback" in line.lower():
            return sub
    raise AssertionError("mosquitto_sub ended before its SUBACK: " + sub.stderr.read())


def test_mosquitto_publish_subscribe(provisioned, iot, observer_policy):
    watcher, dev = provisioned(), provisioned()
    iot.attach_policy(policyName=observer_policy, target=watcher.cert_arn)
    sub = mosquitto_sub_ready(watcher, dev.topic + "/mosq", "-C", "1")
    pub = run_mosquitto("mosquitto_pub", dev, "-t", dev.topic + "/mosq", "-m", "hello", "-q", "1")
    assert pub.returncode == 0, pub.stderr
    out, err = sub.communicate(timeout=WAIT)
    assert "hello" in out.splitlines(), out
    assert sub.returncode == 0, err
    assert not mosquitto_protocol_error(pub.stderr + err), pub.stderr + err


# --- policy refusals -----------------------------------------------------------------------------------------------

def test_connect_as_another_client_id_is_refused(provisioned, clients):
    a, b = provisioned(), provisioned()
    c = a.paho(client_id=b.thing)
    clients.append(c)
    assert not c.connect()
    assert c.connack is None, "AWS IoT closes the connection, no CONNACK"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1])
def test_publish_to_another_device_disconnects(provisioned, clients, version, qos):
    a, b = provisioned(), provisioned()
    c = connected(a, clients, version)
    c.c.publish(b.topic + "/telemetry", b"forged", qos=qos)
    assert c.wait_lost(), "an unauthorised publish must close the connection (any QoS)"
    if version == V5:
        assert c.disconnect_reason.value == 0x87, c.disconnect_reason


@pytest.mark.parametrize("version", VERSIONS)
def test_subscribe_to_another_device_is_refused(provisioned, clients, version):
    a, b = provisioned(), provisioned()
    c = connected(a, clients, version)
    codes = c.subscribe(b.topic + "/#")
    assert codes[0].is_failure, codes


def test_mosquitto_publish_to_another_device_fails(provisioned):
    a, b = provisioned(), provisioned()
    r = run_mosquitto("mosquitto_pub", a, "-t", b.topic + "/telemetry", "-m", "forged", "-q", "1")
    assert r.returncode != 0, "the broker must close the connection"
    assert not mosquitto_protocol_error(r.stderr), r.stderr


# --- session take-over ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_session_takeover(provisioned, clients, version):
    dev = provisioned()
    first = connected(dev, clients, version)
    time.sleep(1.05)  # one CONNECT per second per client id
    second = connected(dev, clients, version)
    assert first.wait_lost(), "the older connection of a client id is closed"
    if version == V5:
        assert first.disconnect_reason.value == 0x8E, first.disconnect_reason  # session taken over
    assert second.publish(dev.topic + "/after", b"x").value == 0


def test_connect_rate_one_per_second_per_client_id(provisioned, clients):
    dev = provisioned()
    connected(dev, clients)
    again = dev.paho()
    clients.append(again)
    assert not again.connect(), "a second CONNECT within a second of the first is throttled"


# --- Last Will -----------------------------------------------------------------------------------------------------

def test_will_on_another_device_topic_is_refused(provisioned, clients):
    a, b = provisioned(), provisioned()
    c = a.paho(will={"topic": b.topic + "/will", "payload": b"gone", "qos": 1})
    clients.append(c)
    assert not c.connect(), "a will the policy does not allow publishing must not be accepted"


def test_retained_will_without_retain_publish_is_refused(provisioned, clients):
    dev = provisioned()
    c = dev.paho(will={"topic": dev.topic + "/will", "payload": b"gone", "qos": 1, "retain": True})
    clients.append(c)
    assert not c.connect()


def test_will_qos2_is_refused(provisioned, clients):
    dev = provisioned()
    c = dev.paho(will={"topic": dev.topic + "/will", "payload": b"gone", "qos": 2})
    clients.append(c)
    assert not c.connect()
    assert c.connack is None


def test_own_will_published_when_connection_drops(provisioned, iot, observer_policy, clients):
    dev, watcher = provisioned(), provisioned()
    iot.attach_policy(policyName=observer_policy, target=watcher.cert_arn)
    w = connected(watcher, clients)
    assert not w.subscribe(dev.topic + "/will")[0].is_failure
    # The will is published when mosquitto_sub's connection ends without DISCONNECT (SIGKILL closes the socket).
    sub = mosquitto_sub_ready(dev, dev.topic + "/x", "--will-topic", dev.topic + "/will", "--will-payload", "gone",
                              "--will-qos", "1")
    sub.send_signal(signal.SIGKILL)
    sub.wait(WAIT)
    assert w.wait_message(lambda m: m.topic == dev.topic + "/will" and m.payload == b"gone") is not None


# --- retained messages ---------------------------------------------------------------------------------------------

def test_retained_publish_without_retain_publish_disconnects(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients)
    c.c.publish(dev.topic + "/config", b"cfg", qos=1, retain=True)
    assert c.wait_lost(), "a retained publish needs iot:RetainPublish"


def test_retained_on_reserved_topic_disconnects(provisioned, iot, retain_policy, clients):
    dev = provisioned()
    iot.attach_policy(policyName=retain_policy, target=dev.cert_arn)  # policies are read at CONNECT
    c = connected(dev, clients)
    c.c.publish(f"$aws/things/{dev.thing}/shadow/update", b'{"state":{}}', qos=1, retain=True)
    assert c.wait_lost(), "no retained message on a reserved topic"


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_delivered_on_exact_filter_not_wildcard(provisioned, iot, retain_policy, clients, version):
    dev = provisioned()
    iot.attach_policy(policyName=retain_policy, target=dev.cert_arn)
    c = connected(dev, clients, version)
    topic = dev.topic + "/config"
    assert c.publish(topic, b"retained-cfg", retain=True).value == 0
    # A wildcard subscription gets later messages, not the retained one: the marker published after it arrives
    # first (and alone).
    assert not c.subscribe(dev.topic + "/+")[0].is_failure
    assert c.publish(dev.topic + "/marker", b"marker").value == 0
    c.wait_message(lambda m: m.payload == b"marker")
    assert [m.payload for m in c.messages] == [b"marker"], "retained message delivered on a wildcard filter"
    c.messages.clear()
    assert not c.subscribe(topic)[0].is_failure
    m = c.wait_message(lambda m: m.payload == b"retained-cfg")
    assert m is not None and m.retain, "the exact filter receives the retained message, RETAIN set"
    assert c.publish(topic, b"", retain=True).value == 0  # clears it


# --- limits --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_payload_limit(provisioned, clients, version):
    dev = provisioned()
    c = connected(dev, clients, version)
    assert c.publish(dev.topic + "/big", b"x" * (128 * 1024)).value == 0, "128 KB is allowed"
    c.c.publish(dev.topic + "/big", b"x" * (128 * 1024 + 1), qos=1)
    assert c.wait_lost(), "a payload over 128 KB is rejected"
    if version == V5:
        assert c.disconnect_reason.value == 0x95, c.disconnect_reason


@pytest.mark.parametrize("version", VERSIONS)
def test_publish_qos2_disconnects(provisioned, clients, version):
    dev = provisioned()
    c = connected(dev, clients, version)
    c.c.publish(dev.topic + "/q2", b"x", qos=2)
    assert c.wait_lost()
    if version == V5:
        assert c.disconnect_reason.value == 0x9B, c.disconnect_reason


def test_subscribe_qos2_disconnects(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients)
    c.c.subscribe(dev.topic + "/q2", 2)
    assert c.wait_lost()


def test_topic_deeper_than_seven_slashes_disconnects(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients)
    assert c.publish(dev.topic + "/a/b/c/d/e/f", b"7 slashes").value == 0
    c.c.publish(dev.topic + "/a/b/c/d/e/f/g", b"8 slashes", qos=1)
    assert c.wait_lost()


def test_more_than_eight_filters_per_subscribe_disconnects(provisioned, clients):
    dev = provisioned()
    c = connected(dev, clients)
    codes = c.subscribe([(f"{dev.topic}/f{i}", 1) for i in range(8)])
    assert all(not rc.is_failure for rc in codes)
    c.c.subscribe([(f"{dev.topic}/g{i}", 1) for i in range(9)])
    assert c.wait_lost()


def test_no_sni_is_refused(provisioned, clients):
    dev = provisioned()
    c = dev.paho(sni_host="127.0.0.1")  # an IP address: Python's TLS sends no server name
    clients.append(c)
    assert not c.connect()


def test_mosquitto_keepalive_below_minimum_still_connects(provisioned):
    dev = provisioned()
    r = run_mosquitto("mosquitto_pub", dev, "-t", dev.topic + "/ka", "-m", "x", "-q", "1", "-k", "5")
    assert r.returncode == 0, r.stderr
    assert not mosquitto_protocol_error(r.stderr), r.stderr


# --- revocation of an open connection ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_certificate_deactivated_drops_open_connection(provisioned, iot, clients, status):
    dev = provisioned()
    c = connected(dev, clients)
    iot.update_certificate(certificateId=dev.cert_id, newStatus=status)
    assert c.wait_lost(), f"a connection whose certificate became {status} must be dropped"
    time.sleep(1.05)
    again = dev.paho()
    clients.append(again)
    assert not again.connect(), f"a {status} certificate cannot reconnect"


def test_certificate_deleted_drops_open_connection(provisioned, iot, clients, device_policy):
    dev = provisioned()
    c = connected(dev, clients)
    iot.update_certificate(certificateId=dev.cert_id, newStatus="INACTIVE")
    iot.detach_policy(policyName=device_policy, target=dev.cert_arn)
    iot.detach_thing_principal(thingName=dev.thing, principal=dev.cert_arn)
    iot.delete_certificate(certificateId=dev.cert_id)
    assert c.wait_lost()


def test_policy_detached_refuses_next_publish(provisioned, iot, clients, device_policy):
    dev = provisioned()
    c = connected(dev, clients)
    iot.detach_policy(policyName=device_policy, target=dev.cert_arn)
    # The connection stays (AWS documents no disconnection for a detached policy); the next publish is judged
    # without the policy. Publish until the broker has read the registry and refuses it.
    deadline = time.monotonic() + WAIT
    while not c.lost and time.monotonic() < deadline:
        c.publish(dev.topic + "/still", b"x")
    assert c.lost, "a publish the remaining policies do not allow must close the connection"


# --- fixtures for extra policies ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def device_policy(emulator):
    return emulator["devicePolicy"]


def _policy(iot, name, statements):
    doc = json.dumps({"Version": "2012-10-17", "Statement": statements})
    try:
        iot.create_policy(policyName=name, policyDocument=doc)
    except iot.exceptions.ResourceAlreadyExistsException:
        pass
    return name


@pytest.fixture(scope="session")
def retain_policy(iot, emulator):
    """Allows a device to publish retained messages on its own topics (AWS's retained-message policy example)."""
    arn = f"arn:aws:iot:{emulator['region']}:123456789012:topic/devices/${{iot:Connection.Thing.ThingName}}/*"
    shadow = f"arn:aws:iot:{emulator['region']}:123456789012:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/update"
    return _policy(iot, "conformance-retain", [{"Effect": "Allow", "Action": ["iot:RetainPublish"], "Resource": [arn, shadow]}])


@pytest.fixture(scope="session")
def observer_policy(iot, emulator):
    """Lets a watcher subscribe to and receive every device's topics (to see another device's will)."""
    r = emulator["region"]
    return _policy(iot, "conformance-observer", [
        {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": [f"arn:aws:iot:{r}:123456789012:topicfilter/devices/*"]},
        {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": [f"arn:aws:iot:{r}:123456789012:topic/devices/*"]},
    ])
