"""Payments and their state machine, access tokens and idempotency records.

A payment starts ``CREATED`` and ends in one final state: ``AUTHORIZED``
(approved), ``ABORTED`` (rejected), ``EXPIRED`` (timed out) or ``TERMINATED``
(cancelled by the merchant before approval). Captures, refunds and cancels of
an authorized payment leave the state at ``AUTHORIZED`` and move the
aggregate amounts instead. Every step is recorded as an event with its own
``pspReference``; each new event is handed to the listeners (the webhook
dispatcher) in order.

All public methods take the store lock, so HTTP handler threads, the expiry
sweeper and test code can call them concurrently.
"""

import base64
import dataclasses
import datetime as dt
import itertools
import json
import secrets
import threading
import uuid

from . import config
from .clock import isoformat
from .errors import (
    ApiError,
    conflict,
    domain_error,
    is_refusal,
    not_found,
    unauthorized,
)

CREATED = "CREATED"
AUTHORIZED = "AUTHORIZED"
ABORTED = "ABORTED"
EXPIRED = "EXPIRED"
TERMINATED = "TERMINATED"
FINAL_STATES = (AUTHORIZED, ABORTED, EXPIRED, TERMINATED)

# Capture errors that can be injected per payment, with the detail they carry.
CAPTURE_ERRORS = {
    6260: "The funds are no longer reserved: the customer's bank released the "
    "reservation early. Contact the customer.",
    6280: "The capture failed. Try again later with the same Idempotency-Key.",
}

# Derives a stable, per-sales-unit `sub` from a phone number.
_SUB_NAMESPACE = uuid.UUID("6f1d3c1e-4b8a-4e8e-9a51-0c2f8f0e7a10")


_EVENT_ORDER = itertools.count(1)


def next_order():
    """Return the next number of the order in which things happened."""
    return next(_EVENT_ORDER)


def new_psp_reference():
    """Return a new pspReference (Vipps uses opaque strings)."""
    return str(uuid.uuid4())


@dataclasses.dataclass
class Event:
    """One entry of a payment's event log."""

    name: str
    value: int
    currency: str
    timestamp: dt.datetime
    idempotency_key: str = None
    success: bool = True
    psp_reference: str = dataclasses.field(default_factory=new_psp_reference)
    # Members only the webhook payload carries (not the event log).
    webhook_extra: dict = None
    # The order events happened in, when the clock shows the same instant.
    order: int = dataclasses.field(default_factory=next_order)

    def to_api(self, reference):
        """Return the event as the event log endpoint shows it."""
        return {
            "reference": reference,
            "pspReference": self.psp_reference,
            "name": self.name,
            "amount": {"currency": self.currency, "value": self.value},
            "timestamp": isoformat(self.timestamp),
            "idempotencyKey": self.idempotency_key,
            "success": self.success,
        }


