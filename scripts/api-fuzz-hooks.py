"""Schemathesis hooks and checks for scripts/api-fuzz.

"A refused request changes nothing": before every call the hook takes a cheap snapshot of the
server's state: the order counts, the payments queue's message counts and the payment counters
from `GET /stats`, the flash product's stock from `GET /stock`, and, for `/products/{id}` calls,
that product. When the answer is a 4xx, the registered check `refused_requests_change_nothing`
takes the snapshot again and fails the run if anything moved.

It relies on nothing else changing the state meanwhile: run schemathesis with one worker, against
a server started with `--workers 0` (no payment workers), and nothing else calling it.

"Each dashboard event's data is what the document says": schemathesis checks each Server-Sent
Event's `event` and `data` fields; `dashboard_event_data_matches_schema` also parses each `data` as
JSON and validates it against the schema its `contentSchema` names (`DashboardHistory`,
`DashboardSnapshot`), which JSON Schema validators leave as an annotation.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import jsonschema_rs
import schemathesis

BASE_URL = os.environ.get("FLASHSALE_FUZZ_BASE_URL", "http://127.0.0.1:8080").rstrip("/")

# The snapshot taken before each case's latest call, by case id.
_before: dict[str, dict] = {}


def _get(path: str) -> tuple[int, object]:
    request = urllib.request.Request(BASE_URL + path, headers={"Accept": "application/json",
                                                               "X-Request-Id": "api-fuzz-snapshot"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def _snapshot(case: schemathesis.Case) -> dict:
    status, stats = _get("/stats")
    if status != 200 or not isinstance(stats, dict):
        raise AssertionError(f"state snapshot: GET /stats answered {status}")
    queue = stats.get("queue", {})
    state: dict = {
        "orders": stats.get("orders"),
        "queue": {key: queue.get(key) for key in ("visible", "in_flight", "delayed", "dead_letter")},
        "payments": stats.get("payments"),
    }
    status, stock = _get("/stock")
    if status != 200 or not isinstance(stock, dict):
        raise AssertionError(f"state snapshot: GET /stock answered {status}")
    state["stock"] = stock.get("stock")
    product_id = (case.path_parameters or {}).get("id") if case.path == "/products/{id}" else None
    if isinstance(product_id, str) and product_id:
        # The id as the server saw it: the case's path parameters are already percent-encoded.
        status, product = _get("/products/" + urllib.parse.quote(product_id, safe="%"))
        state["product"] = {"status": status, "body": product}
    return state


def _diff(before: dict, after: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _diff(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


def _whole_floats_as_integers(value):
    """JSON Schema cannot tell `5.0` from `5` (both are integers to it), but the server reads an
    identifier written with a fraction or exponent as a non-integer (400): send whole numbers in
    integer form, as any client would."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_whole_floats_as_integers(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_floats_as_integers(item) for key, item in value.items()}
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list, float)):
        normalized = _whole_floats_as_integers(case.body)
        if normalized != case.body or repr(normalized) != repr(case.body):
            case.body = normalized
    _before[case.id] = _snapshot(case)


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    """A request answered 4xx must leave orders, queue, payments, stock and the named product as they were."""
    before = _before.get(case.id)
    if before is None or not 400 <= response.status_code < 500:
        return None
    after = _snapshot(case)
    changes = _diff(before, after)
    if changes:
        raise AssertionError(
            f"{case.method} {case.formatted_path} was refused with {response.status_code} "
            f"but the state changed: " + "; ".join(changes))
    return None


_EVENT_SCHEMAS = {"history": "DashboardHistory", "snapshot": "DashboardSnapshot"}


def _sse_events(content: bytes) -> list[dict]:
    """The complete events of an event stream (a block cut short at the end is left out)."""
    text = content.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    blocks = text.split("\n\n")[:-1]
    events = []
    for block in blocks:
        event: dict = {"data": []}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                event["data"].append(value)
            elif field == "event":
                event["event"] = value
        if event["data"]:
            events.append({"event": event.get("event", "message"), "data": "\n".join(event["data"])})
    return events


@schemathesis.check
def dashboard_event_data_matches_schema(ctx, response, case):
    """Each `history` / `snapshot` event of `GET /dashboard/events` carries JSON data of its documented schema."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code != 200 or not content_type.startswith("text/event-stream"):
        return None
    components = case.operation.schema.raw_schema.get("components", {})
    for index, event in enumerate(_sse_events(response.content), start=1):
        name = _EVENT_SCHEMAS.get(event["event"])
        if name is None:
            continue  # the event name itself is checked against the document by schemathesis
        try:
            data = json.loads(event["data"])
        except ValueError as error:
            raise AssertionError(f"event #{index} ({event['event']}): data is not JSON: {error}") from None
        validator = jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})
        errors = [f"{'/'.join(map(str, e.instance_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(data)]
        if errors:
            raise AssertionError(f"event #{index} ({event['event']}): data does not match {name}: " + "; ".join(errors[:5]))
    return None
