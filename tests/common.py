from odoo.addons.account_payment.tests.common import AccountPaymentCommon


class VippsCommon(AccountPaymentCommon):
    """A Vipps provider with (emulator) credentials in a NOK company."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vipps = cls._prepare_provider(
            "vipps",
            update_values={
                "vipps_merchant_serial_number": "123456",
                "vipps_client_id": "emulator-client-id",
                "vipps_client_secret": "emulator-client-secret",
                "vipps_subscription_key": "emulator-subscription-key",
            },
        )
        cls.provider = cls.vipps
