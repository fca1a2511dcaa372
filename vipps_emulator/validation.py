"""Field rules for request bodies and headers, as the Vipps APIs apply them.

Structural problems (a missing field, a wrong type, a pattern, a length) give
a 400 naming the field, without an error code. Rules that Vipps reports with a
numeric code (4040 decimals, 4070 phone format, 4090 URL, 5040 currency, ...)
raise that code. Where the copied spec and the current docs disagree, the
stricter rule is used (for example a ``reference`` of at most 50 characters).
"""

import base64
import binascii
import datetime as dt
import re
import urllib.parse

from . import config
from .clock import parse_rfc3339
from .errors import domain_error, invalid, validation_error

REFERENCE = re.compile(r"^[a-zA-Z0-9-]{8,50}$")
PHONE = re.compile(r"^\d{10,15}$")
# Greenland (+299, six digits) is accepted since Q1 2026: an MSISDN of 9 digits.
GREENLAND_PHONE = re.compile(r"^299\d{6}$")
ORDER_ID = re.compile(r"^[0-9A-Za-z\-_\.]+$")
IMAGE_ID = re.compile(r"^[0-9A-Za-z\-_\.]{1,128}$")
QUANTITY = re.compile(r"^\d+(\.\d{1,8})?$")
CUSTOM_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
EVENT_NAME = re.compile(r"^[a-z0-9\-]+(\.[a-z0-9\-]+)+\.v\d+$")

USER_FLOWS = ("PUSH_MESSAGE", "NATIVE_REDIRECT", "WEB_REDIRECT", "QR")
PAYMENT_METHODS = ("WALLET", "CARD")
CUSTOMER_INTERACTIONS = ("CUSTOMER_PRESENT", "CUSTOMER_NOT_PRESENT")
SCOPES = ("name", "address", "email", "phoneNumber", "birthDate", "nin")
QR_FORMATS = ("TEXT/TARGETURL", "IMAGE/SVG+XML", "IMAGE/PNG")
QUANTITY_UNITS = ("PCS", "KG", "KM", "MINUTE", "LITRE", "KWH")
BARCODE_FORMATS = ("EAN-13", "CODE 39", "CODE 128")
CATEGORIES = (
    "GENERAL",
    "RECEIPT",
    "ORDER_CONFIRMATION",
    "DELIVERY",
    "TICKET",
    "BOOKING",
)
UNSAFE_SCHEMES = (
    "http",
    "ftp",
    "ws",
    "wss",
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
)
SYSTEM_HEADERS = (
    "Vipps-System-Name",
    "Vipps-System-Version",
    "Vipps-System-Plugin-Name",
    "Vipps-System-Plugin-Version",
)
MAX_IDEMPOTENCY_KEY = 50
MAX_SYSTEM_HEADER = 30
MAX_METADATA_PAIRS = 5
MAX_IMAGE_BYTES = 2 * 1024 * 1024

REQUIRED = "The field is required."


class JsonObject(dict):
    """A decoded JSON object that remembers keys that appeared twice."""

    duplicate_keys = ()


def object_pairs(pairs):
    """``json.loads`` hook: build a JsonObject and record duplicate keys."""
    obj = JsonObject()
    duplicates = []
    for key, value in pairs:
        if key in obj:
            duplicates.append(key)
        obj[key] = value
    if duplicates:
        obj.duplicate_keys = tuple(duplicates)
    return obj


