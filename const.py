"""Constants of the Vipps MobilePay integration: hosts, currencies, payment methods."""

import re

# Vipps has one host per environment for every API (ePayment, Order Management, ...).
API_URLS = {
    "test": "https://apitest.vipps.no",
    "enabled": "https://api.vipps.no",
}

# The currency is fixed by the market of the sales unit: NOK for Vipps (Norway), DKK and
# EUR for MobilePay (Denmark, Finland).
SUPPORTED_CURRENCIES = ("NOK", "DKK", "EUR")

# Odoo's own payment methods (module `payment`) that this provider offers.
DEFAULT_PAYMENT_METHOD_CODES = {"vipps", "mobile_pay"}

API_VERSION_PATHS = {
    "token": "/accesstoken/get",
    "payments": "/epayment/v1/payments",
    "order_management": "/order-management/v2/ecom",
    "webhooks": "/webhooks/v1/webhooks",
    "userinfo": "/vipps-userinfo-api/userinfo",
}

# A Merchant Serial Number (sales unit) is 4 to 6 digits.
MSN_PATTERN = re.compile(r"^\d{4,6}$")
# The database's prefix of Vipps references: letters and digits only.
REFERENCE_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9]{0,10}$")
# A plain http:// base URL is accepted for these hosts only (the local emulator).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# Provider fields that tie a webhook registration to a sales unit and environment.
WEBHOOK_BOUND_FIELDS = {
    "vipps_merchant_serial_number",
    "vipps_client_id",
    "vipps_client_secret",
    "vipps_subscription_key",
    "vipps_api_url_override",
    "state",
}

# Timeout of every call, in seconds (connect and read each).
REQUEST_TIMEOUT = 20

# Attempts of one call and the pause before each retry, in seconds. Retries happen on
# connection errors, timeouts, 423 (concurrent operation), 429 and 5xx only.
MAX_ATTEMPTS = 3
RETRY_BACKOFF = (1.0, 3.0)
RETRYABLE_STATUSES = {423, 429, 500, 502, 503, 504}
# A Retry-After longer than this is not waited for: the call fails and is retried later
# (by the next poll), instead of holding an Odoo worker.
MAX_RETRY_AFTER = 10

# Renew the access token when less than this many seconds of validity remain.
TOKEN_RENEWAL_MARGIN = 300

# The Vipps-System-* headers are limited to 30 characters each.
SYSTEM_HEADER_MAX_LENGTH = 30
SYSTEM_NAME = "odoo"
MODULE = "payment_vipps"

# States of an ePayment (Get payment `state`). AUTHORIZED stays AUTHORIZED after a
# capture, refund or cancel: the money moves show in the aggregate amounts only.
VIPPS_PAYMENT_STATES = [
    ("CREATED", "Created"),
    ("AUTHORIZED", "Authorized"),
    ("ABORTED", "Aborted"),
    ("EXPIRED", "Expired"),
    ("TERMINATED", "Terminated"),
]
VIPPS_FINAL_FAILED_STATES = ("ABORTED", "EXPIRED", "TERMINATED")

# Odoo transaction state -> the Vipps payment states that map to it. AUTHORIZED maps to
# `authorized` until the aggregate shows money captured or released: what moved is
# booked from the aggregate amounts (see payment.transaction._vipps_book_movements).
STATUS_MAPPING = {
    "pending": ("CREATED",),
    "authorized": ("AUTHORIZED",),
    "cancel": VIPPS_FINAL_FAILED_STATES,
}

# Vipps error codes the integration acts on.
ERROR_ALREADY_AUTHORIZED = "6060"  # cancelTransactionOnly on an approved payment
ERROR_REFERENCE_EXISTS = "4150"  # create with a reference Vipps already has
ERROR_NOT_FOUND = "5090"  # no payment with that reference
ERROR_IDEMPOTENCY_CONFLICT = "4020"  # this key was used with another body
ERROR_LONG_LIVING_NOT_ALLOWED = "5050"  # expiresAt without the sales unit's approval
ERROR_PUSH_NOT_ALLOWED = "5080"  # PUSH_MESSAGE without the sales unit's approval
ERROR_NOT_A_USER = "7010"  # the number is not a Vipps MobilePay user
ERROR_FUNDS_UNAVAILABLE = "6260"  # capture: the reservation was released early
ERROR_CAPTURE_LATER = "6280"  # capture failed at Vipps: try again, same key
# Refusals of a push request that the pay link e-mailed instead answers.
PUSH_FALLBACK_ERRORS = (
    ERROR_PUSH_NOT_ALLOWED,
    ERROR_LONG_LIVING_NOT_ALLOWED,
    ERROR_NOT_A_USER,
)

