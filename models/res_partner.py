from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    invoice_sending_method = fields.Selection(
        selection_add=[("vipps", "by Vipps MobilePay")],
        ondelete={"vipps": "set null"},
    )
    vipps_phone = fields.Char(
        string="Vipps Mobile Number",
        copy=False,
        help="The number this customer shared through Vipps MobilePay to receive "
        "invoices in the app (digits with country code). Only set with consent.",
    )
    vipps_consent_date = fields.Datetime(string="Vipps Consent Given", copy=False)
    vipps_consent_source = fields.Char(
        string="Vipps Consent",
        copy=False,
        help="How the customer agreed to receive invoices in the Vipps MobilePay app.",
    )

    def action_vipps_clear_consent(self):
        """Stop sending invoices to this customer's Vipps MobilePay app."""
        self.env["account.move"]._vipps_check_rights()
        self.check_access("write")
        self._vipps_clear_consent(self.env._("cleared by %s", self.env.user.name))
        return True

    def _vipps_clear_consent(self, how):
        for partner in self.filtered("vipps_consent_date"):
            partner.message_post(
                body=self.env._(
                    "Invoices are no longer sent to the Vipps MobilePay app (%s).", how
                )
            )
        self.write(
            {
                "vipps_phone": False,
                "vipps_consent_date": False,
                "vipps_consent_source": False,
            }
        )

    def _vipps_store_consent(self, msisdn, how):
        """Keep the number shared through Vipps, and when and how consent was given."""
        self.ensure_one()
        self.write(
            {
                "vipps_phone": msisdn,
                "vipps_consent_date": fields.Datetime.now(),
                "vipps_consent_source": how,
            }
        )
