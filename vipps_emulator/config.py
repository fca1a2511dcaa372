"""Emulator settings: the emulated sales units (merchants) and market rules.

A sales unit is identified by its Merchant Serial Number (MSN) and owns one set
of API credentials. Its market fixes the one currency it can take payments in.
"""

import dataclasses
import datetime as dt
import re

DEFAULT_MSN = "123456"
DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
DEFAULT_SUBSCRIPTION_KEY = "emulator-subscription-key"
DEFAULT_MERCHANT_NAME = "Emulated Merchant AS"
DEFAULT_TOKEN_TTL = 3600  # seconds; the Vipps test environment issues 1-hour tokens
# An ordinary sales unit is not approved for long-living payments (5050).
DEFAULT_LONG_LIVING_MAX_DAYS = 0
# The furthest expiresAt Vipps documents (October 2026) for an approved sales unit;
# the 2024 spec said less than 28 days. A sales unit may have its own, lower,
# maximum, and Norwegian terms allow at most 24 hours: set long_living_max_days.
APPROVED_LONG_LIVING_MAX_DAYS = 60
# The customer used when an approval names no phone number and the payment has
# none (control API, Emulator.approve(), force approve by token only).
DEFAULT_TEST_PHONE = "4791234567"

# NOK, DKK and EUR are in every spec copy; SEK is accepted by the official
# WooCommerce plugin but is in no spec (unverified), so it is opt-in here.
CURRENCIES = ("NOK", "DKK", "EUR")
OPTIONAL_CURRENCIES = ("SEK",)
# Market (country of the sales unit) -> its only currency.
MARKETS = {"NO": "NOK", "DK": "DKK", "FI": "EUR", "SE": "SEK"}

# Smallest payment per currency, in minor units (error 6010 below it).
MINIMUM_AMOUNT = {"NOK": 100, "DKK": 1, "EUR": 1, "SEK": 100}
MAXIMUM_AMOUNT = 65_000_000

# How long a reservation can be captured, by market (error 6100 after it).
CAPTURE_DEADLINE_DAYS = {"NOK": 180, "SEK": 180, "DKK": 14, "EUR": 14}
CANCEL_DEADLINE_DAYS = 180  # error 6030
REFUND_DEADLINE_DAYS = 365  # error 6220

DEFAULT_PAYMENT_LIFETIME = 10 * 60  # seconds, without expiresAt
MINIMUM_LONG_LIVING = 10 * 60  # expiresAt must be further away than this (6120)
USERINFO_RETENTION_HOURS = 168  # profile data can be read for 7 days

MSN_PATTERN = re.compile(r"^[0-9]{4,6}$")

# The brand customers see. On 12 January 2027 MobilePay becomes Vipps in Denmark
# and Finland: landing pages move from pay.mobilepay.dk/.fi to pay.vipps.dk/.fi
# (API hosts, keys and webhooks stay the same). Norway (and Sweden) are Vipps.
BRAND_SWITCH_DATE = "2027-01-12"
# Local midnight of the switch: UTC offset of each market in January (winter time).
BRAND_SWITCH_UTC_OFFSET_HOURS = {"DKK": 1, "EUR": 2}
# Landing-page host per currency: (before the switch, from the switch on).
# SEK has no documented landing host; it gets Vipps's Norwegian one (unverified).
LANDING_HOSTS = {
    "NOK": ("pay.vipps.no", "pay.vipps.no"),
    "SEK": ("pay.vipps.no", "pay.vipps.no"),
    "DKK": ("pay.mobilepay.dk", "pay.vipps.dk"),
    "EUR": ("pay.mobilepay.fi", "pay.vipps.fi"),
}
# Country codes of phone numbers whose app is MobilePay before the switch:
# Denmark, Finland, and Greenland (Danish MobilePay).
MOBILEPAY_COUNTRY_CODES = {"45": "DKK", "358": "EUR", "299": "DKK"}


def brand_switched(currency, now, switch_date=BRAND_SWITCH_DATE):
    """True once the market of ``currency`` shows Vipps instead of MobilePay."""
    offset = BRAND_SWITCH_UTC_OFFSET_HOURS.get(currency)
    if offset is None:
        return True  # Vipps all along
    day = dt.date.fromisoformat(switch_date)
    local_midnight = dt.datetime.combine(
        day, dt.time(0, 0), tzinfo=dt.timezone(dt.timedelta(hours=offset))
    )
    return now >= local_midnight


def brand(currency, now, switch_date=BRAND_SWITCH_DATE):
    """Return "Vipps" or "MobilePay": the app of the market of ``currency``."""
    return "Vipps" if brand_switched(currency, now, switch_date) else "MobilePay"


def landing_host(currency, now, switch_date=BRAND_SWITCH_DATE):
    """Return the landing-page host a redirectUrl of ``currency`` points at."""
    before, after = LANDING_HOSTS.get(currency, LANDING_HOSTS["NOK"])
    return after if brand_switched(currency, now, switch_date) else before


