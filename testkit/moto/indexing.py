"""AWS IoT fleet indexing, fleet metrics and v2 logging options as AWS answers them, where moto does not.

What moto 5.2 does, and what this module changes (each rule has a Go test through aws-sdk-go-v2 in
indexing_test.go that fails without it):

- SearchIndex: moto answers every thing as connected now (connectivity.timestamp in seconds, as a float), ignores
  whether indexing is on, pages nothing, and knows only thingName/thingTypeName/thingGroupNames/attributes terms
  with ':' (no ranges, no connectivity fields). Here: the index exists only while thingIndexingMode is not OFF
  (ResourceNotFoundException otherwise); connectivity is reported only while thingConnectivityIndexingMode is
  STATUS, and is what the broker reported through the control API below — a thing that never connected is
  {"connected": false} with no details (API reference, SearchIndex); timestamp in epoch milliseconds
  (ThingConnectivity). Terms: field:value with * and ? wildcards, field<v, field<=v, field>v, field>=v (numbers
  compared as numbers, other values as strings), AND, OR, NOT, parentheses, implicit AND; fields thingName, thingId,
  thingTypeName, attributes.<name>, registry.version, connectivity.connected, connectivity.timestamp,
  connectivity.disconnectReason. Pages of at most 100 (maxResults: "This maximum number cannot exceed 100"),
  nextToken until the last page.
- GetStatistics: missing in moto. Here: the same query; statistics.count, and with aggregationField (a number
  field) sum, average, minimum, maximum.
- UpdateIndexingConfiguration: moto accepts connectivity indexing without registry indexing; AWS refuses it
  (InvalidRequestException), as it refuses an unknown mode or field type.
- CreateFleetMetric, DescribeFleetMetric, DeleteFleetMetric, ListFleetMetrics: missing in moto. Here: stored per
  account and Region; Create needs the index (ResourceNotFoundException otherwise), refuses an existing name
  (ResourceAlreadyExistsException) and a Statistics aggregation without a number aggregation field
  (InvalidAggregationException); Delete of a missing metric succeeds (its errors list no ResourceNotFound).
- GetV2LoggingOptions / SetV2LoggingOptions: missing in moto. Here: NotConfiguredException (HTTP 404) until the
  first Set; Set refuses a level outside DEBUG/INFO/WARN/ERROR/DISABLED and, while logging is on, a missing role.

Control API (loopback only, like moto itself), for the emulator's broker:
  POST /emulator-api/iot/connectivity
       {"clientId", "connected": bool, "timestamp": ms (default now), "disconnectReason" (disconnects only; one of
        DISCONNECT_REASONS), "accountId" (default moto's), "region" (default us-east-1)}
       or {"clients": [ {...}, ... ]} to set many at once. AWS indexes the connectivity of a client whose client id
       is the name of a registered thing; the state is kept by client id.
  GET  /emulator-api/iot/connectivity?clientId=ID[&accountId=&region=]   the state recorded for a client
"""
import fnmatch
import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult, EmptyResult
from moto.iot.exceptions import InvalidRequestException, ResourceAlreadyExistsException, ResourceNotFoundException
from moto.iot.models import IoTBackend, iot_backends
from moto.iot.responses import IoTResponse

CONTROL_PATH = "/emulator-api/iot/connectivity"  # contract.ConnectivityControlPath
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
MAX_RESULTS = 100
THING_INDEX = "AWS_Things"

# Lifecycle events, "Connect/Disconnect events" (https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html):
# the values of disconnectReason.
DISCONNECT_REASONS = (
    "AUTH_ERROR", "CLIENT_INITIATED_DISCONNECT", "CLIENT_ERROR", "CONNECTION_LOST", "DUPLICATE_CLIENTID",
    "FORBIDDEN_ACCESS", "MQTT_KEEP_ALIVE_TIMEOUT", "SERVER_ERROR", "SERVER_INITIATED_DISCONNECT",
    "API_INITIATED_DISCONNECT", "THROTTLED", "WEBSOCKET_TTL_EXPIRATION", "CUSTOMAUTH_TTL_EXPIRATION", "UNKNOWN", "NONE",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "DISABLED")
