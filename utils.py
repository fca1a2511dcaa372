"""Pure helpers of the Vipps MobilePay integration: masking, errors, signatures."""

import base64
import hashlib
import hmac
import re

import phonenumbers

# Keys whose values are personal data or secrets: never logged in clear.
_PHONE_KEYS = {"phoneNumber", "phone_number", "mobileNumber", "msisdn"}
_SECRET_KEYS = {
    "access_token",
    "client_secret",
    "customerToken",
    "email",
    "secret",
    "token",
}


def mask_phone(number):
    """Return a phone number with all but its last two digits hidden: 47******67."""
    digits = re.sub(r"\D", "", str(number or ""))
    if len(digits) <= 4:
        return "*" * len(digits)
    return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]


def mask(data):
    """Return a copy of a JSON-like structure that is safe to log.

    Phone numbers keep only their first and last two digits; secrets, tokens and
    e-mail addresses are replaced entirely.
    """
    if isinstance(data, dict):
        masked = {}
        for key, value in data.items():
            if key in _PHONE_KEYS and value:
                masked[key] = mask_phone(value)
            elif key in _SECRET_KEYS and value:
                masked[key] = "***"
            else:
                masked[key] = mask(value)
        return masked
    if isinstance(data, list):
        return [mask(item) for item in data]
    return data


def parse_problem(response):
    """Extract what Vipps says about a failed call, whatever the error format.

    ePayment answers RFC 7807 problem+json with the code in ``extraDetails``; Order
    Management names fields in ``invalidParams``; the API gateway has its own shapes.

    :param requests.Response response: the failed response
    :return: title, detail, code (Vipps error code or None), trace_id, fields
    :rtype: dict
    """
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = None
    fields = []
    for item in body.get("extraDetails") or []:
        if not isinstance(item, dict):
            continue
        if item.get("name") == "ErrorCode":
            code = str(item.get("reason"))
        elif item.get("name"):
            fields.append(f"{item['name']}: {item.get('reason', '')}".strip())
    for item in body.get("invalidParams") or []:
        if isinstance(item, dict) and item.get("name"):
            fields.append(f"{item['name']}: {item.get('reason', '')}".strip())
    title = body.get("title") or body.get("error") or response.reason or ""
    detail = body.get("detail") or body.get("message") or body.get("error_description")
    return {
        "status": response.status_code,
        "title": str(title),
        "detail": str(detail or ""),
        "code": code,
        "trace_id": body.get("traceId"),
        "fields": fields,
    }


def idempotency_key(database_uuid, *parts):
    """Return a 40-character Idempotency-Key unique to a database and an operation."""
    identity = "|".join([database_uuid or "", *(str(part) for part in parts)])
    return hashlib.sha1(identity.encode()).hexdigest()


def content_sha256(body):
    """Return base64(SHA-256(body)), the x-ms-content-sha256 of a webhook delivery."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def compute_webhook_signature(secret, path_and_query, date, host, content_hash):
    """Return the base64 HMAC-SHA256 signature Vipps puts on a webhook delivery.

    The key is the registration secret's UTF-8 bytes (not base64-decoded); the signed
    string is the method, the registered URL's path and query, then the date, host and
    content hash joined by semicolons, lines separated by LF.
    """
    signed = f"POST\n{path_and_query}\n{date};{host};{content_hash}"
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# === Payment references === #

_REFERENCE_FORBIDDEN = re.compile(r"[^A-Za-z0-9-]+")


def vipps_reference_prefix(prefix, max_length=44):
    """Turn an Odoo reference prefix into one Vipps accepts: [A-Za-z0-9-], 8 to 50.

    Invoice names contain slashes (INV/2026/00012 -> INV-2026-00012). Room is left for
    the "-<n>" suffix Odoo adds to a repeated prefix.
    """
    cleaned = _REFERENCE_FORBIDDEN.sub("-", prefix or "").strip("-")
    cleaned = re.sub("-{2,}", "-", cleaned)[:max_length].strip("-")
    if len(cleaned) < 8:
        cleaned = f"odoo-{cleaned}" if cleaned else "odoo-payment"
    return cleaned[:max_length].ljust(8, "0")


# === Phone numbers === #


def normalize_msisdn(number, country_code=None):
    """Return a mobile number in Vipps's MSISDN form (country code + number, digits).

    :param str number: the number as typed, with or without +, 00, spaces; or an
        MSISDN as Vipps gives it (country code first, digits only)
    :param str country_code: ISO country of the customer, for national numbers
    :return: e.g. "4791234567", or None when it is not a valid mobile number
    """
    if not number:
        return None
    text = str(number).strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates = [text]
    if text.isdigit():
        candidates.append("+" + text)  # an MSISDN: country code first
    for candidate in candidates:
        msisdn = _mobile_e164(candidate, country_code)
        if msisdn:
            return msisdn
    return None


def _mobile_e164(text, country_code):
    try:
        parsed = phonenumbers.parse(text, (country_code or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    if phonenumbers.number_type(parsed) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    msisdn = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    return msisdn if 10 <= len(msisdn) <= 15 else None


# === Formatting === #


def format_rfc3339(moment):
    """Format a naive UTC datetime as Vipps wants it: 2026-12-31T22:59:59Z."""
    return moment.replace(microsecond=0).isoformat() + "Z"


def format_quantity(quantity):
    """Format a quantity as Vipps's string: up to 8 decimals, no trailing zeros."""
    text = f"{abs(quantity):.8f}".rstrip("0").rstrip(".")
    return text or "0"
