"""Plain HTML pages that stand in for the Vipps MobilePay app.

* ``/app/landing?token=...``: the ``redirectUrl`` of a redirect payment. It
  shows the merchant, amount and description, asks for the customer's phone
  number (and, if the payment asks for profile data, for consent), and has
  Approve and Reject buttons. Afterwards the browser is sent to the payment's
  ``returnUrl``.
* ``/app/inbox?phone=4791234567``: the push requests sent to one phone, each
  with the same buttons.

Stable hooks for browser tests: buttons ``name="approve"`` / ``name="reject"``
(ids ``approve``/``reject`` on the landing page, ``approve-<reference>`` /
``reject-<reference>`` in the inbox), ``#phone``, ``#consent``, ``#status``,
``#error``, and ``data-reference`` / ``data-state`` on each payment block.
"""

import html
import urllib.parse

from . import config, validation
from .api import Reply
from .errors import ApiError

HTML = "text/html; charset=utf-8"
SCOPE_LABELS = {
    "phoneNumber": "phone number",
    "name": "name",
    "email": "e-mail address",
    "address": "address",
    "birthDate": "date of birth",
    "nin": "national identity number",
}
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f1ee;color:#222}
main{max-width:28rem;margin:0 auto;padding:1rem}
header{font-weight:700;color:#ff5b24;font-size:1.3rem;margin:.5rem 0 1rem}
.badge{font-size:.7rem;background:#222;color:#fff;border-radius:.3rem;
padding:.1rem .4rem;vertical-align:middle}
.payment,.request{background:#fff;border-radius:.8rem;padding:1rem;margin-bottom:1rem}
.amount{font-size:1.8rem;font-weight:700;margin:.3rem 0}
.merchant{font-weight:600;margin:0}
.muted{color:#666;font-size:.85rem}
label{display:block;margin:.6rem 0 .2rem}
input[type=tel]{width:100%;font-size:1.1rem;padding:.5rem;box-sizing:border-box}
.actions{display:flex;gap:.6rem;margin-top:1rem}
button{flex:1;font-size:1.05rem;padding:.8rem;border:0;border-radius:.5rem}
.approve{background:#ff5b24;color:#fff}.reject{background:#ddd}
#error{background:#fdd;padding:.6rem;border-radius:.4rem}
#status{background:#e8f4ea;padding:.6rem;border-radius:.4rem}
"""


def _page(title, content, status=200, brand="Vipps MobilePay"):
    e = html.escape
    body = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)}</title><style>{STYLE}</style></head>"
        f"<body data-brand='{e(brand)}'><main><header id='brand'>{e(brand)} "
        f"<span class='badge'>emulator</span></header>{content}</main></body>"
        "</html>\n"
    )
    return Reply(status, body, HTML)


def _switch_date(emulator):
    return emulator.settings.brand_switch_date


def payment_brand(emulator, payment):
    """The brand of the payment's market today (emulator clock)."""
    return config.brand(payment.currency, emulator.clock.now(), _switch_date(emulator))


def phone_brand(emulator, phone):
    """The app the owner of ``phone`` uses today (emulator clock)."""
    return config.phone_brand(phone, emulator.clock.now(), _switch_date(emulator))


def _redirect(location):
    return Reply(303, None, HTML, {"Location": location})


def format_amount(value, currency):
    """Format minor units for people: ``49900, "NOK"`` -> ``499.00 NOK``."""
    return f"{value // 100:,}.{value % 100:02d} {currency}".replace(",", " ")


def _summary(emulator, payment):
    merchant = emulator.store.merchants.get(payment.msn)
    name = merchant.name if merchant else payment.msn
    description = payment.description or ""
    e = html.escape
    return (
        f"<p class='merchant' id='merchant-name'>{e(name)}</p>"
        f"<p class='amount' id='amount'>{e(format_amount(payment.value, payment.currency))}</p>"  # noqa: E501
        f"<p class='description' id='description'>{e(description)}</p>"
        f"<p class='muted'>Reference <code id='reference'>{e(payment.reference)}</code>"
        "</p>"
    )


def _consent(payment, suffix=""):
    if not payment.scopes:
        return ""
    wanted = ", ".join(SCOPE_LABELS.get(s, s) for s in payment.scopes)
    return (
        f"<fieldset id='consent-section{suffix}' class='consent'>"
        f"<p>The merchant asks to see your {html.escape(wanted)}. "
        "Refusing cancels the payment.</p>"
        f"<label><input type='checkbox' id='consent{suffix}' name='consent' "
        "value='yes' checked> Share this information</label></fieldset>"
    )


def _buttons(suffix=""):
    approve_id = f"approve{suffix}"
    reject_id = f"reject{suffix}"
    return (
        "<div class='actions'>"
        f"<button type='submit' name='approve' value='1' id='{approve_id}' "
        "class='approve'>Approve</button>"
        f"<button type='submit' name='reject' value='1' id='{reject_id}' "
        "class='reject'>Reject</button></div>"
    )


def landing(emulator, payment, error=None, status=200):
    """Render the landing page of a redirect payment."""
    e = html.escape
    parts = [
        f"<section id='payment' class='payment' data-reference='{e(payment.reference)}'"
        f" data-state='{e(payment.state)}'>{_summary(emulator, payment)}</section>"
    ]
    if error:
        parts.append(f"<p id='error' role='alert'>{e(error)}</p>")
    if payment.state == "CREATED":
        phone = payment.phone or ""
        parts.append(
            "<form method='post' action='/app/landing' id='payment-form'>"
            f"<input type='hidden' name='token' value='{e(payment.token)}'>"
            "<label for='phone'>Your phone number (country code, digits only)</label>"
            f"<input type='tel' id='phone' name='phone' value='{e(phone)}' "
            "inputmode='numeric' autocomplete='tel' placeholder='4791234567'>"
            f"{_consent(payment)}{_buttons()}</form>"
        )
    else:
        parts.append(
            f"<p id='status' class='status'>This payment is {e(payment.state)}.</p>"
        )
        if payment.return_url:
            parts.append(
                f"<p><a id='return-link' href='{e(payment.return_url)}'>"
                "Back to the merchant</a></p>"
            )
    brand = payment_brand(emulator, payment)
    return _page(f"Pay with {brand}", "".join(parts), status, brand)


def inbox(emulator, phone, error=None, status=200):
    """Render the push requests of ``phone``."""
    e = html.escape
    parts = [
        "<form method='get' action='/app/inbox' id='inbox-form'>"
        "<label for='inbox-phone'>Phone number</label>"
        f"<input type='tel' id='inbox-phone' name='phone' value='{e(phone or '')}'>"
        "<div class='actions'><button type='submit' id='open-inbox'>Open</button>"
        "</div></form>"
    ]
    if error:
        parts.append(f"<p id='error' role='alert'>{e(error)}</p>")
    if phone:
        payments = emulator.store.inbox(phone)
        if not payments:
            parts.append("<p id='empty' class='muted'>No payment requests.</p>")
        parts.append("<ul id='requests' style='list-style:none;padding:0'>")
        for payment in payments:
            ref = e(payment.reference)
            block = [
                f"<li class='request' data-reference='{ref}' "
                f"data-state='{e(payment.state)}'>{_summary(emulator, payment)}"
            ]
            if payment.state == "CREATED":
                block.append(
                    f"<form method='post' action='/app/inbox' id='form-{ref}'>"
                    f"<input type='hidden' name='token' value='{e(payment.token)}'>"
                    f"<input type='hidden' name='phone' value='{e(phone)}'>"
                    f"{_consent(payment, '-' + ref)}{_buttons('-' + ref)}</form>"
                )
            else:
                block.append(f"<p class='state'>{e(payment.state)}</p>")
            parts.append("".join(block) + "</li>")
        parts.append("</ul>")
    brand = phone_brand(emulator, phone) if phone else "Vipps MobilePay"
    return _page(f"{brand}: payment requests", "".join(parts), status, brand)


def _form(request):
    fields = urllib.parse.parse_qs(request.raw.decode("utf-8", "replace"))
    return {key: values[-1] for key, values in fields.items()}


def _act(emulator, payment, form):
    """Approve or reject from a form post; return an error text or None."""
    try:
        if "reject" in form:
            emulator.store.reject(payment)
            return None
        if "approve" not in form:
            return "Choose Approve or Reject."
        phone = (form.get("phone") or "").strip()
        if not validation.PHONE.match(phone):
            return (
                "Enter the phone number as digits with country code, e.g. 4791234567."
            )
        consent = form.get("consent") == "yes"
        emulator.store.approve(payment, phone=phone, consent=consent)
    except ApiError as err:
        return err.detail
    return None


def handle(emulator, request):
    """Serve one ``/app`` request."""
    path = request.path.rstrip("/") or "/app"
    query = {key: values[-1] for key, values in request.query.items()}
    if path == "/app":
        return _redirect("/app/inbox")
    if path == "/app/landing" or path.startswith("/app/landing/"):
        form = _form(request) if request.method == "POST" else {}
        payment = emulator.store.by_landing_token(
            form.get("token") or query.get("token")
        )
        if payment is None:
            return _page("Unknown payment", "<p id='error'>Unknown payment.</p>", 404)
        if request.method != "POST":
            return landing(emulator, payment)
        error = _act(emulator, payment, form)
        if error:
            return landing(emulator, payment, error, 400)
        if payment.return_url and payment.flow != "PUSH_MESSAGE":
            return _redirect(payment.return_url)
        return landing(emulator, payment)
    if path == "/app/inbox":
        if request.method != "POST":
            return inbox(emulator, query.get("phone"))
        form = _form(request)
        phone = form.get("phone")
        payment = emulator.store.by_landing_token(form.get("token"))
        if payment is None:
            return inbox(emulator, phone, "Unknown payment.", 404)
        error = _act(emulator, payment, form)
        if error:
            return inbox(emulator, phone, error, 400)
        query_string = urllib.parse.urlencode(
            {"phone": phone, "done": payment.reference}
        )
        return _redirect(f"/app/inbox?{query_string}")
    return _page("Not found", "<p id='error'>Not found.</p>", 404)
