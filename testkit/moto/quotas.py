"""AWS IoT control-plane quotas in front of moto: one token bucket per account, region and API.

AWS IoT Core rate-limits its control plane per account (and Region) and API ("AWS IoT Core endpoints and quotas",
AWS General Reference; each figure adjustable in Service Quotas) and answers a call over the limit with
ThrottlingException. moto has no quotas, so without this module a fleet storm against the emulator shows none of
the throttling it meets on AWS. The launcher calls install() once, before the server starts.

An AWS IoT request (SigV4 service "iot") is mapped to its operation with botocore's service model (the same
mapping iam.py uses: HTTP method and requestUri). When the operation has a quota, the request takes a token from
its bucket or is answered as AWS answers it (_throttled below), without reaching moto. A bucket refills
continuously at the quota's rate and holds one second of it (a burst of `rate` calls from an idle account).
Operations without a quota here are counted but never throttled.

Settings, from the moto process's environment, read once at start:
  IOT_QUOTAS       JSON object API -> requests per second, overriding or adding to DEFAULT_QUOTAS; 0 lifts one
  IOT_QUOTA_SCALE  multiplies every rate (the storm benchmark's STORM_SCALE); default 1
  IOT_QUOTAS_OFF   "1" lifts every quota (calls are still counted)

A request with the header X-Sphere-Emulator-Internal is neither throttled nor counted: the emulator's own registry
reads (the broker standing in for AWS IoT's internals) are not calls of the account's code.

IAM (iam.py) is installed in front of this module: a call IAM denies never reaches AWS IoT's API, so it takes no
token.

Figures (loopback only, like moto itself):
  GET  /_sphere/quotas        {"limits": {api: rps}, "calls": {api: n}, "throttled": {api: n},
                               "activated": {certificateId: unix seconds of the first successful
                                             UpdateCertificate newStatus=ACTIVE},
                               "deleted": {certificateId: unix seconds of the successful DeleteCertificate}}
  POST /_sphere/quotas/reset  zeroes the figures and refills every bucket (a new scenario starts from an idle account)
  POST /_sphere/quotas/scale  {"scale": K}: every limit K × what it was at start, the figures zeroed and the buckets
                              refilled (the storm benchmark's capacity pass lifts the quotas ×100 in a running moto)
"""
import json
import os
import re
import threading
import time
from urllib.parse import parse_qsl

# Requests per second per account of AWS IoT Core's control-plane APIs the JITR flow and its tools call (defaults
# of "AWS IoT Core endpoints and quotas"; adjustable in Service Quotas). The same table as the product's Go table,
# internal/iotquota (where the figures' sources are noted); TestQuotaTableMatchesGo (testkit/motoserver) fails when
# the two differ, so change both together. IOT_QUOTAS overrides any of them.
DEFAULT_QUOTAS = {
    "DescribeCertificate": 10,
    "UpdateCertificate": 10,
    "DeleteCertificate": 10,
    "ListThingPrincipals": 10,
    "ListCertificatesByCA": 10,
    "AttachPolicy": 15,
    "DetachPolicy": 15,
    "CreateThing": 100,
    "UpdateThing": 100,
    "AttachThingPrincipal": 100,
    "DetachThingPrincipal": 100,
    "DescribeThing": 350,
}

INTERNAL_HEADER = "HTTP_X_SPHERE_EMULATOR_INTERNAL"  # WSGI form of the header X-Sphere-Emulator-Internal
PATH = "/_sphere/quotas"
RESET_PATH = "/_sphere/quotas/reset"
SCALE_PATH = "/_sphere/quotas/scale"

_CRED = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/aws4_request")


class TokenBucket:
    """`rate` tokens a second, at most `rate` in store (one second of burst); full when created."""

    def __init__(self, rate, now):
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = now

    def take(self, now):
        """Takes one token; False when there is none (the call is throttled)."""
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Quotas:
    """The buckets of every (account, region, API) and the figures GET /_sphere/quotas reports."""

    def __init__(self, limits, clock=time.monotonic, wall=time.time):
        self.limits = {api: float(rate) for api, rate in limits.items() if float(rate) > 0}
        self.base = dict(self.limits)
        self.clock = clock
        self.wall = wall
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        """Zeroes the figures and refills every bucket."""
        with self.lock:
            self.buckets = {}
            self.calls = {}
            self.throttled = {}
            self.activated = {}
            self.deleted = {}

    def scale(self, factor):
        """Every limit factor × its value at start; zeroes the figures and refills every bucket."""
        if factor <= 0:
            raise ValueError("scale must be positive")
        with self.lock:
            self.limits = {api: rate * factor for api, rate in self.base.items()}
        self.reset()

    def admit(self, account, region, api):
        """Counts one call of api; False means it is throttled."""
        with self.lock:
            rate = self.limits.get(api)
            if rate is not None:
                now = self.clock()
                bucket = self.buckets.get((account, region, api))
                if bucket is None:
                    bucket = self.buckets[(account, region, api)] = TokenBucket(rate, now)
                if not bucket.take(now):
                    self.throttled[api] = self.throttled.get(api, 0) + 1
                    return False
            self.calls[api] = self.calls.get(api, 0) + 1
            return True

    def record(self, api, params, status):
        """Remembers when a certificate was first activated, and when it was deleted (successful calls only)."""
        if status >= 300:
            return
        cert_id = params.get("certificateid")
        if not cert_id:
            return
        with self.lock:
            if api == "UpdateCertificate" and params.get("newstatus") == "ACTIVE":
                self.activated.setdefault(cert_id, self.wall())
            elif api == "DeleteCertificate":
                self.deleted.setdefault(cert_id, self.wall())

    def snapshot(self):
        with self.lock:
            return {
                "limits": dict(self.limits),
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "activated": dict(self.activated),
                "deleted": dict(self.deleted),
            }


