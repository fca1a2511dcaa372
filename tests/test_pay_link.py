import requests

from odoo.tests import tagged

from .common import VippsHttpCommon


@tagged("post_install", "-at_install")
class TestVippsPayLink(VippsHttpCommon):
    """Pay with Vipps from the invoice portal, through Odoo's payment form."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param(
            "account_payment.enable_portal_payment", "True"
        )
        cls.vipps.is_published = True

    def _start_payment(self, invoice):
        """What the portal's Pay button does: create the transaction, get the form."""
        invoice._portal_ensure_token()
        method = self.vipps._vipps_payment_method(invoice.currency_id)
        with self.server_turn():
            return self.make_jsonrpc_request(
                f"/invoice/transaction/{invoice.id}",
                {
                    "access_token": invoice.access_token,
                    "provider_id": self.vipps.id,
                    "payment_method_id": method.id,
                    "token_id": None,
                    "amount": invoice.amount_residual,
                    "flow": "redirect",
                    "tokenization_requested": False,
                    "landing_route": invoice.get_portal_url(),
                },
            )

    def test_pay_now_creates_web_payment_and_redirects(self):
        """Pay Now creates the WEB_REDIRECT payment then and sends the customer on."""
        invoice = self.create_invoice(partner=self.customer_without_phone)
        values = self._start_payment(invoice)
        tx = invoice.transaction_ids
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.flow, "WEB_REDIRECT")
        self.assertIn(payment.redirect_url.split("?")[0], values["redirect_form_html"])
        self.assertIn(payment.token, values["redirect_form_html"])
        self.assertEqual(tx.state, "pending")
        self.assertIn("putCategory", [c["operation"] for c in self.vipps_calls()])

    def test_customer_approves_and_returns_to_paid_invoice(self):
        """Approve on Vipps's page, come back: the invoice is paid and reconciled."""
        invoice = self.create_invoice(partner=self.customer_without_phone)
        self._start_payment(invoice)
        tx = invoice.transaction_ids
        payment = self.emulator.payment(tx.reference)
        self.assertTrue(payment.return_url.startswith(self.base_url()))
        # The customer's browser: the landing page posts the approval, then follows
        # the redirect back to Odoo's return route.
        with self.server_turn():
            response = requests.post(
                f"{self.emulator.url}/app/landing",
                data={"token": payment.token, "phone": "4791234567", "approve": "1"},
                timeout=30,
            )
        self.assertEqual(response.status_code, 200)
        self.assertIn("/payment/status", response.url)
        self.assertEqual(tx.state, "done")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))

    def test_waiting_push_request_keeps_pay_button(self):
        """A push request waiting in the app does not hide the portal's Pay button."""
        invoice = self.create_invoice()
        self.assertTrue(invoice._has_to_be_paid())
        invoice._vipps_request_payment()
        self.assertTrue(invoice._has_to_be_paid(), msg="The Pay button must stay.")
        with self.server_turn():
            response = self.url_open(invoice.get_portal_url())
        self.assertIn("o_payment_form", response.text)

    def test_portal_links_to_pay_page_with_opt_in(self):
        """The invoice portal offers the Pay with Vipps page (with its opt-in)."""
        invoice = self.create_invoice(partner=self.customer_without_phone)
        portal_url = invoice.get_portal_url()
        with self.server_turn():
            response = self.url_open(portal_url)
        self.assertIn('id="vipps_portal_pay"', response.text)
        self.assertIn(f"/payment/vipps/pay/{invoice.id}?access_token=", response.text)