@dataclasses.dataclass
class Payment:
    """One ePayment and everything that happened to it."""

    msn: str
    reference: str
    value: int
    currency: str
    flow: str
    method: str
    created_at: dt.datetime
    expires_at: dt.datetime
    long_living: bool = False
    phone: str = None  # customer.phoneNumber from create, if any
    return_url: str = None
    receipt_url: str = None
    receipt: dict = None
    description: str = None
    metadata: dict = None
    scopes: list = dataclasses.field(default_factory=list)
    interaction: str = "CUSTOMER_NOT_PRESENT"
    token: str = None  # the landing-page token in redirectUrl
    redirect_url: str = None
    state: str = CREATED
    authorized_at: dt.datetime = None
    approved_phone: str = None
    sub: str = None
    consent_at: dt.datetime = None
    # When Vipps has written sub (and the shared data) where Get payment and
    # Userinfo read it: a little after approval (Settings.sub_delay).
    profile_ready_at: dt.datetime = None
    captured: int = 0
    refunded: int = 0
    cancelled: int = 0
    events: list = dataclasses.field(default_factory=list)
    # Injected capture errors, applied in order: [code, remaining or None
    # (until cleared), HTTP status or None].
    capture_errors: list = dataclasses.field(default_factory=list)

    @property
    def psp_reference(self):
        """The payment's pspReference: that of its CREATED event."""
        return self.events[0].psp_reference

    @property
    def authorized(self):
        """The reserved amount (the full amount once authorized)."""
        return self.value if self.state == AUTHORIZED else 0

    @property
    def capture_guaranteed_until(self):
        """The end of the market's capture deadline (6100 after it), or None."""
        if self.authorized_at is None:
            return None
        days = config.CAPTURE_DEADLINE_DAYS.get(self.currency, 180)
        return self.authorized_at + dt.timedelta(days=days)

    def _amount(self, value):
        return {"currency": self.currency, "value": value}

    def aggregate(self):
        """Return the aggregate amounts object."""
        return {
            "authorizedAmount": self._amount(self.authorized),
            "cancelledAmount": self._amount(self.cancelled),
            "capturedAmount": self._amount(self.captured),
            "refundedAmount": self._amount(self.refunded),
        }

    def profile_ready(self, now):
        """True once ``sub`` and the shared data can be read (see sub_delay)."""
        return bool(self.sub) and now >= self.profile_ready_at

    def user_details(self, users):
        """Return the live API's ``userDetails`` for the consented scopes."""
        if not self.sub or not self.scopes:
            return None
        profile = users.profile(self.approved_phone)
        details = {"userId": self.sub}
        if "phoneNumber" in self.scopes:
            details["mobileNumber"] = self.approved_phone
        if "name" in self.scopes:
            details["firstName"] = profile["given_name"]
            details["lastName"] = profile["family_name"]
        if "email" in self.scopes:
            details["email"] = profile["email"]
        if "birthDate" in self.scopes:
            details["dateOfBirth"] = profile["birthdate"]
        return details

    def to_api(self, users, now, details_delayed=True, details_shown=True):
        """Return the payment as Get payment shows it at ``now``.

        ``profile.sub`` appears once the profile is written; ``userDetails``
        too, unless ``details_delayed`` is False.
        """
        method = {"type": self.method}
        if self.state == AUTHORIZED:
            method["cardBin"] = "540185"
        ready = self.profile_ready(now)
        body = {
            "aggregate": self.aggregate(),
            "amount": self._amount(self.value),
            "state": self.state,
            "paymentMethod": method,
            "profile": {"sub": self.sub} if ready else {},
            "pspReference": self.psp_reference,
            "reference": self.reference,
        }
        if self.state == AUTHORIZED:
            body["captureGuaranteedUntil"] = isoformat(self.capture_guaranteed_until)
        if self.redirect_url:
            body["redirectUrl"] = self.redirect_url
        if self.metadata is not None:
            body["metadata"] = self.metadata
        details = self.user_details(users)
        if details and details_shown and (ready or not details_delayed):
            body["userDetails"] = details
        return body

    def modification(self, event):
        """Return a ModificationResponse after ``event``."""
        return {
            "amount": self._amount(self.value),
            "state": self.state,
            "aggregate": self.aggregate(),
            "pspReference": event.psp_reference,
            "reference": self.reference,
        }

    def snapshot(self):
        """Return an internal JSON view (control API, tests)."""
        return {
            "msn": self.msn,
            "reference": self.reference,
            "state": self.state,
            "amount": self._amount(self.value),
            "aggregate": self.aggregate(),
            "userFlow": self.flow,
            "paymentMethod": self.method,
            "phoneNumber": self.phone,
            "approvedPhoneNumber": self.approved_phone,
            "returnUrl": self.return_url,
            "redirectUrl": self.redirect_url,
            "paymentDescription": self.description,
            "scopes": self.scopes,
            "sub": self.sub,
            "profileReadyAt": (
                isoformat(self.profile_ready_at) if self.profile_ready_at else None
            ),
            "captureGuaranteedUntil": (
                isoformat(self.capture_guaranteed_until)
                if self.capture_guaranteed_until
                else None
            ),
            "createdAt": isoformat(self.created_at),
            "expiresAt": isoformat(self.expires_at),
            "longLiving": self.long_living,
            "metadata": self.metadata,
            "captureErrors": [
                {"code": code, "remaining": remaining, "status": status}
                for code, remaining, status in self.capture_errors
            ],
            "events": [event.to_api(self.reference) for event in self.events],
        }


