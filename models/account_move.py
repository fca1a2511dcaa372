import logging
from datetime import datetime, time, timedelta

import pytz

from odoo import Command, api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import format_date, str2bool

from .. import const, utils
from ..exceptions import VippsError

_logger = logging.getLogger(__name__)


class AccountMove(models.Model):
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
    vipps_auto_pending = fields.Boolean(
        string="Vipps Request Queued",
        copy=False,
        index=True,
        readonly=True,
        help="Sent shortly by a job: posted with automatic Vipps requests on, or "
        "part of a large request from the list of invoices.",
    )
    vipps_queued_request = fields.Json(
        copy=False,
        readonly=True,
        help="What the request wizard asked for a queued request: phone, amount, "
        "expiry and the user who asked.",
    )
    vipps_expires_at = fields.Datetime(
        string="Vipps Request Expires",
        compute="_compute_vipps_fields",
        store=True,
        copy=False,
    )

    # === COMPUTE METHODS === #

    @api.depends("transaction_ids.vipps_state", "transaction_ids.state")
    def _compute_vipps_fields(self):
        for invoice in self:
            tx = invoice._vipps_last_transaction()
            invoice.vipps_state = tx and tx._vipps_invoice_state()
            invoice.vipps_reference = tx.reference
            invoice.vipps_expires_at = tx.vipps_expires_at

    def _vipps_last_transaction(self):
        self.ensure_one()
        txs = self.sudo().transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps" and tx.operation != "refund"
        )
        return txs.sorted("id")[-1:]

    # === CRUD METHODS === #

    def _post(self, soft=True):
        """Override of `account` to queue automatic Vipps requests.

        Nothing is sent here: the job that sends them is triggered and runs after
        this transaction commits, so posting is never slowed or undone by Vipps.
        """
        posted = super()._post(soft=soft)
        posted.filtered(lambda move: move.move_type == "out_refund")._vipps_refund()
        queued = posted.filtered(
            lambda move: move.move_type == "out_invoice"
            and move.company_id in self._vipps_auto_companies()
        )
        if queued:
            queued.vipps_auto_pending = True
            self.env.ref("payment_vipps.cron_send_auto_requests").sudo()._trigger()
        return posted

    def _vipps_refund(self):
        """Refund credit notes of Vipps-paid invoices through Vipps, where the
        provider says so; the refund's payment settles the credit note."""
        for credit_note in self.filtered("reversed_entry_id"):
            paid_by = credit_note.reversed_entry_id.sudo().transaction_ids.filtered(
                lambda tx, currency=credit_note.currency_id: tx.provider_code == "vipps"
                and tx.state == "done"
                and tx.operation != "refund"
                and tx.provider_id.vipps_refund_credit_notes
                and tx.currency_id == currency
            )[-1:]
            if not paid_by:
                continue
            refundable = paid_by.amount - paid_by.vipps_refunded_amount
            amount = min(credit_note.amount_residual, refundable)
            if paid_by.currency_id.compare_amounts(amount, 0) <= 0:
                continue
            paid_by.with_context(
                vipps_refund_documents=credit_note.ids
            )._send_refund_request(amount_to_refund=amount)

    @api.model
    def _vipps_auto_companies(self):
        providers = (
            self.env["payment.provider"]
            .sudo()
            .search(
                [
                    ("code", "=", "vipps"),
                    ("state", "in", ("enabled", "test")),
                    ("vipps_auto_request", "=", True),
                ]
            )
        )
        return providers.company_id

    @api.model
    def _cron_vipps_send_auto_requests(self, batch_size=const.SEND_BATCH_SIZE):
        """Send the queued requests (automatic or from the wizard), a committed
        batch at a time.

        Each invoice leaves the queue in the transaction that sends its request, so
        a batch interrupted half-way resumes without sending anything twice (the
        Vipps reference of a request that was sent but not committed is the same on
        the next run, and Vipps's payment is adopted instead of created again).
        """
        invoices = self.search(
            [("vipps_auto_pending", "=", True)], limit=batch_size, order="id"
        )
        # The batch leaves the queue in the transaction that sends it (one write).
        queued_requests = {
            invoice: invoice.vipps_queued_request for invoice in invoices
        }
        invoices.write({"vipps_auto_pending": False, "vipps_queued_request": False})
        for invoice, queued in queued_requests.items():
            if queued:
                invoice._vipps_send_queued_request(queued)
            else:
                invoice._vipps_send_auto_request()
        remaining = self.search_count([("vipps_auto_pending", "=", True)])
        self.env["ir.cron"]._notify_progress(done=len(invoices), remaining=remaining)

    @api.model
    def _vipps_resend_expired_requests(self, batch_size=100):
        """Send again the push requests that expired unpaid, where the provider says
        so: at most once a day and as many times as it allows."""
        now = fields.Datetime.now()
        invoices = self.search(
            [
                ("vipps_state", "=", "expired"),
                ("state", "=", "posted"),
                ("move_type", "=", "out_invoice"),
                ("payment_state", "in", ("not_paid", "partial")),
            ],
            limit=batch_size,
        )
        for invoice in invoices:
            expired = invoice.sudo().transaction_ids.filtered(
                lambda tx: tx.provider_code == "vipps"
                and tx.vipps_state == "EXPIRED"
                and tx.vipps_user_flow == "PUSH_MESSAGE"
            )
            provider = expired.provider_id[:1]
            if not expired or len(expired) > provider.vipps_resend_expired:
                continue
            if max(expired.mapped("create_date")) > now - timedelta(days=1):
                continue
            try:
                invoice.vipps_request_payment(
                    phone=expired.sorted("id")[-1].vipps_phone
                )
            except (UserError, ValidationError) as error:
                invoice.message_post(
                    body=self.env._(
                        "The expired Vipps MobilePay request was not sent again: %s",
                        error.args[0],
                    )
                )

    def _vipps_send_auto_request(self):
        """Push to a customer who opted in, else e-mail the pay link (per settings)."""
        self.ensure_one()
        if self._vipps_pay_link_problem() or self._vipps_open_transactions():
            return
        try:
            provider = self._vipps_get_provider()
            partner = self.partner_id
            if partner.vipps_consent_date and partner.vipps_phone:
                if provider.vipps_auto_push:
                    self.vipps_request_payment(phone=partner.vipps_phone)
                    return
            if provider.vipps_auto_email and partner.email:
                self._vipps_email_pay_link()
        except (UserError, ValidationError) as error:
            self.message_post(
                body=self.env._(
                    "The automatic Vipps MobilePay payment request was not sent: %s",
                    error.args[0],
                )
            )

    def _vipps_queue_requests(self, requests):
        """Queue checked requests for the sending job (large batches).

        :param list requests: dicts with invoice, phone, amount, expires_at
        """
        for request in requests:
            expires_at = request.get("expires_at")
            request["invoice"].write(
                {
                    "vipps_auto_pending": True,
                    "vipps_queued_request": {
                        "phone": request.get("phone"),
                        "amount": request.get("amount"),
                        "expires_at": expires_at
                        and fields.Datetime.to_string(expires_at),
                        "uid": self.env.uid,
                    },
                }
            )
        self.env.ref("payment_vipps.cron_send_auto_requests").sudo()._trigger()

    def _vipps_send_queued_request(self, queued):
        """Send a request queued by the wizard, as the user who asked for it."""
        self.ensure_one()
        if self._vipps_open_transactions():
            return  # requested again meanwhile, by hand
        user = self.env["res.users"].browse(queued.get("uid")).exists()
        invoice = self.with_user(user) if user else self
        try:
            invoice.vipps_request_payment(
                phone=queued.get("phone"),
                amount=queued.get("amount"),
                expires_at=fields.Datetime.to_datetime(queued.get("expires_at")),
            )
        except (UserError, ValidationError) as error:
            self.message_post(
                body=self.env._(
                    "The queued Vipps MobilePay payment request was not sent: %s",
                    error.args[0],
                )
            )

    # === ACTION METHODS === #

    def button_draft(self):
        """Override of `account` to withdraw open Vipps requests first."""
        self._vipps_withdraw_open_requests(strict=True)
        return super().button_draft()

    def button_cancel(self):
        """Override of `account` to withdraw open Vipps requests first."""
        self._vipps_withdraw_open_requests(strict=True)
        return super().button_cancel()

    def action_vipps_request_payment(self):
        """Open the wizard that sends Vipps MobilePay payment requests."""
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
        tx = self._vipps_last_transaction()
        if not tx:
            raise UserError(self.env._("This invoice has no Vipps payment request."))
        tx._vipps_sync()
        return True

    def action_vipps_cancel_request(self):
        """Withdraw the open Vipps request of the invoice."""
        self.ensure_one()
        tx = self._vipps_open_transactions()
        if not tx:
            raise UserError(
                self.env._("This invoice has no open Vipps payment request.")
            )
        withdrawn = tx[-1:]._vipps_cancel_request()
        if withdrawn:
            return True
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "warning",
                "message": self.env._(
                    "The customer had already approved the request: the payment is "
                    "captured instead of withdrawn."
                ),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    # === BUSINESS METHODS - PORTAL === #

    def _has_to_be_paid(self):
        """Override of `account_payment`: a push request waiting in the customer's app
        must not hide the portal's Pay button.

        Odoo hides the button while any transaction is pending. A push request is only
        an offer the customer may ignore; if the invoice is paid another way, the
        request is withdrawn. An approved request (being captured) still hides it.
        """
        waiting = self._vipps_open_transactions().filtered(
            lambda tx: tx.state == "pending" and tx.vipps_user_flow == "PUSH_MESSAGE"
        )
        if not waiting:
            return super()._has_to_be_paid()
        # The same conditions as Odoo's, judged without the waiting request.
        other_pending = (self.transaction_ids - waiting).filtered(
            lambda tx: tx.state in ("pending", "authorized")
            and tx.provider_code not in ("none", "custom")
        )
        portal_payment = str2bool(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("account_payment.enable_portal_payment")
        )
        return bool(
            portal_payment
            and not other_pending
            and self.state == "posted"
            and self.move_type == "out_invoice"
            and self.payment_state in ("not_paid", "in_payment", "partial")
            and not self.currency_id.is_zero(self.amount_residual)
            and self.amount_total
        )

    def _vipps_create_link_payment(self, share_phone=False):
        """Create the transaction of a "Pay with Vipps" click and its web payment.

        :param bool share_phone: ask the customer to share the phone number, to
            receive the next invoices in the app
        :return: the transaction and Vipps's redirectUrl
        :raise UserError: when the invoice cannot be paid this way
        """
        self.ensure_one()
        problem = self._vipps_pay_link_problem()
        if problem:
            raise UserError(problem)
        provider = self._vipps_get_provider()
        with self.env.cr.savepoint():
            tx = self._vipps_create_transaction(
                provider,
                self.amount_residual,
                "online_redirect",
                vipps_share_phone=share_phone,
            )
            answer = tx._vipps_create_web_payment()
        return tx, answer["redirectUrl"]

    def _vipps_pay_link_problem(self):
        """Why the invoice cannot be paid from its link now, or None."""
        self.ensure_one()
        if self.state != "posted" or self.move_type != "out_invoice":
            return self.env._("This invoice cannot be paid online.")
        if self.payment_state in ("paid", "in_payment", "reversed") or (
            self.currency_id.is_zero(self.amount_residual)
        ):
            return self.env._("This invoice is already paid. Thank you!")
        if self._vipps_open_transactions().filtered(
            lambda tx: tx.state == "authorized"
        ):
            return self.env._("Your payment of this invoice is being processed.")
        return None

    # === BUSINESS METHODS - LIFECYCLE === #

    def _vipps_withdraw_open_requests(self, strict=False):
        """Withdraw the Vipps requests of invoices that must not be paid through them.

        :param bool strict: raise when a request cannot be withdrawn (reset to draft,
            cancel); otherwise note it and leave it to the poll (paid otherwise)
        :raise UserError: when strict and the customer has just paid, or Vipps
            cannot be reached
        """
        for invoice in self:
            for tx in invoice._vipps_open_transactions():
                try:
                    withdrawn = tx._vipps_cancel_request()
                except VippsError as error:
                    if strict:
                        raise UserError(
                            self.env._(
                                "The Vipps payment request %(reference)s could not be "
                                "withdrawn, so the invoice was left as it is: "
                                "%(error)s",
                                reference=tx.reference,
                                error=error.args[0],
                            )
                        ) from error
                    _logger.warning(
                        "Vipps: %s not withdrawn yet: %s", tx.reference, error
                    )
                    continue
                if not withdrawn and strict:
                    raise UserError(
                        self.env._(
                            "The customer has just approved the Vipps payment request "
                            "%s: the payment is registered on the invoice. Reverse it "
                            "with a credit note instead.",
                            tx.reference,
                        )
                    )

    # === BUSINESS METHODS - PAYMENT REQUESTS === #

    def vipps_request_payment(self, phone=None, amount=None, expires_at=None):
        """Send a Vipps MobilePay payment request (push message) for each invoice.

        Public: usable from server actions, automation rules and XML-RPC. Every
        invoice is checked first; when any check fails nothing is sent and a
        UserError lists the problems. Then each invoice is sent on its own: for a
        single invoice a Vipps refusal is raised; in a batch it is noted on that
        invoice's chatter and the others go ahead.

        :param str phone: the customer's mobile number (default: the one the customer
            shared through Vipps, else the customer's mobile). Without a usable
            number the customer is e-mailed a "Pay with Vipps" link instead.
        :param float amount: the amount to request (default: the amount due)
        :param datetime expires_at: when the request expires (default: the due date,
            within the provider's limit)
        :return: the payment transactions created, one per invoice sent
        :rtype: recordset of `payment.transaction`
        """
        requests = self._vipps_prepare_requests(
            [
                {
                    "invoice": invoice,
                    "phone": phone,
                    "amount": amount,
                    "expires_at": expires_at,
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
            try:
                if invoice.company_id not in providers:
                    providers[invoice.company_id] = invoice._vipps_get_provider()
                requests.append(
                    invoice._vipps_prepare_request(
                        provider=providers[invoice.company_id], **wish
                    )
                )
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
            request["invoice"]._vipps_email_pay_link()
        requests = [request for request in requests if not request.get("email")]
        if not requests:
            return transactions
        if len(requests) == 1:
            return requests[0]["invoice"]._vipps_send_request(requests[0])
        for request in requests:
            invoice = request["invoice"]
            try:
                transactions |= invoice._vipps_send_request(request)
            except (UserError, ValidationError) as error:
                _logger.info("Vipps request for %s not sent: %s", invoice.name, error)
                invoice.message_post(
                    body=self.env._(
                        "The Vipps MobilePay payment request was not sent: %s",
                        error.args[0],
                    )
                )
        return transactions

    def _vipps_prepare_request(
        self, invoice=None, phone=None, amount=None, provider=None, **values
    ):
        """Check that this invoice can be requested and complete the request values.

        :param provider: the company's Vipps provider, when the caller has it
        :raise UserError: with the reason when it cannot
        """
        self.ensure_one()
        provider = provider or self._vipps_get_provider()
        if self.state != "posted":
            raise UserError(self.env._("Only posted invoices can be paid with Vipps."))
        if self.move_type != "out_invoice":
            raise UserError(
                self.env._("Only customer invoices can be paid with Vipps.")
            )
        if self.currency_id.is_zero(self.amount_residual) or self.amount_residual < 0:
            raise UserError(self.env._("Nothing is due on this invoice."))
        if self.currency_id.name not in const.SUPPORTED_CURRENCIES:
            raise UserError(
                self.env._(
                    "Vipps MobilePay cannot take payments in %(currency)s (only NOK, "
                    "DKK and EUR).",
                    currency=self.currency_id.name,
                )
            )
        open_tx = self._vipps_open_transactions()
        if open_tx:
            raise UserError(
                self.env._(
                    "A Vipps payment request (%s) is already waiting for the customer. "
                    "Cancel it first to send a new one.",
                    open_tx[-1].reference,
                )
            )
        amount = self.amount_residual if amount is None else amount
        if self.currency_id.compare_amounts(amount, 0) <= 0:
            raise UserError(self.env._("The amount to request must be positive."))
        if self.currency_id.compare_amounts(amount, self.amount_residual) > 0:
            raise UserError(
                self.env._(
                    "The amount to request (%(amount)s) is more than the amount due "
                    "(%(due)s).",
                    amount=amount,
                    due=self.amount_residual,
                )
            )
        typed_phone = self._vipps_default_phone() if phone is None else phone
        msisdn = utils.normalize_msisdn(typed_phone, self._vipps_country_code())
        if not typed_phone or (phone is None and not msisdn):
            # No usable number known: e-mail the "Pay with Vipps" link instead.
            if not self.partner_id.email:
                raise UserError(
                    self.env._(
                        "%s has neither a mobile number nor an e-mail address.",
                        self.partner_id.display_name,
                    )
                )
            return {"invoice": self, "provider": provider, "email": True}
        if not msisdn:
            raise UserError(
                self.env._(
                    "%(phone)s is not a valid mobile number for %(partner)s.",
                    phone=typed_phone,
                    partner=self.partner_id.display_name,
                )
            )
        expires_at = values.get("expires_at") or self._vipps_default_expiry(provider)
        provider._vipps_check_expiry(expires_at)
        return {
            "invoice": self,
            "provider": provider,
            "phone": msisdn,
            "amount": amount,
            "expires_at": expires_at,
        }

    def _vipps_send_request(self, request):
        """Create the transaction and the push payment at Vipps for one invoice.

        All or nothing: when Vipps refuses, the transaction is rolled back with it.
        """
        self.ensure_one()
        with self.env.cr.savepoint():
            return self._vipps_send_request_now(request)

    def _vipps_send_request_now(self, request):
        provider = request["provider"]
        tx = self._vipps_create_transaction(
            provider,
            request["amount"],
            "offline",
            vipps_phone=request["phone"],
            vipps_expires_at=request["expires_at"],
        )
        if provider._vipps_uses_order_management():
            provider._vipps_add_category(
                tx.reference, "GENERAL", self._vipps_order_details_url()
            )
        tx._vipps_create_payment_request(
            {
                "userFlow": "PUSH_MESSAGE",
                "customer": {"phoneNumber": request["phone"]},
                "expiresAt": utils.format_rfc3339(request["expires_at"]),
                "paymentDescription": self._vipps_payment_description(),
                "returnUrl": provider._vipps_return_url(tx),
                "receipt": self._vipps_prepare_receipt(tx),
            }
        )
        return tx

    def _vipps_email_pay_link(self):
        """E-mail the customer a "Pay with Vipps" button (no usable phone number)."""
        self.ensure_one()
        template = self.env.ref("payment_vipps.mail_template_pay_link")
        self.message_post_with_source(
            template,
            subtype_xmlid="mail.mt_comment",
            partner_ids=self.partner_id.ids,
        )

    def _vipps_create_transaction(self, provider, amount, operation, **values):
        """Create the draft Vipps transaction of this invoice (a Vipps reference)."""
        self.ensure_one()
        tx_model = self.env["payment.transaction"].sudo()
        return tx_model.create(
            {
                "provider_id": provider.id,
                "payment_method_id": provider._vipps_payment_method(
                    self.currency_id
                ).id,
                "reference": tx_model._compute_reference(
                    "vipps", invoice_ids=[Command.set(self.ids)]
                ),
                "amount": amount,
                "currency_id": self.currency_id.id,
                "partner_id": self.partner_id.id,
                "operation": operation,
                "invoice_ids": [Command.set(self.ids)],
                **values,
            }
        )

    def _vipps_get_provider(self):
        self.ensure_one()
        provider = self.env["payment.provider"]._vipps_find(self.company_id)
        if not provider or not provider._vipps_is_configured():
            raise UserError(
                self.env._(
                    "Vipps MobilePay is not set up for %s: enable the Vipps MobilePay "
                    "payment provider and fill in its credentials.",
                    self.company_id.name,
                )
            )
        return provider

    def _vipps_open_transactions(self):
        self.ensure_one()
        return (
            self.sudo()
            .transaction_ids.filtered(
                lambda tx: tx.provider_code == "vipps"
                and tx.state in ("draft", "pending", "authorized")
            )
            .sorted("id")
        )

    def _vipps_default_phone(self):
        """The number shared through Vipps with consent, else the customer's mobile."""
        partner = self.partner_id
        return (
            partner.vipps_phone
            or partner.mobile
            or partner.commercial_partner_id.mobile
            or partner.phone
        )

    def _vipps_show_pay_qr(self):
        """Whether the invoice PDF carries the "Pay with Vipps" QR code."""
        self.ensure_one()
        if self.move_type != "out_invoice" or self._vipps_pay_link_problem():
            return False
        return bool(self.env["payment.provider"]._vipps_find(self.company_id))

    def _vipps_brand(self):
        """The app the customer knows: Vipps in Norway (NOK), MobilePay in Denmark
        (DKK) and Finland (EUR)."""
        self.ensure_one()
        return "Vipps" if self.currency_id.name == "NOK" else "MobilePay"

    def _vipps_pay_url(self):
        """The public "Pay with Vipps" page of the invoice (e-mails, QR code)."""
        self.ensure_one()
        self._portal_ensure_token()
        return (
            f"{self.get_base_url()}{const.PAY_ROUTE}/{self.id}"
            f"?access_token={self.access_token}"
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

    def _vipps_payment_description(self):
        """The text the customer sees in the app.

        E.g. "Invoice INV/2026/00012, due 12/31/2026", dated in the customer's
        language, within Vipps's 100 characters.
        """
        self.ensure_one()
        env = self.with_context(lang=self.partner_id.lang or self.env.lang).env
        if self.invoice_date_due:
            text = env._(
                "Invoice %(number)s, due %(date)s",
                number=self.name,
                date=format_date(env, self.invoice_date_due),
            )
        else:
            text = env._("Invoice %s", self.name)
        return text[: const.DESCRIPTION_MAX_LENGTH]

    def _vipps_order_details_url(self):
        """The public, tokenised URL of the invoice page that the app links to."""
        self.ensure_one()
        self._portal_ensure_token()
        return (
            f"{self.get_base_url()}{const.ORDER_DETAILS_ROUTE}/{self.id}"
            f"?access_token={self.access_token}"
        )

    def _vipps_prepare_receipt(self, tx):
        """Order lines for Vipps, in minor units, adding up to the amount exactly.

        Each invoice line gives its total with and without tax and its VAT rate (in
        hundredths of a percent). When less than the invoice total is requested (an
        instalment, or an invoice already partly paid), a return line for the rest
        makes the lines add up to the requested amount.
        """
        self.ensure_one()
        minor = tx._vipps_minor
        order_lines, lines_total = [], 0
        for line in self.invoice_line_ids.filtered(
            lambda line: line.display_type == "product"
        ):
            total = minor(line.price_total)
            excluding = minor(line.price_subtotal)
            quantity = abs(line.quantity) or 1.0
            rate = sum(
                line.tax_ids.filtered(lambda t: t.amount_type == "percent").mapped(
                    "amount"
                )
            )
            gross = (
                abs(total) / (1 - line.discount / 100)
                if line.discount < 100
                else abs(total)
            )
            order_lines.append(
                {
                    "name": (line.name or line.product_id.display_name or "-")[:100],
                    "id": str(line.id),
                    "totalAmount": abs(total),
                    "totalAmountExcludingTax": abs(excluding),
                    "totalTaxAmount": abs(total - excluding),
                    "taxRate": max(0, min(10000, round(rate * 100))),
                    "unitInfo": {
                        "unitPrice": round(gross / quantity),
                        "quantity": utils.format_quantity(quantity),
                        "quantityUnit": "PCS",
                    },
                    "discount": round(gross) - abs(total),
                    "isReturn": total < 0,
                }
            )
            lines_total += total
        difference = lines_total - minor(tx.amount)
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
                "currency": tx.currency_id.name,
                "receiptNumber": self.name[:50],
            },
        }
