from odoo.exceptions import AccessError, ValidationError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import tagged

from .. import compat
from .common import VippsCommon

CREDENTIAL_FIELDS = ("vipps_client_id", "vipps_client_secret", "vipps_subscription_key")


@tagged("post_install", "-at_install")
class TestVippsProvider(VippsCommon):
    def test_module_installed_provider_exists(self):
        """Installing the addon creates the Vipps provider from data."""
        module = self.env.ref("base.module_payment_vipps").sudo()
        provider = self.env.ref("payment_vipps.payment_provider_vipps").sudo()
        self.assertEqual(module.state, "installed")
        self.assertEqual(provider.code, "vipps", msg="The data provider must be Vipps.")
        self.assertEqual(provider.module_id, module)

    def test_provider_offers_vipps_and_mobilepay_methods(self):
        """The provider uses Odoo's existing vipps and mobile_pay payment methods."""
        provider = self.env.ref("payment_vipps.payment_provider_vipps").sudo()
        self.assertEqual(
            set(
                provider.with_context(active_test=False).payment_method_ids.mapped(
                    "code"
                )
            ),
            {"vipps", "mobile_pay"},
        )
        self.assertEqual(
            provider._get_default_payment_method_codes(), {"vipps", "mobile_pay"}
        )

    def test_account_payment_method_created_by_hook(self):
        """The post-init hook creates the inbound payment method invoices use."""
        method = self.env["account.payment.method"].search(
            [("code", "=", "vipps"), ("payment_type", "=", "inbound")]
        )
        self.assertEqual(len(method), 1, msg="setup_provider must create one method.")

    def test_supported_currency_is_the_sales_unit_market(self):
        """A sales unit takes the one currency of its market, never another."""
        self.env.ref("base.SEK").active = True
        self.env.ref("base.DKK").active = True
        self.assertEqual(self.vipps._get_supported_currencies().mapped("name"), ["NOK"])
        self.assertEqual(self.vipps.available_currency_ids.mapped("name"), ["NOK"])
        danish = self.vipps.copy()
        danish.vipps_currency_id = self.env.ref("base.DKK")
        self.assertEqual(danish.available_currency_ids.mapped("name"), ["DKK"])
        with self.assertRaises(ValidationError):
            self.vipps.vipps_currency_id = self.env.ref("base.SEK")

    def test_credentials_hidden_from_non_admins(self):
        """Users without the Settings group cannot read the Vipps credentials."""
        accountant = self.env["res.users"].create(
            {
                "name": "Accountant",
                "login": "vipps_accountant",
                compat.GROUPS: [
                    (6, 0, [self.env.ref("account.group_account_manager").id])
                ],
            }
        )
        provider = self.vipps.with_user(accountant)
        for field_name in (*CREDENTIAL_FIELDS, "vipps_api_url_override"):
            with self.assertRaises(AccessError, msg=f"{field_name} must be admin-only"):
                provider.check_field_access_rights("read", [field_name])
        self.assertNotIn(
            "vipps_client_secret",
            self.env["payment.provider"].with_user(accountant).fields_get(),
        )
        # An administrator sees them.
        self.vipps.with_user(self.env.ref("base.user_admin")).check_field_access_rights(
            "read", list(CREDENTIAL_FIELDS)
        )

    def test_neutralize_wipes_credentials(self):
        """The neutralize script empties every Vipps credential."""
        queries = list(get_neutralization_queries(["payment_vipps"]))
        self.assertEqual(len(queries), 1)
        self.env.flush_all()
        self.env.cr.execute(queries[0])
        self.env.invalidate_all()
        for field_name in CREDENTIAL_FIELDS:
            self.assertFalse(self.vipps[field_name], msg=f"{field_name} must be wiped")
        self.assertEqual(self.vipps.vipps_merchant_serial_number, "123456")

    def test_api_url_follows_state_unless_overridden(self):
        """Test mode talks to apitest, production to api, the override wins."""
        provider = self.env["payment.provider"].sudo().new({"code": "vipps"})
        provider.state = "test"
        self.assertEqual(provider._vipps_get_api_url(), "https://apitest.vipps.no")
        provider.state = "enabled"
        self.assertEqual(provider._vipps_get_api_url(), "https://api.vipps.no")
        provider.vipps_api_url_override = "http://127.0.0.1:8077/"
        self.assertEqual(provider._vipps_get_api_url(), "http://127.0.0.1:8077")

    def test_order_management_only_where_it_exists(self):
        """Vipps's test environment lacks Order Management; production has it."""
        provider = self.env["payment.provider"].sudo().new({"code": "vipps"})
        provider.state = "test"
        self.assertFalse(provider._vipps_uses_order_management())
        provider.state = "enabled"
        self.assertTrue(provider._vipps_uses_order_management())
        provider.state = "test"
        provider.vipps_api_url_override = "http://127.0.0.1:8077"
        self.assertTrue(
            provider._vipps_uses_order_management(), msg="The emulator emulates it."
        )
