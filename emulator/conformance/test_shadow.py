"""The Device Shadow service behind the emulator's broker, through the AWS IoT Device SDK for Python v2's shadow client
(awsiot.iotshadow). Limits and messages: AWS's "Device Shadow error messages" and "Device Shadow service documents"."""

import uuid

import pytest
from awscrt import mqtt as crt_mqtt
from awsiot import iotshadow, mqtt_connection_builder

from conftest import WAIT, Waiter

QOS = crt_mqtt.QoS.AT_LEAST_ONCE


class Shadow:
    """The SDK's shadow client on a connection of one device, with a waiter per reply topic."""

    def __init__(self, dev):
        self.dev = dev
        self.interrupted = []
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint=dev.emulator["host"], port=dev.emulator["port"], cert_filepath=dev.cert,
            pri_key_filepath=dev.key, ca_filepath=dev.ca, client_id=dev.thing, clean_session=True,
            keep_alive_secs=30, on_connection_interrupted=lambda connection, error, **kw: self.interrupted.append(error))
        self.conn.connect().result(WAIT)
        self.client = iotshadow.IotShadowClient(self.conn)
        self.w = {}
        t = dev.thing
        subs = {
            "update_accepted": (self.client.subscribe_to_update_shadow_accepted, iotshadow.UpdateShadowSubscriptionRequest(thing_name=t)),
            "update_rejected": (self.client.subscribe_to_update_shadow_rejected, iotshadow.UpdateShadowSubscriptionRequest(thing_name=t)),
            "get_accepted": (self.client.subscribe_to_get_shadow_accepted, iotshadow.GetShadowSubscriptionRequest(thing_name=t)),
            "get_rejected": (self.client.subscribe_to_get_shadow_rejected, iotshadow.GetShadowSubscriptionRequest(thing_name=t)),
            "delete_accepted": (self.client.subscribe_to_delete_shadow_accepted, iotshadow.DeleteShadowSubscriptionRequest(thing_name=t)),
            "delete_rejected": (self.client.subscribe_to_delete_shadow_rejected, iotshadow.DeleteShadowSubscriptionRequest(thing_name=t)),
            "documents": (self.client.subscribe_to_shadow_updated_events, iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=t)),
            "delta": (self.client.subscribe_to_shadow_delta_updated_events, iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=t)),
        }
        for name, (fn, req) in subs.items():
            self.w[name] = Waiter()
            fut, _ = fn(req, QOS, self._cb(name))
            fut.result(WAIT)

    def _cb(self, name):
        return lambda value: self.w[name](value)

    def reset(self, *names):
        for n in names:
            self.w[n] = Waiter()

    def update(self, **state):
        self.reset("update_accepted", "update_rejected", "documents", "delta")
        req = iotshadow.UpdateShadowRequest(thing_name=self.dev.thing, state=iotshadow.ShadowState(**state),
                                            client_token=str(uuid.uuid4()))
        self.client.publish_update_shadow(req, QOS).result(WAIT)

    def get(self):
        self.reset("get_accepted", "get_rejected")
        self.client.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=self.dev.thing, client_token=str(uuid.uuid4())), QOS).result(WAIT)

    def delete(self):
        self.reset("delete_accepted", "delete_rejected")
        self.client.publish_delete_shadow(iotshadow.DeleteShadowRequest(thing_name=self.dev.thing, client_token=str(uuid.uuid4())), QOS).result(WAIT)

    def first(self, *names):
        """Waits for the first reply among names; returns (name, value)."""
        import time
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for n in names:
                if self.w[n].ev.is_set():
                    return n, self.w[n].value
            time.sleep(0.01)
        raise AssertionError(f"no reply on {names}")

    def close(self):
        self.conn.disconnect().result(WAIT)
        assert not self.interrupted, f"the SDK reported {self.interrupted}"


@pytest.fixture
def shadow(provisioned):
    s = Shadow(provisioned())
    yield s
    s.close()


def test_get_absent_shadow_is_rejected_404(shadow):
    shadow.get()
    name, err = shadow.first("get_accepted", "get_rejected")
    assert name == "get_rejected" and err.code == 404, (name, vars(err))


def test_update_accepted_documents_and_delta(shadow):
    shadow.update(reported={"led": "off"}, desired={"led": "on"})
    name, acc = shadow.first("update_accepted", "update_rejected")
    assert name == "update_accepted", vars(acc)
    assert acc.state.desired == {"led": "on"}
    docs = shadow.w["documents"].get()
    assert docs.previous is None or docs.previous.state is None or not docs.previous.state.reported
    assert docs.current.state.reported == {"led": "off"} and docs.current.state.desired == {"led": "on"}
    assert docs.current.version == acc.version
    delta = shadow.w["delta"].get()
    assert delta.state == {"led": "on"}
    shadow.update(reported={"led": "on"})
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted"
    docs = shadow.w["documents"].get()
    assert docs.previous.state.reported == {"led": "off"} and docs.current.state.reported == {"led": "on"}


def test_desired_null_removes_the_section(shadow):
    shadow.update(reported={"a": 1}, desired={"a": 2, "b": 3})
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted"
    shadow.update(desired=None, desired_is_nullable=True)
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted"
    shadow.get()
    name, doc = shadow.first("get_accepted", "get_rejected")
    assert name == "get_accepted"
    assert doc.state.desired is None, f"desired still there: {doc.state.desired}"
    assert doc.state.reported == {"a": 1}
    assert doc.state.delta is None


def test_delete_absent_shadow_is_rejected_404(shadow):
    shadow.delete()
    name, err = shadow.first("delete_accepted", "delete_rejected")
    assert name == "delete_rejected" and err.code == 404, name
    shadow.update(reported={"x": 1})
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted"
    shadow.delete()
    assert shadow.first("delete_accepted", "delete_rejected")[0] == "delete_accepted"
    shadow.delete()  # deleted already: moto accepts this one, AWS does not
    name, err = shadow.first("delete_accepted", "delete_rejected")
    assert name == "delete_rejected" and err.code == 404, name


def test_state_over_8kb_is_rejected_413(shadow):
    shadow.update(reported={"blob": "x" * 8000})
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted", "under 8 KB is accepted"
    shadow.update(reported={"blob": "x" * (8 * 1024)})
    name, err = shadow.first("update_accepted", "update_rejected")
    assert name == "update_rejected" and err.code == 413, name


def test_nesting_deeper_than_6_is_rejected_400(shadow):
    six = {"l1": {"l2": {"l3": {"l4": {"l5": {"l6": 1}}}}}}
    shadow.update(reported=six)
    assert shadow.first("update_accepted", "update_rejected")[0] == "update_accepted", "6 levels are accepted"
    seven = {"l1": {"l2": {"l3": {"l4": {"l5": {"l6": {"l7": 1}}}}}}}
    shadow.update(reported=seven)
    name, err = shadow.first("update_accepted", "update_rejected")
    assert name == "update_rejected" and err.code == 400, name
    assert "nesting" in err.message