FIELD_TYPES = ("Number", "String", "Boolean")
THING_MODES = ("OFF", "REGISTRY", "REGISTRY_AND_SHADOW")
CONNECTIVITY_MODES = ("OFF", "STATUS")

_lock = threading.Lock()


class _Error(JsonRESTError):
    def __init__(self, error_type: str, code: int, message: str):
        self.code = code
        super().__init__(error_type, message)


def _state(backend: IoTBackend, name: str, default):
    value = backend.__dict__.get(name)
    if value is None:
        value = backend.__dict__.setdefault(name, default)
    return value


def _connectivity(backend: IoTBackend) -> dict[str, dict[str, Any]]:
    return _state(backend, "_sphere_connectivity", {})


def _fleet_metrics(backend: IoTBackend) -> dict[str, dict[str, Any]]:
    return _state(backend, "_sphere_fleet_metrics", {})


def _thing_config(backend: IoTBackend) -> dict[str, Any]:
    return backend.get_indexing_configuration()["thingIndexingConfiguration"]


def _index_on(backend: IoTBackend) -> bool:
    return _thing_config(backend).get("thingIndexingMode", "OFF") != "OFF"


def _connectivity_on(backend: IoTBackend) -> bool:
    return _thing_config(backend).get("thingConnectivityIndexingMode", "OFF") == "STATUS"


def _require_index(backend: IoTBackend, index_name: str | None) -> None:
    name = index_name or THING_INDEX
    if name != THING_INDEX or not _index_on(backend):
        raise ResourceNotFoundException(f"Index {name} does not exist")


# --- the query language ------------------------------------------------------------------------------------------
_TERM = re.compile(r"^([A-Za-z0-9_.\-]+)(<=|>=|<|>|:)(.*)$")


def _tokens(query: str) -> list[str]:
    query = re.sub(r"(^|\s)-(?=\S)", r"\1NOT ", query.strip())
    return [t for t in query.replace("(", " ( ").replace(")", " ) ").split() if t]


def parse(query: str):
    """Parse a query into a tree: ("AND"|"OR", a, b), ("NOT", a) or ("TERM", field, op, value)."""
    tokens = _tokens(query)
    if not tokens:
        raise _Error("InvalidQueryException", 400, "The query is empty.")
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary():
        tok = peek()
        if tok is None:
            raise _Error("InvalidQueryException", 400, f"Query ends early: {query}")
        if tok.upper() == "NOT":
            take()
            return ("NOT", primary())
        if tok == "(":
            take()
            node = disjunction()
            if take() != ")":
                raise _Error("InvalidQueryException", 400, f"Mismatched parentheses: {query}")
            return node
        take()
        if tok == "*":
            return ("ALL",)
        m = _TERM.match(tok)
        if not m or tok in (")",):
            raise _Error("InvalidQueryException", 400, f"Invalid term {tok!r} in query: {query}")
        return ("TERM", m.group(1), m.group(2), m.group(3))

    def conjunction():
        node = primary()
        while peek() is not None and peek() != ")" and peek().upper() != "OR":
            if peek().upper() == "AND":
                take()
            node = ("AND", node, primary())
        return node

    def disjunction():
        node = conjunction()
        while peek() is not None and peek().upper() == "OR":
            take()
            node = ("OR", node, conjunction())
        return node

    tree = disjunction()
    if pos != len(tokens):
        raise _Error("InvalidQueryException", 400, f"Unexpected {tokens[pos]!r} in query: {query}")
    return tree


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(actual, op: str, wanted: str) -> bool:
    if actual is None:
        return False
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
    if op == ":":
        text = str(actual)
        if "*" in wanted or "?" in wanted:
            return fnmatch.fnmatchcase(text, wanted)
        a, w = _number(actual), _number(wanted)
        if a is not None and w is not None and not isinstance(actual, str):
            return a == w
        return text == wanted
    a, w = _number(actual), _number(wanted)
    if a is None or w is None:
        a, w = str(actual), wanted
    return {"<": a < w, "<=": a <= w, ">": a > w, ">=": a >= w}[op]