def phone_brand(phone, now, switch_date=BRAND_SWITCH_DATE):
    """Return the app a customer with ``phone`` uses (by its country code)."""
    for code, currency in MOBILEPAY_COUNTRY_CODES.items():
        if phone and phone.startswith(code):
            return brand(currency, now, switch_date)
    return "Vipps"


@dataclasses.dataclass
class Merchant:
    """One emulated sales unit and what it is allowed to do."""

    merchant_serial_number: str = DEFAULT_MSN
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    subscription_key: str = DEFAULT_SUBSCRIPTION_KEY
    currency: str = "NOK"
    name: str = DEFAULT_MERCHANT_NAME
    # Approval for long-living payments: the furthest expiresAt in days;
    # 0 (an ordinary sales unit) means not approved (error 5050).
    long_living_max_days: int = DEFAULT_LONG_LIVING_MAX_DAYS
    # Approval to skip the landing page; without it PUSH_MESSAGE fails with 5080.
    push_allowed: bool = False
    partial_capture_allowed: bool = True  # False: partial capture fails with 6140
    nin_allowed: bool = False  # profile scope "nin" needs a permission (5030)

    def __post_init__(self):
        self.merchant_serial_number = str(self.merchant_serial_number)
        if not MSN_PATTERN.match(self.merchant_serial_number):
            raise ValueError("merchant_serial_number must be 4 to 6 digits")
        self.currency = self.currency.upper()
        if self.currency not in CURRENCIES + OPTIONAL_CURRENCIES:
            raise ValueError(f"unsupported currency {self.currency!r}")
        if int(self.long_living_max_days) < 0:
            raise ValueError("long_living_max_days cannot be negative")
        self.long_living_max_days = int(self.long_living_max_days)
        for field in ("client_id", "client_secret", "subscription_key"):
            if not getattr(self, field):
                raise ValueError(f"{field} cannot be empty")

    @classmethod
    def approved(cls, **fields):
        """Return a sales unit with Vipps's approvals (see ``APPROVED``);
        ``fields`` override them, e.g. ``long_living_max_days=1`` in Norway."""
        return cls(**{**APPROVED, **fields})

    @property
    def is_approved(self):
        """True when the sales unit may use both PUSH_MESSAGE and expiresAt."""
        return self.push_allowed and self.long_living_max_days > 0

    @property
    def msn(self):
        """Shorthand for the Merchant Serial Number."""
        return self.merchant_serial_number

    def public_settings(self):
        """Return the settings without the secrets (for the control API)."""
        data = dataclasses.asdict(self)
        for secret in ("client_secret", "subscription_key"):
            data.pop(secret)
        data["approved"] = self.is_approved
        return data

    def update(self, **changes):
        """Change settings in place, re-checking them; unknown names are refused."""
        names = {field.name for field in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown merchant settings: {sorted(unknown)}")
        candidate = dataclasses.replace(self, **changes)
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(candidate, field.name))


MERCHANT_FIELDS = tuple(field.name for field in dataclasses.fields(Merchant))

# What most sales units get from Vipps, and every new one: no long-living
# payments (5050), no PUSH_MESSAGE (5080). These are the Merchant defaults.
ORDINARY = {"long_living_max_days": 0, "push_allowed": False}
# A sales unit Vipps approved for long-living payments and for skipping the
# landing page: Merchant(**APPROVED), Emulator(**APPROVED) or approved=True.
APPROVED = {
    "long_living_max_days": APPROVED_LONG_LIVING_MAX_DAYS,
    "push_allowed": True,
}


def merchant_fields(fields):
    """Expand the shorthand ``approved=True|False`` into the approval fields;
    fields given explicitly win."""
    fields = dict(fields)
    if "approved" in fields:
        approved = fields.pop("approved")
        if not isinstance(approved, bool):
            raise ValueError("approved must be true or false")
        fields = {**(APPROVED if approved else ORDINARY), **fields}
    return fields


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# The JSON body of a 2 MB image upload: base64 (4/3) plus room for the rest.
IMAGE_BODY_LIMIT = (2 * 1024 * 1024 + 2) // 3 * 4 + 64 * 1024


