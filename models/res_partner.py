import secrets

from odoo import fields, models
from odoo.tools import consteq

from .. import const, utils


class ResPartner(models.Model):
    """Consent to receive payment requests in the Vipps MobilePay app.

    It belongs to the commercial partner (the company, or the person): all its
    contacts share it. A push request goes only to the number consented to.
    """

    _inherit = "res.partner"

    invoice_sending_method = fields.Selection(
        selection_add=[("vipps", "by Vipps MobilePay")],
        ondelete={"vipps": "set null"},
    )
    vipps_phone = fields.Char(
        string="Vipps Mobile Number",
        copy=False,
        help="The number this customer agreed to receive payment requests on in the "
        "Vipps MobilePay app (E.164, e.g. +4791234567). Only set with consent.",
    )
    vipps_consent_date = fields.Datetime(string="Vipps Consent Given", copy=False)
    vipps_consent_source = fields.Char(
        string="Vipps Consent",
        copy=False,
        help="How the customer agreed to receive invoices in the Vipps MobilePay app.",
    )
    vipps_consent_user_id = fields.Many2one(
        "res.users",
        string="Vipps Consent Recorded By",
        copy=False,
        help="The user who confirmed the customer's consent, when it was not shared "
        "in the app.",
    )
    vipps_phone_pending = fields.Char(
        string="Vipps Number to Confirm",
        copy=False,
        help="Another number shared in the app while one is already consented to: it "
        "replaces it only once the customer confirms (e-mailed link).",
    )
    vipps_phone_pending_token = fields.Char(copy=False, groups="base.group_system")

    # === ACTION METHODS === #

    def action_vipps_clear_consent(self):
        """Stop sending invoices to this customer's Vipps MobilePay app."""
        self.env["account.move"]._vipps_check_rights()
        self.check_access("write")
        self._vipps_clear_consent(self.env._("cleared by %s", self.env.user.name))
        return True

    # === BUSINESS METHODS === #

    def _vipps_customer_lang(self, company=None):
        """The language this customer reads what the addon shows and sends them in:
        theirs when it is installed and the addon is translated into it, else the
        company's on the same terms, else English.

        :param company: the company the customer deals with (default: the current)
        """
        self.ensure_one()
        company = company or self.company_id or self.env.company
        installed = {code for code, __ in self.env["res.lang"].get_installed()}
        for lang in (self.lang, company.partner_id.lang):
            if lang in installed and lang.split("_")[0] in const.CUSTOMER_LANGUAGES:
                return lang
        return "en_US"

    def _vipps_consented_phone(self):
        """The number the customer agreed to receive requests on (E.164), or None."""
        self.ensure_one()
        commercial = self.commercial_partner_id
        return commercial.vipps_consent_date and commercial.vipps_phone or None

    def _vipps_clear_consent(self, how):
        commercial = self.commercial_partner_id
        for partner in commercial.filtered("vipps_consent_date"):
            partner.sudo().message_post(
                body=self.env._(
                    "Invoices are no longer sent to the Vipps MobilePay app (%s).", how
                )
            )
        commercial.sudo().write(
            {
                "vipps_phone": False,
                "vipps_consent_date": False,
                "vipps_consent_source": False,
                "vipps_consent_user_id": False,
                "vipps_phone_pending": False,
                "vipps_phone_pending_token": False,
            }
        )

    def _vipps_store_consent(self, e164, how, user=None):
        """Record that the customer agreed to receive requests on `e164`, and when and
        how (and who confirmed it, when it was not shared in the app)."""
        self.ensure_one()
        commercial = self.commercial_partner_id
        changed = commercial.vipps_phone != e164 or not commercial.vipps_consent_date
        commercial.sudo().write(
            {
                "vipps_phone": e164,
                "vipps_consent_date": fields.Datetime.now(),
                "vipps_consent_source": how,
                "vipps_consent_user_id": user and user.id,
                "vipps_phone_pending": False,
                "vipps_phone_pending_token": False,
            }
        )
        if changed:
            commercial.sudo().message_post(
                body=self.env._(
                    "Invoices are sent to the Vipps MobilePay app on %(phone)s "
                    "(%(how)s).",
                    phone=utils.mask_phone(e164),
                    how=how,
                )
            )

    def _vipps_offer_phone(self, e164, how):
        """A number the customer shared in the app when paying.

        Stored with consent when there is none or it is the same number. Another
        number does not replace a consented one on the word of whoever held the
        link (a forwarded e-mail, a printed QR code): the customer confirms it from
        an e-mailed link first.
        """
        self.ensure_one()
        commercial = self.commercial_partner_id
        consented = self._vipps_consented_phone()
        if not consented or consented == e164:
            self._vipps_store_consent(e164, how)
            return
        token = secrets.token_urlsafe(24)
        commercial.sudo().write(
            {"vipps_phone_pending": e164, "vipps_phone_pending_token": token}
        )
        commercial.sudo().message_post(
            body=self.env._(
                "Another number (%(new)s) was shared in the Vipps MobilePay app "
                "(%(how)s). Invoices still go to %(old)s until the customer confirms "
                "the change.",
                new=utils.mask_phone(e164),
                how=how,
                old=utils.mask_phone(consented),
            )
        )
        if commercial.email:
            template = self.env.ref("payment_vipps.mail_template_confirm_phone")
            commercial.sudo().with_context(
                vipps_confirm_url=self._vipps_confirm_url(token)
            ).message_post_with_source(
                template,
                subtype_xmlid="mail.mt_comment",
                partner_ids=commercial.ids,
            )

    def _vipps_confirm_url(self, token):
        commercial = self.commercial_partner_id
        return (
            f"{commercial.get_base_url()}{const.CONSENT_CONFIRM_ROUTE}/"
            f"{commercial.id}?token={token}"
        )

    def _vipps_confirm_pending_phone(self, token):
        """The customer confirms the number shared in the app (e-mailed link).

        :return: whether the token was right and the number is now used
        """
        self.ensure_one()
        commercial = self.commercial_partner_id.sudo()
        expected = commercial.vipps_phone_pending_token
        if not (expected and token and consteq(token, expected)):
            return False
        self._vipps_store_consent(
            commercial.vipps_phone_pending,
            self.env._("confirmed by the customer from the e-mailed link"),
        )
        return True
