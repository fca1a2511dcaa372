from odoo import fields, models

from .. import compat


class PaymentVippsToken(models.Model):
    """The access token of a Vipps provider, shared by all Odoo workers.

    Kept out of payment_provider on purpose: it is written by short transactions of
    their own (see `payment.provider._vipps_store_access_token`), and a row that
    other transactions also update would make theirs fail with serialization
    errors. Only those short transactions ever write here.
    """

    _name = "payment.vipps.token"
    _description = "Vipps MobilePay Access Token"

    provider_id = fields.Many2one(
        "payment.provider", required=True, ondelete="cascade", index=True
    )
    fingerprint = fields.Char(
        required=True, help="The API URL and credentials the token was issued for."
    )
    token = fields.Char(required=True)
    expires_at = fields.Datetime(required=True)

    _unique_provider = compat.Constraint(
        "UNIQUE(provider_id)",
        "One token per provider.",
    )
