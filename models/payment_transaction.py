import logging
from datetime import timedelta

from werkzeug import urls

from odoo import Command, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import float_round, format_amount
from odoo.tools import hmac as hmac_tool

from odoo.addons.payment import utils as payment_utils

from .. import const, utils
from ..exceptions import VippsBusyError, VippsError, VippsUnreachableError

_logger = logging.getLogger(__name__)


class PaymentTransaction(models.Model):
    """The transaction owns everything Vipps knows about a payment.

    Every answer from Vipps (the read a webhook triggers, the poll, Check status, the
    customer's return, and the answers to create, capture, cancel and refund) goes
    through Odoo's payment engine (`_vipps_process`, see `compat`) to
    `_vipps_apply_updates`, which books only what Vipps's aggregate amounts show.
    What Vipps should do next (capture what is due, release the rest, withdraw a
    request whose invoice closed) is decided afterwards by `_vipps_settle`, whose
    answers go through the same path.
    """

    _inherit = "payment.transaction"

    vipps_state = fields.Selection(
        selection=const.VIPPS_PAYMENT_STATES,
        readonly=True,
        copy=False,
        index=True,
        help="The state of the payment at Vipps MobilePay, as last read from Vipps. "
        "Empty while Vipps has not confirmed that it received the request.",
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
    vipps_operation = fields.Selection(
        selection=[("capture", "Partial capture"), ("release", "Release")],
        readonly=True,
        copy=False,
        help="What a child transaction stands for at Vipps: part of the reserved "
        "amount captured, or the rest released to the customer.",
    )
    vipps_phone = fields.Char(
        string="Vipps Mobile Number",
        readonly=True,
        copy=False,
        help="The number (MSISDN) the payment request was pushed to.",
    )
    vipps_expires_at = fields.Datetime(string="Vipps Expiry", readonly=True, copy=False)
    vipps_redirect_url = fields.Char(
        string="Vipps Payment Page",
        readonly=True,
        copy=False,
        groups="base.group_system",
        help="Where Vipps sends the customer to pay a link payment (it carries a "
        "token of Vipps's).",
    )
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
    vipps_capture_guaranteed_until = fields.Datetime(
        string="Capture Guaranteed Until",
        readonly=True,
        copy=False,
        help="Until when Vipps MobilePay guarantees that the approved amount can be "
        "captured (after that the reservation may lapse).",
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
    def _vipps_reference_prefix(self, prefix, values):
        """Make Odoo's reference prefix one Vipps accepts (`_compute_reference_prefix`
        of each series comes here).

        Vipps references are 8 to 50 characters of [A-Za-z0-9-], unique per sales
        unit: invoice names lose their slashes (INV/2026/00012 -> INV-2026-00012) and
        get the database's prefix of the provider (K3F9-INV-2026-00012), so that
        databases sharing a sales unit never collide.
        """
        provider = self.env["payment.provider"].browse(values.get("provider_id"))
        return utils.vipps_reference_prefix(
            prefix, provider.exists().sudo().vipps_reference_prefix
        )

    @api.model
    def _compute_reference(self, provider_code, prefix=None, separator="-", **kwargs):
        """Override of `payment` to clean custom prefixes too (refunds, captures)."""
        if provider_code == "vipps" and prefix:
            prefix = utils.vipps_reference_prefix(prefix)
        return super()._compute_reference(
            provider_code, prefix=prefix, separator=separator, **kwargs
        )

    # === BUSINESS METHODS - AMOUNTS === #

    def _vipps_minor(self, amount):
        """Return `amount` of the transaction's currency in minor units (øre, cents)."""
        self.ensure_one()
        return _to_minor(self.currency_id, amount)

    def _vipps_major(self, value):
        self.ensure_one()
        return _to_major(self.currency_id, value)

    def _vipps_amount(self, value):
        """Return minor units as Vipps's {currency, value}."""
        self.ensure_one()
        return {"currency": self.currency_id.name, "value": value}

    def _vipps_return_token(self):
        """The token of the customer's return URL: only its holder makes Odoo read
        this payment from Vipps."""
        self.ensure_one()
        return hmac_tool(self.env(su=True), "payment_vipps-return", self.reference)

    def _vipps_idempotency_key(self, operation, *parts):
        self.ensure_one()
        return self.provider_id._vipps_idempotency_key(
            self.reference, operation, *parts
        )

    # === BUSINESS METHODS - CREATE === #

    @api.model
    def _vipps_create_for_invoice(self, invoice, provider, amount, flow, **values):
        """Create the draft transaction of a payment request for one invoice.

        :param str flow: PUSH_MESSAGE (sent to the app) or WEB_REDIRECT (a link)
        """
        tx_model = self.sudo()
        return tx_model.create(
            {
                "provider_id": provider.id,
                "payment_method_id": provider._vipps_payment_method(
                    invoice.currency_id
                ).id,
                "reference": tx_model._compute_reference(
                    "vipps",
                    provider_id=provider.id,
                    invoice_ids=[Command.set(invoice.ids)],
                ),
                "amount": amount,
                "currency_id": invoice.currency_id.id,
                "partner_id": invoice.partner_id.id,
                "operation": "offline" if flow == "PUSH_MESSAGE" else "online_redirect",
                "invoice_ids": [Command.set(invoice.ids)],
                "vipps_user_flow": flow,
                **values,
            }
        )

    def _get_specific_rendering_values(self, processing_values):
        """Override of `payment` to create the "Pay with Vipps" payment now.

        A web payment lives 10 minutes, so it is created only when the customer
        clicks, then the customer is sent to the redirectUrl exactly as Vipps returned
        it.
        """
        res = super()._get_specific_rendering_values(processing_values)
        if self.provider_code != "vipps":
            return res
        self.vipps_user_flow = "WEB_REDIRECT"
        self._vipps_send()
        redirect_url = self.sudo().vipps_redirect_url
        return {
            "api_url": redirect_url,
            "url_params": urls.url_decode(urls.url_parse(redirect_url).query),
        }

    def _vipps_send(self):
        """Create the transaction's payment at Vipps (push message or link).

        The create is recorded in the outbox by a transaction of its own first, so
        that a payment whose Odoo side is later rolled back is found and adopted or
        cancelled. When Vipps's answer is lost and cannot be read back, the
        transaction stays pending without a Vipps state: Odoo checks it later.

        :raise VippsError: when Vipps refuses (nothing was created)
        """
        self.ensure_one()
        provider_sudo = self.provider_id.sudo()
        invoice = self.invoice_ids[:1]
        if invoice and provider_sudo._vipps_uses_order_management():
            provider_sudo._vipps_add_category(
                self.reference, "GENERAL", invoice._vipps_order_details_url()
            )
        self.env["payment.vipps.outbox"]._vipps_record_intent(self)
        payload = self._vipps_prepare_create_payload()
        try:
            # One key per attempt: a retry of this very request replays it; a
            # corrected one (another number, amount or expiry) is a new request.
            answer = provider_sudo._vipps_create_payment(
                payload,
                self._vipps_idempotency_key("create", utils.fingerprint(payload)),
                self._vipps_is_own_payment,
            )
        except VippsUnreachableError as error:
            _logger.warning(
                "Vipps: create of %s unconfirmed: %s", self.reference, error
            )
            message = self.env._(
                "Vipps MobilePay did not confirm that it received payment request "
                "%s. It may have reached the customer: Odoo checks it again shortly. "
                "Do not send it again meanwhile.",
                self.reference,
            )
            self._set_pending(state_message=message)
            self._log_message_on_linked_documents(message)
            return
        self.write(
            {
                "provider_reference": self.reference,
                "vipps_state": "CREATED",
                "vipps_redirect_url": answer.get("redirectUrl"),
                "vipps_last_sync": fields.Datetime.now(),
            }
        )
        self._set_pending()

    def _vipps_prepare_create_payload(self):
        """The create request of this transaction's payment (both flows)."""
        self.ensure_one()
        provider_sudo = self.provider_id.sudo()
        invoice = self.invoice_ids if len(self.invoice_ids) == 1 else None
        if invoice:
            description = invoice._vipps_payment_description()
        else:
            description = self.env._("Payment %s", self.reference)
        payload = {
            "amount": self._vipps_amount(self._vipps_minor(self.amount)),
            "paymentMethod": {"type": "WALLET"},
            "reference": self.reference,
            "userFlow": self.vipps_user_flow,
            "customerInteraction": "CUSTOMER_NOT_PRESENT",
            "returnUrl": provider_sudo._vipps_return_url(self),
            "paymentDescription": description[: const.DESCRIPTION_MAX_LENGTH],
            "metadata": {
                const.METADATA_DATABASE: provider_sudo._vipps_database_marker(),
                const.METADATA_TRANSACTION: str(self.id),
                const.METADATA_FLOW: self.vipps_user_flow,
            },
        }
        if invoice:
            payload["metadata"][const.METADATA_INVOICE] = str(invoice.id)
            # Read by the customer in the app: in the customer's language.
            payload["receipt"] = self.with_context(
                lang=invoice._vipps_customer_lang()
            )._vipps_prepare_receipt(invoice)
        if self.vipps_user_flow == "PUSH_MESSAGE":
            payload["customer"] = {"phoneNumber": utils.msisdn(self.vipps_phone)}
            payload["expiresAt"] = utils.format_rfc3339(self.vipps_expires_at)
        if self.vipps_share_phone:
            # Only the phone number: refusing consent makes the payment fail.
            payload["profile"] = {"scope": "phoneNumber"}
        return payload

    def _vipps_receipt_line(self, line):
        """One invoice line as a receipt line that Vipps accepts, in minor units.

        The quantity fits Vipps's 10 characters (rounded, or shown as 1 with the
        line's price); the VAT rate is that of the line's taxes, group and division
        taxes included, and falls back on the rate the amounts show when the taxes
        do not add up to one (withholding taxes); a discount is never negative.
        """
        total = self._vipps_minor(line.price_total)
        excluding = self._vipps_minor(line.price_subtotal)
        is_return = total < 0
        total, excluding = abs(total), abs(excluding)
        if excluding > total:
            # Withholding above the VAT: the line is what the customer pays, untaxed.
            excluding = total
        tax = total - excluding
        quantity = abs(line.quantity) or 1.0
        quantity_text = utils.format_quantity(quantity)
        if not quantity_text or quantity_text == "0":
            quantity, quantity_text = 1.0, "1"
        discount = line.discount if 0 < line.discount < 100 else 0
        gross = round(total / (1 - discount / 100)) if discount else total
        return {
            "name": (line.name or line.product_id.display_name or "-")[:100],
            "id": str(line.id),
            "totalAmount": total,
            "totalAmountExcludingTax": excluding,
            "totalTaxAmount": tax,
            "taxRate": _tax_rate(line, excluding, tax),
            "unitInfo": {
                "unitPrice": round(gross / quantity),
                "quantity": quantity_text,
                "quantityUnit": "PCS",
            },
            "discount": max(0, gross - total),
            "isReturn": is_return,
        }

    def _vipps_is_own_payment(self, payment):
        """Whether a payment Vipps already has under this reference is this request.

        It is when this database created it (its marker in the metadata) for this
        transaction, or for the same invoice by a transaction Odoo rolled back (an
        interrupted run), and for the same amount. Never by amount alone.
        """
        self.ensure_one()
        metadata = payment.get("metadata") or {}
        marker = self.provider_id.sudo()._vipps_database_marker()
        expected = self._vipps_amount(self._vipps_minor(self.amount))
        if metadata.get(const.METADATA_DATABASE) != marker or (
            payment.get("amount") != expected
        ):
            return False
        created_by = metadata.get(const.METADATA_TRANSACTION) or ""
        if created_by == str(self.id):
            return True
        lost = created_by.isdigit() and not self.browse(int(created_by)).exists()
        return lost and metadata.get(const.METADATA_INVOICE) == str(
            self.invoice_ids[:1].id
        )

    def _vipps_prepare_receipt(self, invoice):
        """Order lines for Vipps, in minor units, adding up to the amount exactly.

        Each invoice line gives its total with and without tax and its VAT rate (in
        hundredths of a percent). When less than the invoice total is requested (an
        instalment, or an invoice already partly paid), a return line for the rest
        makes the lines add up to the requested amount.
        """
        self.ensure_one()
        minor = self._vipps_minor
        order_lines = [
            self._vipps_receipt_line(line)
            for line in invoice.invoice_line_ids.filtered(
                lambda line: line.display_type == "product"
            )
        ]
        lines_total = sum(
            -line["totalAmount"] if line["isReturn"] else line["totalAmount"]
            for line in order_lines
        )
        difference = lines_total - minor(self.amount)
        if difference:
            order_lines.append(
                {
                    "name": self.env._("Paid earlier, or due in a later instalment")
                    if difference > 0
                    else self.env._("Rounding"),
                    "id": "adjustment",
                    "totalAmount": abs(difference),
                    "totalAmountExcludingTax": abs(difference),
                    "totalTaxAmount": 0,
                    "taxRate": 0,
                    "unitInfo": {
                        "unitPrice": abs(difference),
                        "quantity": "1",
                        "quantityUnit": "PCS",
                    },
                    "isReturn": difference > 0,
                }
            )
        return {
            "orderLines": order_lines,
            "bottomLine": {
                "currency": self.currency_id.name,
                "receiptNumber": invoice.name[:50],
            },
        }

    def _vipps_adopt(self, provider, payment):
        """Create the transaction of a payment that Vipps has and Odoo lost.

        Its create was made by this database (the metadata says so) but the Odoo side
        was rolled back. The transaction is rebuilt from Vipps's record and follows
        the usual path: if its invoice no longer needs it, it is withdrawn or
        released there.

        :return: the transaction, or an empty recordset when its invoice is gone
        """
        metadata = payment.get("metadata") or {}
        invoice = (
            self.env["account.move"]
            .sudo()
            .browse(int(metadata.get(const.METADATA_INVOICE) or 0))
            .exists()
        )
        if not invoice:
            return self.browse()
        value = int((payment.get("amount") or {}).get("value") or 0)
        tx = self.sudo().create(
            {
                "provider_id": provider.id,
                "payment_method_id": provider._vipps_payment_method(
                    invoice.currency_id
                ).id,
                "reference": payment["reference"],
                "provider_reference": payment["reference"],
                "amount": _to_major(invoice.currency_id, value),
                "currency_id": invoice.currency_id.id,
                "partner_id": invoice.partner_id.id,
                "operation": "offline"
                if metadata.get(const.METADATA_FLOW) == "PUSH_MESSAGE"
                else "online_redirect",
                "invoice_ids": [Command.set(invoice.ids)],
                "vipps_user_flow": metadata.get(const.METADATA_FLOW) or "WEB_REDIRECT",
            }
        )
        invoice._message_log(
            body=self.env._(
                "Vipps MobilePay has a payment request %(reference)s of %(amount)s for "
                "this invoice that Odoo had lost (its sending was interrupted); it is "
                "followed from now on.",
                reference=tx.reference,
                amount=format_amount(self.env, tx.amount, tx.currency_id),
            )
        )
        return tx

    def _log_received_message(self):
        """Override of `payment` to log a sent push request as a plain note,
        written by the user who sent it.

        It notifies nobody (like Odoo's own note), without the cost of working out
        the recipients for every invoice of a batch.
        """
        sent = self.filtered(lambda tx: tx._vipps_is_sent_push())
        # A capture or release of the whole payment (19.0 makes one for each) is
        # told by the payment's own line.
        whole = self.filtered(
            lambda tx: tx._vipps_is_whole_part() and tx.state in ("done", "cancel")
        )
        res = super(PaymentTransaction, self - sent - whole)._log_received_message()
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

    def _log_sent_message(self):
        """Override of `payment`: a capture or release of the whole payment is not
        announced; the payment's line tells how it ended."""
        whole = self.filtered(lambda tx: tx._vipps_is_whole_part())
        return super(PaymentTransaction, self - whole)._log_sent_message()

    def _vipps_is_whole_part(self):
        """Whether this is a capture or release of a whole Vipps payment."""
        self.ensure_one()
        source = self.source_transaction_id
        return bool(
            source
            and self.provider_code == "vipps"
            and self.operation != "refund"
            and not self.currency_id.compare_amounts(self.amount, source.amount)
        )

    def _vipps_is_sent_push(self):
        self.ensure_one()
        return (
            self.provider_code == "vipps"
            and self.state == "pending"
            and self.vipps_state == "CREATED"
            and self.vipps_user_flow == "PUSH_MESSAGE"
            and bool(self.vipps_phone)
        )

    # === BUSINESS METHODS - PROCESSING === #

    @api.model
    def _vipps_find(self, reference):
        """The payment (not a capture or refund of it) Vipps knows by `reference`."""
        tx = self.search(
            [
                ("reference", "=", reference),
                ("provider_code", "=", "vipps"),
                ("source_transaction_id", "=", False),
            ],
            limit=1,
        )
        if not tx:
            raise VippsError(
                "Vipps: "
                + self.env._("No transaction found matching reference %s.", reference)
            )
        return tx

    def _vipps_apply_updates(self, notification_data):
        """Follow the payment as Vipps reports it (the payment engine of each series
        comes here, see `compat`).

        `notification_data` is the payment as Vipps has it: the answer of Get payment,
        or of a capture, cancel or refund, which carry the same state and aggregate
        amounts. Never the body of a webhook, which only says to read the payment.
        Money is booked only from the aggregate: a capture, release or refund that
        Vipps has not carried out leaves its Odoo transaction unconfirmed.
        """
        self._vipps_apply_payment(notification_data)
        status = notification_data.get("state")
        if status in const.STATUS_MAPPING["pending"]:
            if self.state == "draft":
                self._set_pending()
        elif status in const.STATUS_MAPPING["authorized"]:
            if self.vipps_share_phone and self.state in ("draft", "pending"):
                self._vipps_learn_phone(notification_data)
            moved = self._vipps_book_movements()
            # Odoo captures at once what is due (`_vipps_settle`, right after): the
            # transaction goes straight to done, without an "authorized" step.
            if not moved and not self.env.context.get("vipps_capture_follows"):
                self._vipps_set_authorized()
        elif status in const.STATUS_MAPPING["cancel"]:
            if self.child_transaction_ids.filtered(
                lambda tx: tx.vipps_operation == "release"
            ):
                # A release asked as a child transaction (always one on 19.0) is
                # booked before the payment itself ends.
                self._vipps_book_children(
                    "release", self._vipps_minor(self.vipps_cancelled_amount)
                )
            if self.state in ("draft", "pending", "authorized"):
                self._set_canceled(state_message=self._vipps_state_message(status))
                if status == "EXPIRED":
                    self._vipps_schedule_resend()
        else:
            _logger.warning("Vipps: unknown state %s for %s", status, self.reference)

    def _vipps_apply_payment(self, payment):
        """Keep Vipps's state and aggregate amounts of the payment (changes only)."""
        self.ensure_one()
        aggregate = payment.get("aggregate") or {}
        values = {}
        if payment.get("state") and payment["state"] != self.vipps_state:
            values["vipps_state"] = payment["state"]
        if not self.provider_reference:
            values["provider_reference"] = self.reference
        guaranteed = utils.parse_rfc3339(payment.get("captureGuaranteedUntil"))
        if guaranteed and guaranteed != self.vipps_capture_guaranteed_until:
            values["vipps_capture_guaranteed_until"] = guaranteed
        for field, key in (
            ("vipps_captured_amount", "capturedAmount"),
            ("vipps_refunded_amount", "refundedAmount"),
            ("vipps_cancelled_amount", "cancelledAmount"),
        ):
            if key in aggregate:
                amount = self._vipps_major(int(aggregate[key].get("value") or 0))
                if self.currency_id.compare_amounts(amount, self[field]):
                    values[field] = amount
        if values:
            self.write(values)

    def _vipps_book_movements(self):
        """Book what Vipps's aggregate shows was captured, released and refunded.

        A full capture or release confirms or cancels the transaction itself; parts
        are child transactions (as Odoo's partial captures are): those Odoo asked
        for are confirmed once the aggregate covers them, and what Vipps shows beyond
        them (done in the business portal, or by a run whose Odoo side was lost) gets
        a child of its own, with a note.

        :return: whether any money moved at Vipps
        :rtype: bool
        """
        self.ensure_one()
        total = self._vipps_minor(self.amount)
        captured = self._vipps_minor(self.vipps_captured_amount)
        released = self._vipps_minor(self.vipps_cancelled_amount)
        parts = self.child_transaction_ids.filtered(lambda tx: tx.vipps_operation)
        if not parts and captured >= total:
            if self.state != "done":
                self._set_done()
        elif not parts and not captured and released >= total:
            if self.state in ("draft", "pending", "authorized"):
                self._set_canceled(
                    state_message=self.env._("The reserved amount was released.")
                )
        elif parts or captured or released:
            self._vipps_set_authorized(quiet=captured + released >= total)
            self._vipps_book_children("capture", captured)
            self._vipps_book_children("release", released)
        refunded = self._vipps_minor(self.vipps_refunded_amount)
        if refunded and self.state == "done":
            if not self.is_post_processed:
                # The payment is registered before its refunds (Odoo registers none
                # for a transaction that already has finished children).
                self._post_process()
            self._vipps_book_children("refund", refunded)
        return bool(captured or released)

    def _vipps_book_children(self, kind, at_vipps):
        """Confirm the child transactions of one kind that Vipps carried out.

        Those Odoo asked for are confirmed, oldest first, while the aggregate covers
        them; what Vipps shows beyond them (done in the business portal, or by a run
        whose Odoo side was lost) gets a child of its own, with a note, so that
        Odoo's books show the money that moved.

        :param str kind: capture, release or refund
        :param int at_vipps: the total Vipps shows for it, in minor units
        """
        children = self.child_transaction_ids.filtered(
            lambda tx: tx._vipps_kind() == kind
        )
        booked = sum(
            abs(tx._vipps_minor(tx.amount))
            for tx in children
            if tx.state == tx._vipps_confirmed_state()
        )
        unconfirmed = children.filtered(lambda tx: tx.state in ("draft", "pending"))
        for child in unconfirmed.sorted("id"):
            amount = abs(child._vipps_minor(child.amount))
            if booked + amount > at_vipps:
                break
            booked += amount
            child._vipps_confirm()
        if at_vipps > booked:
            child = self._create_child_transaction(
                self._vipps_major(at_vipps - booked),
                is_refund=kind == "refund",
                vipps_operation=kind if kind != "refund" else False,
            )
            child._vipps_confirm()
            self._vipps_note_outside(child)

    def _vipps_kind(self):
        return "refund" if self.operation == "refund" else self.vipps_operation

    def _vipps_confirmed_state(self):
        return "cancel" if self.vipps_operation == "release" else "done"

    def _vipps_confirm(self):
        if self.vipps_operation == "release":
            self._set_canceled(
                state_message=self.env._("Released to the customer at Vipps MobilePay.")
            )
        else:
            self._set_done()

    def _vipps_note_outside(self, child):
        """Say on the invoice that Vipps shows a movement Odoo did not ask for."""
        values = {
            "amount": format_amount(self.env, abs(child.amount), child.currency_id),
            "reference": self.reference,
            "child": child.reference,
        }
        # Whole sentences, one per movement: each language words them its own way.
        if child.vipps_operation == "capture":
            message = self.env._(
                "Vipps MobilePay shows %(amount)s captured on payment %(reference)s "
                "that Odoo had not recorded (made in the business portal, or by an "
                "interrupted run): recorded as %(child)s.",
                **values,
            )
        elif child.vipps_operation == "release":
            message = self.env._(
                "Vipps MobilePay shows %(amount)s released on payment %(reference)s "
                "that Odoo had not recorded (made in the business portal, or by an "
                "interrupted run): recorded as %(child)s.",
                **values,
            )
        else:
            message = self.env._(
                "Vipps MobilePay shows %(amount)s refunded on payment %(reference)s "
                "that Odoo had not recorded (made in the business portal, or by an "
                "interrupted run): recorded as %(child)s.",
                **values,
            )
        self._log_message_on_linked_documents(message)

    def _vipps_reserved(self):
        """What the customer approved and Vipps still holds for this payment, not
        captured nor released (minor units); 0 for other transactions."""
        self.ensure_one()
        if (
            self.provider_code != "vipps"
            or self.source_transaction_id
            or self.vipps_state != "AUTHORIZED"
            or self.state not in ("draft", "pending", "authorized")
        ):
            return 0
        return max(
            0,
            self._vipps_minor(self.amount)
            - self._vipps_minor(self.vipps_captured_amount)
            - self._vipps_minor(self.vipps_cancelled_amount),
        )

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
            return "cancelled"  # voided or released
        return {
            "CREATED": "pending",
            "AUTHORIZED": "authorized",
            "ABORTED": "rejected",
            "EXPIRED": "expired",
            "TERMINATED": "cancelled",
        }.get(self.vipps_state, "pending" if self.state == "pending" else False)

    def _vipps_learn_phone(self, payment):
        """Keep the phone number the customer shared, for the next invoices.

        The number comes from `userDetails` when Vipps sends it (Get payment, or the
        authorized webhook), else from UserInfo by `sub`. `sub` is written by Vipps
        a little after the approval: when it is not there yet, the outbox reads the
        payment again later, within the 168 hours Vipps keeps the data. Only the
        number is kept, with the consent, on the customer. A failure here never
        touches the payment.

        :return: False when the number cannot be read yet (try again later)
        """
        self.ensure_one()
        shared = dict(self.env.context.get("vipps_webhook_profile") or {})
        shared.update({key: value for key, value in payment.items() if value})
        number = (shared.get("userDetails") or {}).get("mobileNumber")
        if not number:
            sub = (shared.get("profile") or {}).get("sub")
            if not sub:
                _logger.info(
                    "Vipps: no sub yet on %s, read again later", self.reference
                )
                self._vipps_learn_phone_later()
                return False
            try:
                info = self.provider_id.sudo()._vipps_get_userinfo(sub)
            except VippsError as error:
                _logger.warning(
                    "Vipps: UserInfo failed for %s: %s", self.reference, error
                )
                if error.transient:
                    self._vipps_learn_phone_later()
                    return False
                return True
            number = info.get("phone_number")
        # Read now: a later reading of it queued meanwhile has nothing left to do.
        self.env["payment.vipps.outbox"].sudo().search(
            [
                ("operation", "=", "phone"),
                ("transaction_id", "=", self.id),
                ("state", "=", "pending"),
            ]
        ).write({"state": "done"})
        e164 = utils.to_e164(number, international=True)
        if not e164:
            _logger.warning("Vipps: no usable number shared on %s", self.reference)
            return True
        self.partner_id._vipps_offer_phone(
            e164,
            self.env._(
                "shared in the Vipps MobilePay app when paying %s", self.reference
            ),
        )
        return True

    def _vipps_learn_phone_later(self):
        if not self.env.context.get("vipps_no_requeue"):
            self.env["payment.vipps.outbox"]._vipps_enqueue(
                "phone", transaction=self, delay=const.OUTBOX_FIRST_RETRY_SECONDS
            )

    def _vipps_schedule_resend(self):
        """Queue an expired push request to be sent again, where the provider says
        so: a day after it was sent, as many times as it allows."""
        provider = self.provider_id
        invoice = self.invoice_ids[:1]
        if not (
            provider.vipps_resend_expired
            and invoice
            and self.vipps_user_flow == "PUSH_MESSAGE"
        ):
            return
        expired = invoice.transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps"
            and tx.vipps_user_flow == "PUSH_MESSAGE"
            and tx.vipps_state == "EXPIRED"
        )
        if len(expired) > provider.vipps_resend_expired:
            return
        due = self.create_date + timedelta(days=1) - fields.Datetime.now()
        self.env["payment.vipps.outbox"]._vipps_enqueue(
            "resend",
            move=invoice,
            transaction=self,
            delay=max(0, due.total_seconds()),
        )

    def _vipps_state_message(self, state):
        return {
            "ABORTED": self.env._("The customer rejected the payment request."),
            "EXPIRED": self.env._("The payment request expired without being paid."),
            "TERMINATED": self.env._("The payment request was withdrawn."),
        }.get(state)

    # === BUSINESS METHODS - FOLLOWING A PAYMENT === #

    def _vipps_sync(self, skip_locked=False):
        """Read the payments back from Vipps and follow them.

        Webhooks, the poll, Check status, the customer's return and the outbox all
        come here. A row lock makes concurrent callers take turns (or, with
        `skip_locked`, skip what another worker is doing), so a payment is captured
        once and its invoice gets one payment; each re-reads Vipps after the lock.

        :return: the transactions followed (without those another worker holds)
        """
        followed = self.browse()
        for tx in self.filtered(lambda t: t.provider_code == "vipps"):
            if not tx._vipps_lock(skip_locked):
                continue
            payment = tx.provider_id.sudo()._vipps_read_back(tx.reference)
            if payment is None:
                tx._vipps_not_at_vipps()
            else:
                tx._vipps_follow(payment)
            followed |= tx
        return followed

    def _vipps_lock(self, skip_locked=False):
        """Lock the transaction's row; False if another worker holds it and
        `skip_locked` is set."""
        self.ensure_one()
        self.env.cr.execute(
            # NO KEY UPDATE: rows that merely refer to the transaction (an outbox row)
            # can still be written meanwhile.
            "SELECT id FROM payment_transaction WHERE id = %s FOR NO KEY UPDATE"
            + (" SKIP LOCKED" if skip_locked else ""),
            [self.id],
        )
        # Nothing to invalidate: under REPEATABLE READ a row changed since this
        # transaction's snapshot cannot be locked (serialization failure).
        return bool(self.env.cr.fetchone())

    def _vipps_follow(self, payment):
        """Process a payment as Vipps has it, register it, then settle it."""
        self.ensure_one()
        self.with_context(vipps_capture_follows=True)._vipps_process(payment)
        self._vipps_post_process()
        if not self.env.context.get("vipps_no_settle"):
            self._vipps_settle()
            self._vipps_post_process()

    def _vipps_not_at_vipps(self):
        """Vipps does not know this payment (5090): end it in Odoo, say so."""
        self.ensure_one()
        if self.state not in ("draft", "pending", "authorized"):
            return
        _logger.warning("Vipps does not know %s: ended in Odoo", self.reference)
        self._set_canceled(
            state_message=self.env._(
                "Vipps MobilePay has no payment with this reference: the request never "
                "reached Vipps, or was made in another environment or sales unit."
            )
        )
        self._vipps_post_process()

    def _create_payment(self, **extra_create_values):
        """Override of `account_payment`: the payment of a capture pays the invoices
        of its Vipps payment (a child transaction has none of its own), also where
        the payment has no journal entry to reconcile."""
        source = self.source_transaction_id
        if (
            self.provider_code == "vipps"
            and source
            and self.operation != "refund"
            and not self.invoice_ids
        ):
            extra_create_values.setdefault(
                "invoice_ids", [Command.set(source.invoice_ids.ids)]
            )
        return super()._create_payment(**extra_create_values)

    def _vipps_post_process(self):
        """Register what finished: payments of confirmed captures and refunds."""
        txs = self | self.child_transaction_ids
        txs.filtered(
            lambda tx: tx.state in ("done", "cancel") and not tx.is_post_processed
        )._post_process()

    def _vipps_settle(self):
        """Tell Vipps what should happen next, judged against the invoice now.

        - A request still waiting in the app for an invoice that can no longer be
          paid through it (paid, cancelled, in draft) is withdrawn.
        - An approved payment is captured up to what the invoice still has due
          (unless capture is manual); what is left is released, with a note.
        - A capture or release whose answer was lost is sent again with its key.

        Called right after a fresh read only. Each answer goes through Odoo's
        payment engine like any other. A lost answer, or a payment another worker
        holds, is left to a later read; a refusal is noted on the invoice.
        """
        self.ensure_one()
        if self.state not in ("draft", "pending", "authorized"):
            return
        try:
            if self.vipps_state == "CREATED" and self._vipps_invoices_closed():
                self._vipps_withdraw()
            elif self.vipps_state == "AUTHORIZED":
                self.with_context(vipps_settling=True)._vipps_settle_authorized()
        except VippsError as error:
            if error.transient:
                if self.env.context.get("vipps_raise_transient"):
                    raise  # the outbox tries again, and keeps the reason
                _logger.info(
                    "Vipps: %s left for a later read: %s", self.reference, error
                )
                self._vipps_set_authorized()
                return
            _logger.warning("Vipps: %s not settled: %s", self.reference, error)
            if error.code == const.ERROR_FUNDS_UNAVAILABLE:
                # The reservation is gone: nothing more to capture, the invoice is
                # due again and the accountant has to ask the customer.
                self._set_error(
                    self.env._(
                        "The customer's approval of %s can no longer be captured: "
                        "the reserved amount was released before Odoo captured it "
                        "(Vipps error 6260). The invoice is still due; contact the "
                        "customer or send a new request.",
                        self.reference,
                    )
                )
                return
            self._vipps_set_authorized()
            if self.state_message != error.args[0]:
                self.state_message = error.args[0]
                self._log_message_on_linked_documents(error.args[0])

    def _vipps_unsettled(self):
        """Whether Vipps still has something to do for this payment: a withdrawal, a
        capture or a release, or an operation whose answer was lost."""
        self.ensure_one()
        if self.child_transaction_ids.filtered(lambda tx: tx.state == "draft"):
            return True
        if self.state not in ("draft", "pending", "authorized"):
            return False
        if self.vipps_state == "CREATED" or not self.vipps_state:
            return self._vipps_invoices_closed()
        if self.vipps_state == "AUTHORIZED" and self._vipps_reserved():
            return self._vipps_invoices_closed() or not (
                self.provider_id.capture_manually
            )
        return False

    def _vipps_set_authorized(self, quiet=False):
        """Mark an approved payment authorized; `quiet` when it is captured or
        released whole at once, which its next line tells."""
        if self.vipps_state == "AUTHORIZED" and self.state in ("draft", "pending"):
            if quiet:
                self._update_state(("draft", "pending"), "authorized", None)
            else:
                self._set_authorized()

    def _vipps_invoices_closed(self):
        """Whether the transaction's invoices can no longer be paid through it."""
        self.ensure_one()
        return bool(self.invoice_ids) and bool(self.invoice_ids._vipps_payable()[1])

    def _vipps_due(self):
        """What may still be captured of this payment, in minor units: the rest of
        the reservation, capped by what its invoices still have due.

        :return: (due, rest of the reservation)
        """
        self.ensure_one()
        remaining = self._vipps_reserved()
        if not self.invoice_ids:
            return remaining, remaining
        due, __ = self.invoice_ids._vipps_payable(excluding=self)
        return max(0, min(remaining, self._vipps_minor(due))), remaining

    def _vipps_settle_authorized(self):
        unconfirmed = self.child_transaction_ids.filtered(
            lambda tx: tx.vipps_operation and tx.state == "draft"
        )
        if unconfirmed:
            # A capture or release whose answer was lost: the same operation again.
            unconfirmed.sorted("id")[0]._vipps_send_part()
            return
        if self.invoice_ids:
            self.invoice_ids._vipps_lock()
            self._vipps_sync_siblings()
        due, remaining = self._vipps_due()
        if remaining <= 0:
            return
        if due and self.provider_id.capture_manually:
            self._vipps_set_authorized()
            return
        if due:
            captured = self._vipps_minor(self.vipps_captured_amount)
            full = due == self._vipps_minor(self.amount)
            self._vipps_capture(None if full else self._vipps_major(due))
            if self._vipps_minor(self.vipps_captured_amount) - captured < due:
                return  # not confirmed: a later read settles it
        if remaining > due:
            released = self._vipps_minor(self.vipps_cancelled_amount)
            rest = self._vipps_major(remaining - due)
            self._vipps_void(None if rest == self.amount else rest)
            if self._vipps_minor(self.vipps_cancelled_amount) > released:
                self._vipps_note_release(due, rest)

    def _vipps_note_release(self, due, rest):
        rest = format_amount(self.env, rest, self.currency_id)
        if due:
            message = self.env._(
                "Only %(due)s of payment %(reference)s was still due on the invoice: "
                "the remaining %(rest)s reserved in the customer's app was released.",
                due=format_amount(self.env, self._vipps_major(due), self.currency_id),
                reference=self.reference,
                rest=rest,
            )
        else:
            message = self.env._(
                "Nothing was due on the invoice any more when payment %(reference)s "
                "was approved: the %(rest)s reserved in the customer's app was "
                "released.",
                reference=self.reference,
                rest=rest,
            )
        self._log_message_on_linked_documents(message)

    def _vipps_sync_siblings(self):
        """Read the other open Vipps payments of the same invoices before capturing.

        One of them may have been captured by a run whose Odoo side was lost: what
        is due is judged only once they are up to date. Another worker holding one
        of them means it is being processed: this settlement waits.
        """
        siblings = self.invoice_ids.transaction_ids.filtered(
            lambda tx: tx != self
            and tx.provider_code == "vipps"
            and not tx.source_transaction_id
            and tx.state in ("draft", "pending", "authorized")
        )
        for sibling in siblings.with_context(vipps_no_settle=True):
            if not sibling._vipps_sync(skip_locked=True):
                raise VippsBusyError(
                    "Vipps: "
                    + self.env._("Payment %s is being processed.", sibling.reference)
                )

    # === BUSINESS METHODS - CAPTURE, VOID, REFUND, WITHDRAW === #

    def _vipps_request_capture(self, child, value):
        """Capture at Vipps (the engine's `_send_capture_request` of each series).

        A capture asked as a child transaction (a partial one on 18.0, every one on
        19.0) is confirmed, like a full capture, only when Vipps's aggregate shows
        it.

        :param child: the capture transaction, if the engine made one
        :param int value: the amount to capture, in minor units
        """
        self.ensure_one()
        captured = self._vipps_minor(self.vipps_captured_amount)
        if child:
            child.vipps_operation = "capture"
            child._vipps_send_part()
        else:
            self._vipps_modify("capture", value, ("capture", value))
        if self._vipps_minor(self.vipps_captured_amount) - captured < value:
            self._vipps_unconfirmed("capture")

    def _vipps_request_release(self, child):
        """Release the reserved amount at Vipps: cancel (the engine's
        `_send_void_request` of each series).

        Vipps releases all that is not captured. A release asked as a child
        transaction (after a partial capture on 18.0, always on 19.0) is confirmed
        when the aggregate shows it.
        """
        self.ensure_one()
        released = self._vipps_minor(self.vipps_cancelled_amount)
        if child:
            child.vipps_operation = "release"
            child._vipps_send_part()
        else:
            self._vipps_modify("cancel", None, ("cancel",))
        if self._vipps_minor(self.vipps_cancelled_amount) <= released:
            self._vipps_unconfirmed("release")

    def _vipps_unconfirmed(self, operation):
        """An operation Vipps did not confirm: for the accountant who asked, an error
        (nothing is booked); when Odoo settles a payment itself, a later read does.

        :param str operation: what was asked: 'capture' or 'release'
        """
        if self.env.context.get("vipps_settling"):
            return
        if operation == "capture":
            message = self.env._(
                "Vipps MobilePay did not confirm the capture of payment %s, so "
                "nothing was recorded. Odoo reads the payment again regularly and "
                "records it if Vipps carried it out; if it is still not done later, "
                "try again.",
                self.reference,
            )
        else:
            message = self.env._(
                "Vipps MobilePay did not confirm the release of payment %s, so "
                "nothing was recorded. Odoo reads the payment again regularly and "
                "records it if Vipps carried it out; if it is still not done later, "
                "try again.",
                self.reference,
            )
        raise UserError(message)

    def _vipps_attempt_key(self):
        """What identifies the operation a child transaction stands for: its
        reference, and its id, which a transaction rolled back never gives to
        another (its reference may be given again). A retry of this operation sends
        the same key; an operation asked again after a refusal gets a new one."""
        self.ensure_one()
        return (self.operation, self.vipps_operation, self.reference, self.id)

    def _vipps_send_part(self):
        """Send the capture or release a child transaction stands for (again)."""
        self.ensure_one()
        source = self.source_transaction_id
        try:
            if self.vipps_operation == "capture":
                value = self._vipps_minor(self.amount)
                source._vipps_modify("capture", value, self._vipps_attempt_key())
            else:
                source._vipps_modify("cancel", None, self._vipps_attempt_key())
        except VippsError as error:
            if not error.transient:
                self._set_error(error.args[0])  # refused: not to be sent again
            raise

    def _vipps_modify(self, operation, value, key_parts):
        """Capture, release or refund at Vipps and book the answer.

        :param str operation: capture, cancel or refund
        :param int value: the amount in minor units (None for cancel)
        :param tuple key_parts: what identifies this operation (its Idempotency-Key)
        """
        self.ensure_one()
        if operation == "cancel":
            payload = {"cancelTransactionOnly": False}
        else:
            payload = {"modificationAmount": self._vipps_amount(value)}
        answer = self.provider_id.sudo()._vipps_modify_payment(
            self.reference,
            operation,
            payload,
            self._vipps_idempotency_key(*key_parts),
        )
        self._vipps_process(answer)
        self._vipps_post_process()

    def _vipps_request_refund(self, refund_tx):
        """Refund at Vipps, partial refunds allowed (the engine's
        `_send_refund_request` of each series).

        The refund transaction is confirmed only when Vipps's aggregate shows the
        money refunded. When the answer is lost it stays unconfirmed and the outbox
        sends it again with the same Idempotency-Key (its own reference), which
        cannot refund twice.
        """
        self.ensure_one()
        # Vipps is read first: a refund it shows and Odoo lost (a crash after the
        # call) is this one asked again, not a second refund.
        self.with_context(vipps_no_settle=True)._vipps_sync()
        if refund_tx.state == "draft":
            refund_tx._vipps_send_refund()

    def _vipps_send_refund(self):
        """Send the refund this refund transaction stands for (again).

        :return: whether Vipps confirmed it
        """
        self.ensure_one()
        source = self.source_transaction_id
        self.env["payment.vipps.outbox"]._vipps_record_intent(source)
        try:
            source._vipps_modify(
                "refund",
                -self._vipps_minor(self.amount),
                self._vipps_attempt_key(),
            )
        except VippsUnreachableError as error:
            _logger.warning("Vipps: refund %s unconfirmed: %s", self.reference, error)
        except VippsError as error:
            self._set_error(error.args[0])  # refused: not to be sent again
            raise
        if self.state == "draft":
            self.env["payment.vipps.outbox"]._vipps_enqueue(
                "refund", transaction=self, delay=const.OUTBOX_FIRST_RETRY_SECONDS
            )
            return False
        return True

    def _vipps_withdraw(self):
        """Withdraw a payment request the customer has not approved.

        cancelTransactionOnly: a request approved in the meantime is not released
        by this call; the payment is read and settled like any approved payment
        (captured if the invoice is still due, released if not).

        :return: whether the request is withdrawn at Vipps
        :rtype: bool
        """
        self.ensure_one()
        provider_sudo = self.provider_id.sudo()
        try:
            answer = provider_sudo._vipps_modify_payment(
                self.reference,
                "cancel",
                {"cancelTransactionOnly": True},
                self._vipps_idempotency_key("withdraw"),
            )
        except VippsError as error:
            if error.code != const.ERROR_ALREADY_AUTHORIZED:
                raise
            self._vipps_follow(provider_sudo._vipps_get_payment(self.reference))
            return False
        self._vipps_process(answer)
        self._vipps_post_process()
        return self.vipps_state in const.VIPPS_FINAL_FAILED_STATES

    # === BUSINESS METHODS - WEBHOOKS AND POLLING === #

    @api.model
    def _vipps_handle_webhook(self, provider, event):
        """Follow the payment a webhook is about, in the worker that received it.

        What cannot be done now (the payment is unknown yet, another worker holds it,
        Vipps cannot be reached) goes to the outbox and is retried; the webhook is
        acknowledged either way, since Vipps would hold back later events.
        """
        reference = str(event.get("reference") or "")
        tx = self.search(
            [
                ("reference", "=", reference),
                ("provider_code", "=", "vipps"),
                ("source_transaction_id", "=", False),
            ],
            limit=1,
        )
        outbox = self.env["payment.vipps.outbox"]
        if not tx:
            # Not committed yet, or its Odoo side was lost: looked at a little later.
            outbox._vipps_enqueue(
                "sync",
                provider=provider,
                reference=reference,
                delay=const.UNKNOWN_REFERENCE_DELAY_SECONDS,
            )
            return
        shared = {
            key: event[key] for key in ("userDetails", "profile") if event.get(key)
        }
        if shared and tx.vipps_share_phone and tx.state in ("done", "authorized"):
            # The payment was followed before this webhook came (the customer's
            # return): the number it brings may be what that read lacked.
            tx.with_context(vipps_webhook_profile=shared)._vipps_learn_phone({})
        if tx._vipps_event_changes_nothing(str(event.get("name") or "")):
            return
        try:
            with self.env.cr.savepoint():
                followed = tx.with_context(vipps_webhook_profile=shared)._vipps_sync(
                    skip_locked=True
                )
        except VippsError as error:
            _logger.warning("Vipps: webhook for %s not followed: %s", reference, error)
            followed = False
        if not followed:
            outbox._vipps_enqueue(
                "sync", transaction=tx, delay=const.BUSY_RETRY_SECONDS
            )

    def _vipps_event_changes_nothing(self, name):
        """Whether a webhook event can be acknowledged without reading the payment.

        The creation of a request Odoo sent; the echo of Odoo's own full capture,
        or a repeated approval, on a paid transaction; the end of a request Odoo
        already closed. Anything else (a refund or a release made in the portal, an
        approval after a withdrawal) is read back.
        """
        self.ensure_one()
        if name == "CREATED":
            return bool(self.vipps_state)  # Odoo created it and knows it exists
        if self.state == "done":
            fully_captured = self._vipps_minor(
                self.vipps_captured_amount
            ) >= self._vipps_minor(self.amount)
            return fully_captured and name in ("AUTHORIZED", "CAPTURED")
        if self.state == "cancel":
            return name in ("ABORTED", "EXPIRED", "TERMINATED")
        return False

    @api.model
    def _cron_vipps_poll(self, batch_size=100):
        """Safety net for lost webhooks: read back the payments that can still change.

        Requests waiting in the app, approved payments not captured yet, creates
        Vipps has not confirmed and unconfirmed captures, releases and refunds; each
        in a transaction of its own, skipping those another worker is following.
        """
        now = fields.Datetime.now()
        domain = [
            ("provider_code", "=", "vipps"),
            ("source_transaction_id", "=", False),
            "|",
            ("state", "in", ("draft", "pending", "authorized")),
            ("child_transaction_ids.state", "=", "draft"),
            "|",
            (
                "vipps_last_sync",
                "<",
                now - timedelta(minutes=const.POLL_MIN_AGE_MINUTES),
            ),
            "&",
            ("vipps_last_sync", "=", False),
            # A create Vipps has not confirmed is checked by the outbox first.
            (
                "create_date",
                "<",
                now - timedelta(minutes=const.CREATE_CHECK_DELAY_MINUTES),
            ),
        ]
        transactions = self.search(
            domain, limit=batch_size, order="vipps_last_sync, id"
        )
        outbox = self.env["payment.vipps.outbox"]
        for tx_id in transactions.ids:
            polled = outbox._vipps_isolated(
                lambda env, tx_id=tx_id: env["payment.transaction"]
                .sudo()
                .browse(tx_id)
                ._vipps_poll_one()
            )
            if not polled:
                # Failed and rolled back: to the back of the line, not first again.
                outbox._vipps_isolated(
                    lambda env, tx_id=tx_id: env["payment.transaction"]
                    .sudo()
                    .browse(tx_id)
                    .write({"vipps_last_sync": now})
                )
        remaining = 0
        if len(transactions) == batch_size:
            # Counted in a transaction of its own, which sees what the loop committed.
            remaining = outbox._vipps_isolated(
                lambda env: env["payment.transaction"].search_count(domain)
            )
        self.env["ir.cron"]._notify_progress(
            done=len(transactions), remaining=remaining
        )

    def _vipps_poll_one(self):
        self.ensure_one()
        try:
            self._vipps_sync(skip_locked=True)
        except VippsError as error:
            _logger.warning("Vipps poll of %s failed: %s", self.reference, error)
        self.vipps_last_sync = fields.Datetime.now()
        return True


def _tax_rate(line, excluding, tax):
    """The VAT rate of a receipt line, in hundredths of a percent (0 to 10000)."""
    leaves = line.tax_ids.flatten_taxes_hierarchy()
    # A division tax of d % is d % of the price with tax: d / (100 - d) of the price
    # without, which is how Vipps counts a rate.
    nominal = sum(t.amount for t in leaves if t.amount_type == "percent") + sum(
        t.amount * 100 / (100 - t.amount)
        for t in leaves
        if t.amount_type == "division" and t.amount < 100
    )
    expected = round(excluding * nominal / 100)
    if 0 <= nominal <= 100 and abs(expected - tax) <= max(1, tax // 100):
        return round(nominal * 100)
    return min(10000, round(tax * 10000 / excluding)) if excluding else 0


def _to_minor(currency, amount):
    decimals = payment_utils.CURRENCY_MINOR_UNITS.get(
        currency.name, currency.decimal_places
    )
    return int(float_round(amount * 10**decimals, precision_digits=0))


def _to_major(currency, value):
    decimals = payment_utils.CURRENCY_MINOR_UNITS.get(
        currency.name, currency.decimal_places
    )
    return value / 10**decimals
