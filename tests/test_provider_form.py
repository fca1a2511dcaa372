from odoo.tests import HttpCase, tagged


@tagged("post_install", "-at_install")
class TestVippsProviderForm(HttpCase):
    def test_admin_configures_credentials_in_form(self):
        """An admin opens the provider form in a browser and saves new credentials."""
        provider = self.env.ref("payment_vipps.payment_provider_vipps")
        provider.write({"vipps_client_secret": "old-secret", "state": "disabled"})
        self.start_tour(
            f"/odoo/action-payment.action_payment_provider/{provider.id}",
            "payment_vipps_provider_form",
            login="admin",
        )
        self.assertEqual(provider.vipps_merchant_serial_number, "654321")
        self.assertEqual(provider.vipps_client_secret, "new-secret")
        self.assertEqual(provider.vipps_api_url_override, "http://127.0.0.1:8077")
