"""The emulated Vipps MobilePay endpoints.

Access token, ePayment v1 (with the test-only force approve), Webhooks v1,
Order Management v2 (categories, receipts, order read-back, v1 images) and
the merchant Userinfo call. Each handler checks credentials and headers the
way the API gateway does, validates the body, then calls the store.
"""

import dataclasses
import json
import re
import secrets
import urllib.parse

from . import errors, report, validation
from .errors import ApiError, forbidden, invalid, unauthorized


@dataclasses.dataclass
class Reply:
    """An HTTP answer: status, body (JSON-able, bytes, str or None), type."""

    status: int
    body: object = None
    content_type: str = "application/json; charset=utf-8"
    headers: dict = dataclasses.field(default_factory=dict)

    def encoded(self):
        """Return the body as bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


@dataclasses.dataclass
class Request:
    """An incoming HTTP request, as the handlers see it."""

    method: str
    path: str
    query: dict
    headers: object  # email.message.Message: case-insensitive .get()
    raw: bytes
    params: dict = dataclasses.field(default_factory=dict)
    client: str = None  # the peer's IP address
    _json: object = dataclasses.field(default=None, repr=False)
    _parsed: bool = dataclasses.field(default=False, repr=False)

    def header(self, name):
        """Return a header value, or None."""
        return self.headers.get(name)

    def json(self):
        """Return the decoded JSON body (None when empty); 400 when invalid."""
        if not self._parsed:
            self._parsed = True
            if self.raw.strip():
                content_type = (self.header("Content-Type") or "").lower()
                if "json" not in content_type:
                    raise ApiError(
                        415, detail="Send the body as Content-Type application/json."
                    )
                try:
                    self._json = json.loads(
                        self.raw.decode("utf-8"),
                        object_pairs_hook=validation.object_pairs,
                    )
                except (UnicodeDecodeError, ValueError) as err:
                    raise invalid("body", f"The body is not valid JSON: {err}") from err
        return self._json


@dataclasses.dataclass
class Route:
    """One endpoint: method, path pattern, operation name, handler, error style."""

    method: str
    pattern: re.Pattern
    operation: str
    handler: str
    style: str = errors.PROBLEM


def _route(method, path, operation, handler, style=errors.PROBLEM):
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), operation, handler, style)


OM = errors.ORDER_MANAGEMENT
PAYMENT = "/epayment/v1/payments/{reference}"
REPORT = "/report/v2/ledgers/{ledger_id}/{topic}"
ROUTES = (
    _route("POST", "/accesstoken/get", "accessToken", "access_token"),
    _route("POST", "/epayment/v1/payments", "createPayment", "create_payment"),
    _route("GET", PAYMENT, "getPayment", "get_payment"),
    _route("GET", PAYMENT + "/events", "getPaymentEventLog", "get_events"),
    _route("POST", PAYMENT + "/capture", "capturePayment", "capture"),
    _route("POST", PAYMENT + "/cancel", "cancelPayment", "cancel"),
    _route("POST", PAYMENT + "/refund", "refundPayment", "refund"),
    _route(
        "POST",
        "/epayment/v1/test/payments/{reference}/approve",
        "forceApprove",
        "force_approve",
    ),
    _route("POST", "/webhooks/v1/webhooks", "registerWebhook", "register_webhook"),
    _route("GET", "/webhooks/v1/webhooks", "listWebhooks", "list_webhooks"),
    _route("DELETE", "/webhooks/v1/webhooks/{id}", "deleteWebhook", "delete_webhook"),
    _route(
        "PUT",
        "/order-management/v2/{payment_type}/categories/{order_id}",
        "putCategory",
        "put_category",
        OM,
    ),
    _route(
        "POST",
        "/order-management/v2/{payment_type}/receipts/{order_id}",
        "postReceipt",
        "post_receipt",
        OM,
    ),
    _route(
        "GET",
        "/order-management/v2/{payment_type}/{order_id}",
        "getOrder",
        "get_order",
        OM,
    ),
    _route("POST", "/order-management/v1/images", "postImage", "post_image", OM),
    _route("GET", "/vipps-userinfo-api/userinfo/{sub}", "getUserinfo", "get_userinfo"),
    _route("GET", "/settlement/v1/ledgers", "getLedgers", "get_ledgers"),
    _route("GET", REPORT + "/dates/{ledger_date}", "getReportByDate", "get_report"),
    _route("GET", REPORT + "/feed", "getReportFeed", "get_feed"),
)


def match(method, path):
    """Return ``(route, params)`` for a request; ``(None, allowed_methods)``
    when only the method is wrong; ``(None, None)`` when nothing matches."""
    allowed = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                params = {
                    k: urllib.parse.unquote(v) for k, v in found.groupdict().items()
                }
                return route, params
            allowed.append(route.method)
    return None, (allowed or None)


def instance_of(path):
    """Return the ``instance`` Vipps reports: the path behind the API prefix."""
    for prefix in ("/epayment", "/webhooks", "/order-management"):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return path


class VippsApi:
    """Handlers for the emulated endpoints, bound to one emulator's state."""

    def __init__(self, store, registry, settings, base_url):
        self.store = store
        self.reports = report.Reports(store, settings)
        self.registry = registry
        self.settings = settings
        self.base_url = base_url  # callable returning the public base URL

    # === credentials === #

    def authenticate(self, req, require_key=True, require_msn=True):
        """Check subscription key, bearer token and MSN; return the merchant."""
        key = req.header("Ocp-Apim-Subscription-Key")
        key_merchant = None
        if key:
            key_merchant = self.store.merchant_by_subscription_key(key)
            if key_merchant is None:
                raise unauthorized(
                    "Access denied due to invalid subscription key. Make sure to "
                    "provide a valid key for an active subscription."
                )
        elif require_key:
            raise unauthorized(
                "Access denied due to missing subscription key. Make sure to "
                "include the Ocp-Apim-Subscription-Key header."
            )
        scheme, _, value = (req.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("Send the access token as 'Authorization: Bearer ...'.")
        merchant = self.store.check_token(value.strip())
        if key_merchant is not None and key_merchant.msn != merchant.msn:
            raise forbidden(
                "The subscription key and the access token belong to different "
                "sales units."
            )
        msn = req.header("Merchant-Serial-Number")
        if not msn:
            if require_msn:
                raise invalid("Merchant-Serial-Number", "The header is required.")
        elif msn != merchant.msn:
            raise forbidden(f"These credentials are not valid for MSN {msn}.")
        return merchant

    def access_token(self, req):
        """POST /accesstoken/get."""
        validation.check_headers(req.headers, idempotency_required=False)
        key = req.header("Ocp-Apim-Subscription-Key")
        if not key:
            raise unauthorized(
                "Access denied due to missing subscription key. Make sure to "
                "include the Ocp-Apim-Subscription-Key header."
            )
        key_merchant = self.store.merchant_by_subscription_key(key)
        if key_merchant is None:
            raise unauthorized("Access denied due to invalid subscription key.")
        client_id, secret = req.header("client_id"), req.header("client_secret")
        if not client_id or not secret:
            raise ApiError(
                400,
                detail="The client_id and client_secret headers are required.",
                extra={
                    "error": "invalid_request",
                    "error_description": "client_id and client_secret are required",
                },
            )
        merchant = key_merchant
        if not (
            secrets.compare_digest(merchant.client_id.encode(), client_id.encode())
            and secrets.compare_digest(merchant.client_secret.encode(), secret.encode())
        ):
            raise ApiError(
                401,
                detail="The client credentials are not valid for this subscription.",
                extra={
                    "error": "unauthorized_client",
                    "error_description": "invalid client_id or client_secret",
                },
            )
        msn = req.header("Merchant-Serial-Number")
        if msn and msn != merchant.msn:
            raise unauthorized(f"These credentials are not valid for MSN {msn}.")
        token, now = self.store.issue_token(merchant)
        ttl = str(self.settings.token_ttl)
        body = {
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "expires_on": str(int(token.expires_at.timestamp())),
            "not_before": str(int(now.timestamp())),
            "resource": "00000002-0000-0000-c000-000000000000",
            "access_token": token.value,
        }
        return Reply(200, body, "application/json;charset=UTF-8")

    # === ePayment === #

    def _payment(self, req, merchant):
        validation.check_reference(req.params["reference"])
        return self.store.get(merchant.msn, req.params["reference"])

    def create_payment(self, req):
        """POST /epayment/v1/payments."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=True)
        body = req.json()
        key = req.header("Idempotency-Key")

        def run():
            fields = validation.check_create_payment(
                body, merchant, self.store.clock.now(), self.settings
            )
            return 201, self.store.create_payment(
                merchant, fields, key, self.base_url()
            )

        status, answer, _ = self.store.idempotent(
            (merchant.msn, "create"), key, body, run, conflict_code=4020
        )
        return Reply(status, answer)

    def get_payment(self, req):
        """GET /epayment/v1/payments/{reference}."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=False)
        payment = self._payment(req, merchant)
        with self.store.lock:
            body = payment.to_api(
                self.store.users,
                self.store.clock.now(),
                self.settings.user_details_delayed,
                self.settings.user_details_on_get,
            )
            return Reply(200, body)

    def get_events(self, req):
        """GET /epayment/v1/payments/{reference}/events."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=False)
        payment = self._payment(req, merchant)
        with self.store.lock:
            return Reply(200, [e.to_api(payment.reference) for e in payment.events])

    def _modify(self, req, operation, conflict_code, action):
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=True)
        validation.check_reference(req.params["reference"])
        body = req.json()
        key = req.header("Idempotency-Key")

        def run():
            payment = self.store.get(merchant.msn, req.params["reference"])
            return 200, action(merchant, payment, body, key)

        status, answer, _ = self.store.idempotent(
            (merchant.msn, operation, req.params["reference"]),
            key,
            body,
            run,
            conflict_code,
        )
        return Reply(status, answer)

    def capture(self, req):
        """POST /epayment/v1/payments/{reference}/capture."""

        def action(merchant, payment, body, key):
            value = validation.check_modification(body, payment.currency, merchant)
            return self.store.capture(merchant, payment, value, key)

        return self._modify(req, "capture", 4010, action)

    def refund(self, req):
        """POST /epayment/v1/payments/{reference}/refund."""

        def action(merchant, payment, body, key):
            value = validation.check_modification(body, payment.currency, merchant)
            return self.store.refund(payment, value, key)

        return self._modify(req, "refund", 4150, action)

    def cancel(self, req):
        """POST /epayment/v1/payments/{reference}/cancel."""

        def action(merchant, payment, body, key):
            only = validation.check_cancel(body)
            return self.store.cancel(payment, only, key)

        return self._modify(req, "cancel", 4020, action)

    def force_approve(self, req):
        """POST /epayment/v1/test/payments/{reference}/approve."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=False)
        payment = self._payment(req, merchant)
        phone, token = validation.check_force_approve(req.json())
        self.store.approve(payment, phone=phone, token=token, consent=True)
        return Reply(200)

    # === Webhooks === #

    def register_webhook(self, req):
        """POST /webhooks/v1/webhooks."""
        merchant = self.authenticate(req, require_msn=False)
        validation.check_headers(req.headers, idempotency_required=False)
        url, events = validation.check_webhook_registration(
            req.json(), self.settings.http_hosts
        )
        item = self.registry.register(merchant.msn, url, events)
        return Reply(201, {"id": item.id, "secret": item.secret})

    def list_webhooks(self, req):
        """GET /webhooks/v1/webhooks."""
        merchant = self.authenticate(req, require_msn=False)
        items = self.registry.list(merchant.msn)
        return Reply(200, {"webhooks": [item.to_api() for item in items]})

    def delete_webhook(self, req):
        """DELETE /webhooks/v1/webhooks/{id}."""
        merchant = self.authenticate(req, require_msn=False)
        self.registry.delete(merchant.msn, req.params["id"])
        return Reply(204)

    # === Order Management === #

    def _order_key(self, req, merchant):
        payment_type = req.params["payment_type"].lower()
        if payment_type not in ("ecom", "recurring"):
            raise invalid("paymentType", "Must be ecom or recurring.")
        validation.check_order_id(req.params["order_id"])
        return (merchant.msn, payment_type, req.params["order_id"])

    def put_category(self, req):
        """PUT /order-management/v2/{paymentType}/categories/{orderId}."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=False)
        key = self._order_key(req, merchant)
        category = validation.check_category(req.json(), self.settings.http_hosts)
        with self.store.lock:
            self.store.categories[key] = category
        # 200Upserted: the same status for a new and a replaced category, with a
        # JSON string body.
        return Reply(200, json.dumps(self.store.order_id(key)))

    def post_receipt(self, req):
        """POST /order-management/v2/{paymentType}/receipts/{orderId}."""
        merchant = self.authenticate(req)
        validation.check_headers(req.headers, idempotency_required=False)
        key = self._order_key(req, merchant)
        receipt = validation.check_receipt(
            req.json(), "receipt", validation.accepted_currencies(merchant)
        )
        with self.store.lock:
            if key in self.store.receipts:
                raise errors.conflict(
                    "This order already has a receipt; receipts cannot be changed."
                )
            self.store.receipts[key] = receipt
        # 201Created, with a JSON string body.
        return Reply(201, json.dumps(self.store.order_id(key)))

    def get_order(self, req):
        """GET /order-management/v2/{paymentType}/{orderId}."""
        merchant = self.authenticate(req)
        key = self._order_key(req, merchant)
        with self.store.lock:
            category = self.store.categories.get(key)
            receipt = self.store.receipts.get(key)
        if category is None and receipt is None:
            raise errors.not_found("No category or receipt for this order.")
        body = {}
        if category is not None:
            body["category"] = {k: v for k, v in category.items() if v is not None}
        if receipt is not None:
            body["receipt"] = receipt
        return Reply(200, body)

    def post_image(self, req):
        """POST /order-management/v1/images."""
        merchant = self.authenticate(req)
        image_id, data = validation.check_image(req.json())
        with self.store.lock:
            if (merchant.msn, image_id) in self.store.images:
                raise errors.conflict(f"An image with id {image_id} already exists.")
            self.store.images[(merchant.msn, image_id)] = data
        return Reply(200, {"imageId": image_id})

    # === Userinfo === #

    def get_userinfo(self, req):
        """GET /vipps-userinfo-api/userinfo/{sub} with the merchant token."""
        merchant = self.authenticate(req, require_key=False, require_msn=False)
        claims = self.store.userinfo(merchant, req.params["sub"])
        return Reply(200, claims, "application/json;charset=UTF-8")

    # === Report API === #

    def _report_merchant(self, req):
        merchant = self.authenticate(req, require_msn=False)
        validation.check_headers(req.headers, idempotency_required=False)
        return self.reports.merchant_of_ledger(merchant, req.params["ledger_id"])

    @staticmethod
    def _cursor(req):
        return (req.query.get("cursor") or [None])[0]

    def get_ledgers(self, req):
        """GET /settlement/v1/ledgers."""
        merchant = self.authenticate(req, require_msn=False)
        validation.check_headers(req.headers, idempotency_required=False)
        return Reply(200, self.reports.ledgers(merchant, req.query))

    def get_report(self, req):
        """GET /report/v2/ledgers/{ledgerId}/{topic}/dates/{ledgerDate}."""
        merchant = self._report_merchant(req)
        body = self.reports.by_date(
            merchant, req.params["topic"], req.params["ledger_date"], self._cursor(req)
        )
        return Reply(200, body)

    def get_feed(self, req):
        """GET /report/v2/ledgers/{ledgerId}/{topic}/feed."""
        merchant = self._report_merchant(req)
        return Reply(
            200, self.reports.feed(merchant, req.params["topic"], self._cursor(req))
        )
