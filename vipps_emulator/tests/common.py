"""Shared test fixtures: one emulator per test class, an HTTP client, a webhook
receiver, and a webhook signature check written independently of the
emulator's own signing code (from the published description only)."""

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from typing import ClassVar

from .. import Emulator

MSN = "123456"
CLIENT_ID = "emulator-client-id"
CLIENT_SECRET = "emulator-client-secret"
SUBSCRIPTION_KEY = "emulator-subscription-key"
PHONE = "4791234567"

FAST = {
    "webhook_retry_delays": (0.05, 0.1, 0.2),
    "webhook_timeout": 2.0,
    "fault_hang_seconds": 1.0,
    "expiry_interval": 0.05,
}

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_RAW_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirect()
)


class Answer:
    """An HTTP answer: status, headers and decoded body."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        content_type = headers.get("Content-Type") or ""
        self.json = json.loads(raw) if raw and "json" in content_type else None

    @property
    def code(self):
        """The Vipps error code in extraDetails, or None."""
        for detail in (self.json or {}).get("extraDetails") or []:
            if detail.get("name") == "ErrorCode":
                return int(detail["reason"])
        return None

    @property
    def fields(self):
        """The names of the failing fields of a validation error."""
        body = self.json or {}
        details = body.get("extraDetails") or body.get("invalidParams") or []
        return [d["name"] for d in details if d["name"] != "ErrorCode"]

    def __repr__(self):
        return f"<Answer {self.status} {self.raw[:300]!r}>"


def send(method, url, body=None, headers=None, timeout=5.0, raw=None, follow=True):
    """Send one request with urllib; return an Answer (also for 4xx/5xx)."""
    headers = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = _OPENER if follow else _RAW_OPENER
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, err.headers, err.read())


def verify_webhook(secret, url, headers, body):
    """Check a webhook's signature from scratch; return True when valid.

    Follows the documented scheme: base64(SHA-256(body)) in
    x-ms-content-sha256; HMAC-SHA256 keyed with the secret's UTF-8 bytes over
    "POST\\n<path?query>\\n<x-ms-date>;<host>;<content hash>", taking path and
    host (with a non-default port) from the registered URL.
    """
    headers = {name.lower(): value for name, value in headers.items()}
    parsed = urllib.parse.urlparse(url)
    default_port = 443 if parsed.scheme == "https" else 80
    host = parsed.hostname
    if parsed.port not in (None, default_port):
        host = f"{host}:{parsed.port}"
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if headers.get("x-ms-content-sha256") != digest:
        return False
    to_sign = (
        "POST\n" + target + "\n" + headers["x-ms-date"] + ";" + host + ";" + digest
    )
    mac = hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256)
    expected = (
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
        + base64.b64encode(mac.digest()).decode()
    )
    return hmac.compare_digest(expected, headers.get("authorization", ""))


class Receiver:
    """A local webhook endpoint that records requests and answers with the
    statuses queued in ``statuses`` (then 200)."""

    def __init__(self):
        self.calls = []
        self.statuses = []
        self._cond = threading.Condition()
        receiver = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "json": json.loads(body),
                            "status": status,
                        }
                    )
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                """Stay quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self.thread.start()
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/vipps/webhook?db=x"
        )

    def wait(self, count, timeout=5.0):
        """Wait until ``count`` requests arrived; return the calls so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return list(self.calls)

    def close(self):
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


class EmulatorCase(unittest.TestCase):
    """Starts one emulator per class and resets it before each test."""

    options: ClassVar[dict] = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.emu = Emulator(port=0, **{**FAST, **cls.options}).start()
        cls.addClassCleanup(cls.emu.stop)

    def setUp(self):
        super().setUp()
        self.emu.reset()
        self._token = None
        self._keys = 0

    # === client helpers === #

    @contextlib.contextmanager
    def settings_changed(self, **changes):
        """Change emulator settings for a while."""
        old = {name: getattr(self.emu.settings, name) for name in changes}
        for name, value in changes.items():
            setattr(self.emu.settings, name, value)
        try:
            yield
        finally:
            for name, value in old.items():
                setattr(self.emu.settings, name, value)

    def token(self):
        """Fetch (once per test) an access token over HTTP."""
        if self._token is None:
            answer = send(
                "POST",
                self.emu.url + "/accesstoken/get",
                headers={
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
                },
            )
            self.assertEqual(answer.status, 200, answer)
            self._token = answer.json["access_token"]
        return self._token

    def new_key(self):
        """Return a fresh Idempotency-Key."""
        self._keys += 1
        return f"{self.id()[-30:]}-{self._keys}"

    def call(self, method, path, body=None, key=None, headers=None, **kwargs):
        """Call the Vipps API with valid credentials (overridable)."""
        sent = {
            "Authorization": f"Bearer {self.token()}",
            "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
            "Merchant-Serial-Number": MSN,
            "Vipps-System-Name": "odoo",
        }
        if key:
            sent["Idempotency-Key"] = key
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        return send(method, self.emu.url + path, body, sent, **kwargs)

    def payment_body(self, reference="inv-2026-00001-1", **changes):
        """Return a valid WEB_REDIRECT create body, with ``changes`` applied."""
        body = {
            "amount": {"currency": "NOK", "value": 125000},
            "paymentMethod": {"type": "WALLET"},
            "reference": reference,
            "userFlow": "WEB_REDIRECT",
            "returnUrl": "https://shop.example.com/payment/vipps/return",
            "paymentDescription": "Invoice INV/2026/00001",
        }
        body.update(changes)
        return {k: v for k, v in body.items() if v is not None}

    def new_payment(self, reference="inv-2026-00001-1", expect=201, **changes):
        """Create a payment; assert the status; return the Answer."""
        answer = self.call(
            "POST",
            "/epayment/v1/payments",
            self.payment_body(reference, **changes),
            key=self.new_key(),
        )
        self.assertEqual(answer.status, expect, answer)
        return answer

    def get(self, reference="inv-2026-00001-1"):
        """Return the Get payment body."""
        answer = self.call("GET", f"/epayment/v1/payments/{reference}")
        self.assertEqual(answer.status, 200, answer)
        return answer.json

    def modify(self, action, value=None, reference="inv-2026-00001-1", key=None):
        """Capture, refund or cancel; return the Answer."""
        body = None
        if value is not None:
            body = {"modificationAmount": {"currency": "NOK", "value": value}}
        return self.call(
            "POST",
            f"/epayment/v1/payments/{reference}/{action}",
            body,
            key=key or self.new_key(),
        )

    def authorized(self, reference="inv-2026-00001-1", **changes):
        """Create and approve a payment; return its reference."""
        self.new_payment(reference, **changes)
        self.emu.approve(reference, phone=PHONE)
        return reference
