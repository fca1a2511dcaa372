"""Pure helpers of the Vipps MobilePay integration: masking, errors, signatures."""

import base64
import hashlib
import hmac
import json
import re
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

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


_URL_TOKEN = re.compile(r"((?:access_)?token=)[^&#\s]+", re.IGNORECASE)


def mask_url(text):
    """Return a text with the tokens in its URLs hidden (access_token=***)."""
    return _URL_TOKEN.sub(r"\1***", text)


def mask(data):
    """Return a copy of a JSON-like structure that is safe to log.

    Phone numbers keep only their first and last two digits; secrets, tokens,
    e-mail addresses and the tokens in URLs (an invoice's access token in
    orderDetailsUrl, the return token) are replaced entirely.
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
    if isinstance(data, str):
        return mask_url(data)
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


def signed_host(url):
    """The host of a URL as Vipps signs it: what a browser's URL.host gives, lower
    case, with the port only when it is not the scheme's default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    if parts.port and parts.port != default_port:
        host = f"{host}:{parts.port}"
    return host


def signed_path(url):
    """The path and query of a URL as Vipps signs it."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


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


def vipps_reference_prefix(prefix, database_prefix="", max_length=44):
    """Turn an Odoo reference prefix into one Vipps accepts: [A-Za-z0-9-], 8 to 50.

    Invoice names contain slashes (INV/2026/00012 -> INV-2026-00012). The database's
    own prefix comes first, so that databases sharing a sales unit never use the
    same reference. Room is left for the "-<n>" suffix Odoo adds to a repeated
    prefix.
    """
    cleaned = _REFERENCE_FORBIDDEN.sub("-", prefix or "").strip("-")
    cleaned = re.sub("-{2,}", "-", cleaned)
    database_prefix = _REFERENCE_FORBIDDEN.sub("", database_prefix or "")
    if database_prefix and not cleaned.startswith(f"{database_prefix}-"):
        cleaned = f"{database_prefix}-{cleaned}" if cleaned else database_prefix
    cleaned = cleaned[:max_length].strip("-")
    if len(cleaned) < 8:
        cleaned = f"odoo-{cleaned}" if cleaned else "odoo-payment"
    return cleaned[:max_length].ljust(8, "0")


def fingerprint(data):
    """A short digest of a JSON-like value (its canonical JSON)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# === Phone numbers === #


def to_e164(number, country_code=None, international=False):
    """Return a mobile number in E.164 (+4791234567), or None if it is not one.

    :param str number: the number as typed (with or without +, 00, spaces), or as
        Vipps gives it (an MSISDN: country code first, digits only)
    :param str country_code: ISO country of the customer, for national numbers
    :param bool international: the number is an MSISDN from Vipps: it is never read
        in the customer's national plan (a Norwegian MSISDN of a Finnish customer
        stays Norwegian)
    """
    if not number:
        return None
    text = str(number).strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = re.sub(r"\D", "", text)
    if international or text.startswith("+"):
        candidates = ["+" + digits]
    else:
        candidates = [text, "+" + digits] if text.isdigit() else [text]
    for candidate in candidates:
        e164 = _mobile_e164(candidate, None if international else country_code)
        if e164:
            return e164
    return None


def msisdn(e164):
    """Return the MSISDN Vipps wants (country code and number, digits only)."""
    return re.sub(r"\D", "", e164 or "")


def format_phone(e164):
    """Return an E.164 number as people read it: +47 912 34 567."""
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )


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
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    # Greenlandic numbers (+299 and 6 digits) are the shortest Vipps accepts.
    return e164 if 8 <= len(e164) - 1 <= 15 else None


# === Brand === #

# MobilePay becomes Vipps in Denmark and Finland on this day; NOK was Vipps always.
BRAND_CHANGE = date(2027, 1, 12)


def brand(currency_name, today):
    """The name of the app a customer paying in `currency_name` knows on `today`."""
    if currency_name == "NOK" or today >= BRAND_CHANGE:
        return "Vipps"
    return "MobilePay"


# === Formatting === #


def parse_rfc3339(text):
    """Return Vipps's RFC 3339 timestamp as a naive UTC datetime, or None."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def format_rfc3339(moment):
    """Format a naive UTC datetime as Vipps wants it: 2026-12-31T22:59:59Z."""
    return moment.replace(microsecond=0).isoformat() + "Z"


def format_quantity(quantity):
    """Format a quantity as Vipps's string: digits, up to 8 decimals, no trailing
    zeros, at most 10 characters (decimals are rounded off to fit).

    :return: the text, or None when even the whole number does not fit
    """
    for decimals in range(8, -1, -1):
        text = f"{abs(quantity):.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= 10:
            return text if text.strip("0.") else "0"
    return None
