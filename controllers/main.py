import email.utils
import hmac
import json
import logging
import pprint
import time

from werkzeug.exceptions import Forbidden, RequestEntityTooLarge

from odoo import http
from odoo.exceptions import AccessError, MissingError, UserError, ValidationError
from odoo.http import request
from odoo.tools import consteq

from odoo.addons.payment.controllers.post_processing import PaymentPostProcessing
from odoo.addons.portal.controllers.portal import CustomerPortal

from .. import const, utils

_logger = logging.getLogger(__name__)

# When the return page last read each transaction from Vipps, per database, in this
# process: {(dbname, transaction id): monotonic time}.
_RETURN_READS = {}


def _return_read_due(tx_sudo):
    """Whether the return page may read this transaction from Vipps now."""
    key = (tx_sudo.env.cr.dbname, tx_sudo.id)
    now = time.monotonic()
    if now - _RETURN_READS.get(key, -1e9) < const.RETURN_MIN_INTERVAL_SECONDS:
        return False
    if len(_RETURN_READS) > 10000:
        _RETURN_READS.clear()
    _RETURN_READS[key] = now
    return True


class VippsController(http.Controller):
    _webhook_url = const.WEBHOOK_ROUTE
    _return_url = const.RETURN_ROUTE
    _order_details_url = const.ORDER_DETAILS_ROUTE

    @http.route(_webhook_url, type="http", auth="public", methods=["POST"], csrf=False)
    def vipps_webhook(self):
        """Take one webhook delivery: verify it, follow the payment, answer.

        Fail-closed: the signature is checked on the raw body before anything is
        parsed (403 when missing, wrong, stale or not plain ASCII; 413 when the body
        is too large; 403 when a signed body is not a JSON object). The event is only
        a signal: the payment is read back from Vipps before anything changes.
        """
        length = request.httprequest.content_length
        if length and length > const.WEBHOOK_MAX_BODY:
            raise RequestEntityTooLarge()
        body = request.httprequest.get_data()
        if len(body) > const.WEBHOOK_MAX_BODY:
            raise RequestEntityTooLarge()
        provider_sudo = self._vipps_verify_signature(body)
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            _logger.warning("Vipps webhook with a body that is not a JSON object")
            raise Forbidden()
        _logger.info("Vipps webhook received:\n%s", pprint.pformat(utils.mask(event)))
        if str(event.get("msn") or "") != provider_sudo.vipps_merchant_serial_number:
            _logger.warning("Vipps webhook for another sales unit: ignored")
        else:
            request.env["payment.transaction"].sudo()._vipps_handle_webhook(
                provider_sudo, event
            )
        return request.make_json_response({}, status=200)

    @staticmethod
    def _vipps_verify_signature(body):
        """Return the provider whose webhook secret signed this delivery.

        :raise Forbidden: if no provider's secret verifies the signature, the content
            hash does not match the body, a header is not plain ASCII, or the date is
            missing or stale
        """
        headers = request.httprequest.headers
        try:
            date = (headers.get("x-ms-date") or "").encode("ascii")
            content_hash = (headers.get("x-ms-content-sha256") or "").encode("ascii")
            authorization = (headers.get("Authorization") or "").encode("ascii")
        except UnicodeEncodeError:
            _logger.warning("Vipps webhook with non-ASCII signature headers: refused")
            raise Forbidden() from None
        if not (date and content_hash and authorization):
            _logger.warning("Vipps webhook without signature headers: refused")
            raise Forbidden()
        if not hmac.compare_digest(content_hash, utils.content_sha256(body).encode()):
            _logger.warning("Vipps webhook whose content hash does not match: refused")
            raise Forbidden()
        try:
            sent_at = email.utils.parsedate_to_datetime(date.decode()).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            sent_at = None
        if sent_at is None or abs(time.time() - sent_at) > const.WEBHOOK_MAX_AGE:
            _logger.warning("Vipps webhook with a missing or stale date: refused")
            raise Forbidden()
        providers_sudo = (
            request.env["payment.provider"]
            .sudo()
            .search(
                [
                    ("code", "=", "vipps"),
                    ("state", "!=", "disabled"),
                    ("vipps_webhook_secret", "!=", False),
                ]
            )
        )
        for provider_sudo in providers_sudo:
            url = provider_sudo.vipps_webhook_url or ""
            signature = utils.compute_webhook_signature(
                provider_sudo.vipps_webhook_secret,
                utils.signed_path(url),
                date.decode(),
                utils.signed_host(url),
                content_hash.decode(),
            )
            expected = (
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
                f"&Signature={signature}"
            )
            if hmac.compare_digest(authorization, expected.encode()):
                return provider_sudo
        _logger.warning("Vipps webhook with an invalid signature: refused")
        raise Forbidden()

    @http.route(_return_url, type="http", auth="public", methods=["GET"])
    def vipps_return(self, reference=None, token=None, **kwargs):
        """The customer comes back from the app: check the payment, show its status.

        Arriving here proves nothing. Vipps is read only for the holder of the
        token bound to the transaction, only while the payment can still change,
        and not more often than every few seconds; Vipps's errors are logged, not
        shown.
        """
        tx_sudo = (
            request.env["payment.transaction"]
            .sudo()
            .search(
                [
                    ("reference", "=", reference or ""),
                    ("provider_code", "=", "vipps"),
                    ("source_transaction_id", "=", False),
                ],
                limit=1,
            )
        )
        if not tx_sudo or not consteq(token or "", tx_sudo._vipps_return_token()):
            return request.redirect("/payment/status")
        PaymentPostProcessing.monitor_transaction(tx_sudo)
        if tx_sudo.state in ("draft", "pending", "authorized") and _return_read_due(
            tx_sudo
        ):
            try:
                tx_sudo._vipps_sync(skip_locked=True)
            except (UserError, ValidationError) as error:
                _logger.warning("Vipps: return of %s not read: %s", reference, error)
        return request.redirect("/payment/status")

    @http.route(
        f"{const.PAY_ROUTE}/<int:invoice_id>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
    )
    def vipps_pay(self, invoice_id, access_token=None, share_phone=None, **kwargs):
        """The "Pay with Vipps" page of an invoice (e-mail button, QR code).

        GET shows the invoice and the button; POST creates the payment now and sends
        the customer to Vipps. A wrong token shows nothing and changes nothing.
        """
        invoice_sudo = self._vipps_invoice_from_token(invoice_id, access_token)
        if invoice_sudo is None:
            return request.not_found()
        invoice_sudo = self._vipps_in_customer_lang(invoice_sudo)
        values = {
            "invoice": invoice_sudo,
            "access_token": access_token,
            "problem": invoice_sudo._vipps_payable()[1],
            "error": None,
        }
        if request.httprequest.method == "POST" and not values["problem"]:
            try:
                tx_sudo = invoice_sudo._vipps_link_payment(
                    share_phone=bool(share_phone)
                )
            except (UserError, ValidationError) as error:
                values["error"] = error.args[0]
            else:
                return request.redirect(tx_sudo.vipps_redirect_url, local=False)
        return request.render("payment_vipps.pay_page", values)

    @http.route(
        f"{const.CONSENT_WITHDRAW_ROUTE}/<int:invoice_id>",
        type="http",
        auth="public",
        methods=["POST"],
    )
    def vipps_withdraw_consent(self, invoice_id, access_token=None, **kwargs):
        """The customer stops receiving invoices in the app (their own consent only)."""
        invoice_sudo = self._vipps_invoice_from_token(invoice_id, access_token)
        if invoice_sudo is None:
            return request.not_found()
        invoice_sudo.partner_id._vipps_clear_consent(
            request.env._("withdrawn by the customer")
        )
        return request.redirect(invoice_sudo._vipps_pay_url())

    @http.route(
        f"{const.CONSENT_CONFIRM_ROUTE}/<int:partner_id>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
    )
    def vipps_confirm_phone(self, partner_id, token=None, **kwargs):
        """The customer confirms a new number shared in the app (e-mailed link).

        GET only shows the question (mail scanners open links); POST confirms.
        """
        partner_sudo = request.env["res.partner"].sudo().browse(partner_id).exists()
        expected = partner_sudo.vipps_phone_pending_token if partner_sudo else None
        valid = bool(expected and token and consteq(token, expected))
        values = {"partner": partner_sudo, "token": token, "state": "ask"}
        if partner_sudo:
            request.update_context(lang=partner_sudo._vipps_customer_lang())
            values["question"] = request.env._(
                "Send the next invoices of %s to the new number shared in the app?",
                partner_sudo.name,
            )
        if not valid:
            values["state"] = "invalid"
        elif request.httprequest.method == "POST":
            partner_sudo._vipps_confirm_pending_phone(token)
            values["state"] = "done"
        return request.render("payment_vipps.consent_confirm_page", values)

    @staticmethod
    def _vipps_in_customer_lang(invoice_sudo):
        """Render the page, and read the invoice, in its customer's language: the
        link comes from the app or an e-mail, without a session that has one."""
        lang = invoice_sudo._vipps_customer_lang()
        request.update_context(lang=lang)
        return invoice_sudo.with_context(lang=lang)

    @staticmethod
    def _vipps_invoice_from_token(invoice_id, access_token):
        try:
            return CustomerPortal()._document_check_access(
                "account.move", invoice_id, access_token=access_token
            )
        except (AccessError, MissingError):
            return None

    @http.route(
        f"{_order_details_url}/<int:invoice_id>",
        type="http",
        auth="public",
        methods=["GET"],
        website=False,
    )
    def vipps_order_details(self, invoice_id, access_token=None, **kwargs):
        """The invoice page the Vipps app links to, for the holder of its token."""
        try:
            invoice_sudo = CustomerPortal()._document_check_access(
                "account.move", invoice_id, access_token=access_token
            )
        except (AccessError, MissingError):
            return request.not_found()
        invoice_sudo = self._vipps_in_customer_lang(invoice_sudo)
        values = {
            "invoice": invoice_sudo,
            "access_token": access_token,
            "pdf_url": invoice_sudo.get_portal_url(report_type="pdf", download=True),
        }
        return request.render("payment_vipps.order_details_page", values)