def is_int(value):
    """True for JSON integers (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def url_is_acceptable(value, http_hosts):
    """True when ``value`` is an https URL, a custom-scheme URL, or an http URL
    on one of ``http_hosts`` (the emulator's loopback relaxation)."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "https":
        return bool(hostname)
    if scheme == "http":
        return bool(hostname) and hostname.lower() in http_hosts
    if not scheme or not CUSTOM_SCHEME.match(scheme) or scheme in UNSAFE_SCHEMES:
        return False
    return len(value) > len(scheme) + 1


def check_url(value, field, http_hosts):
    """Raise 4090 unless ``value`` is an acceptable return or receipt URL."""
    if not url_is_acceptable(value, http_hosts):
        raise domain_error(
            4090,
            f"{field} must be an https:// URL or use a custom URL scheme.",
        )


def check_headers(headers, idempotency_required):
    """Check the Vipps-System-* lengths and the Idempotency-Key header."""
    errors = []
    for name in SYSTEM_HEADERS:
        value = headers.get(name)
        if value is not None and len(value) > MAX_SYSTEM_HEADER:
            errors.append((name, f"At most {MAX_SYSTEM_HEADER} characters."))
    key = headers.get("Idempotency-Key")
    if idempotency_required and not key:
        errors.append(("Idempotency-Key", "The header is required."))
    elif key and len(key) > MAX_IDEMPOTENCY_KEY:
        errors.append(("Idempotency-Key", f"At most {MAX_IDEMPOTENCY_KEY} characters."))
    if errors:
        raise validation_error(errors)


def check_reference(reference, field="reference"):
    """Raise a 400 unless ``reference`` matches the spec pattern."""
    if not isinstance(reference, str) or not REFERENCE.match(reference):
        raise invalid(field, f"Must match {REFERENCE.pattern}.")


def check_amount(amount, field, currencies, merchant_currency=None):
    """Check an Amount object and return ``(value, currency)``.

    ``currencies`` is the accepted enum; ``merchant_currency``, when given, must
    match (5040).
    """
    if not isinstance(amount, dict):
        raise invalid(field, "Must be an object with currency and value.")
    currency, value = amount.get("currency"), amount.get("value")
    errors = []
    if currency is None:
        errors.append((f"{field}.currency", REQUIRED))
    elif currency not in currencies:
        errors.append((f"{field}.currency", f"Must be one of {', '.join(currencies)}."))
    if value is None:
        errors.append((f"{field}.value", REQUIRED))
    elif isinstance(value, float):
        raise domain_error(
            4040, f"{field}.value must be an integer in minor units (øre/cents)."
        )
    elif not is_int(value):
        errors.append((f"{field}.value", "Must be an integer."))
    elif not 0 <= value <= config.MAXIMUM_AMOUNT:
        errors.append((f"{field}.value", f"Must be 0 to {config.MAXIMUM_AMOUNT}."))
    if errors:
        raise validation_error(errors)
    if merchant_currency and currency != merchant_currency:
        raise domain_error(
            5040,
            f"The sales unit takes payments in {merchant_currency}, not {currency}.",
        )
    return value, currency


def check_customer(customer):
    """Check the customer object; return the phone number or None."""
    if not isinstance(customer, dict):
        raise invalid("customer", "Must be an object.")
    given = [
        k for k in ("phoneNumber", "personalQr", "customerToken") if customer.get(k)
    ]
    if len(given) != 1:
        raise invalid(
            "customer",
            "Give exactly one of phoneNumber, personalQr or customerToken.",
        )
    if "phoneNumber" in given:
        phone = customer["phoneNumber"]
        if not isinstance(phone, str) or not (
            PHONE.match(phone) or GREENLAND_PHONE.match(phone)
        ):
            raise domain_error(
                4070,
                "customer.phoneNumber must be an MSISDN: country code and number, "
                "digits only, 10 to 15 digits (9 for Greenland, 299).",
            )
        return phone
    if "personalQr" in given:
        qr = customer["personalQr"]
        if not isinstance(qr, str) or not 5 <= len(qr) <= 255:
            raise domain_error(4060, "customer.personalQr must be 5 to 255 characters.")
        digits = re.findall(r"\d{10,15}", qr)
        return digits[-1] if digits else None
    if not isinstance(customer["customerToken"], str):
        raise domain_error(4050, "customer.customerToken must be a string.")
    return None


def check_metadata(metadata):
    """Check the metadata map (at most 5 string pairs, bounded lengths)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid("metadata", "Must be an object of string values.")
    if getattr(metadata, "duplicate_keys", ()):
        raise domain_error(4110, "metadata has duplicate keys.")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise domain_error(4100, "metadata holds at most 5 key-value pairs.")
    for key, value in metadata.items():
        if len(key) > 100:
            raise domain_error(4120, "metadata keys are at most 100 characters.")
        if not isinstance(value, str):
            raise invalid(f"metadata.{key}", "Must be a string.")
        if len(value) > 500:
            raise domain_error(4130, "metadata values are at most 500 characters.")
    return dict(metadata)


def check_scope(profile, merchant):
    """Check ``profile.scope``; return the list of requested scopes."""
    if profile is None:
        return []
    if not isinstance(profile, dict):
        raise invalid("profile", "Must be an object.")
    scope = profile.get("scope")
    if scope is None:
        return []
    if not isinstance(scope, str) or not scope.split():
        raise domain_error(4080, "profile.scope must be a space-separated list.")
    scopes = scope.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise domain_error(4080, f"Unknown scope(s): {', '.join(unknown)}.")
    if "nin" in scopes and not merchant.nin_allowed:
        raise domain_error(5030, "The sales unit may not ask for the scope nin.")
    return list(dict.fromkeys(scopes))


def _check_int(errors, obj, key, path, required=False, minimum=None, maximum=None):
    """Append an error unless ``obj[key]`` is an integer in range (or absent)."""
    value = obj.get(key)
    if value is None:
        if required:
            errors.append((path, REQUIRED))
        return
    if not is_int(value):
        errors.append((path, "Must be an integer."))
    elif minimum is not None and value < minimum:
        errors.append((path, f"Must be at least {minimum}."))
    elif maximum is not None and value > maximum:
        errors.append((path, f"Must be at most {maximum}."))


def _check_str(errors, obj, key, path, required=False, max_length=None):
    """Append an error unless ``obj[key]`` is a (non-empty when required) string."""
    value = obj.get(key)
    if value is None:
        if required:
            errors.append((path, REQUIRED))
        return
    if not isinstance(value, str) or (required and not value):
        errors.append((path, "Must be a non-empty string."))
    elif max_length and len(value) > max_length:
        errors.append((path, f"At most {max_length} characters."))


def _check_bool(errors, obj, key, path):
    """Append an error unless ``obj[key]`` is a boolean or absent."""
    if obj.get(key) is not None and not isinstance(obj[key], bool):
        errors.append((path, "Must be true or false."))


def _order_line_errors(line, path):
    """Return the errors of one order line."""
    if not isinstance(line, dict):
        return [(path, "Must be an object.")]
    errors = []
    _check_str(errors, line, "name", f"{path}.name", required=True)
    _check_str(errors, line, "id", f"{path}.id", required=True)
    for key in ("totalAmount", "totalAmountExcludingTax", "totalTaxAmount"):
        _check_int(errors, line, key, f"{path}.{key}", required=True, minimum=0)
    _check_int(errors, line, "taxRate", f"{path}.taxRate", minimum=0, maximum=10000)
    _check_int(
        errors, line, "taxPercentage", f"{path}.taxPercentage", minimum=0, maximum=100
    )
    has_rate = line.get("taxRate") is not None
    has_percentage = line.get("taxPercentage") is not None
    if has_rate == has_percentage:
        errors.append((f"{path}.taxRate", "Set exactly one of taxRate, taxPercentage."))
    _check_int(errors, line, "discount", f"{path}.discount", minimum=0)
    _check_str(errors, line, "productUrl", f"{path}.productUrl")
    _check_bool(errors, line, "isReturn", f"{path}.isReturn")
    _check_bool(errors, line, "isShipping", f"{path}.isShipping")
    unit = line.get("unitInfo")
    if unit is not None:
        if not isinstance(unit, dict):
            errors.append((f"{path}.unitInfo", "Must be an object."))
        else:
            unit_path = f"{path}.unitInfo"
            if "unitPrice" not in unit:
                errors.append((f"{unit_path}.unitPrice", REQUIRED))
            _check_int(errors, unit, "unitPrice", f"{unit_path}.unitPrice", minimum=0)
            quantity = unit.get("quantity")
            if quantity is None:
                errors.append((f"{unit_path}.quantity", REQUIRED))
            elif (
                not isinstance(quantity, str)
                or len(quantity) > 10
                or not QUANTITY.match(quantity)
            ):
                errors.append(
                    (
                        f"{unit_path}.quantity",
                        "Must be a string of at most 10 characters matching "
                        f"{QUANTITY.pattern}.",
                    )
                )
            unit_name = unit.get("quantityUnit")
            if unit_name is not None and unit_name not in QUANTITY_UNITS:
                errors.append(
                    (
                        f"{unit_path}.quantityUnit",
                        f"Must be one of {', '.join(QUANTITY_UNITS)}.",
                    )
                )
    amounts = [line.get(k) for k in ("totalAmountExcludingTax", "totalTaxAmount")]
    total = line.get("totalAmount")
    if is_int(total) and all(is_int(v) for v in amounts) and total != sum(amounts):
        errors.append(
            (
                f"{path}.totalAmount",
                "Must equal totalAmountExcludingTax + totalTaxAmount.",
            )
        )
    return errors


def _bottom_line_errors(bottom, path, currencies):
    """Return the errors of the bottom line."""
    if not isinstance(bottom, dict):
        return [(path, "Must be an object." if bottom is not None else REQUIRED)]
    errors = []
    currency = bottom.get("currency")
    if currency is None:
        errors.append((f"{path}.currency", REQUIRED))
    elif currency not in currencies:
        errors.append((f"{path}.currency", f"Must be one of {', '.join(currencies)}."))
    _check_int(errors, bottom, "tipAmount", f"{path}.tipAmount", minimum=0)
    _check_str(errors, bottom, "posId", f"{path}.posId")
    _check_str(errors, bottom, "receiptNumber", f"{path}.receiptNumber")
    sources = bottom.get("paymentSources")
    if sources is not None:
        if not isinstance(sources, dict):
            errors.append((f"{path}.paymentSources", "Must be an object."))
        else:
            for key in ("giftCard", "card", "voucher", "cash"):
                _check_int(errors, sources, key, f"{path}.paymentSources.{key}")
    barcode = bottom.get("barcode")
    if barcode is not None:
        if not isinstance(barcode, dict):
            errors.append((f"{path}.barcode", "Must be an object."))
        else:
            if barcode.get("format") not in BARCODE_FORMATS:
                errors.append(
                    (
                        f"{path}.barcode.format",
                        f"Must be one of {', '.join(BARCODE_FORMATS)}.",
                    )
                )
            if "data" not in barcode:
                errors.append((f"{path}.barcode.data", REQUIRED))
    return errors


def receipt_total(receipt):
    """Return what the receipt adds up to: lines (returns negative) plus tip."""
    total = 0
    for line in receipt["orderLines"]:
        sign = -1 if line.get("isReturn") else 1
        total += sign * line["totalAmount"]
    return total + (receipt["bottomLine"].get("tipAmount") or 0)


def check_receipt(receipt, path, currencies):
    """Check a Receipt (order lines and bottom line); raise one 400 listing all
    failing fields."""
    if not isinstance(receipt, dict):
        raise invalid(path, "Must be an object with orderLines and bottomLine.")
    errors = []
    lines = receipt.get("orderLines")
    if not isinstance(lines, list) or not lines:
        errors.append((f"{path}.orderLines", "At least one order line is required."))
    else:
        for index, line in enumerate(lines):
            errors.extend(_order_line_errors(line, f"{path}.orderLines[{index}]"))
    errors.extend(
        _bottom_line_errors(receipt.get("bottomLine"), f"{path}.bottomLine", currencies)
    )
    if errors:
        raise validation_error(errors)
    return receipt


def _check_expiry(body, flow, method, merchant, now, receipt, receipt_url):
    """Check ``expiresAt`` (long-living payments); return it as a datetime."""
    raw = body.get("expiresAt")
    try:
        expires_at = parse_rfc3339(raw) if isinstance(raw, str) else None
    except ValueError:
        expires_at = None
    if expires_at is None:
        raise invalid("expiresAt", "Must be an RFC 3339 timestamp.")
    if flow not in ("PUSH_MESSAGE", "QR"):
        raise invalid("expiresAt", "Only allowed with userFlow PUSH_MESSAGE or QR.")
    if method != "WALLET":
        raise invalid("expiresAt", "Only allowed with paymentMethod WALLET.")
    if merchant.long_living_max_days <= 0:
        raise domain_error(
            5050, "The sales unit is not approved for long-living payments."
        )
    if expires_at - now <= dt.timedelta(seconds=config.MINIMUM_LONG_LIVING):
        raise domain_error(6120, "expiresAt must be more than 10 minutes ahead.")
    if expires_at - now > dt.timedelta(days=merchant.long_living_max_days):
        raise domain_error(
            6110,
            f"expiresAt may be at most {merchant.long_living_max_days} days ahead.",
        )
    if receipt is None and receipt_url is None:
        raise domain_error(6130, "A long-living payment needs receipt or receiptUrl.")
    return expires_at


def _check_simple_fields(body):
    """Check the enum, length and shape rules of the optional scalar fields."""
    errors = []
    if body.get("userFlow") not in USER_FLOWS:
        errors.append(("userFlow", f"Must be one of {', '.join(USER_FLOWS)}."))
    method = body.get("paymentMethod")
    if not isinstance(method, dict) or method.get("type") not in PAYMENT_METHODS:
        errors.append(
            ("paymentMethod.type", f"Must be one of {', '.join(PAYMENT_METHODS)}.")
        )
    interaction = body.get("customerInteraction")
    if interaction is not None and interaction not in CUSTOMER_INTERACTIONS:
        errors.append(
            (
                "customerInteraction",
                f"Must be one of {', '.join(CUSTOMER_INTERACTIONS)}.",
            )
        )
    description = body.get("paymentDescription")
    if description is not None and (
        not isinstance(description, str) or not 3 <= len(description) <= 100
    ):
        errors.append(("paymentDescription", "Must be 3 to 100 characters."))
    _check_int(errors, body, "minimumUserAge", "minimumUserAge", minimum=0, maximum=99)
    qr_format = body.get("qrFormat")
    if qr_format is not None:
        if not isinstance(qr_format, dict) or qr_format.get("format") not in QR_FORMATS:
            errors.append(
                ("qrFormat.format", f"Must be one of {', '.join(QR_FORMATS)}.")
            )
        else:
            _check_int(
                errors, qr_format, "size", "qrFormat.size", minimum=100, maximum=2000
            )
    for key in ("returnUrl", "receiptUrl"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append((key, "Must be a string."))
    if errors:
        raise validation_error(errors)


def check_create_payment(body, merchant, now, options):
    """Check a CreatePaymentRequest for ``merchant``; return the clean fields.

    ``options`` is the emulator's Settings (HTTP-allowed hosts, receipt rule).
    Raise ApiError for the first failing rule group.
    """
    if not isinstance(body, dict):
        raise invalid("body", "A JSON object is required.")
    missing = [
        key
        for key in ("amount", "paymentMethod", "reference", "userFlow")
        if body.get(key) is None
    ]
    if missing:
        raise validation_error([(key, REQUIRED) for key in missing])
    check_reference(body["reference"])
    _check_simple_fields(body)
    currencies = accepted_currencies(merchant)
    value, currency = check_amount(body["amount"], "amount", currencies)
    flow = body["userFlow"]
    method = body["paymentMethod"]["type"]
    customer = body.get("customer")
    phone = check_customer(customer) if customer is not None else None
    return_url, receipt_url = body.get("returnUrl"), body.get("receiptUrl")
    receipt = body.get("receipt")
    if receipt is not None:
        check_receipt(receipt, "receipt", currencies)
        if receipt["bottomLine"]["currency"] != currency:
            raise invalid("receipt.bottomLine.currency", "Must equal amount.currency.")
        if options.receipt_sum_must_match and receipt_total(receipt) != value:
            raise invalid(
                "receipt.orderLines",
                f"The order lines add up to {receipt_total(receipt)}, "
                f"not to amount.value {value}.",
            )
    if receipt is not None and receipt_url is not None:
        raise validation_error(
            [
                ("receipt", "Give receipt or receiptUrl, not both."),
                ("receiptUrl", "Give receipt or receiptUrl, not both."),
            ]
        )
    metadata = check_metadata(body.get("metadata"))
    scopes = check_scope(body.get("profile"), merchant)
    if flow == "PUSH_MESSAGE" and customer is None:
        raise domain_error(4140, "customer is required with userFlow PUSH_MESSAGE.")
    if flow in ("WEB_REDIRECT", "NATIVE_REDIRECT") and return_url is None:
        raise domain_error(4140, f"returnUrl is required with userFlow {flow}.")
    if method == "CARD" and flow != "WEB_REDIRECT":
        raise invalid("paymentMethod.type", "CARD needs userFlow WEB_REDIRECT.")
    if return_url is not None:
        check_url(return_url, "returnUrl", options.http_hosts)
    if receipt_url is not None:
        check_url(receipt_url, "receiptUrl", options.http_hosts)
    expires_at = None
    if body.get("expiresAt") is not None:
        expires_at = _check_expiry(
            body, flow, method, merchant, now, receipt, receipt_url
        )
    if currency != merchant.currency:
        raise domain_error(
            5040,
            f"The sales unit takes payments in {merchant.currency}, not {currency}.",
        )
    if value < config.MINIMUM_AMOUNT[currency]:
        raise domain_error(
            6010,
            f"The minimum amount is {config.MINIMUM_AMOUNT[currency]} "
            f"(minor units of {currency}).",
        )
    if flow == "PUSH_MESSAGE" and not merchant.push_allowed:
        raise domain_error(5080, "The sales unit may not use userFlow PUSH_MESSAGE.")
    return {
        "reference": body["reference"],
        "value": value,
        "currency": currency,
        "flow": flow,
        "method": method,
        "phone": phone,
        "return_url": return_url,
        "receipt_url": receipt_url,
        "receipt": receipt,
        "description": body.get("paymentDescription"),
        "metadata": metadata,
        "scopes": scopes,
        "expires_at": expires_at,
        "interaction": body.get("customerInteraction") or "CUSTOMER_NOT_PRESENT",
    }


def accepted_currencies(merchant):
    """Return the currency enum: the spec's three plus the merchant's own."""
    currencies = list(config.CURRENCIES)
    if merchant.currency not in currencies:
        currencies.append(merchant.currency)
    return tuple(currencies)


def check_modification(body, payment_currency, merchant):
    """Check a capture or refund body; return the amount in minor units."""
    if not isinstance(body, dict) or body.get("modificationAmount") is None:
        raise invalid("modificationAmount", REQUIRED)
    value, currency = check_amount(
        body["modificationAmount"],
        "modificationAmount",
        accepted_currencies(merchant),
    )
    if currency != payment_currency:
        raise domain_error(
            5040, f"The payment is in {payment_currency}, not {currency}."
        )
    if value < 1:
        raise invalid("modificationAmount.value", "Must be greater than 0.")
    return value


def check_cancel(body):
    """Check a cancel body (optional); return ``cancelTransactionOnly``."""
    if body is None:
        return False
    if not isinstance(body, dict):
        raise invalid("body", "Must be a JSON object.")
    only = body.get("cancelTransactionOnly")
    if only is None:
        return False
    if not isinstance(only, bool):
        raise invalid("cancelTransactionOnly", "Must be true or false.")
    return only


def check_force_approve(body):
    """Check a force-approve body; return ``(phone, token)``."""
    if not isinstance(body, dict):
        raise invalid("body", "Give customer.phoneNumber or token.")
    token = body.get("token")
    customer = body.get("customer")
    if customer is None and not token:
        raise invalid("customer", "Give customer.phoneNumber or token.")
    phone = check_customer(customer) if customer is not None else None
    if token is not None and not isinstance(token, str):
        raise invalid("token", "Must be a string.")
    return phone, token


def check_webhook_registration(body, http_hosts):
    """Check a webhook registration body; return ``(url, events)``."""
    if not isinstance(body, dict):
        raise invalid("body", "A JSON object is required.")
    errors = []
    url = body.get("url")
    if url is None:
        errors.append(("url", REQUIRED))
    elif not isinstance(url, str) or not _webhook_url_ok(url, http_hosts):
        errors.append(("url", "Must be an absolute https:// URL."))
    events = body.get("events")
    if not isinstance(events, list) or not events:
        errors.append(("events", "At least one event is required."))
    else:
        for index, name in enumerate(events):
            if not isinstance(name, str) or not EVENT_NAME.match(name):
                errors.append((f"events[{index}]", "Not a valid event name."))
    if errors:
        raise validation_error(errors)
    return url, list(dict.fromkeys(events))


def _webhook_url_ok(url, http_hosts):
    """True for an https URL, or http on an allowed (loopback) host."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if not parts.hostname or any(c.isspace() for c in url):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname.lower() in http_hosts


def check_order_id(order_id):
    """Raise a 400 unless ``order_id`` matches the Order Management pattern."""
    if not ORDER_ID.match(order_id or ""):
        raise invalid("orderId", f"Must match {ORDER_ID.pattern}.")


def check_category(body, http_hosts):
    """Check an Order Management category body; return the clean object."""
    if not isinstance(body, dict):
        raise invalid("body", "A JSON object is required.")
    errors = []
    if body.get("category") not in CATEGORIES:
        errors.append(("category", f"Must be one of {', '.join(CATEGORIES)}."))
    url = body.get("orderDetailsUrl")
    if url is None:
        errors.append(("orderDetailsUrl", REQUIRED))
    elif not _webhook_url_ok(url, http_hosts):
        errors.append(("orderDetailsUrl", "Must be an absolute https:// URL."))
    image_id = body.get("imageId")
    if image_id is not None and (
        not isinstance(image_id, str) or not IMAGE_ID.match(image_id)
    ):
        errors.append(("imageId", f"Must match {IMAGE_ID.pattern}."))
    if errors:
        raise validation_error(errors)
    return {
        "category": body["category"],
        "orderDetailsUrl": url,
        "imageId": image_id,
    }


def check_image(body):
    """Check an image upload; return ``(image_id, raw_bytes)``."""
    if not isinstance(body, dict):
        raise invalid("body", "A JSON object is required.")
    errors = []
    image_id = body.get("imageId")
    if not isinstance(image_id, str) or not IMAGE_ID.match(image_id):
        errors.append(("imageId", f"Must match {IMAGE_ID.pattern}."))
    if body.get("type") != "base64":
        errors.append(("type", "Must be base64."))
    data = b""
    try:
        data = base64.b64decode(body.get("src") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        errors.append(("src", "Must be base64-encoded image data."))
    if data and not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8")):
        errors.append(("src", "Must be a PNG or JPEG image."))
    if not data:
        errors.append(("src", REQUIRED))
    if len(data) > MAX_IMAGE_BYTES:
        errors.append(("src", "At most 2 MB."))
    if errors:
        raise validation_error(errors)
    return image_id, data