def document(backend: IoTBackend, thing) -> dict[str, Any]:
    """The indexed document of a thing, as SearchIndex returns it (ThingDocument)."""
    doc = {"thingName": thing.thing_name, "thingId": thing.thing_id, "attributes": dict(thing.attributes or {})}
    if thing.thing_type:
        doc["thingTypeName"] = thing.thing_type.thing_type_name
    if _connectivity_on(backend):
        state = _connectivity(backend).get(thing.thing_name)
        doc["connectivity"] = dict(state) if state else {"connected": False}
    return doc


def _field(backend: IoTBackend, thing, doc: dict[str, Any], name: str):
    if name == "registry.version":
        return thing.version
    if name.startswith("attributes."):
        return doc["attributes"].get(name[len("attributes."):])
    if name.startswith("connectivity."):
        return doc.get("connectivity", {}).get(name[len("connectivity."):])
    return doc.get(name)


def matches(backend: IoTBackend, tree, thing, doc) -> bool:
    kind = tree[0]
    if kind == "ALL":
        return True
    if kind == "AND":
        return matches(backend, tree[1], thing, doc) and matches(backend, tree[2], thing, doc)
    if kind == "OR":
        return matches(backend, tree[1], thing, doc) or matches(backend, tree[2], thing, doc)
    if kind == "NOT":
        return not matches(backend, tree[1], thing, doc)
    _, field, op, value = tree
    return _compare(_field(backend, thing, doc, field), op, value)


def search(backend: IoTBackend, query: str, index_name: str | None = None):
    """Every (thing, document) the query selects, in registry order."""
    _require_index(backend, index_name)
    tree = parse(query)
    out = []
    for thing in list(backend.things.values()):
        doc = document(backend, thing)
        if matches(backend, tree, thing, doc):
            out.append((thing, doc))
    return out


# --- SearchIndex, GetStatistics ----------------------------------------------------------------------------------
def _search_index(self: IoTResponse):
    results = search(self.iot_backend, self._get_param("queryString") or "", self._get_param("indexName"))
    size = min(int(self._get_param("maxResults") or MAX_RESULTS), MAX_RESULTS)
    if size < 1:
        raise InvalidRequestException("maxResults must be at least 1.")
    token = self._get_param("nextToken")
    start = 0
    if token:
        if not str(token).isdigit():
            raise InvalidRequestException("The nextToken is not valid.")
        start = int(token)
    page = results[start:start + size]
    body = {"things": [doc for _, doc in page], "thingGroups": []}
    if start + size < len(results):
        body["nextToken"] = str(start + size)
    return ActionResult(body)


def _get_statistics(self: IoTResponse):
    backend = self.iot_backend
    results = search(backend, self._get_param("queryString") or "", self._get_param("indexName"))
    field = self._get_param("aggregationField")
    if not field:
        return ActionResult({"statistics": {"count": len(results)}})
    values = [_number(_field(backend, t, d, field)) for t, d in results]
    values = [v for v in values if v is not None]
    if not values:
        return ActionResult({"statistics": {"count": 0}})
    total = sum(values)
    return ActionResult({"statistics": {"count": len(values), "sum": total, "average": total / len(values),
                                        "minimum": min(values), "maximum": max(values)}})