@dataclasses.dataclass
class Settings:
    """Behaviour of the emulator as a whole (not tied to one sales unit)."""

    token_ttl: int = DEFAULT_TOKEN_TTL
    # Hosts for which plain http:// URLs are accepted (returnUrl, receiptUrl,
    # webhook and order details URLs). Real Vipps accepts https only.
    http_hosts: tuple = LOOPBACK_HOSTS
    # Phone numbers that are "not a Vipps user" (error 7010): any number ending
    # in this suffix, plus the numbers listed in not_vipps_users.
    not_user_suffix: str = "0000"
    not_vipps_users: frozenset = frozenset()
    # Receipt lines (returns negative, plus tip) must add up to amount.value.
    receipt_sum_must_match: bool = True
    # Remember a refused request (a 4xx other than a passing condition: 401,
    # 423, 429, or codes 6160/6250/6280 that ask for a retry) under its
    # Idempotency-Key: the same key and body replay the refusal, the same key
    # with another body is a 409 (4020 on create), as at Vipps.
    replay_client_errors: bool = True
    # "Reference already exists" is code 4150; Vipps does not document its
    # HTTP status (create lists 400, 403 and 409). 409 or 400.
    reference_exists_status: int = 409
    # Webhook delivery: seconds between attempts; len + 1 attempts in all.
    webhook_retry_delays: tuple = (1.0, 5.0, 15.0, 60.0, 300.0)
    webhook_timeout: float = 10.0
    # A registration whose deliveries keep failing this long (seconds of the
    # emulator clock, from the first failure after a success) is deleted, as
    # Vipps does after two weeks since March 2026. 0 = never.
    webhook_removal_after: float = 14 * 86400.0
    # How long a "timeout" fault holds the connection before closing it.
    fault_hang_seconds: float = 60.0
    # Seconds between background sweeps that expire overdue payments.
    expiry_interval: float = 1.0
    # Base URL written into redirectUrl; None means the server's own URL.
    public_url: str = None
    # Largest request body accepted on any path (413 above it). The image upload
    # of Order Management takes up to 2 MB of image, so it gets IMAGE_BODY_LIMIT.
    max_body_bytes: int = 1024 * 1024
    # The control API (/_emulator) answers only clients on a loopback address
    # unless this is True.
    control_remote: bool = False
    # When set, every control request must carry it in X-Emulator-Token.
    control_token: str = None
    # Vipps writes profile.sub asynchronously: for this many seconds (emulator
    # clock) after approval, Get payment lacks profile.sub and Userinfo does
    # not know the sub yet. 0 = written at once.
    sub_delay: float = 3.0
    # userDetails on Get payment waits for the same write (False: at once).
    user_details_delayed: bool = True
    # Whether Get payment carries userDetails at all: the live API does ("drift"
    # from the published spec, which has only profile.sub); False plays the spec,
    # where the shared data is read from Userinfo by sub.
    user_details_on_get: bool = True
    # The day MobilePay becomes Vipps in Denmark and Finland (local midnight),
    # on the emulator clock: brand on the app pages and landing host.
    brand_switch_date: str = BRAND_SWITCH_DATE
    # The epayments.payment.authorized.v1 webhook carries userDetails and
    # profile.sub when profile data was shared ("may also carry" in the docs).
    authorized_webhook_profile: bool = True
    # Report API. Seconds after an entry happened before the Report API shows
    # it ("usually a second or so, in the worst case several hours").
    report_lag: float = 2.0
    # Seconds after the end of a ledger date (local midnight) before the date is
    # closed: its fees retained and its payout scheduled; until then its report
    # says tryLater.
    report_close_delay: float = 3 * 3600.0
    # Entries per page of a report (a cursor leads to the next page).
    report_page_size: int = 100
    # The price model per currency: (basis points of the captured amount, fixed
    # minor units per capture). An example, not Vipps's price list: each
    # merchant has an agreement of its own.
    report_fees: dict = dataclasses.field(
        default_factory=lambda: {
            "NOK": (175, 100),
            "DKK": (100, 100),
            "EUR": (120, 10),
            "SEK": (175, 100),
        }
    )

    def __post_init__(self):
        self.http_hosts = tuple(host.lower() for host in self.http_hosts)
        self.not_vipps_users = frozenset(self.not_vipps_users)
        self.webhook_retry_delays = tuple(float(d) for d in self.webhook_retry_delays)
        if int(self.token_ttl) <= 0:
            raise ValueError("token_ttl must be positive")
        self.token_ttl = int(self.token_ttl)
        if int(self.reference_exists_status) not in (400, 409):
            raise ValueError("reference_exists_status must be 400 or 409")
        self.reference_exists_status = int(self.reference_exists_status)
        dt.date.fromisoformat(self.brand_switch_date)  # ValueError when invalid
        if int(self.max_body_bytes) < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        self.max_body_bytes = int(self.max_body_bytes)
        self.sub_delay = float(self.sub_delay)
        if self.sub_delay < 0:
            raise ValueError("sub_delay cannot be negative")
        self.report_lag = float(self.report_lag)
        self.report_close_delay = float(self.report_close_delay)
        if self.report_lag < 0 or self.report_close_delay < 0:
            raise ValueError("report_lag and report_close_delay cannot be negative")
        if int(self.report_page_size) < 1:
            raise ValueError("report_page_size must be at least 1")
        self.report_page_size = int(self.report_page_size)
        self.report_fees = {
            currency.upper(): (int(price[0]), int(price[1]))
            for currency, price in dict(self.report_fees).items()
        }

    def is_vipps_user(self, phone):
        """Apply the documented rule for numbers that are not Vipps users."""
        if phone in self.not_vipps_users:
            return False
        return not (self.not_user_suffix and phone.endswith(self.not_user_suffix))


SETTINGS_FIELDS = tuple(field.name for field in dataclasses.fields(Settings))