class Users:
    """The emulated population of Vipps users, keyed by phone number."""

    def __init__(self, settings):
        self.settings = settings

    def exists(self, phone):
        """True when ``phone`` belongs to a Vipps user (see Settings)."""
        return bool(phone) and self.settings.is_vipps_user(phone)

    @staticmethod
    def sub(msn, phone):
        """Return the user's ``sub`` as seen by sales unit ``msn``."""
        return str(uuid.uuid5(_SUB_NAMESPACE, f"{msn}:{phone}"))

    @staticmethod
    def profile(phone):
        """Return the synthetic profile of the user with ``phone``."""
        tail = phone[-4:]
        return {
            "given_name": "Test",
            "family_name": f"User {tail}",
            "name": f"Test User {tail}",
            "email": f"user{phone}@example.com",
            "birthdate": "1990-01-01",
            "address": {
                "address_type": "home",
                "country": "NO",
                "formatted": "Testveien 1\n0150 Oslo\nNO",
                "postal_code": "0150",
                "region": "Oslo",
                "street_address": "Testveien 1",
            },
        }


@dataclasses.dataclass
class Token:
    """An issued access token."""

    value: str
    msn: str
    expires_at: dt.datetime


@dataclasses.dataclass
class Stored:
    """A remembered answer for an Idempotency-Key."""

    fingerprint: str
    status: int = None
    body: object = None
    error: ApiError = None