# --- UpdateIndexingConfiguration ---------------------------------------------------------------------------------
def _update_indexing_configuration(moto_update):
    def update(self: IoTBackend, thing_config: dict[str, Any], group_config: dict[str, Any]) -> None:
        merged = {**_thing_config(self), **(thing_config or {})}
        if merged.get("thingIndexingMode", "OFF") not in THING_MODES:
            raise InvalidRequestException(f"Invalid thingIndexingMode {merged.get('thingIndexingMode')}.")
        if merged.get("thingConnectivityIndexingMode", "OFF") not in CONNECTIVITY_MODES:
            raise InvalidRequestException(f"Invalid thingConnectivityIndexingMode {merged.get('thingConnectivityIndexingMode')}.")
        if merged.get("thingIndexingMode", "OFF") == "OFF" and merged.get("thingConnectivityIndexingMode", "OFF") != "OFF":
            raise InvalidRequestException("Thing connectivity indexing requires thing indexing (thingIndexingMode REGISTRY or REGISTRY_AND_SHADOW).")
        for f in (thing_config or {}).get("customFields") or []:
            if f.get("type") not in FIELD_TYPES or not f.get("name"):
                raise InvalidRequestException(f"Invalid custom field {f}.")
        thing_config = {k: v for k, v in (thing_config or {}).items() if k != "managedFields"}
        moto_update(self, thing_config, group_config)

    return update


# --- fleet metrics -----------------------------------------------------------------------------------------------
def _create_fleet_metric(self: IoTResponse):
    backend = self.iot_backend
    name = self.path.rstrip("/").split("/")[-1]
    _require_index(backend, self._get_param("indexName"))
    query = self._get_param("queryString")
    parse(query or "")
    aggregation = self._get_param("aggregationType") or {}
    field = self._get_param("aggregationField")
    if aggregation.get("name") == "Statistics" and not (field == "registry.version" or
                                                        _is_number_field(backend, field)):
        raise _Error("InvalidAggregationException", 400, f"Aggregation field {field} is not a number field.")
    metrics = _fleet_metrics(backend)
    with _lock:
        if name in metrics:
            raise ResourceAlreadyExistsException(f"Fleet metric {name} already exists", name, metrics[name]["metricArn"])
        now = time.time()
        arn = f"arn:aws:iot:{backend.region_name}:{backend.account_id}:fleetmetric/{name}"
        metrics[name] = {"metricName": name, "queryString": query, "aggregationType": aggregation,
                         "period": self._get_int_param("period"), "aggregationField": field,
                         "description": self._get_param("description"), "queryVersion": self._get_param("queryVersion") or "2017-09-30",
                         "indexName": self._get_param("indexName") or THING_INDEX, "unit": self._get_param("unit"),
                         "creationDate": now, "lastModifiedDate": now, "version": 1, "metricArn": arn}
    return ActionResult({"metricName": name, "metricArn": arn})


def _is_number_field(backend: IoTBackend, field: str | None) -> bool:
    if field == "connectivity.timestamp":
        return True
    fields = _thing_config(backend).get("customFields") or []
    return any(f.get("name") == field and f.get("type") == "Number" for f in fields)


def _describe_fleet_metric(self: IoTResponse):
    name = self.path.rstrip("/").split("/")[-1]
    metric = _fleet_metrics(self.iot_backend).get(name)
    if metric is None:
        raise ResourceNotFoundException(f"Fleet metric {name} does not exist")
    return ActionResult({k: v for k, v in metric.items() if v is not None})


def _delete_fleet_metric(self: IoTResponse):
    name = self.path.rstrip("/").split("/")[-1]
    with _lock:
        _fleet_metrics(self.iot_backend).pop(name, None)
    return EmptyResult()


def _list_fleet_metrics(self: IoTResponse):
    metrics = _fleet_metrics(self.iot_backend)
    return ActionResult({"fleetMetrics": [{"metricName": m["metricName"], "metricArn": m["metricArn"]} for m in metrics.values()]})


# --- v2 logging options ------------------------------------------------------------------------------------------
def _get_v2_logging_options(self: IoTResponse):
    options = self.iot_backend.__dict__.get("_sphere_v2_logging")
    if options is None:
        raise _Error("NotConfiguredException", 404, "Logging options are not configured.")
    return ActionResult(dict(options))


