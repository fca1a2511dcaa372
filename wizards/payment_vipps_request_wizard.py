from odoo import Command, api, fields, models
from odoo.exceptions import UserError

from .. import const, utils


class PaymentVippsRequestWizard(models.TransientModel):
    _name = "payment.vipps.request.wizard"
    _description = "Request Payment via Vipps MobilePay"

    line_ids = fields.One2many(
        "payment.vipps.request.wizard.line", "wizard_id", string="Invoices"
    )
    invoice_count = fields.Integer(compute="_compute_invoice_count")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if "line_ids" not in fields_list:
            return values
        if self.env.context.get("active_model") != "account.move":
            raise UserError(self.env._("Open this from customer invoices."))
        invoices = self.env["account.move"].browse(self.env.context.get("active_ids"))
        invoices._vipps_check_rights()
        lines = []
        for invoice in invoices:
            line = {"invoice_id": invoice.id, "amount": invoice._vipps_payable()[0]}
            try:
                provider = invoice._vipps_get_provider()
                line["expires_at"] = invoice._vipps_default_expiry(provider)
                line["provider_id"] = provider.id
            except UserError:
                line["expires_at"] = False
            phone = invoice._vipps_default_phone()
            e164 = utils.to_e164(phone, invoice._vipps_country_code())
            line["phone"] = utils.format_phone(e164) if e164 else phone
            line["consent"] = bool(
                e164 and e164 == invoice.partner_id._vipps_consented_phone()
            )
            lines.append(Command.create(line))
        values["line_ids"] = lines
        return values

    @api.depends("line_ids")
    def _compute_invoice_count(self):
        for wizard in self:
            wizard.invoice_count = len(wizard.line_ids)

    def action_send(self):
        """Send the requests; report what was not sent."""
        self.ensure_one()
        invoices = self.line_ids.invoice_id
        invoices._vipps_check_rights()
        wishes = [
            {
                "invoice": line.invoice_id,
                "phone": line.phone or "",
                "consent": line.consent,
                "amount": line.amount,
                "expires_at": line.expires_at,
            }
            for line in self.line_ids
        ]
        # Every request is checked now: a problem anywhere sends and queues nothing.
        requests = invoices._vipps_prepare_requests(wishes)
        if len(requests) > const.BULK_QUEUE_THRESHOLD:
            invoices._vipps_queue_requests(wishes)
            return self._notify(
                "info",
                self.env._(
                    "%s payment requests are being sent to the Vipps MobilePay app "
                    "in the background. Each invoice's chatter shows when its "
                    "request is sent, or why it was not.",
                    len(wishes),
                ),
            )
        transactions = invoices._vipps_send_requests(requests)
        failed = invoices - transactions.invoice_ids
        if not failed:
            message = self.env._(
                "%s payment request(s) sent to the Vipps MobilePay app.",
                len(transactions),
            )
            kind = "success"
        else:
            message = self.env._(
                "%(sent)s payment request(s) sent; not sent: %(failed)s (see the "
                "invoices' chatter).",
                sent=len(transactions),
                failed=", ".join(failed.mapped("name")),
            )
            kind = "warning"
        return self._notify(kind, message, sticky=bool(failed))

    def _notify(self, kind, message, sticky=False):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": kind,
                "message": message,
                "sticky": sticky,
                "next": {"type": "ir.actions.act_window_close"},
            },
        }


class PaymentVippsRequestWizardLine(models.TransientModel):
    _name = "payment.vipps.request.wizard.line"
    _description = "Invoice to Request via Vipps MobilePay"

    wizard_id = fields.Many2one(
        "payment.vipps.request.wizard", required=True, ondelete="cascade"
    )
    invoice_id = fields.Many2one("account.move", required=True)
    partner_id = fields.Many2one(related="invoice_id.partner_id")
    currency_id = fields.Many2one(related="invoice_id.currency_id")
    amount_residual = fields.Monetary(
        related="invoice_id.amount_residual", string="Amount Due"
    )
    provider_id = fields.Many2one(
        "payment.provider", string="Sales Unit", readonly=True
    )
    phone = fields.Char(string="Mobile Number")
    consent = fields.Boolean(
        string="Agreed to Requests in the App",
        help="The customer agreed to receive payment requests in the Vipps MobilePay "
        "app on this number. Ticking it records your confirmation (who and when) on "
        "the customer. Without it the customer is e-mailed the 'Pay with Vipps' "
        "link.",
    )
    sent_as = fields.Selection(
        selection=[("push", "Request in the app"), ("email", "Pay link by e-mail")],
        compute="_compute_sent_as",
    )
    amount = fields.Monetary(string="Amount to Request", currency_field="currency_id")
    expires_at = fields.Datetime(string="Expires")
    description = fields.Char(string="Text in the App", compute="_compute_description")

    @api.depends("invoice_id")
    def _compute_description(self):
        for line in self:
            line.description = line.invoice_id._vipps_payment_description()

    @api.depends("phone", "consent", "provider_id")
    def _compute_sent_as(self):
        for line in self:
            invoice = line.invoice_id
            e164 = utils.to_e164(line.phone, invoice._vipps_country_code())
            consented = invoice.partner_id._vipps_consented_phone()
            push = (
                (line.provider_id._vipps_push_possible() if line.provider_id else False)
                and e164
                and (line.consent or e164 == consented)
            )
            line.sent_as = "push" if push else "email"
