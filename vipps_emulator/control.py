"""The JSON control API under ``/_emulator`` for tests in other processes.

Every endpoint mirrors a Python method of ``Emulator``; see the README for
the list. Bodies and answers are JSON. Errors are ``{"error": "..."}`` with
status 400 (bad input) or 404 (unknown payment or path).
"""

import ipaddress
import json
import secrets
import urllib.parse

from .api import Reply
from .clock import isoformat, parse_rfc3339
from .errors import ApiError


class _BadInputError(Exception):
    """A control request with unusable input (answered with 400)."""


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_HEADER = "X-Emulator-Token"


def _is_loopback(address):
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _is_ip(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_name(host_header):
    """The host name of a Host (or Origin netloc) value, lower case."""
    try:
        return urllib.parse.urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def _trusted_host(emulator, host_header):
    """True when ``host_header`` names the emulator in a way a DNS-rebinding
    page cannot: an IP address, localhost, the bound or the public host."""
    name = _host_name(host_header)
    if not name:
        return False
    if _is_ip(name):
        return True
    known = {"localhost", (emulator.host or "").lower()}
    if emulator.settings.public_url:
        known.add(
            _host_name(urllib.parse.urlsplit(emulator.settings.public_url).netloc)
        )
    return name in known or name.endswith(".localhost")


def refuse(emulator, request):
    """Return a refusal for a control request that is not clearly from a test
    on this machine, or None to serve it.

    Refused: a client that is not on loopback (unless ``control_remote``); a
    missing or wrong ``X-Emulator-Token`` (when ``control_token`` is set); a
    Host that is not the emulator's (DNS rebinding; skipped with a token); a
    request a web page sent from another origin (``Origin``,
    ``Sec-Fetch-Site``); a write without ``Content-Type: application/json``,
    which no web page can send to another origin without asking first.
    """
    settings = emulator.settings
    if not settings.control_remote and not _is_loopback(request.client):
        return Reply(
            403,
            {
                "error": "the control API answers loopback clients only "
                "(start the emulator with --control-allow-remote)"
            },
        )
    token = settings.control_token
    if token:
        given = request.header(TOKEN_HEADER) or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            return Reply(401, {"error": f"missing or wrong {TOKEN_HEADER}"})
    host = request.header("Host")
    if not token and host is not None and not _trusted_host(emulator, host):
        return Reply(403, {"error": f"the Host {host!r} is not this emulator"})
    origin = request.header("Origin")
    if origin is not None and (
        not host or urllib.parse.urlsplit(origin).netloc.lower() != host.lower()
    ):
        return Reply(403, {"error": "requests from web pages are refused"})
    if (request.header("Sec-Fetch-Site") or "none") not in ("none", "same-origin"):
        return Reply(403, {"error": "requests from web pages are refused"})
    if request.method in WRITE_METHODS:
        media_type = (request.header("Content-Type") or "").split(";")[0].strip()
        if media_type.lower() != "application/json":
            return Reply(
                415,
                {"error": "send control requests as Content-Type: application/json"},
            )
    return None


def _body(request):
    if not request.raw.strip():
        return {}
    try:
        data = json.loads(request.raw.decode("utf-8"))
    except ValueError as err:
        raise _BadInputError(f"body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise _BadInputError("body must be a JSON object")
    return data


def _query(request):
    return {key: values[-1] for key, values in request.query.items()}


def _clock_state(emulator):
    return {
        "now": isoformat(emulator.clock.now()),
        "frozen": emulator.clock.frozen,
    }


def _filter(entries, query, names):
    for name in names:
        if name in query:
            entries = [e for e in entries if str(e.get(name)) == query[name]]
    return entries


def _payment(emulator, reference, query):
    try:
        return emulator.store.find(reference, query.get("msn"))
    except KeyError as err:
        raise LookupError(f"no payment {reference}") from err


def _payments(emulator, request, parts):
    """Handle ``/_emulator/payments[/<reference>[/<action>]]``."""
    query = _query(request)
    if len(parts) == 1 and request.method == "GET":
        items = emulator.store.all_payments()
        if "msn" in query:
            items = [p for p in items if p.msn == query["msn"]]
        with emulator.store.lock:
            return Reply(200, {"payments": [p.snapshot() for p in items]})
    payment = _payment(emulator, parts[1], query)
    if len(parts) == 2 and request.method == "GET":
        with emulator.store.lock:
            return Reply(200, payment.snapshot())
    if len(parts) == 3 and parts[2] == "capture-error":
        if request.method == "DELETE":
            emulator.store.clear_capture_errors(payment)
        elif request.method == "POST":
            body = _body(request)
            options = {key: body[key] for key in ("count", "status") if key in body}
            emulator.store.add_capture_error(payment, body.get("code"), **options)
        else:
            raise LookupError("unknown method")
        with emulator.store.lock:
            return Reply(200, payment.snapshot())
    if len(parts) == 3 and request.method == "POST":
        body = _body(request)
        action = parts[2]
        if action == "approve":
            emulator.store.approve(
                payment, phone=body.get("phone"), consent=body.get("consent", True)
            )
        elif action == "reject":
            emulator.store.reject(payment)
        elif action == "expire":
            emulator.store.expire(payment)
        elif action == "refund":
            # A refund made in the business portal: Odoo did not ask for it.
            emulator.store.refund(payment, int(body.get("amount", 0)), None)
        else:
            raise LookupError(f"unknown action {action}")
        with emulator.store.lock:
            return Reply(200, payment.snapshot())
    raise LookupError("unknown path")


def _clock(emulator, request, parts):
    if len(parts) == 1 and request.method == "GET":
        return Reply(200, _clock_state(emulator))
    body = _body(request)
    action = parts[1] if len(parts) == 2 else None
    if action == "advance" and request.method == "POST":
        emulator.advance(float(body.get("seconds", 0)))
    elif action == "set" and request.method == "POST":
        when = parse_rfc3339(str(body.get("time", "")))
        emulator.set_time(when, frozen=bool(body.get("frozen", True)))
    elif action == "reset" and request.method == "POST":
        emulator.clock.reset()
    else:
        raise LookupError("unknown clock action")
    return Reply(200, _clock_state(emulator))


def _faults(emulator, request, parts):
    if request.method == "GET":
        return Reply(200, {"faults": emulator.fault_rules.list()})
    if request.method == "DELETE":
        emulator.clear_faults()
        return Reply(200, {"faults": []})
    if request.method == "POST":
        body = _body(request)
        fault = emulator.inject_fault(**body)
        return Reply(201, fault.to_dict())
    raise LookupError("unknown method")


def _webhook_faults(emulator, request, parts):
    if request.method == "GET":
        return Reply(200, {"faults": emulator.dispatcher.faults()})
    if request.method == "DELETE":
        emulator.dispatcher.clear_faults()
        return Reply(200, {"faults": []})
    if request.method == "POST":
        body = _body(request)
        emulator.webhook_fault(**body)
        return Reply(201, {"faults": emulator.dispatcher.faults()})
    raise LookupError("unknown method")


def _log(emulator, request, parts, entries, clear, names):
    if request.method == "DELETE":
        clear()
        return Reply(200, {"entries": []})
    if len(parts) == 2 and parts[1] == "wait" and request.method == "POST":
        timeout = float(_body(request).get("timeout", 5))
        return Reply(200, {"idle": emulator.wait_for_webhooks(timeout)})
    return Reply(200, {"entries": _filter(entries, _query(request), names)})


def _merchants(emulator, request, parts):
    if len(parts) == 1 and request.method == "GET":
        merchants = emulator.store.merchants.values()
        return Reply(200, {"merchants": [m.public_settings() for m in merchants]})
    if len(parts) == 1 and request.method == "POST":
        merchant = emulator.add_merchant(**_body(request))
        return Reply(201, merchant.public_settings())
    if len(parts) == 2 and request.method in ("POST", "PATCH"):
        merchant = emulator.update_merchant(parts[1], **_body(request))
        return Reply(200, merchant.public_settings())
    raise LookupError("unknown path")


def _report(emulator, request, parts):
    """Handle ``/_emulator/report/<msn>[/entries]``."""
    if len(parts) == 2 and request.method == "GET":
        return Reply(200, emulator.ledger_totals(parts[1]))
    if len(parts) == 3 and parts[2] == "entries" and request.method == "POST":
        body = _body(request)
        extra = emulator.add_ledger_entry(
            parts[1],
            body.get("entryType"),
            body.get("amount", 0),
            reference=body.get("reference"),
            ledger_date=body.get("ledgerDate"),
        )
        return Reply(
            201,
            {
                "pspReference": extra.psp_reference,
                "ledgerDate": extra.ledger_date.isoformat(),
            },
        )
    raise LookupError("unknown path")


def _route(emulator, request, parts):
    head = parts[0] if parts else ""
    method = request.method
    if head in ("", "health") and method == "GET":
        return Reply(200, emulator.describe())
    if head == "reset" and method == "POST":
        emulator.reset(**_body(request))
        return Reply(200, {"reset": True})
    if head == "expire" and method == "POST":
        return Reply(200, {"expired": emulator.process_expiry()})
    if head == "clock":
        return _clock(emulator, request, parts)
    if head == "faults":
        return _faults(emulator, request, parts)
    if head == "webhook-faults":
        return _webhook_faults(emulator, request, parts)
    if head == "requests":
        names = ("operation", "method", "reference", "status", "idempotencyKey")
        return _log(
            emulator, request, parts, emulator.requests, emulator.clear_requests, names
        )
    if head == "deliveries":
        names = ("reference", "event", "name", "outcome", "webhookId")
        return _log(
            emulator,
            request,
            parts,
            emulator.deliveries,
            emulator.clear_deliveries,
            names,
        )
    if head == "webhooks" and method == "GET":
        return Reply(
            200,
            {
                "webhooks": emulator.webhooks(include_secrets=True),
                "removed": emulator.removed_webhooks,
            },
        )
    if head == "payments":
        return _payments(emulator, request, parts)
    if head == "inbox" and method == "GET":
        phone = _query(request).get("phone", "")
        with emulator.store.lock:
            items = [p.snapshot() for p in emulator.store.inbox(phone)]
        return Reply(200, {"phone": phone, "payments": items})
    if head == "merchants":
        return _merchants(emulator, request, parts)
    if head == "report":
        return _report(emulator, request, parts)
    raise LookupError(f"unknown control path /{'/'.join(parts)}")


def handle(emulator, request):
    """Serve one ``/_emulator`` request."""
    parts = [p for p in request.path.split("/")[2:] if p]
    try:
        return _route(emulator, request, parts)
    except LookupError as err:
        return Reply(404, {"error": str(err)})
    except ApiError as err:
        return Reply(err.status, {"error": err.detail, "code": err.code})
    except (_BadInputError, TypeError, ValueError) as err:
        return Reply(400, {"error": str(err)})