def fingerprint(body):
    """Return a canonical form of a request body, to compare retries."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _b64url(data):
    """Encode bytes as unpadded base64url, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Store:
    """All mutable state of the emulator."""

    def __init__(self, clock, settings, merchants):
        self.clock = clock
        self.settings = settings
        self.users = Users(settings)
        self.lock = threading.RLock()
        self.listeners = []  # callables (msn, payment, event), called in order
        self._initial_merchants = [dataclasses.replace(m) for m in merchants]
        self.merchants = {}
        self.tokens = {}
        self.payments = {}  # msn -> {reference: Payment}
        self.tokens_by_landing = {}  # landing token -> (msn, reference)
        self.idempotency = {}
        self.categories = {}  # (msn, paymentType, orderId) -> dict
        self.receipts = {}  # (msn, paymentType, orderId) -> dict
        self.images = {}  # (msn, imageId) -> bytes
        self.order_ids = {}  # (msn, paymentType, orderId) -> id in OM answers
        self.ledger_extras = {}  # msn -> [report.Extra] added by the control API
        self.reset()

    # === setup === #

    def reset(self, keep_tokens=True):
        """Forget payments, idempotency records and Order Management data, and
        restore the merchants to their initial settings."""
        with self.lock:
            self.merchants = {}
            for merchant in self._initial_merchants:
                self.add_merchant(dataclasses.replace(merchant))
            if not keep_tokens:
                self.tokens.clear()
            self.tokens = {
                value: token
                for value, token in self.tokens.items()
                if token.msn in self.merchants
            }
            self.payments = {msn: {} for msn in self.merchants}
            self.tokens_by_landing.clear()
            self.idempotency.clear()
            self.categories.clear()
            self.receipts.clear()
            self.images.clear()
            self.order_ids.clear()
            self.ledger_extras.clear()

    def add_merchant(self, merchant, initial=False):
        """Add (or replace) a sales unit; with ``initial`` it survives reset."""
        with self.lock:
            for other in self.merchants.values():
                if other.msn != merchant.msn and (
                    other.client_id == merchant.client_id
                    or other.subscription_key == merchant.subscription_key
                ):
                    raise ValueError("client_id and subscription_key must be unique")
            self.merchants[merchant.msn] = merchant
            self.payments.setdefault(merchant.msn, {})
            if initial:
                self._initial_merchants = [
                    m for m in self._initial_merchants if m.msn != merchant.msn
                ] + [dataclasses.replace(merchant)]
            return merchant

    def merchant_by_subscription_key(self, key):
        """Return the merchant owning subscription ``key``, or None."""
        for merchant in self.merchants.values():
            if key and secrets.compare_digest(
                merchant.subscription_key.encode(), key.encode()
            ):
                return merchant
        return None

    # === access tokens === #

    def issue_token(self, merchant):
        """Create an access token for ``merchant``; return (Token, now)."""
        now = self.clock.now()
        expires = now + dt.timedelta(seconds=self.settings.token_ttl)
        header = _b64url(b'{"typ":"JWT","alg":"HS256","kid":"emulator"}')
        claims = {
            "iss": "vipps-emulator",
            "sub": merchant.client_id,
            "msn": merchant.msn,
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(16),
            # Real tokens are often over 1000 characters; so are these.
            "pad": secrets.token_urlsafe(640),
        }
        payload = _b64url(json.dumps(claims).encode())
        value = f"{header}.{payload}.{_b64url(secrets.token_bytes(32))}"
        token = Token(value=value, msn=merchant.msn, expires_at=expires)
        with self.lock:
            self.tokens[value] = token
        return token, now

    def check_token(self, value):
        """Return the merchant of a bearer token; raise 401 when invalid."""
        with self.lock:
            token = self.tokens.get(value)
        if token is None:
            raise unauthorized("The access token is not valid.")
        if self.clock.now() >= token.expires_at:
            raise unauthorized("The access token has expired.")
        merchant = self.merchants.get(token.msn)
        if merchant is None:
            raise unauthorized("The access token is not valid.")
        return merchant

    # === idempotency === #

    def idempotent(self, scope, key, body, run, conflict_code):
        """Run ``run()`` once per Idempotency-Key within ``scope``.

        The same key with the same body replays the first answer (a success,
        or a refusal when ``replay_client_errors``); the same key with another
        body is a 409 with ``conflict_code``. Answers that ask for a retry
        (see ``errors.is_refusal``) are not remembered.
        Returns ``(status, body, replayed)``.
        """
        record_key = (*scope, key)
        digest = fingerprint(body)
        with self.lock:
            stored = self.idempotency.get(record_key)
            if stored is not None:
                if stored.fingerprint != digest:
                    raise conflict(
                        "This Idempotency-Key was used with a different request "
                        "body. Use a new key for a new operation.",
                        code=conflict_code,
                    )
                if stored.error is not None:
                    raise stored.error
                return stored.status, stored.body, True
            try:
                status, answer = run()
            except ApiError as err:
                if self.settings.replay_client_errors and is_refusal(err):
                    self.idempotency[record_key] = Stored(digest, error=err)
                raise
            self.idempotency[record_key] = Stored(digest, status, answer)
            return status, answer, False

    def order_id(self, key):
        """Return the id Order Management answers with for one order.

        The spec declares a JSON string (a UUID in its example) as the body of
        the category and receipt answers; here it is one id per order.
        """
        with self.lock:
            return self.order_ids.setdefault(key, str(uuid.uuid4()))

    # === payments === #

    def _emit(self, payment, event):
        payment.events.append(event)
        for listener in list(self.listeners):
            listener(payment.msn, payment, event)

    def _event(self, payment, name, value=None, key=None, webhook_extra=None):
        event = Event(
            name=name,
            value=payment.value if value is None else value,
            currency=payment.currency,
            timestamp=self.clock.now(),
            idempotency_key=key,
            webhook_extra=webhook_extra,
        )
        self._emit(payment, event)
        return event

    def get(self, msn, reference):
        """Return a payment (expiring it first if due); raise 404 when unknown."""
        with self.lock:
            payment = self.payments.get(msn, {}).get(reference)
            if payment is None:
                raise domain_error(5090, f"No payment with reference {reference}.")
            self._expire_if_due(payment, self.clock.now())
            return payment

    def find(self, reference, msn=None):
        """Return a payment by reference (any sales unit when msn is None)."""
        with self.lock:
            msns = [msn] if msn else list(self.payments)
            for candidate in msns:
                payment = self.payments.get(candidate, {}).get(reference)
                if payment is not None:
                    self._expire_if_due(payment, self.clock.now())
                    return payment
        raise KeyError(reference)

    def by_landing_token(self, token):
        """Return the payment a landing-page token belongs to, or None."""
        with self.lock:
            entry = self.tokens_by_landing.get(token or "")
            if entry is None:
                return None
            return self.get(*entry)

    def create_payment(self, merchant, fields, key, base_url):
        """Create a payment from validated ``fields``; return the 201 body."""
        with self.lock:
            reference = fields["reference"]
            if reference in self.payments[merchant.msn]:
                raise domain_error(
                    4150,
                    f"A payment with reference {reference} already exists.",
                    status=self.settings.reference_exists_status,
                )
            phone = fields["phone"]
            if phone is not None and not self.users.exists(phone):
                raise domain_error(
                    7010, "No Vipps MobilePay user can pay with this phone number."
                )
            now = self.clock.now()
            expires_at = fields["expires_at"] or now + dt.timedelta(
                seconds=config.DEFAULT_PAYMENT_LIFETIME
            )
            payment = Payment(
                msn=merchant.msn,
                reference=reference,
                value=fields["value"],
                currency=fields["currency"],
                flow=fields["flow"],
                method=fields["method"],
                created_at=now,
                expires_at=expires_at,
                long_living=fields["expires_at"] is not None,
                phone=phone,
                return_url=fields["return_url"],
                receipt_url=fields["receipt_url"],
                receipt=fields["receipt"],
                description=fields["description"],
                metadata=fields["metadata"],
                scopes=fields["scopes"],
                interaction=fields["interaction"],
            )
            payment.token = secrets.token_urlsafe(24)
            self.tokens_by_landing[payment.token] = (merchant.msn, reference)
            if payment.flow != "PUSH_MESSAGE":
                # The landing host of the market on this day, as a path segment.
                host = config.landing_host(
                    payment.currency, now, self.settings.brand_switch_date
                )
                payment.redirect_url = (
                    f"{base_url}/app/landing/{host}?token={payment.token}"
                )
            self.payments[merchant.msn][reference] = payment
            if payment.receipt is not None:
                self.receipts[(merchant.msn, "ecom", reference)] = payment.receipt
            self._event(payment, "CREATED", key=key)
            body = {"reference": reference}
            if payment.redirect_url:
                body["redirectUrl"] = payment.redirect_url
            return body

    def _expire_if_due(self, payment, now):
        if payment.state == CREATED and now >= payment.expires_at:
            payment.state = EXPIRED
            self._event(payment, "EXPIRED")
            return True
        return False

    def expire_due(self):
        """Expire every CREATED payment whose time is up; return how many."""
        now = self.clock.now()
        count = 0
        with self.lock:
            for payments in self.payments.values():
                for payment in payments.values():
                    count += self._expire_if_due(payment, now)
        return count

    def expire(self, payment):
        """Expire a CREATED payment now, whatever its expiry time."""
        with self.lock:
            if payment.state != CREATED:
                raise domain_error(10020, f"The payment is {payment.state}.")
            payment.expires_at = self.clock.now()
            self._expire_if_due(payment, payment.expires_at)

    def approve(self, payment, phone=None, token=None, consent=True):
        """Approve a CREATED payment as the customer with ``phone``.

        Refusing the profile-sharing consent aborts the payment, as in the app.
        """
        with self.lock:
            self._expire_if_due(payment, self.clock.now())
            if payment.state == AUTHORIZED:
                raise domain_error(6230, "The payment is already authorized.")
            if payment.state != CREATED:
                raise domain_error(10020, f"The payment is {payment.state}.")
            if token is not None and token != payment.token:
                raise domain_error(10010, "The token does not match the payment.")
            phone = phone or payment.phone or config.DEFAULT_TEST_PHONE
            if not self.users.exists(phone):
                raise domain_error(7010, "No Vipps MobilePay user with that number.")
            if payment.flow == "PUSH_MESSAGE" and payment.phone not in (None, phone):
                raise domain_error(
                    10010, "The push request was sent to another customer."
                )
            if payment.scopes and not consent:
                payment.state = ABORTED
                self._event(payment, "ABORTED")
                return payment
            now = self.clock.now()
            payment.state = AUTHORIZED
            payment.authorized_at = now
            payment.approved_phone = phone
            if payment.scopes:
                payment.sub = self.users.sub(payment.msn, phone)
                payment.consent_at = now
                payment.profile_ready_at = now + dt.timedelta(
                    seconds=self.settings.sub_delay
                )
            self._event(
                payment, "AUTHORIZED", webhook_extra=self._authorized_extra(payment)
            )
            return payment

    def _authorized_extra(self, payment):
        """What the authorized webhook carries besides the common members:
        captureGuaranteedUntil and, when profile data was shared, userDetails
        and profile.sub (at once, whatever sub_delay says for Get payment)."""
        extra = {"captureGuaranteedUntil": isoformat(payment.capture_guaranteed_until)}
        if payment.sub and self.settings.authorized_webhook_profile:
            extra["userDetails"] = payment.user_details(self.users)
            extra["profile"] = {"sub": payment.sub}
        return extra

    def reject(self, payment):
        """Reject (abort) a CREATED payment, as the customer would in the app."""
        with self.lock:
            self._expire_if_due(payment, self.clock.now())
            if payment.state != CREATED:
                raise domain_error(10020, f"The payment is {payment.state}.")
            payment.state = ABORTED
            self._event(payment, "ABORTED")
            return payment

    def _deadline_passed(self, payment, days):
        limit = payment.authorized_at + dt.timedelta(days=days)
        return self.clock.now() > limit

    def capture(self, merchant, payment, value, key):
        """Capture ``value``; return the ModificationResponse."""
        with self.lock:
            self._expire_if_due(payment, self.clock.now())
            if payment.state == CREATED:
                raise domain_error(6080, "The customer has not approved the payment.")
            if payment.state == TERMINATED:
                raise domain_error(6070, "The payment was cancelled.")
            if payment.state != AUTHORIZED:
                raise domain_error(6200, f"The payment is {payment.state}.")
            if payment.cancelled:
                raise domain_error(6070, "The reservation was cancelled.")
            deadline = config.CAPTURE_DEADLINE_DAYS.get(payment.currency, 180)
            if self._deadline_passed(payment, deadline):
                raise domain_error(6100, "The reservation has lapsed.")
            remaining = payment.value - payment.captured
            if remaining == 0:
                raise domain_error(6170, "The payment is fully captured.")
            if value > remaining:
                raise domain_error(
                    6090, f"At most {remaining} can still be captured, not {value}."
                )
            if value != payment.value and not merchant.partial_capture_allowed:
                raise domain_error(6140, "This sales unit must capture in full.")
            self._raise_capture_error(payment)
            payment.captured += value
            event = self._event(payment, "CAPTURED", value, key)
            return payment.modification(event)

    def add_capture_error(self, payment, code, count=..., status=None):
        """Make the next capture attempts of ``payment`` fail with ``code``.

        6260 (funds unavailable: the reservation was released early) lasts
        until cleared unless ``count`` says how many attempts; 6280 (capture
        failed, try again later) fails ``count`` attempts, 1 by default.
        ``status`` overrides the HTTP status (400; Vipps does not document it).
        """
        code = int(code)
        if code not in CAPTURE_ERRORS:
            raise ValueError(
                f"code must be one of {', '.join(map(str, CAPTURE_ERRORS))}"
            )
        if count is ...:
            count = None if code == 6260 else 1
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1, or None (until cleared)")
        if status is not None and not 400 <= int(status) <= 599:
            raise ValueError("status must be 400 to 599")
        with self.lock:
            payment.capture_errors.append(
                [code, None if count is None else int(count), status and int(status)]
            )

    def clear_capture_errors(self, payment):
        """Remove the injected capture errors of ``payment``."""
        with self.lock:
            payment.capture_errors.clear()

    def _raise_capture_error(self, payment):
        if not payment.capture_errors:
            return
        rule = payment.capture_errors[0]
        code, remaining, status = rule
        if remaining is not None:
            rule[1] -= 1
            if rule[1] <= 0:
                payment.capture_errors.pop(0)
        raise domain_error(code, CAPTURE_ERRORS[code], status=status)

    def refund(self, payment, value, key):
        """Refund ``value``; return the ModificationResponse."""
        with self.lock:
            self._expire_if_due(payment, self.clock.now())
            if payment.state == CREATED:
                raise domain_error(6020, "The payment has not been reserved.")
            if payment.state != AUTHORIZED:
                raise domain_error(6210, f"The payment is {payment.state}.")
            if self._deadline_passed(payment, config.REFUND_DEADLINE_DAYS):
                raise domain_error(6220, "The refund period has expired.")
            refundable = payment.captured - payment.refunded
            if value > refundable:
                raise domain_error(
                    6150, f"At most {refundable} can be refunded, not {value}."
                )
            payment.refunded += value
            event = self._event(payment, "REFUNDED", value, key)
            return payment.modification(event)

    def cancel(self, payment, transaction_only, key):
        """Cancel the payment; return the ModificationResponse."""
        with self.lock:
            self._expire_if_due(payment, self.clock.now())
            if payment.state == CREATED:
                payment.state = TERMINATED
                event = self._event(payment, "TERMINATED", key=key)
                return payment.modification(event)
            if payment.state == TERMINATED:
                raise domain_error(6190, "The payment is already cancelled.")
            if payment.state != AUTHORIZED:
                raise domain_error(6050, f"The payment is {payment.state}.")
            if transaction_only:
                raise domain_error(
                    6060, "The payment is authorized; cancelTransactionOnly was set."
                )
            deadline = min(
                config.CANCEL_DEADLINE_DAYS,
                config.CAPTURE_DEADLINE_DAYS.get(payment.currency, 180),
            )
            if self._deadline_passed(payment, deadline):
                raise domain_error(6030, "The cancel period has expired.")
            remaining = payment.value - payment.captured - payment.cancelled
            if payment.captured == payment.value:
                raise domain_error(6040, "The payment is fully captured; refund it.")
            if remaining == 0:
                raise domain_error(6190, "Nothing is left to cancel.")
            payment.cancelled += remaining
            event = self._event(payment, "CANCELLED", remaining, key)
            return payment.modification(event)

    def inbox(self, phone):
        """Return the push requests sent to ``phone``, newest first."""
        now = self.clock.now()
        with self.lock:
            found = []
            for payments in self.payments.values():
                for payment in payments.values():
                    self._expire_if_due(payment, now)
                    if payment.flow == "PUSH_MESSAGE" and payment.phone == phone:
                        found.append(payment)
        return sorted(found, key=lambda p: p.created_at, reverse=True)

    def all_payments(self):
        """Return every payment of every sales unit."""
        with self.lock:
            return [p for payments in self.payments.values() for p in payments.values()]

    # === userinfo === #

    def userinfo(self, merchant, sub):
        """Return the consented claims for ``sub``; raise 404 when unknown."""
        now = self.clock.now()
        scopes, phone, consent_at = set(), None, None
        with self.lock:
            for payment in self.payments.get(merchant.msn, {}).values():
                if payment.sub == sub and payment.profile_ready(now):
                    scopes.update(payment.scopes)
                    phone = payment.approved_phone
                    if consent_at is None or payment.consent_at > consent_at:
                        consent_at = payment.consent_at
        if phone is None:
            raise not_found("No user with this sub has shared data with you.")
        expired = now - consent_at > dt.timedelta(hours=config.USERINFO_RETENTION_HOURS)
        profile = self.users.profile(phone)
        claims = {"sub": sub}
        if "phoneNumber" in scopes:
            claims["phone_number"] = phone
            claims["phone_number_verified"] = True
        if "name" in scopes:
            for key in ("name", "given_name", "family_name"):
                claims[key] = profile[key]
        if "email" in scopes:
            claims["email"] = profile["email"]
            claims["email_verified"] = True
        if "birthDate" in scopes:
            claims["birthdate"] = profile["birthdate"]
        if "address" in scopes:
            claims["address"] = profile["address"]
            claims["other_addresses"] = []
        if expired:
            claims = {
                key: ("[Expired]" if key != "sub" and isinstance(value, str) else value)
                for key, value in claims.items()
            }
        return claims