def limits_from_env(environ=os.environ):
    """DEFAULT_QUOTAS with IOT_QUOTAS applied, every rate multiplied by IOT_QUOTA_SCALE ({} with IOT_QUOTAS_OFF=1)."""
    if environ.get("IOT_QUOTAS_OFF") == "1":
        return {}
    limits = dict(DEFAULT_QUOTAS)
    override = environ.get("IOT_QUOTAS", "").strip()
    if override:
        for api, rate in json.loads(override).items():
            if float(rate) < 0:
                raise ValueError(f"IOT_QUOTAS: {api} has a negative rate")
            limits[api] = float(rate)
    scale = float(environ.get("IOT_QUOTA_SCALE", "").strip() or "1")
    if scale <= 0:
        raise ValueError("IOT_QUOTA_SCALE must be positive")
    return {api: rate * scale for api, rate in limits.items() if rate > 0}


# AWS IoT's ThrottlingException (restJson1: the error code in x-amzn-ErrorType, the message in the body). Status 400,
# not 429: botocore's iot service model (iot/2015-05-28/service-2.json) declares the shape ThrottlingException with
# "error": {"httpStatusCode": 400}, and the AWS IoT API Reference lists "ThrottlingException ... HTTP Status Code:
# 400" under each operation. SDKs recognise throttling by the error code.
THROTTLING_STATUS = "400 Bad Request"
THROTTLING_MESSAGE = "Rate exceeded"


def _throttled(start_response):
    body = json.dumps({"message": THROTTLING_MESSAGE}).encode()
    start_response(THROTTLING_STATUS, [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", "ThrottlingException"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def _json(start_response, status, value):
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _account(environ, access_key):
    """The account moto files the request under (moto.core.responses.BaseResponse.get_current_account)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key)


def middleware(quotas):
    """handle(app, environ, start_response): a WSGI call enforcing quotas in front of app (moto's)."""
    import iam  # botocore's iot model and the request -> operation mapping, shared with the IAM authorizer

    def handle(app, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path == PATH and method == "GET":
            return _json(start_response, "200 OK", quotas.snapshot())
        if path == RESET_PATH and method == "POST":
            quotas.reset()
            return _json(start_response, "200 OK", {})
        if path == SCALE_PATH and method == "POST":
            try:
                size = int(environ.get("CONTENT_LENGTH") or 0)
                quotas.scale(float(json.loads(environ["wsgi.input"].read(size) or b"{}")["scale"]))
            except (ValueError, KeyError, TypeError) as e:
                return _json(start_response, "400 Bad Request", {"message": f"scale: {e}"})
            return _json(start_response, "200 OK", {})
        cred = _CRED.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not cred or cred.group(3) != "iot" or environ.get(INTERNAL_HEADER):
            return app(environ, start_response)
        svc = iam._service("iot")
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        op = svc.match(method, path, query, None, {}) if svc else None
        if op is None:
            return app(environ, start_response)
        api = op["name"]
        if not quotas.admit(_account(environ, cred.group(1)), cred.group(2), api):
            return _throttled(start_response)
        if api not in ("UpdateCertificate", "DeleteCertificate"):
            return app(environ, start_response)
        status = {}

        def capture(line, headers, exc_info=None):
            status["code"] = int(line.split(" ", 1)[0])
            return start_response(line, headers, exc_info)

        result = app(environ, capture)
        params = iam._params(svc, op, path, query, {}, None)
        quotas.record(api, params, status.get("code", 500))
        return result

    return handle


def install():
    """Put the quotas in front of moto's server application; call once, before the server starts."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    quotas = Quotas(limits_from_env())
    handle = middleware(quotas)
    moto_call = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):
        return handle(lambda e, s: moto_call(self, e, s), environ, start_response)

    DomainDispatcherApplication.__call__ = __call__
    return quotas