# The answer of a write was lost or Vipps failed on its side: whether it was carried
# out can only be known by reading the payment again.
UNCERTAIN_STATUSES = {500, 502, 503, 504}

# vipps_state of account.move: where the invoice's latest request stands.
INVOICE_VIPPS_STATES = [
    ("pending", "Requested"),
    ("authorized", "Approved"),
    ("paid", "Paid"),
    ("rejected", "Rejected"),
    ("expired", "Expired"),
    ("cancelled", "Cancelled"),
]

# expiresAt must be more than 10 minutes ahead (error 6120); keep a margin.
MIN_EXPIRY_MINUTES = 15
# The current docs allow up to 60 days (or the sales unit's maximum); Norwegian sales
# units are limited to 24 hours by the ePayment terms.
MAX_EXPIRY_HOURS = 60 * 24
DEFAULT_MAX_EXPIRY_HOURS = 24

# paymentDescription is 3 to 100 characters.
DESCRIPTION_MAX_LENGTH = 100

# Routes served by controllers/main.py.
WEBHOOK_ROUTE = "/payment/vipps/webhook"
RETURN_ROUTE = "/payment/vipps/return"
ORDER_DETAILS_ROUTE = "/payment/vipps/invoice"

# Webhook deliveries signed more than this many seconds before or after our clock are
# refused as stale (replays).
WEBHOOK_MAX_AGE = 300
# A webhook body is a small JSON object: anything larger is refused unread.
WEBHOOK_MAX_BODY = 64 * 1024

# The ePayment events the webhook is registered for.
WEBHOOK_EVENTS = (
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.cancelled.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.terminated.v1",
)

# The poll re-reads an open request at most this often (webhooks normally come first).
POLL_MIN_AGE_MINUTES = 10

# A "Pay with Vipps" click reuses the web payment of an earlier click of the same
# invoice for this long (Vipps gives a web payment 10 minutes in all).
LINK_PAYMENT_REUSE_MINUTES = 8

# The customer's return page reads the payment from Vipps at most this often.
RETURN_MIN_INTERVAL_SECONDS = 5

# A create is recorded in the outbox (committed apart) before Vipps is called; the
# record is checked this long after, when the transaction should long be committed:
# a payment whose Odoo side was rolled back is then adopted or cancelled.
CREATE_CHECK_DELAY_MINUTES = 15
# A webhook for a reference Odoo does not know (yet) is looked at this much later.
UNKNOWN_REFERENCE_DELAY_SECONDS = 60
# A webhook whose payment another worker is processing is looked at this much later.
BUSY_RETRY_SECONDS = 5

# Outbox retries: the delay doubles from the first to the last, then stays there.
OUTBOX_FIRST_RETRY_SECONDS = 30
OUTBOX_MAX_RETRY_SECONDS = 6 * 3600
# After this many failed attempts the invoice's chatter says so (once); requests
# stop being retried (failed), withdrawals and checks go on at the longest delay.
OUTBOX_NOTE_AFTER_ATTEMPTS = 3
OUTBOX_MAX_ATTEMPTS = 8
# Vipps keeps what a customer shares (profile data) this long after consent.
USERINFO_RETENTION_HOURS = 168

# Rows one run of the outbox job takes at most (each in its own transaction).
OUTBOX_BATCH_SIZE = 50

# Metadata key that marks a payment as created by this database (its value is a
# digest of the database UUID), with the Odoo transaction and invoice ids.
METADATA_DATABASE = "odooDatabase"
METADATA_TRANSACTION = "odooTransaction"
METADATA_INVOICE = "odooInvoice"
METADATA_FLOW = "odooFlow"

# The request wizard sends up to this many invoices at once; more are queued in the
# outbox, whose job sends them one committed transaction each.
BULK_QUEUE_THRESHOLD = 20
PAY_ROUTE = "/payment/vipps/pay"
CONSENT_WITHDRAW_ROUTE = "/payment/vipps/consent/withdraw"
CONSENT_CONFIRM_ROUTE = "/payment/vipps/consent/confirm"

# The languages a customer reads this addon's pages, e-mails and app texts in (base
# codes of Odoo's nb_NO, da_DK, fi_FI, sv_SE): English, the source, and those shipped
# in i18n/. A customer in another language reads the company's, then English.
CUSTOMER_LANGUAGES = ("en", "nb", "da", "fi", "sv")
# Where customers write the currency after the amount ("2 300,00 kr", "2 300,00 €").
SYMBOL_AFTER_LANGUAGES = ("nb", "da", "fi", "sv")

# Settlements (Report API). The last ledger dates read are read again on each run,
# so that a correction Vipps makes to them is seen; one run reads at most so many
# dates (a first run, or a long outage, catches up over several runs).
SETTLEMENT_REREAD_DAYS = 3
SETTLEMENT_MAX_DATES = 62
