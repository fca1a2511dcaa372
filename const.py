"""Constants of the Vipps MobilePay integration: hosts, currencies, payment methods."""

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

# Vipps error codes the integration acts on.
ERROR_ALREADY_AUTHORIZED = "6060"  # cancelTransactionOnly on an approved payment

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

# The request wizard sends up to this many invoices at once; more are queued for the
# job that sends them in committed batches (no long request, nothing sent twice).
BULK_QUEUE_THRESHOLD = 20
# Invoices per committed batch of that job.
SEND_BATCH_SIZE = 50
PAY_ROUTE = "/payment/vipps/pay"
CONSENT_WITHDRAW_ROUTE = "/payment/vipps/consent/withdraw"