def _set_v2_logging_options(self: IoTResponse):
    backend = self.iot_backend
    level = self._get_param("defaultLogLevel") or "ERROR"
    if level not in LOG_LEVELS:
        raise InvalidRequestException(f"Invalid defaultLogLevel {level}.")
    disabled = bool(self._get_param("disableAllLogs"))
    role = self._get_param("roleArn")
    if not role and not disabled and level != "DISABLED":
        raise InvalidRequestException("roleArn is required to log.")
    options = {"defaultLogLevel": level, "disableAllLogs": disabled}
    if role:
        options["roleArn"] = role
    backend.__dict__["_sphere_v2_logging"] = options
    return EmptyResult()


# --- the control API ---------------------------------------------------------------------------------------------
def set_connectivity(account: str, region: str, client_id: str, connected: bool, timestamp: int | None = None,
                     reason: str | None = None) -> dict[str, Any]:
    """Record a client's connection state as AWS IoT's connectivity index would."""
    if not client_id:
        raise ValueError("clientId is required")
    if reason is not None and reason not in DISCONNECT_REASONS:
        raise ValueError(f"disconnectReason {reason!r} is not one of AWS's: {', '.join(DISCONNECT_REASONS)}")
    if connected and reason is not None:
        raise ValueError("disconnectReason belongs to a disconnect")
    state = {"connected": bool(connected), "timestamp": int(timestamp if timestamp is not None else time.time() * 1000)}
    if not connected and reason:
        state["disconnectReason"] = reason
    backend = iot_backends[account][region]
    with _lock:
        _connectivity(backend)[client_id] = state
    return state


def _reply(start_response, status: str, value) -> list[bytes]:
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _control(environ, start_response):
    method = environ.get("REQUEST_METHOD", "")
    try:
        if method == "GET":
            q = dict(parse_qsl(environ.get("QUERY_STRING", "")))
            backend = iot_backends[q.get("accountId") or DEFAULT_ACCOUNT][q.get("region") or DEFAULT_REGION]
            state = _connectivity(backend).get(q.get("clientId", ""))
            if state is None:
                return _reply(start_response, "404 Not Found", {"message": "no connectivity recorded for this client"})
            return _reply(start_response, "200 OK", state)
        if method != "POST":
            return _reply(start_response, "405 Method Not Allowed", {"message": "GET or POST"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        items = body.get("clients") if isinstance(body.get("clients"), list) else [body]
        out = []
        for item in items:
            out.append(set_connectivity(item.get("accountId") or DEFAULT_ACCOUNT, item.get("region") or DEFAULT_REGION,
                                        item.get("clientId", ""), bool(item.get("connected")), item.get("timestamp"),
                                        item.get("disconnectReason")))
        return _reply(start_response, "200 OK", {"recorded": len(out)})
    except (ValueError, TypeError, KeyError) as e:
        return _reply(start_response, "400 Bad Request", {"message": str(e)})


def install() -> None:
    """Patch moto's IoT backend and responses and add the control API; call once, before the server starts."""
    IoTBackend.update_indexing_configuration = _update_indexing_configuration(IoTBackend.update_indexing_configuration)
    IoTResponse.search_index = _search_index
    IoTResponse.get_statistics = _get_statistics
    IoTResponse.create_fleet_metric = _create_fleet_metric
    IoTResponse.describe_fleet_metric = _describe_fleet_metric
    IoTResponse.delete_fleet_metric = _delete_fleet_metric
    IoTResponse.list_fleet_metrics = _list_fleet_metrics
    IoTResponse.get_v2_logging_options = _get_v2_logging_options
    IoTResponse.set_v2_logging_options = _set_v2_logging_options

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    moto_call = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == CONTROL_PATH:
            return _control(environ, start_response)
        return moto_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__
