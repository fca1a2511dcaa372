import contextlib
import logging
from datetime import datetime, time, timedelta

import pytz

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import format_amount, format_date, formatLang, str2bool

from .. import compat, const, utils
from ..exceptions import VippsError

_logger = logging.getLogger(__name__)


class AccountMove(models.Model):
    """The invoice side: what an accountant sees and clicks.

    Vipps itself is the payment transaction's business (`payment.transaction`); work
    that must not wait on the network is queued in `payment.vipps.outbox`. The one
    answer to "can this invoice be paid through Vipps now, and how much" is
    `_vipps_payable`.
    """

    _inherit = "account.move"

    vipps_state = fields.Selection(
        string="Vipps Status",
        selection=const.INVOICE_VIPPS_STATES,
        compute="_compute_vipps_fields",
        store=True,
        copy=False,
        index="btree_not_null",
        help="Where the invoice's latest Vipps MobilePay payment request stands:\n"
        "- Requested: sent, waiting for the customer;\n"
        "- Approved: approved by the customer, being captured;\n"
        "- Paid: captured, the payment is registered on the invoice;\n"
        "- Rejected: the customer declined it in the app;\n"
        "- Expired: it ran out before the customer paid;\n"
        "- Cancelled: withdrawn before the customer paid.",
    )
    vipps_reference = fields.Char(
        compute="_compute_vipps_fields",
        store=True,
        copy=False,
        help="The reference of the latest Vipps MobilePay payment request.",
    )
    vipps_expires_at = fields.Datetime(
        string="Vipps Request Expires",
        compute="_compute_vipps_fields",
        store=True,
        copy=False,
    )
    vipps_can_request = fields.Boolean(
        string="Can Be Requested via Vipps",
        compute="_compute_vipps_can_request",
        help="Technical: the invoice can be paid through Vipps now and has no request "
        "waiting in the customer's app.",
    )

    # === COMPUTE METHODS === #

    @api.depends("transaction_ids.vipps_state", "transaction_ids.state")
    def _compute_vipps_fields(self):
        for invoice in self:
            tx = invoice._vipps_last_transaction()
            invoice.vipps_state = tx and tx._vipps_invoice_state()
            invoice.vipps_reference = tx.reference
            invoice.vipps_expires_at = tx.vipps_expires_at

    @api.depends("state", "payment_state", "amount_residual", "vipps_state")
    def _compute_vipps_can_request(self):
        for invoice in self:
            invoice.vipps_can_request = (
                invoice.move_type == "out_invoice"
                and not invoice._vipps_payable()[1]
                and not invoice._vipps_waiting_request()
                and bool(
                    self.env["payment.provider"]._vipps_find(
                        invoice.company_id, invoice.currency_id
                    )
                )
            )

    def _vipps_last_transaction(self):
        self.ensure_one()
        txs = self.sudo().transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps" and not tx.source_transaction_id
        )
        return txs.sorted("id")[-1:]

    # === CRUD METHODS === #

    def _post(self, soft=True):
        """Override of `account` to queue the Vipps work that posting implies.

        Credit notes of Vipps-paid invoices are queued for refunding and invoices for
        automatic requests; nothing is sent here, so posting never waits on Vipps and
        is never undone by it.
        """
        posted = super()._post(soft=soft)
        outbox = self.env["payment.vipps.outbox"]
        for credit_note in posted.filtered(lambda move: move.move_type == "out_refund"):
            paid_by = credit_note._vipps_refundable_payment()
            if paid_by:
                outbox._vipps_enqueue("refund", move=credit_note, transaction=paid_by)
        for invoice in posted.filtered(lambda move: move.move_type == "out_invoice"):
            provider = self.env["payment.provider"]._vipps_find(
                invoice.company_id, invoice.currency_id
            )
            if provider.vipps_auto_request:
                outbox._vipps_enqueue(
                    "request", provider=provider, move=invoice, values={"auto": True}
                )
        return posted

    # === ACTION METHODS === #

    def button_draft(self):
        """Override of `account` to withdraw open Vipps requests, and to refuse
        when the customer paid the invoice through Vipps."""
        paid_by_vipps = self._vipps_paid_transactions()
        result = super().button_draft()
        self._vipps_refuse_change(paid_by_vipps)
        self._vipps_withdraw_requests()
        return result

    def button_cancel(self):
        """Override of `account` to withdraw open Vipps requests, and to refuse
        when the customer paid the invoice through Vipps."""
        paid_by_vipps = self._vipps_paid_transactions()
        result = super().button_cancel()
        self._vipps_refuse_change(paid_by_vipps)
        self._vipps_withdraw_requests()
        return result

    def action_vipps_request_payment(self):
        """Open the wizard that sends Vipps MobilePay payment requests."""
        self._vipps_check_rights()
        return {
            "name": self.env._("Request via Vipps MobilePay"),
            "type": "ir.actions.act_window",
            "res_model": "payment.vipps.request.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"active_model": "account.move", "active_ids": self.ids},
        }

    def action_vipps_check_status(self):
        """Read the latest request back from Vipps now."""
        self.ensure_one()
        self._vipps_check_rights()
        tx = self._vipps_last_transaction()
        if not tx:
            raise UserError(self.env._("This invoice has no Vipps payment request."))
        tx._vipps_sync()
        return True

    def action_vipps_cancel_request(self):
        """Withdraw the open Vipps request of the invoice."""
        self.ensure_one()
        self._vipps_check_rights()
        tx = self._vipps_open_transactions().filtered(
            lambda tx: tx.vipps_state != "AUTHORIZED"
        )
        if not tx:
            raise UserError(
                self.env._("This invoice has no open Vipps payment request.")
            )
        if tx[-1]._vipps_withdraw():
            return True
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "warning",
                "message": self.env._(
                    "The customer had already approved the request: it was not "
                    "withdrawn (see the invoice's chatter)."
                ),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def _vipps_check_rights(self):
        """Acting on Vipps for invoices needs the rights to act on them (Billing)."""
        if not self.env.su and not self.env.user.has_group(
            "account.group_account_invoice"
        ):
            raise AccessError(
                self.env._(
                    "Only users who may work on invoices (Billing) can act on Vipps "
                    "MobilePay payment requests and consents."
                )
            )
        self.check_access("write")

    # === BUSINESS METHODS - WHAT CAN BE PAID === #

    @api.model
    def _vipps_restrict_actions(self):
        """Show "Request via Vipps" and its automation action to billing users only
        (called by the module's data on install and update)."""
        compat.restrict_to_group(
            self.env,
            [
                "payment_vipps.action_vipps_request_payment",
                "payment_vipps.action_server_vipps_request_payment",
            ],
            "account.group_account_invoice",
        )

    def _vipps_payable(self, excluding=None):
        """Whether these invoices can be paid through Vipps now, and how much.

        The one answer that the buttons, the portal, the QR code, the pay page,
        sending, re-sending, withdrawing and capturing share. A payment approved in
        the app and not captured yet counts as paying the invoice (it is being
        processed), except the transactions in `excluding`, whose approval is being
        judged.

        :param excluding: Vipps transactions not to count as paying
        :return: the amount that can still be paid, and why nothing can (translated)
            or None
        :rtype: tuple(float, str)
        """
        amount, problem = 0.0, self.env._("This invoice cannot be paid online.")
        for invoice in self:
            if invoice.move_type != "out_invoice" or invoice.state != "posted":
                continue
            if invoice.currency_id.name not in const.SUPPORTED_CURRENCIES:
                problem = self.env._(
                    "Vipps MobilePay cannot take payments in %(currency)s (only NOK, "
                    "DKK and EUR).",
                    currency=invoice.currency_id.name,
                )
                continue
            residual = invoice.amount_residual
            if invoice.payment_state in ("paid", "in_payment", "reversed") or (
                invoice.currency_id.compare_amounts(residual, 0) <= 0
            ):
                problem = self.env._("This invoice is already paid.")
                continue
            reserved = sum(
                tx._vipps_major(tx._vipps_reserved())
                for tx in invoice.sudo().transaction_ids
                if tx not in (excluding or ())
            )
            if invoice.currency_id.compare_amounts(residual, reserved) <= 0:
                problem = self.env._(
                    "A payment of this invoice is being processed by Vipps MobilePay."
                )
                continue
            amount += residual - reserved
        return (amount, None) if amount else (0.0, problem)

    def _vipps_lock(self):
        """Lock the invoices' rows: payments of one invoice are judged one at a time."""
        self.env.cr.execute(
            "SELECT id FROM account_move WHERE id IN %s FOR NO KEY UPDATE",
            [tuple(self.ids)],
        )
        # No cache to drop: under REPEATABLE READ, a row another transaction changed
        # since this one's snapshot cannot be locked (a serialization failure, which
        # the caller retries), so what this transaction read of it is still true.

    def _vipps_open_transactions(self):
        """The invoice's Vipps payments that can still change (oldest first)."""
        self.ensure_one()
        return (
            self.sudo()
            .transaction_ids.filtered(
                lambda tx: tx.provider_code == "vipps"
                and not tx.source_transaction_id
                and tx.state in ("draft", "pending", "authorized")
            )
            .sorted("id")
        )

    def _vipps_waiting_request(self):
        """The push request waiting in the customer's app, or an approval being
        processed: either blocks a new request."""
        self.ensure_one()
        return self._vipps_open_transactions().filtered(
            lambda tx: tx.vipps_user_flow == "PUSH_MESSAGE"
            or tx.vipps_state == "AUTHORIZED"
        )[-1:]

    def _vipps_refundable_payment(self):
        """The Vipps payment a credit note should be refunded through, if any.

        Only where the provider says so, once per credit note: a credit note reset
        to draft and posted again is not refunded again.
        """
        self.ensure_one()
        original = self.reversed_entry_id.sudo()
        refunded = self.sudo().transaction_ids.filtered(
            lambda tx: tx.operation == "refund" and tx.state not in ("cancel", "error")
        )
        queued = (
            self.env["payment.vipps.outbox"]
            .sudo()
            .search_count(
                [("operation", "=", "refund"), ("move_id", "=", self.id)], limit=1
            )
        )
        if not original or refunded or queued:
            return self.env["payment.transaction"]
        return original.transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps"
            and tx.state == "done"
            and not tx.source_transaction_id
            and tx.provider_id.vipps_refund_credit_notes
            and tx.currency_id == self.currency_id
        )[-1:]

    # === BUSINESS METHODS - PORTAL === #

    def _has_to_be_paid(self):
        """Override of `account_payment`: a Vipps request waiting in the customer's
        app must not hide the portal's Pay button.

        Odoo hides the button while any transaction is pending. A Vipps request is
        only an offer the customer may ignore: if the invoice is paid another way, an
        approval that follows is released. An approved payment still hides it.
        """
        waiting = self.transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps" and tx.state == "pending"
        )
        if not waiting:
            return super()._has_to_be_paid()
        other_pending = (self.transaction_ids - waiting).filtered(
            lambda tx: tx.state in ("pending", "authorized")
            and tx.provider_code not in ("none", "custom")
        )
        portal_payment = str2bool(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("account_payment.enable_portal_payment")
        )
        __, problem = self._vipps_payable()
        return bool(portal_payment and not other_pending and not problem)

    def _vipps_link_payment(self, share_phone=False):
        """The payment behind a "Pay with Vipps" click: the pending one of an earlier
        click when it can still be paid, else a new web payment.

        :param bool share_phone: ask the customer to share the phone number, to
            receive the next invoices in the app
        :return: the transaction (with its redirect URL)
        :raise UserError: when the invoice cannot be paid this way
        """
        self.ensure_one()
        amount, problem = self._vipps_payable()
        if problem:
            raise UserError(problem)
        fresh = fields.Datetime.now() - timedelta(
            minutes=const.LINK_PAYMENT_REUSE_MINUTES
        )
        reusable = self._vipps_open_transactions().filtered(
            lambda tx: tx.vipps_user_flow == "WEB_REDIRECT"
            and tx.vipps_state == "CREATED"
            and tx.vipps_share_phone == bool(share_phone)
            and tx.currency_id.compare_amounts(tx.amount, amount) == 0
            and tx.create_date > fresh
            and tx.vipps_redirect_url
        )
        if reusable:
            return reusable[-1]
        provider = self._vipps_get_provider()
        with self.env.cr.savepoint():
            tx = self.env["payment.transaction"]._vipps_create_for_invoice(
                self, provider, amount, "WEB_REDIRECT", vipps_share_phone=share_phone
            )
            tx._vipps_send()
        if not tx.vipps_redirect_url:
            raise UserError(
                self.env._(
                    "Vipps MobilePay did not answer in time. Please try again in a "
                    "moment."
                )
            )
        return tx

    def _vipps_show_pay_qr(self):
        """Whether the invoice (PDF, portal) offers the "Pay with Vipps" link."""
        self.ensure_one()
        if self._vipps_payable()[1] or compat.odoo_prints_payment_qr(self):
            return False
        return bool(
            self.env["payment.provider"]._vipps_find(self.company_id, self.currency_id)
        )

    def _vipps_brand(self):
        """The app the customer knows: Vipps in Norway (NOK); MobilePay in Denmark
        (DKK) and Finland (EUR) until the brand change of 12 January 2027, Vipps
        there too from that day."""
        self.ensure_one()
        return utils.brand(self.currency_id.name, fields.Date.context_today(self))

    def _vipps_customer_texts(self):
        """What the customer reads about paying in the app (pay page, e-mail, portal,
        QR code), in the language of this record's environment: whole sentences, so
        that each language words and inflects them its own way."""
        self.ensure_one()
        brand = self._vipps_brand()
        if brand == "MobilePay":
            pay = self.env._("Pay with MobilePay")
            scan = self.env._("Scan to pay with MobilePay")
        else:
            pay = self.env._("Pay with Vipps")
            scan = self.env._("Scan to pay with Vipps")
        return {
            "pay": pay,
            "scan": scan,
            "share": self.env._("Send my next invoices to my %s app", brand),
            "share_help": self.env._(
                "%(app)s will ask you to share your phone number with %(company)s; "
                "only the number is kept.",
                app=brand,
                company=self.company_id.name,
            ),
            "consented": self.env._("Your invoices are sent to your %s app.", brand),
        }

    def _vipps_pay_url(self):
        """The public "Pay with Vipps" page of the invoice (e-mails, QR code)."""
        self.ensure_one()
        self._portal_ensure_token()
        return (
            f"{self.get_base_url()}{const.PAY_ROUTE}/{self.id}"
            f"?access_token={self.access_token}"
        )

    def _vipps_order_details_url(self):
        """The public, tokenised URL of the invoice page that the app links to."""
        self.ensure_one()
        self._portal_ensure_token()
        return (
            f"{self.get_base_url()}{const.ORDER_DETAILS_ROUTE}/{self.id}"
            f"?access_token={self.access_token}"
        )

    def _vipps_customer_lang(self):
        """The language the invoice's customer reads (see res.partner)."""
        self.ensure_one()
        return self.partner_id._vipps_customer_lang(self.company_id)

    def _vipps_format_amount(self, amount):
        """An amount of the invoice as its customer writes it, in the language of
        this record's environment (the customer pages and e-mails render in the
        customer's): in Norwegian, Danish, Finnish and Swedish the currency follows
        the amount ("2 300,00 kr"), elsewhere Odoo's own format of the currency."""
        self.ensure_one()
        currency = self.currency_id
        if (self.env.lang or "en_US").split("_")[0] not in const.SYMBOL_AFTER_LANGUAGES:
            return format_amount(self.env, amount, currency)
        number = formatLang(self.env, amount, digits=currency.decimal_places)
        return f"{number}\N{NO-BREAK SPACE}{currency.symbol}"

    def _vipps_format_quantity(self, quantity):
        """A line's quantity as its customer writes it ("2", "1,5"), in the language
        of this record's environment."""
        self.ensure_one()
        decimal_point = self.env["res.lang"]._get_data(code=self.env.lang).decimal_point
        text = formatLang(self.env, quantity, dp="Product Unit of Measure")
        if decimal_point in text:
            text = text.rstrip("0").rstrip(decimal_point)
        return text

    def _vipps_payment_description(self):
        """The text the customer sees in the app.

        E.g. "Faktura INV/2026/00012, forfall 31.12.2026": in the customer's
        language and date format, within Vipps's 100 characters.
        """
        self.ensure_one()
        env = self.with_context(lang=self._vipps_customer_lang()).env
        if self.invoice_date_due:
            text = env._(
                "Invoice %(number)s, due %(date)s",
                number=self.name,
                date=format_date(env, self.invoice_date_due),
            )
        else:
            text = env._("Invoice %s", self.name)
        return text[: const.DESCRIPTION_MAX_LENGTH]

    # === BUSINESS METHODS - LIFECYCLE === #

    def _vipps_paid_transactions(self):
        """The Vipps payments reconciled with these invoices (read before Odoo
        unreconciles them)."""
        return (
            self.filtered(lambda move: move.move_type == "out_invoice")
            ._get_reconciled_payments()
            .payment_transaction_id.filtered(lambda tx: tx.provider_code == "vipps")
        )

    def _vipps_refuse_change(self, paid_by_vipps):
        """The customer paid through Vipps (perhaps a moment ago, while the change
        was being made): the money was captured, so the invoice is not cancelled
        or reset under it. Called after Odoo's own checks; raising undoes them.

        :raise UserError: naming the payment and what to do instead
        """
        if paid_by_vipps:
            raise UserError(
                self.env._(
                    "This invoice was paid through Vipps MobilePay (%s): the money "
                    "was captured. Reverse it with a credit note (refunded through "
                    "Vipps) instead, or unreconcile the payment first.",
                    ", ".join(paid_by_vipps.mapped("reference")),
                )
            )

    def _vipps_withdraw_requests(self):
        """Queue the withdrawal of the requests of invoices that can no longer be
        paid through them (cancelled, reset to draft, paid another way).

        Nothing is sent from here: the outbox withdraws them right after the commit
        (and releases an approval that comes too late). An approval already being
        processed cannot be withdrawn: the change is refused, and the invoice stays
        as it was.

        :raise UserError: when the customer has approved a payment of the invoice
        """
        outbox = self.env["payment.vipps.outbox"]
        for invoice in self:
            if not invoice._vipps_payable()[1]:
                continue
            for tx in invoice._vipps_open_transactions():
                if tx.vipps_state == "AUTHORIZED" and invoice.state != "posted":
                    raise UserError(
                        self.env._(
                            "The customer has approved the Vipps payment %s of this "
                            "invoice: it is being captured and registered. Reverse the "
                            "invoice with a credit note once it is paid.",
                            tx.reference,
                        )
                    )
                outbox._vipps_enqueue("sync", transaction=tx)

    # === BUSINESS METHODS - PAYMENT REQUESTS === #

    def vipps_request_payment(self, phone=None, amount=None, expires_at=None):
        """Send a Vipps MobilePay payment request (push message) for each invoice.

        Public: usable from server actions, automation rules, XML-RPC and JSON-RPC.
        Every invoice is checked first; when any check fails nothing is sent and a
        UserError lists the problems. Then each invoice is sent on its own: for a
        single invoice a Vipps refusal is raised; in a batch it is noted on that
        invoice's chatter and the others go ahead.

        :param str phone: the customer's mobile number (default: the one the customer
            agreed to receive requests on, else the customer's mobile). A request
            goes to the app only on a number the customer agreed to (shared in the
            app, or confirmed by an accountant in the Request via Vipps wizard);
            otherwise the customer is e-mailed a "Pay with Vipps" link instead.
        :param float amount: the amount to request (default: the amount due)
        :param expires_at: when the request expires, a datetime or a string
            "YYYY-MM-DD HH:MM:SS" in UTC (default: the due date, within the
            provider's limit)
        :return: the ids of the payment transactions created, one per invoice sent
        :rtype: list
        """
        self._vipps_check_rights()
        return self._vipps_request_payment(
            phone=_checked_phone(self.env, phone),
            amount=_checked_amount(self.env, amount),
            expires_at=_checked_datetime(self.env, expires_at),
        ).ids

    def _vipps_request_payment(
        self, phone=None, amount=None, expires_at=None, consent=False
    ):
        requests = self._vipps_prepare_requests(
            [
                {
                    "invoice": invoice,
                    "phone": phone,
                    "amount": amount,
                    "expires_at": expires_at,
                    "consent": consent,
                }
                for invoice in self
            ]
        )
        return self._vipps_send_requests(requests)

    def _vipps_prepare_requests(self, wishes):
        """Check and complete the requests; raise one UserError listing all problems.

        :param list wishes: dicts with invoice and optional phone, amount, expires_at
        :return: dicts ready for `_vipps_send_request`
        """
        problems, requests, providers = [], [], {}
        for wish in wishes:
            invoice = wish["invoice"]
            market = (invoice.company_id, invoice.currency_id)
            try:
                request = invoice._vipps_prepare_request(
                    provider=providers.get(market), **wish
                )
                providers[market] = request["provider"]
                requests.append(request)
            except UserError as error:
                problems.append(f"{invoice.display_name}: {error.args[0]}")
        if problems:
            raise UserError(
                self.env._("No payment request was sent:\n%s", "\n".join(problems))
            )
        return requests

    def _vipps_send_requests(self, requests):
        transactions = self.env["payment.transaction"]
        emailed = [request for request in requests if request.get("email")]
        for request in emailed:
            request["invoice"]._vipps_email_pay_link(reason=request["reason"])
        requests = [request for request in requests if not request.get("email")]
        if len(requests) == 1:
            return requests[0]["invoice"]._vipps_send_request(requests[0])
        for request in requests:
            invoice = request["invoice"]
            try:
                transactions |= invoice._vipps_send_request(request)
            except (UserError, ValidationError) as error:
                _logger.info("Vipps request for %s not sent: %s", invoice.name, error)
                invoice._vipps_note_not_sent(error)
        return transactions

    def _vipps_note_not_sent(self, error):
        """Say on the invoice why a Vipps request was not sent."""
        self.ensure_one()
        self.message_post(
            body=self.env._(
                "The Vipps MobilePay payment request was not sent: %s", error.args[0]
            )
        )

    def _vipps_prepare_request(
        self,
        invoice=None,
        phone=None,
        amount=None,
        provider=None,
        consent=False,
        **values,
    ):
        """Check that this invoice can be requested and complete the request values.

        A push goes only to a number the customer agreed to receive requests on
        (shared in the app, or confirmed by the accountant: `consent`), and only
        where the sales unit may push; otherwise the customer is e-mailed the
        "Pay with Vipps" link.

        :param provider: the invoice's Vipps provider, when the caller has it
        :param bool consent: the accountant confirms that the customer agreed to
            receive requests on `phone` (recorded with who and when)
        :raise UserError: with the reason when it cannot
        """
        self.ensure_one()
        if self.state != "posted":
            raise UserError(self.env._("Only posted invoices can be paid with Vipps."))
        if self.move_type != "out_invoice":
            raise UserError(
                self.env._("Only customer invoices can be paid with Vipps.")
            )
        due, problem = self._vipps_payable()
        if problem:
            raise UserError(problem)
        provider = provider or self._vipps_get_provider()
        waiting = self._vipps_waiting_request()
        if waiting:
            raise UserError(
                self.env._(
                    "A Vipps payment request (%s) is already waiting for the customer. "
                    "Cancel it first to send a new one.",
                    waiting.reference,
                )
            )
        amount = due if amount is None else amount
        if self.currency_id.compare_amounts(amount, 0) <= 0:
            raise UserError(self.env._("The amount to request must be positive."))
        if self.currency_id.compare_amounts(amount, due) > 0:
            raise UserError(
                self.env._(
                    "The amount to request (%(amount)s) is more than the amount due "
                    "(%(due)s).",
                    amount=amount,
                    due=due,
                )
            )
        typed_phone = self._vipps_default_phone() if phone is None else phone
        e164 = utils.to_e164(typed_phone, self._vipps_country_code())
        if phone and not e164:
            raise UserError(
                self.env._(
                    "%(phone)s is not a valid mobile number for %(partner)s.",
                    phone=phone,
                    partner=self.partner_id.display_name,
                )
            )
        consented = self.partner_id._vipps_consented_phone()
        if not provider._vipps_push_possible():
            reason = self.env._(
                "the sales unit is not approved for payment requests in the app"
            )
        elif not e164:
            reason = self.env._("no mobile number is known")
        elif e164 != consented and not consent:
            reason = self.env._(
                "the customer has not agreed to receive requests on %s",
                utils.mask_phone(e164),
            )
        else:
            reason = None
        if reason:
            # No number the customer agreed to, or no way into the app: the
            # "Pay with Vipps" link goes by e-mail instead.
            if not self.partner_id.email:
                raise UserError(
                    self.env._(
                        "%(partner)s cannot get a payment request in the app "
                        "(%(reason)s) and has no e-mail address for the pay link.",
                        partner=self.partner_id.display_name,
                        reason=reason,
                    )
                )
            return {
                "invoice": self,
                "provider": provider,
                "email": True,
                "reason": reason,
            }
        expires_at = values.get("expires_at") or self._vipps_default_expiry(provider)
        provider._vipps_check_expiry(expires_at)
        return {
            "invoice": self,
            "provider": provider,
            "phone": e164,
            "consent": e164 != consented,
            "amount": amount,
            "expires_at": expires_at,
        }

    def _vipps_send_request(self, request):
        """Create the transaction and the push payment at Vipps for one invoice.

        All or nothing: when Vipps refuses, the transaction is rolled back with it.
        When the refusal means the request cannot reach the app (push or long-living
        requests not approved for the sales unit, not a Vipps user), the customer is
        e-mailed the pay link at once and the chatter says why.

        :return: the transaction, or nothing when the link was e-mailed
        """
        self.ensure_one()
        provider = request["provider"]
        try:
            with self.env.cr.savepoint():
                if request.get("consent"):
                    self.partner_id._vipps_store_consent(
                        request["phone"],
                        self.env._("confirmed by %s", self.env.user.name),
                        user=self.env.user,
                    )
                tx = self.env["payment.transaction"]._vipps_create_for_invoice(
                    self,
                    provider,
                    request["amount"],
                    "PUSH_MESSAGE",
                    vipps_phone=request["phone"],
                    vipps_expires_at=request["expires_at"],
                )
                tx._vipps_send()
        except VippsError as error:
            if (
                error.code not in const.PUSH_FALLBACK_ERRORS
                or not self.partner_id.email
            ):
                raise
            provider._vipps_learn_refusal(error)
            self._vipps_email_pay_link(reason=error.args[0])
            return self.env["payment.transaction"]
        return tx

    def _vipps_send_queued(self, values):
        """Send a request the outbox holds for this invoice (wizard or automation).

        An invoice that was paid, cancelled or requested again meanwhile is left
        alone.

        :raise UserError: when the request cannot be sent (the outbox notes why)
        """
        self.ensure_one()
        if self._vipps_payable()[1] or self._vipps_waiting_request():
            return
        if values.get("auto"):
            self._vipps_send_auto_request()
            return
        self._vipps_request_payment(
            phone=values.get("phone"),
            amount=values.get("amount"),
            expires_at=fields.Datetime.to_datetime(values.get("expires_at")),
            consent=values.get("consent", False),
        )

    def _vipps_resend_expired(self, expired_tx):
        """Send again, to the same number, a push request that expired unpaid."""
        self.ensure_one()
        if self._vipps_payable()[1] or self._vipps_waiting_request():
            return
        self._vipps_request_payment(phone=expired_tx.vipps_phone)

    def _vipps_send_auto_request(self):
        """Push to a customer who opted in, else e-mail the pay link (per settings)."""
        self.ensure_one()
        provider = self._vipps_get_provider()
        partner = self.partner_id
        consented = partner._vipps_consented_phone()
        if consented and provider.vipps_auto_push and provider._vipps_push_possible():
            self._vipps_request_payment(phone=consented)
        elif provider.vipps_auto_email and partner.email:
            self._vipps_email_pay_link()

    def _vipps_queue_requests(self, wishes):
        """Queue checked requests for the outbox (large batches).

        :param list wishes: dicts with invoice, phone, amount, expires_at
        """
        outbox = self.env["payment.vipps.outbox"]
        for wish in wishes:
            expires_at = wish.get("expires_at")
            outbox._vipps_enqueue(
                "request",
                move=wish["invoice"],
                values={
                    "phone": wish.get("phone"),
                    "consent": wish.get("consent"),
                    "amount": wish.get("amount"),
                    "expires_at": expires_at and fields.Datetime.to_string(expires_at),
                },
            )

    def _vipps_email_pay_link(self, reason=None):
        """E-mail the customer a "Pay with Vipps" button, and say why on the invoice.

        :param str reason: why no request went to the app (translated)
        """
        self.ensure_one()
        template = self.env.ref("payment_vipps.mail_template_pay_link")
        self.message_post_with_source(
            template,
            subtype_xmlid="mail.mt_comment",
            partner_ids=self.partner_id.ids,
        )
        if reason:
            self._message_log(
                body=self.env._(
                    "The 'Pay with Vipps' link was e-mailed instead of a request in "
                    "the app: %s",
                    reason,
                )
            )

    def _vipps_get_provider(self):
        """The sales unit that takes this invoice: the company's Vipps provider for
        the invoice's currency."""
        self.ensure_one()
        provider = self.env["payment.provider"]._vipps_find(
            self.company_id, self.currency_id
        )
        if not provider or not provider._vipps_is_configured():
            raise UserError(
                self.env._(
                    "Vipps MobilePay is not set up for %(company)s in %(currency)s: "
                    "enable a Vipps MobilePay payment provider whose market is "
                    "%(currency)s and fill in its credentials.",
                    company=self.company_id.name,
                    currency=self.currency_id.name,
                )
            )
        return provider

    def _vipps_default_phone(self):
        """The number the customer consented to, else the customer's mobile."""
        partner = self.partner_id
        return (
            partner._vipps_consented_phone()
            or partner[compat.MOBILE]
            or partner.commercial_partner_id[compat.MOBILE]
            or partner.phone
        )

    def _vipps_country_code(self):
        country = self.partner_id.country_id or self.company_id.country_id
        return country.code

    def _vipps_default_expiry(self, provider):
        """Default expiry: the end of the due date, inside the provider's window."""
        now = fields.Datetime.now()
        latest = now + timedelta(hours=provider.vipps_max_expiry_hours)
        earliest = now + timedelta(minutes=const.MIN_EXPIRY_MINUTES)
        due = self.invoice_date_due
        if due:
            tz = pytz.timezone(
                self.env.user.tz or self.company_id.partner_id.tz or "UTC"
            )
            end_of_day = tz.localize(datetime.combine(due, time(23, 59, 59)))
            end_of_day = end_of_day.astimezone(pytz.utc).replace(tzinfo=None)
            if end_of_day > earliest:
                return min(end_of_day, latest)
        return latest


def _checked_phone(env, phone):
    if phone is None or phone is False:
        return None
    if not isinstance(phone, str):
        raise UserError(env._("The mobile number must be text, e.g. +47 912 34 567."))
    return phone


def _checked_amount(env, amount):
    if amount is None or amount is False:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise UserError(env._("The amount must be a number, e.g. 1250.50."))
    return float(amount)


def _checked_datetime(env, moment):
    """A datetime from Python, or the UTC string RPC carries, else a UserError."""
    if moment is None or moment is False:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo:
            moment = moment.astimezone(pytz.utc).replace(tzinfo=None)
        return moment
    parsed = None
    if isinstance(moment, str) and len(moment) == len("2026-12-31 22:59:59"):
        with contextlib.suppress(ValueError):
            parsed = fields.Datetime.to_datetime(moment)
    if parsed:
        return parsed
    raise UserError(
        env._(
            "The expiry must be a date and time in UTC, written "
            "YYYY-MM-DD HH:MM:SS (e.g. 2026-12-31 22:59:59)."
        )
    )
