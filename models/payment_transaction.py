import logging
from datetime import timedelta

from werkzeug import urls

from odoo import Command, api, fields, models
from odoo.tools import float_round, format_amount

from odoo.addons.payment import utils as payment_utils

from .. import const, utils
from ..exceptions import VippsError

_logger = logging.getLogger(__name__)


class PaymentTransaction(models.Model):
    _inherit = "payment.transaction"

    vipps_state = fields.Selection(
        selection=const.VIPPS_PAYMENT_STATES,
        readonly=True,
        copy=False,
        index=True,
        help="The state of the payment at Vipps MobilePay, as last read from Vipps.",
    )
    vipps_user_flow = fields.Selection(
        string="Vipps Flow",
        selection=[
            ("PUSH_MESSAGE", "Push message to the app"),
            ("WEB_REDIRECT", "Pay with Vipps link"),
        ],
        readonly=True,
        copy=False,
    )
    vipps_phone = fields.Char(
        string="Vipps Mobile Number",
        readonly=True,
        copy=False,
        help="The number (MSISDN) the payment request was pushed to.",
    )
    vipps_expires_at = fields.Datetime(string="Vipps Expiry", readonly=True, copy=False)
    vipps_captured_amount = fields.Monetary(
        string="Captured at Vipps",
        currency_field="currency_id",
        readonly=True,
        copy=False,
    )
    vipps_refunded_amount = fields.Monetary(
        string="Refunded at Vipps",
        currency_field="currency_id",
        readonly=True,
        copy=False,
    )
    vipps_cancelled_amount = fields.Monetary(
        string="Released at Vipps",
        currency_field="currency_id",
        readonly=True,
        copy=False,
    )
    vipps_last_sync = fields.Datetime(string="Last Read from Vipps", readonly=True)
    vipps_share_phone = fields.Boolean(
        string="Phone Sharing Asked",
        readonly=True,
        copy=False,
        help="The customer asked to receive the next invoices in the app: the payment "
        "asks Vipps to share the customer's phone number.",
    )

    # === BUSINESS METHODS - REFERENCE === #

    @api.model
    def _compute_reference_prefix(self, provider_code, separator, **values):
        """Override of `payment` to make the reference one Vipps accepts.

        Vipps references are 8 to 50 characters of [A-Za-z0-9-]; invoice names contain
        slashes, so INV/2026/00012 becomes INV-2026-00012.
        """
        prefix = super()._compute_reference_prefix(provider_code, separator, **values)
        if provider_code != "vipps":
            return prefix
        return utils.vipps_reference_prefix(prefix)

    @api.model
    def _compute_reference(self, provider_code, prefix=None, separator="-", **kwargs):
        """Override of `payment` to clean custom prefixes too (refunds, captures)."""
        if provider_code == "vipps" and prefix:
            prefix = utils.vipps_reference_prefix(prefix)
        return super()._compute_reference(
            provider_code, prefix=prefix, separator=separator, **kwargs
        )

    # === BUSINESS METHODS - PAYMENT REQUEST === #

    def _vipps_minor(self, amount):
        """Return `amount` of the transaction's currency in minor units (øre, cents)."""
        self.ensure_one()
        decimals = payment_utils.CURRENCY_MINOR_UNITS.get(
            self.currency_id.name, self.currency_id.decimal_places
        )
        return int(float_round(amount * 10**decimals, precision_digits=0))

    def _vipps_major(self, value):
        self.ensure_one()
        decimals = payment_utils.CURRENCY_MINOR_UNITS.get(
            self.currency_id.name, self.currency_id.decimal_places
        )
        return value / 10**decimals

    def _vipps_amount(self, amount=None):
        """Return an amount as Vipps's {currency, value} with value in minor units."""
        self.ensure_one()
        value = self._vipps_minor(self.amount if amount is None else amount)
        return {"currency": self.currency_id.name, "value": value}

    def _vipps_create_payment_request(self, payload_values):
        """Create the ePayment of this transaction at Vipps, then mark it pending.

        :param dict payload_values: the flow-specific fields of the create request
            (userFlow, customer, expiresAt, receipt, paymentDescription, ...)
        :return: Vipps's answer ({reference, redirectUrl})
        :rtype: dict
        """
        self.ensure_one()
        provider_sudo = self.provider_id.sudo()
        payload = {
            "amount": self._vipps_amount(),
            "paymentMethod": {"type": "WALLET"},
            "reference": self.reference,
            "customerInteraction": "CUSTOMER_NOT_PRESENT",
            "metadata": {"odooTransactionId": str(self.id)},
            **payload_values,
        }
        answer = provider_sudo._vipps_create_payment(
            payload, self._vipps_idempotency_key("create")
        )
        self.write(
            {
                "provider_reference": self.reference,
                "vipps_state": "CREATED",
                "vipps_user_flow": payload["userFlow"],
                "vipps_last_sync": fields.Datetime.now(),
            }
        )
        self._set_pending()
        return answer

    def _log_received_message(self):
        """Override of `payment` to log a sent push request as a plain note,
        written by the user who sent it.

        It notifies nobody (like Odoo's own note), without the cost of working out
        the recipients for every invoice of a batch.
        """
        sent = self.filtered(lambda tx: tx._vipps_is_sent_push())
        res = super(PaymentTransaction, self - sent)._log_received_message()
        for tx in sent:
            for invoice in tx.invoice_ids:
                # Written by whoever sent it (Odoo's own lines are the customer's).
                invoice._message_log(
                    body=tx._get_received_message(),
                    author_id=self.env.user.partner_id.id,
                )
        return res

    def _get_received_message(self):
        """Override of `payment` to say where a push request went, in the one
        message that marks it sent (instead of Odoo's "pending" next to ours)."""
        if not self._vipps_is_sent_push():
            return super()._get_received_message()
        return self.env._(
            "Vipps MobilePay payment request %(reference)s of %(amount)s sent to "
            "%(phone)s; it expires %(expiry)s.",
            reference=self.reference,
            amount=format_amount(self.env, self.amount, self.currency_id),
            phone=utils.mask_phone(self.vipps_phone),
            expiry=fields.Datetime.to_string(self.vipps_expires_at),
        )

    def _vipps_is_sent_push(self):
        self.ensure_one()
        return (
            self.provider_code == "vipps"
            and self.state == "pending"
            and self.vipps_user_flow == "PUSH_MESSAGE"
            and bool(self.vipps_phone)
        )

    def _get_specific_rendering_values(self, processing_values):
        """Override of `payment` to create the "Pay with Vipps" payment now.

        A web payment cannot carry a long expiry, so it is created only when the
        customer clicks (10 minutes to approve), then the customer is sent to the
        redirectUrl exactly as Vipps returned it.
        """
        res = super()._get_specific_rendering_values(processing_values)
        if self.provider_code != "vipps":
            return res
        answer = self._vipps_create_web_payment()
        redirect_url = urls.url_parse(answer["redirectUrl"])
        return {
            "api_url": answer["redirectUrl"],
            "url_params": urls.url_decode(redirect_url.query),
        }

    def _vipps_create_web_payment(self):
        """Create the WEB_REDIRECT ePayment; return Vipps's answer (redirectUrl)."""
        self.ensure_one()
        provider_sudo = self.provider_id.sudo()
        invoice = self.invoice_ids[:1]
        if invoice and provider_sudo._vipps_uses_order_management():
            provider_sudo._vipps_add_category(
                self.reference, "GENERAL", invoice._vipps_order_details_url()
            )
        payload = {
            "userFlow": "WEB_REDIRECT",
            "returnUrl": provider_sudo._vipps_return_url(self),
            "paymentDescription": (
                invoice._vipps_payment_description()
                if len(self.invoice_ids) == 1
                else self.env._("Payment %s", self.reference)
            )[: const.DESCRIPTION_MAX_LENGTH],
        }
        if len(self.invoice_ids) == 1:
            payload["receipt"] = invoice._vipps_prepare_receipt(self)
        if self.vipps_share_phone:
            # Only the phone number: refusing consent makes the payment fail.
            payload["profile"] = {"scope": "phoneNumber"}
        return self._vipps_create_payment_request(payload)

    def _vipps_idempotency_key(self, operation, *parts):
        self.ensure_one()
        return self.provider_id._vipps_idempotency_key(
            self.reference, operation, *parts
        )

    # === BUSINESS METHODS - PROCESSING === #

    def _get_tx_from_notification_data(self, provider_code, notification_data):
        """Override of `payment` to find the transaction by its Vipps reference."""
        tx = super()._get_tx_from_notification_data(provider_code, notification_data)
        if provider_code != "vipps" or len(tx) == 1:
            return tx
        reference = notification_data.get("reference")
        tx = self.search(
            [("reference", "=", reference), ("provider_code", "=", "vipps")], limit=1
        )
        if not tx:
            raise VippsError(
                "Vipps: "
                + self.env._("No transaction found matching reference %s.", reference)
            )
        return tx

    def _process_notification_data(self, notification_data):
        """Override of `payment` to apply the payment as Vipps reports it.

        `notification_data` is always the answer of Get payment (or of a capture,
        refund or cancel, which has the same state and aggregate amounts), never the
        body of a webhook: webhooks only tell us to read the payment again.
        """
        super()._process_notification_data(notification_data)
        if self.provider_code != "vipps":
            return
        self._vipps_apply_payment(notification_data)

    def _vipps_apply_payment(self, payment):
        """Move the transaction to the state of the payment at Vipps."""
        self.ensure_one()
        state = payment.get("state")
        aggregate = payment.get("aggregate") or {}

        def amount_of(key):
            return self._vipps_major((aggregate.get(key) or {}).get("value") or 0)

        values = {"vipps_last_sync": fields.Datetime.now()}
        if state and state != self.vipps_state:
            # Only on a change: the invoices' Vipps status is recomputed from it.
            values["vipps_state"] = state
        if aggregate:
            values.update(
                vipps_captured_amount=amount_of("capturedAmount"),
                vipps_refunded_amount=amount_of("refundedAmount"),
                vipps_cancelled_amount=amount_of("cancelledAmount"),
            )
        self.write(values)
        if state == "CREATED":
            if self.state == "draft":
                self._set_pending()
        elif state == "AUTHORIZED":
            if self.vipps_share_phone and self.state in ("draft", "pending"):
                self._vipps_learn_phone(payment)
            self._vipps_apply_authorized()
        elif state in const.VIPPS_FINAL_FAILED_STATES:
            if self.state in ("draft", "pending", "authorized"):
                self._set_canceled(state_message=self._vipps_state_message(state))
        else:
            _logger.warning("Vipps: unknown state %s for %s", state, self.reference)

    def _vipps_invoice_state(self):
        """Return the account.move `vipps_state` this transaction stands for."""
        self.ensure_one()
        if self.state == "done":
            return "paid"
        if self.state == "cancel" and self.vipps_state in (
            False,
            "CREATED",
            "AUTHORIZED",
        ):
            return "cancelled"  # voided or released in Odoo
        return {
            "CREATED": "pending",
            "AUTHORIZED": "authorized",
            "ABORTED": "rejected",
            "EXPIRED": "expired",
            "TERMINATED": "cancelled",
        }.get(self.vipps_state, "pending" if self.state == "pending" else False)

    def _vipps_learn_phone(self, payment):
        """Keep the phone number the customer shared, for the next invoices.

        Reads `sub` from the payment and the number from UserInfo, and stores only
        the number with the consent on the customer. A failure here never touches
        the payment: it is logged and no number is stored.
        """
        sub = (payment.get("profile") or {}).get("sub")
        if not sub:
            _logger.info("Vipps: no sub yet on %s, phone not learned", self.reference)
            return
        try:
            info = self.provider_id.sudo()._vipps_get_userinfo(sub)
        except VippsError as error:
            _logger.warning("Vipps: UserInfo failed for %s: %s", self.reference, error)
            return
        msisdn = utils.normalize_msisdn(info.get("phone_number"))
        if not msisdn:
            _logger.warning("Vipps: no usable number shared on %s", self.reference)
            return
        self.partner_id._vipps_store_consent(
            msisdn,
            self.env._(
                "shared in the Vipps MobilePay app when paying %s", self.reference
            ),
        )

    def _vipps_state_message(self, state):
        return {
            "ABORTED": self.env._("The customer rejected the payment request."),
            "EXPIRED": self.env._("The payment request expired without being paid."),
            "TERMINATED": self.env._("The payment request was withdrawn."),
        }.get(state)

    def _vipps_apply_authorized(self):
        """The customer approved: capture (unless manual) or record the capture."""
        captured = self._vipps_minor(self.vipps_captured_amount)
        cancelled = self._vipps_minor(self.vipps_cancelled_amount)
        total = self._vipps_minor(self.amount)
        if captured >= total:
            if self.state != "done":
                self._set_done(extra_allowed_states=("cancel",))
            return
        if cancelled and cancelled + captured >= total and not captured:
            if self.state in ("draft", "pending", "authorized"):
                self._set_canceled(
                    state_message=self.env._("The reserved amount was released.")
                )
            return
        if self.provider_id.capture_manually:
            if self.state in ("draft", "pending"):
                self._set_authorized()
            return
        if self.state not in ("draft", "pending", "authorized"):
            return
        # Captured at once: the transaction goes straight to done (one state change
        # and one chatter message, like any provider that confirms a payment).
        try:
            self._vipps_capture(self.amount - self.vipps_captured_amount)
        except VippsError:
            if self.state in ("draft", "pending"):
                self._set_authorized()
            raise

    def _vipps_capture(self, amount):
        """Capture `amount` at Vipps and apply the result."""
        self.ensure_one()
        vipps_amount = self._vipps_amount(amount)
        key = self._vipps_idempotency_key("capture", vipps_amount["value"])
        result = self.provider_id.sudo()._vipps_capture_payment(
            self.reference, vipps_amount, key
        )
        self._vipps_apply_payment(result)

    def _vipps_sync(self):
        """Read the payments back from Vipps and bring the transactions up to date.

        Webhooks, the poll and the "Check status" button all come here. The row lock
        makes concurrent callers take turns, so a payment is captured once and the
        invoice gets one payment; each re-reads the truth from Vipps after the lock.
        """
        for tx in self.filtered(lambda t: t.provider_code == "vipps"):
            self.env.cr.execute(
                "SELECT id FROM payment_transaction WHERE id = %s FOR UPDATE", [tx.id]
            )
            tx.invalidate_recordset()
            payment = tx.provider_id.sudo()._vipps_get_payment(tx.reference)
            tx._process_notification_data(payment)
            if tx.state in ("done", "cancel") and not tx.is_post_processed:
                tx._post_process()
        return True

    def _vipps_events_change_nothing(self, names):
        """Whether webhook events can be acknowledged without reading the payment.

        The creation of a request Odoo sent; the echo of Odoo's own full capture,
        or a repeated approval, on a paid transaction; the end of a request Odoo
        already closed. Anything else (a refund or a release made in the portal, an
        approval after a withdrawal) is read back.

        :param list names: the events' names (AUTHORIZED, CAPTURED, ...)
        """
        self.ensure_one()
        names = set(names)
        if names <= {"CREATED"}:
            return bool(self.vipps_state)  # Odoo created it and knows it exists
        if self.state == "done":
            fully_captured = self._vipps_minor(
                self.vipps_captured_amount
            ) >= self._vipps_minor(self.amount)
            return fully_captured and names <= {"CREATED", "AUTHORIZED", "CAPTURED"}
        if self.state == "cancel":
            return names <= {"CREATED", "ABORTED", "EXPIRED", "TERMINATED"}
        return False

    # === BUSINESS METHODS - CAPTURE, VOID, REFUND === #

    def _send_capture_request(self, amount_to_capture=None):
        """Override of `payment` to capture the payment at Vipps."""
        child_capture_tx = super()._send_capture_request(
            amount_to_capture=amount_to_capture
        )
        if self.provider_code != "vipps":
            return child_capture_tx
        self._vipps_capture(amount_to_capture or self.amount)
        if self.state == "done" and not self.is_post_processed:
            self._post_process()
        return child_capture_tx

    def _send_void_request(self, amount_to_void=None):
        """Override of `payment` to cancel the payment (release the rest) at Vipps."""
        child_void_tx = super()._send_void_request(amount_to_void=amount_to_void)
        if self.provider_code != "vipps":
            return child_void_tx
        result = self.provider_id.sudo()._vipps_cancel_payment(
            self.reference, self._vipps_idempotency_key("cancel")
        )
        self._vipps_apply_payment(result)
        if self.state in ("draft", "pending", "authorized"):
            self._set_canceled(state_message=self.env._("Cancelled in Odoo."))
        return child_void_tx

    def _send_refund_request(self, amount_to_refund=None):
        """Override of `payment` to refund at Vipps (partial refunds allowed).

        Each refund is its own operation with its own Idempotency-Key (the refund
        transaction's reference), so a retry of this refund cannot refund twice and
        a second refund is not mistaken for a retry.
        """
        refund_tx = super()._send_refund_request(amount_to_refund=amount_to_refund)
        if self.provider_code != "vipps":
            return refund_tx
        if documents := self.env.context.get("vipps_refund_documents"):
            # The refund's payment settles these (a credit note).
            refund_tx.invoice_ids = [Command.set(documents)]
        result = self.provider_id.sudo()._vipps_refund_payment(
            self.reference,
            self._vipps_amount(-refund_tx.amount),
            self._vipps_idempotency_key("refund", refund_tx.reference),
        )
        self._vipps_apply_payment(result)
        refund_tx.write(
            {
                "provider_reference": self.reference,
                "vipps_state": result.get("state"),
                "vipps_last_sync": fields.Datetime.now(),
            }
        )
        refund_tx._set_done()
        refund_tx._post_process()
        return refund_tx

    def _vipps_cancel_request(self):
        """Withdraw a payment request that the customer has not approved yet.

        Uses cancelTransactionOnly, so a request approved in the meantime is not
        released but captured like any approved payment.

        :return: whether the request was withdrawn (False: it was approved after all)
        :rtype: bool
        """
        self.ensure_one()
        try:
            result = self.provider_id.sudo()._vipps_cancel_payment(
                self.reference,
                self._vipps_idempotency_key("withdraw"),
                transaction_only=True,
            )
        except VippsError as error:
            if error.code != const.ERROR_ALREADY_AUTHORIZED:
                raise
            self._vipps_sync()
            return False
        self._vipps_apply_payment(result)
        if self.state in ("draft", "pending"):
            self._set_canceled(state_message=self._vipps_state_message("TERMINATED"))
        if not self.is_post_processed:
            self._post_process()
        return True

    def _vipps_invoices_closed(self):
        """Whether none of the transaction's invoices should be paid through it."""
        invoices = self.invoice_ids
        return bool(invoices) and all(
            invoice.state != "posted"
            or invoice.payment_state in ("paid", "in_payment", "reversed")
            for invoice in invoices
        )

    # === BUSINESS METHODS - POLLING === #

    @api.model
    def _cron_vipps_poll(self, batch_size=100):
        """Safety net for lost webhooks: read back the requests still open.

        Open requests are read back (and captured once approved); approved payments
        whose capture failed are retried on every run; open requests of invoices that
        were cancelled, reset to draft or paid otherwise meanwhile are withdrawn.
        """
        now = fields.Datetime.now()
        domain = [
            ("provider_code", "=", "vipps"),
            ("vipps_state", "in", ("CREATED", "AUTHORIZED")),
            ("state", "in", ("draft", "pending", "authorized")),
            "|",
            ("vipps_last_sync", "=", False),
            (
                "vipps_last_sync",
                "<",
                now - timedelta(minutes=const.POLL_MIN_AGE_MINUTES),
            ),
        ]
        transactions = self.search(
            domain, limit=batch_size, order="vipps_last_sync, id"
        )
        for tx in transactions:
            try:
                with self.env.cr.savepoint():
                    if tx.vipps_state == "CREATED" and tx._vipps_invoices_closed():
                        tx._vipps_cancel_request()
                    else:
                        tx._vipps_sync()
            except VippsError as error:
                _logger.warning("Vipps poll of %s failed: %s", tx.reference, error)
                tx.vipps_last_sync = now
        self.env["account.move"]._vipps_resend_expired_requests()
        remaining = self.search_count(domain) if len(transactions) == batch_size else 0
        self.env["ir.cron"]._notify_progress(
            done=len(transactions), remaining=remaining
        )
