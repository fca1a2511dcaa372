"""Error responses in the shapes Vipps MobilePay uses.

ePayment, Webhooks and the access token endpoint answer with an RFC 7807
``application/problem+json`` body. Domain errors carry their numeric code in
``extraDetails`` as ``{"name": "ErrorCode", "reason": "<code>"}``; validation
errors name the failing field there instead and carry no code. The Order
Management API lists failing fields in ``invalidParams``.
"""

import secrets

# Numeric error codes: (HTTP status, short title). Titles are our wording.
CODES = {
    3010: (500, "Internal error"),
    4010: (409, "Capture idempotency conflict"),
    4020: (409, "Idempotency error"),
    4040: (400, "Invalid amount"),
    4050: (400, "Invalid customer token"),
    4060: (400, "Invalid personal QR code"),
    4070: (400, "Invalid phone number"),
    4080: (400, "Invalid scope"),
    4090: (400, "Invalid URL"),
    4100: (400, "Metadata capacity exceeded"),
    4110: (400, "Duplicate metadata keys"),
    4120: (400, "Metadata key too long"),
    4130: (400, "Metadata value too long"),
    4140: (400, "Missing required parameter"),
    4150: (409, "Reference already used or refund idempotency conflict"),
    5030: (403, "Scope not allowed for this sales unit"),
    5040: (400, "Currency not valid for this sales unit"),
    5050: (403, "Long-living payments not allowed for this sales unit"),
    5070: (400, "Payment cannot be created"),
    5080: (403, "PUSH_MESSAGE not allowed for this sales unit"),
    5090: (404, "Payment not found"),
    6010: (400, "Amount below the minimum"),
    6020: (400, "Refund before reservation"),
    6030: (400, "Cancel period has expired"),
    6040: (400, "Captured payment cannot be cancelled"),
    6050: (400, "Payment is not reserved and cannot be cancelled"),
    6060: (400, "Authorized payment not cancelled (cancelTransactionOnly)"),
    6070: (400, "Cancelled payment cannot be captured"),
    6080: (400, "Capture before reservation"),
    6090: (400, "Capture amount above the reserved amount"),
    6100: (400, "Capture period has expired"),
    6110: (400, "Expiry time too late"),
    6120: (400, "Expiry time too soon"),
    6130: (400, "Long-living payment needs order details"),
    6140: (400, "Full capture required"),
    6150: (400, "Refund above the refundable amount"),
    6160: (409, "Payment is being processed"),
    6170: (400, "Payment already captured"),
    6190: (400, "Payment cannot be cancelled"),
    6200: (400, "Payment cannot be captured"),
    6210: (400, "Payment cannot be refunded"),
    6220: (400, "Refund period has expired"),
    6230: (400, "Payment already reserved"),
    6250: (409, "Payment is being processed and cannot be cancelled"),
    6260: (400, "Funds unavailable"),
    6280: (400, "Capture failed, try again later"),
    7010: (400, "Customer not found"),
    10010: (400, "Approval failed"),
    10020: (400, "Approval not allowed"),
}

STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    423: "Locked",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

PROBLEM = "problem"  # ePayment, Webhooks, access token
ORDER_MANAGEMENT = "order-management"  # uses invalidParams


def new_trace_id():
    """Return a W3C traceparent-style id, like the ``traceId`` Vipps returns."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class ApiError(Exception):
    """An error answer. Raise it anywhere in a handler; the server renders it."""

    def __init__(
        self,
        status,
        title=None,
        detail=None,
        *,
        code=None,
        fields=None,
        headers=None,
        extra=None,
    ):
        self.status = status
        self.title = title or STATUS_TITLES.get(status, "Error")
        self.detail = detail or self.title
        self.code = code
        self.fields = list(fields or [])  # [(name, reason)] for validation errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # additional top-level members
        super().__init__(f"{status} {self.title}: {self.detail}")

    def body(self, instance, style=PROBLEM):
        """Return the JSON body for this error."""
        details = [{"name": name, "reason": reason} for name, reason in self.fields]
        if self.code is not None:
            details.append({"name": "ErrorCode", "reason": str(self.code)})
        if style == ORDER_MANAGEMENT:
            body = {
                "type": f"https://httpstatuses.io/{self.status}",
                "title": self.title,
                "detail": self.detail,
                "instance": instance,
                "status": self.status,
            }
            if details:
                body["invalidParams"] = details
            return body
        body = {
            "type": f"https://httpstatuses.io/{self.status}",
            "title": self.title,
            "detail": self.detail,
            "instance": instance,
            "status": self.status,
            "traceId": new_trace_id(),
        }
        if details:
            body["extraDetails"] = details
        body.update(self.extra)
        return body


# Codes that ask the client to try again later (with the same Idempotency-Key):
# an answer with one of them is never remembered for the key.
RETRY_CODES = (6160, 6250, 6280)
# HTTP statuses of passing conditions, likewise never remembered.
RETRY_STATUSES = (401, 408, 423, 429)


def domain_error(code, detail=None, status=None):
    """Build the error for a numeric Vipps error code (``status`` overrides the
    HTTP status where Vipps leaves it undocumented)."""
    default_status, title = CODES[code]
    return ApiError(status or default_status, title, detail or title, code=code)


def is_refusal(err):
    """True for a 4xx answer that a retry with the same key must get again."""
    return (
        400 <= err.status < 500
        and err.status not in RETRY_STATUSES
        and err.code not in RETRY_CODES
    )


def validation_error(fields, detail="One or more validation errors occurred."):
    """Build a 400 naming the failing fields: ``[(field, reason), ...]``."""
    return ApiError(400, "Bad Request", detail, fields=fields)


def invalid(field, reason):
    """Build a 400 for one failing field."""
    return validation_error([(field, reason)])


def unauthorized(detail):
    """Build a 401 (missing, invalid or expired credentials or token)."""
    return ApiError(401, "Unauthorized", detail)


def forbidden(detail):
    """Build a 403 (credentials valid but not allowed for this sales unit)."""
    return ApiError(403, "Forbidden", detail)


def not_found(detail="Not found"):
    """Build a 404."""
    return ApiError(404, "Not Found", detail)


def conflict(detail, code=None):
    """Build a 409, optionally with an error code."""
    return ApiError(409, "Conflict", detail, code=code)
