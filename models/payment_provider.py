from odoo import fields, models

from .. import const


class PaymentProvider(models.Model):
    _inherit = "payment.provider"

    code = fields.Selection(
        selection_add=[("vipps", "Vipps MobilePay")], ondelete={"vipps": "set default"}
    )
    vipps_merchant_serial_number = fields.Char(
        string="Merchant Serial Number",
        help="The number of the sales unit (MSN) in the Vipps MobilePay portal.",
        required_if_provider="vipps",
    )
    vipps_client_id = fields.Char(
        string="Client ID",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_client_secret = fields.Char(
        string="Client Secret",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_subscription_key = fields.Char(
        string="Subscription Key",
        help="The primary or secondary Ocp-Apim-Subscription-Key of the sales unit.",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_api_url_override = fields.Char(
        string="API Base URL Override",
        help="Technical: send every API call to this URL instead of the Vipps host "
        "of the current state, e.g. http://127.0.0.1:8077 for the local Vipps "
        "emulator. Leave empty in real use.",
        groups="base.group_system",
    )

    # === BUSINESS METHODS - GETTERS === #

    def _get_supported_currencies(self):
        """Override of `payment` to return the currencies of the Vipps markets."""
        supported_currencies = super()._get_supported_currencies()
        if self.code == "vipps":
            supported_currencies = supported_currencies.filtered(
                lambda currency: currency.name in const.SUPPORTED_CURRENCIES
            )
        return supported_currencies

    def _get_default_payment_method_codes(self):
        """Override of `payment` to return the default payment method codes."""
        default_codes = super()._get_default_payment_method_codes()
        if self.code != "vipps":
            return default_codes
        return const.DEFAULT_PAYMENT_METHOD_CODES

    def _vipps_get_api_url(self):
        """Return the base URL of the Vipps API for the provider's state.

        Note: self.ensure_one()

        :return: The override when one is set, else the test or production host.
        :rtype: str
        """
        self.ensure_one()
        override = self.sudo().vipps_api_url_override
        if override:
            return override.rstrip("/")
        return const.API_URLS["enabled" if self.state == "enabled" else "test"]
