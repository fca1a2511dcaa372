import re

import requests

from odoo.tests import tagged

from .. import const
from .common import VippsHttpCommon


@tagged("post_install", "-at_install")
class TestVippsPayPage(VippsHttpCommon):
    """The "Pay with Vipps" link: e-mail fallback, opt-in, phone learning."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.customer_by_email = cls.env["res.partner"].create(
            {
                "name": "Ingrid Solberg",
                "email": "ingrid@example.com",
                "country_id": cls.env.ref("base.no").id,
            }
        )

    def _get(self, url):
        with self.server_turn():
            return self.url_open(url)

    def _click_pay(self, invoice, share_phone=False):
        """The customer's browser: open the page, click Pay, land at Vipps."""
        url, token = invoice._vipps_pay_url(), invoice.access_token
        with self.server_turn():
            session = requests.Session()
            page = session.get(url, timeout=30)
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            data = {"csrf_token": csrf, "access_token": token}
            if share_phone:
                data["share_phone"] = "1"
            return session.post(
                f"{self.base_url()}{const.PAY_ROUTE}/{invoice.id}",
                data=data,
                allow_redirects=False,
                timeout=30,
            )

    def _approve_on_landing(self, payment, phone="4791234567"):
        with self.server_turn():
            return requests.post(
                f"{self.emulator.url}/app/landing",
                data={
                    "token": payment.token,
                    "phone": phone,
                    "approve": "1",
                    "consent": "yes",
                },
                timeout=30,
            )

    # === E-MAIL FALLBACK === #

    def test_no_phone_emails_pay_link(self):
        """Without a usable number the customer is e-mailed the pay link instead."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        transactions = invoice._vipps_request_payment()
        self.assertFalse(transactions, msg="Nothing is created at Vipps in advance.")
        self.assertFalse(self.vipps_calls("createPayment"))
        message = invoice.message_ids.filtered(
            lambda m: "Pay with Vipps" in (m.body or "") and m.partner_ids
        )
        self.assertTrue(message, msg="The e-mail is posted on the invoice.")
        self.assertIn(self.customer_by_email, message.partner_ids)
        self.assertIn(f"{const.PAY_ROUTE}/{invoice.id}?access_token=", message.body)

    # === THE PAGE === #

    def test_page_offers_pay_button_and_opt_in(self):
        """The page shows the amount, the Vipps button and the opt-in."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        response = self._get(invoice._vipps_pay_url())
        self.assertEqual(response.status_code, 200)
        self.assertIn(invoice.name, response.text)
        self.assertIn("Pay with Vipps", response.text)
        self.assertIn('id="vipps_share_phone"', response.text)

    def test_tampered_token_shows_and_changes_nothing(self):
        """A wrong token: 404, no invoice data, and POST creates nothing."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        invoice._portal_ensure_token()
        url = f"{const.PAY_ROUTE}/{invoice.id}?access_token=forged"
        response = self._get(url)
        self.assertEqual(response.status_code, 404)
        self.assertNotIn(invoice.name, response.text)
        with self.server_turn():
            response = requests.post(
                f"{self.base_url()}{const.PAY_ROUTE}/{invoice.id}",
                data={"access_token": "forged"},
                timeout=30,
            )
        self.assertIn(response.status_code, (400, 403, 404))
        self.assertFalse(invoice.transaction_ids)
        self.assertFalse(self.emulator.payments)

    def test_paid_invoice_page_says_so(self):
        """An invoice already paid shows a thank-you, not a payment button."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        self.pay_otherwise(invoice)
        response = self._get(invoice._vipps_pay_url())
        self.assertIn("already paid", response.text)
        self.assertNotIn('id="vipps_pay_button"', response.text)

    # === PAYING, OPT-IN AND PHONE LEARNING === #

    def test_pay_with_opt_in_learns_phone_for_next_invoice(self):
        """Opt in, approve, share: the number is kept and the next invoice is pushed."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        response = self._click_pay(invoice, share_phone=True)
        self.assertEqual(response.status_code, 303)
        self.assertTrue(response.headers["Location"].startswith(self.emulator.url))
        tx = invoice.transaction_ids
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.flow, "WEB_REDIRECT")
        self.assertEqual(payment.scopes, ["phoneNumber"])
        self._approve_on_landing(payment)
        self.assertEqual(tx.state, "done")
        self.assertEqual(
            self.customer_by_email.vipps_phone,
            self.PHONE_E164,
            msg=str([(c["operation"], c["status"]) for c in self.emulator.requests]),
        )
        self.assertTrue(self.customer_by_email.vipps_consent_date)
        self.assertIn(tx.reference, self.customer_by_email.vipps_consent_source)
        # Once Vipps approves push messages for the sales unit, the next invoice
        # goes out as a push request to that number.
        self.emulator.update_merchant(approved=True)
        following = self.create_invoice(partner=self.customer_by_email)
        push = following._vipps_request_payment()
        self.assertEqual(push.vipps_user_flow, "PUSH_MESSAGE")
        self.assertEqual(self.emulator.payment(push.reference).phone, "4791234567")

    def test_ordinary_sales_unit_request_ends_paid_through_the_link(self):
        """On a sales unit Vipps has not approved (every new one): Request via Vipps
        is refused (5050 or 5080), the provider learns it, the customer is e-mailed
        the link at once, pays through it, and the invoice is paid."""
        self.customer_by_email._vipps_store_consent(self.PHONE_E164, "test")
        invoice = self.create_invoice(partner=self.customer_by_email)
        self.assertFalse(invoice._vipps_request_payment())
        self.assertFalse(self.vipps._vipps_push_possible())
        self.assertTrue(
            invoice.message_ids.filtered(lambda m: "e-mailed instead" in m.body)
        )
        self.assertEqual(self._click_pay(invoice).status_code, 303)
        tx = invoice.transaction_ids
        self._approve_on_landing(self.emulator.payment(tx.reference))
        self.assertEqual(tx.state, "done")
        self.assertEqual(invoice.vipps_state, "paid")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))

    def test_repeated_clicks_reuse_one_payment(self):
        """Twenty clicks on Pay make one payment at Vipps, not twenty, and they do not
        block the accountant's push request."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        locations = {self._click_pay(invoice).headers["Location"] for __ in range(20)}
        self.assertEqual(len(locations), 1)
        self.assertEqual(len(self.vipps_calls("createPayment")), 1)
        # Asking to share the number is another payment (another consent screen).
        self._click_pay(invoice, share_phone=True)
        self.assertEqual(len(self.emulator.payments), 2)
        self.emulator.update_merchant(approved=True)
        push = invoice._vipps_request_payment(phone="+47 912 34 567", consent=True)
        self.assertEqual(push.vipps_user_flow, "PUSH_MESSAGE")

    def test_pay_without_opt_in_asks_nothing(self):
        """Without the opt-in no profile is asked and nothing is stored."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        self._click_pay(invoice)
        payment = self.emulator.payment(invoice.transaction_ids.reference)
        self.assertEqual(payment.scopes, [])
        self._approve_on_landing(payment)
        self.assertEqual(invoice.transaction_ids.state, "done")
        self.assertFalse(self.customer_by_email.vipps_phone)
        self.assertFalse(self.vipps_calls("getUserinfo"))

    def test_userinfo_failure_keeps_payment(self):
        """Vipps sends the number only through UserInfo (as the published spec), and
        UserInfo is down: the payment still goes through, no number is stored, and
        the number is read once UserInfo answers again."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        self._click_pay(invoice, share_phone=True)
        payment = self.emulator.payment(invoice.transaction_ids.reference)
        with self.emulator_settings(
            authorized_webhook_profile=False, user_details_on_get=False, sub_delay=0
        ):
            self.emulator.inject_fault("getUserinfo", count=5, status=500)
            with self.fast_retries():
                self._approve_on_landing(payment)
            self.assertEqual(invoice.transaction_ids.state, "done")
            self.assertIn(invoice.payment_state, ("paid", "in_payment"))
            self.assertFalse(self.customer_by_email.vipps_phone)
            self.run_outbox(due_in_minutes=5)
        self.assertEqual(self.customer_by_email.vipps_phone, self.PHONE_E164)

    def test_late_sub_read_again(self):
        """The number comes neither on the webhook nor on the first read (Vipps
        writes sub a little later): the outbox reads the payment again."""
        invoice = self.create_invoice(partner=self.customer_by_email)
        self._click_pay(invoice, share_phone=True)
        payment = self.emulator.payment(invoice.transaction_ids.reference)
        with self.emulator_settings(authorized_webhook_profile=False):
            self._approve_on_landing(payment)
            self.assertEqual(invoice.transaction_ids.state, "done")
            self.assertFalse(self.customer_by_email.vipps_phone)
            self.emulator.advance(5)
            self.run_outbox(due_in_minutes=5)
        self.assertEqual(self.customer_by_email.vipps_phone, self.PHONE_E164)

    def test_customer_withdraws_consent_from_page(self):
        """The customer stops invoices in the app; another customer is untouched."""
        other = self.customer.copy({"name": "Other"})
        other._vipps_store_consent("+4741234567", "test")
        self.customer_by_email._vipps_store_consent(self.PHONE_E164, "test")
        invoice = self.create_invoice(partner=self.customer_by_email)
        page = self._get(invoice._vipps_pay_url())
        self.assertIn('id="vipps_withdraw_consent"', page.text)
        url, token = invoice._vipps_pay_url(), invoice.access_token
        with self.server_turn():
            session = requests.Session()
            page = session.get(url, timeout=30)
            csrf = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)[-1]
            session.post(
                f"{self.base_url()}{const.CONSENT_WITHDRAW_ROUTE}/{invoice.id}",
                data={"csrf_token": csrf, "access_token": token},
                timeout=30,
            )
        self.assertFalse(self.customer_by_email.vipps_phone)
        self.assertFalse(self.customer_by_email.vipps_consent_date)
        self.assertEqual(
            other.vipps_phone, "+4741234567", msg="Only their own consent."
        )

    def test_staff_clear_consent(self):
        """Staff can clear a customer's consent from the partner form."""
        self.customer_by_email._vipps_store_consent(self.PHONE_E164, "test")
        self.customer_by_email.action_vipps_clear_consent()
        self.assertFalse(self.customer_by_email.vipps_phone)
        self.assertIn("no longer sent", self.customer_by_email.message_ids[0].body)

    def test_mobilepay_brand_for_danish_and_finnish_invoices(self):
        """DKK and EUR invoices say MobilePay and use Odoo's MobilePay method."""
        for code in ("DKK", "EUR"):
            currency = self._enable_currency(code)
            invoice = self.create_invoice(
                partner=self.customer_by_email, currency_id=currency.id
            )
            self.assertEqual(invoice._vipps_brand(), "MobilePay")
            self.assertEqual(
                self.vipps._vipps_payment_method(currency).code, "mobile_pay"
            )
            response = self._get(invoice._vipps_pay_url())
            self.assertIn("Pay with MobilePay", response.text)
            self.assertNotIn("Pay with Vipps", response.text)
        nok_invoice = self.create_invoice(partner=self.customer_by_email)
        self.assertEqual(nok_invoice._vipps_brand(), "Vipps")
