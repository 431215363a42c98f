"""The AWS IoT registry's changes as a feed, so the emulator's broker can keep what it needs in memory.

AWS IoT Core admits a connection without spending an API call of the account: its data plane knows each
certificate's status, things and policies. The emulator's broker stands in for that data plane; reading moto's
registry on every CONNECT put three control-plane reads per connection attempt on moto, the busiest part of a
storm. With this feed the broker keeps the registry's answers in memory and drops one the moment the registry
changes it: every successful change of a certificate's status or existence, of its thing or policy attachments, and
of a policy's document is recorded here, in order, with a sequence number.

  GET /_sphere/changes?since=N[&wait=SECONDS]
      {"seq": latest, "gap": bool, "certificates": [id, ...], "policies": [name, ...]}
      the certificates and policies changed after sequence number N (each once); with wait, the answer waits up to
      that long for a change after N. gap is true when the feed cannot say what changed after N (N older than what
      it keeps, or from before moto's state was reset): the reader must forget everything it kept.

A backend created afresh (moto's first request after POST /moto-api/reset) counts as a gap. Loopback only, like
moto itself. install() wraps the registry's mutating operations; the launcher calls it after every other patch, so
it records what the final versions did.
"""
import json
import threading
from collections import deque
from urllib.parse import parse_qsl

from moto.iot.models import IoTBackend

PATH = "/_sphere/changes"
KEEP = 200_000  # changes kept; a reader further behind gets a gap


class Feed:
    def __init__(self):
        self.cond = threading.Condition()
        self.seq = 0
        self.reset_seq = 0  # the last gap: nothing before it can be answered
        self.entries = deque(maxlen=KEEP)  # (seq, kind, key)

    def record(self, kind, key):
        with self.cond:
            self.seq += 1
            self.entries.append((self.seq, kind, key))
            self.cond.notify_all()

    def reset(self):
        with self.cond:
            self.seq += 1
            self.reset_seq = self.seq
            self.entries.clear()
            self.cond.notify_all()

    def since(self, since, wait=0.0):
        with self.cond:
            if wait > 0 and self.seq <= since:
                self.cond.wait_for(lambda: self.seq > since, timeout=wait)
            oldest = self.entries[0][0] if self.entries else self.seq + 1
            gap = since < self.reset_seq or since > self.seq or (since + 1 < oldest and since < self.seq)
            certs, policies = {}, {}
            if not gap:
                for seq, kind, key in reversed(self.entries):
                    if seq <= since:
                        break
                    (certs if kind == "certificate" else policies)[key] = None
            return {"seq": self.seq, "gap": gap, "certificates": list(certs), "policies": list(policies)}


FEED = Feed()


def _cert_of(principal_arn):
    return principal_arn.rsplit("/", 1)[-1] if principal_arn and ":cert/" in principal_arn else None


def _recording(method, keys):
    """method, recording keys(args, kwargs) → [(kind, key)] once it returns without raising."""

    def wrapper(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        for kind, key in keys(args, kwargs):
            if key:
                FEED.record(kind, key)
        return result

    return wrapper


def _arg(args, kwargs, i, name):
    return kwargs[name] if name in kwargs else (args[i] if len(args) > i else None)


def install():
    """Record the registry's changes; call once, after every other patch of IoTBackend, before the server starts."""
    cert = lambda i, name: lambda a, k: [("certificate", _arg(a, k, i, name))]  # noqa: E731
    principal = lambda i, name: lambda a, k: [("certificate", _cert_of(_arg(a, k, i, name)))]  # noqa: E731
    policy = lambda i, name: lambda a, k: [("policy", _arg(a, k, i, name))]  # noqa: E731
    wrapped = {
        "update_certificate": cert(0, "certificate_id"),
        "delete_certificate": cert(0, "certificate_id"),
        "attach_thing_principal": principal(1, "principal_arn"),
        "detach_thing_principal": principal(1, "principal_arn"),
        "attach_policy": lambda a, k: [("certificate", _cert_of(_arg(a, k, 1, "target")))],
        "detach_policy": lambda a, k: [("certificate", _cert_of(_arg(a, k, 1, "target")))],
        "attach_principal_policy": principal(1, "principal_arn"),
        "detach_principal_policy": principal(1, "principal_arn"),
        "create_policy_version": policy(0, "policy_name"),
        "set_default_policy_version": policy(0, "policy_name"),
        "delete_policy_version": policy(0, "policy_name"),
        "delete_policy": policy(0, "policy_name"),
    }
    for name, keys in wrapped.items():
        setattr(IoTBackend, name, _recording(getattr(IoTBackend, name), keys))

    moto_init = IoTBackend.__init__

    def __init__(self, *args, **kwargs):
        moto_init(self, *args, **kwargs)
        FEED.reset()  # a new registry: what a reader kept of the old one is gone

    IoTBackend.__init__ = __init__

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    moto_call = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET":
            query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
            try:
                since, wait = int(query.get("since", "0")), min(float(query.get("wait", "0")), 30.0)
            except ValueError:
                start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", "13")])
                return [b"bad parameter"]
            body = json.dumps(FEED.since(since, wait)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return moto_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__
