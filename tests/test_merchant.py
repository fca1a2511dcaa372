"""What an ordinary sales unit gets from Vipps, and what the addon makes of it:
consent, markets, brand, references, keys, receipts, configuration and logs."""

import logging
from datetime import datetime

from freezegun import freeze_time

from odoo import Command
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from .. import const, utils
from .common import VippsInvoiceCommon

DANISH_MSN = "654321"
DANISH = {
    "merchant_serial_number": DANISH_MSN,
    "client_id": "danish-client-id",
    "client_secret": "danish-client-secret",
    "subscription_key": "danish-subscription-key",
}


@tagged("post_install", "-at_install")
class TestVippsConsent(VippsInvoiceCommon):
    """A push goes only to a number the customer agreed to."""

    vipps_merchant = "approved"

    def _wizard(self, invoices):
        return (
            self.env["payment.vipps.request.wizard"]
            .with_context(active_model="account.move", active_ids=invoices.ids)
            .create({})
        )

    def test_mobile_without_consent_gets_the_link(self):
        """A mobile number on file is not consent: the pay link is e-mailed."""
        partner = self.customer.copy({"name": "Per Olsen"})
        invoice = self.create_invoice(partner=partner)
        self.assertFalse(invoice._vipps_request_payment())
        self.assertFalse(self.vipps_calls("createPayment"))
        self.assertTrue(
            invoice.message_ids.filtered(lambda m: "has not agreed" in m.body)
        )

    def test_accountant_confirms_consent_in_wizard(self):
        """Ticking the consent in the wizard pushes, and records who and when."""
        partner = self.customer.copy({"name": "Per Olsen"})
        invoice = self.create_invoice(partner=partner)
        line = self._wizard(invoice).line_ids
        self.assertEqual((line.consent, line.sent_as), (False, "email"))
        line.consent = True
        self.assertEqual(line.sent_as, "push")
        line.wizard_id.action_send()
        self.assertEqual(invoice.vipps_state, "pending")
        self.assertEqual(partner.vipps_phone, self.PHONE_E164)
        self.assertEqual(partner.vipps_consent_user_id, self.env.user)
        self.assertTrue(partner.vipps_consent_date)

    def test_consent_belongs_to_the_commercial_partner(self):
        """A company's consent serves its contacts; a contact's consent is the
        company's."""
        company = self.env["res.partner"].create(
            {"name": "Fjord AS", "is_company": True, "email": "post@fjord.no"}
        )
        contact = self.env["res.partner"].create(
            {"name": "Siri", "parent_id": company.id, "email": "siri@fjord.no"}
        )
        contact._vipps_store_consent("+4741234567", "test")
        self.assertEqual(company.vipps_phone, "+4741234567")
        self.assertFalse(contact.vipps_phone)
        tx = self.create_invoice(partner=contact)._vipps_request_payment()
        self.assertEqual(tx.vipps_phone, "+4741234567")

    def test_send_and_print_and_server_action_respect_consent(self):
        """Every way of sending applies the rule: without consent, the link."""
        partner = self.customer.copy({"name": "Per Olsen"})
        partner.invoice_sending_method = "vipps"
        by_print = self.create_invoice(partner=partner)
        self.env["account.move.send.wizard"].with_context(
            active_model="account.move", active_ids=by_print.ids
        ).create({}).action_send_and_print()
        by_action = self.create_invoice(partner=partner)
        self.env.ref("payment_vipps.action_server_vipps_request_payment").with_context(
            active_model="account.move", active_ids=by_action.ids
        ).run()
        self.assertFalse(self.vipps_calls("createPayment"))
        for invoice in (by_print, by_action):
            self.assertTrue(
                invoice.message_ids.filtered(lambda m: "has not agreed" in m.body)
            )

    def test_shared_number_replaces_nothing_without_confirmation(self):
        """A number shared by whoever holds a forwarded link does not replace the
        consented one; the customer confirms it from an e-mailed link."""
        self.customer._vipps_offer_phone("+4741234567", "shared when paying X")
        self.assertEqual(self.customer.vipps_phone, self.PHONE_E164)
        self.assertEqual(self.customer.vipps_phone_pending, "+4741234567")
        mail = self.customer.message_ids.filtered(lambda m: m.partner_ids)[:1]
        self.assertIn(const.CONSENT_CONFIRM_ROUTE, mail.body)
        token = self.customer.sudo().vipps_phone_pending_token
        self.assertFalse(self.customer._vipps_confirm_pending_phone("forged"))
        self.assertEqual(self.customer.vipps_phone, self.PHONE_E164)
        self.assertTrue(self.customer._vipps_confirm_pending_phone(token))
        self.assertEqual(self.customer.vipps_phone, "+4741234567")
        self.assertFalse(self.customer.vipps_phone_pending)


@tagged("post_install", "-at_install")
class TestVippsPhoneNumbers(VippsInvoiceCommon):
    def test_vipps_msisdn_never_read_in_the_customers_plan(self):
        """A Norwegian MSISDN from Vipps stays Norwegian for a Finnish customer."""
        self.assertEqual(
            utils.to_e164("4791234567", "FI", international=True), "+4791234567"
        )
        finnish = self.env["res.partner"].create(
            {"name": "Aino", "country_id": self.env.ref("base.fi").id}
        )
        finnish._vipps_offer_phone(
            utils.to_e164("4791234567", "FI", international=True), "test"
        )
        self.assertEqual(finnish.vipps_phone, "+4791234567")

    def test_numbers_as_typed(self):
        """National, international, with 00 or spaces; Greenland's short numbers."""
        cases = [
            ("912 34 567", "NO", "+4791234567"),
            ("+47 912 34 567", "FI", "+4791234567"),
            ("0047 91234567", "DK", "+4791234567"),
            ("20 12 34 56", "DK", "+4520123456"),
            ("040 123 4567", "FI", "+358401234567"),
            ("+299 55 12 34", "GL", "+299551234"),
            ("22 33 44 55", "NO", None),  # a landline
        ]
        for typed, country, expected in cases:
            with self.subTest(typed=typed, country=country):
                self.assertEqual(utils.to_e164(typed, country), expected)
        self.assertEqual(utils.msisdn("+299551234"), "299551234")


@tagged("post_install", "-at_install")
class TestVippsMarkets(VippsInvoiceCommon):
    """One sales unit per market; each invoice goes to its currency's."""

    vipps_merchant = "approved"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if DANISH_MSN not in cls.emulator.store.merchants:
            cls.emulator.add_merchant(currency="DKK", approved=True, **DANISH)
        cls.currency_dkk = cls._enable_currency("DKK")
        cls.danish = cls.vipps.copy(
            {
                "name": "Vipps MobilePay (Denmark)",
                "vipps_merchant_serial_number": DANISH_MSN,
                "vipps_client_id": DANISH["client_id"],
                "vipps_client_secret": DANISH["client_secret"],
                "vipps_subscription_key": DANISH["subscription_key"],
                "vipps_api_url_override": cls.emulator.url,
            }
        )
        cls.danish.vipps_currency_id = cls.currency_dkk
        cls.danish.state = "test"

    def _danish_invoice(self):
        return self.create_invoice(currency_id=self.currency_dkk.id)

    def test_each_invoice_goes_to_its_sales_unit(self):
        """A DKK invoice is requested through the Danish sales unit, NOK through the
        Norwegian one, and the wizard says which."""
        danish = self._danish_invoice()
        norwegian = self.create_invoice()
        lines = (
            self.env["payment.vipps.request.wizard"]
            .with_context(
                active_model="account.move", active_ids=(danish | norwegian).ids
            )
            .create({})
            .line_ids
        )
        self.assertEqual(lines.mapped("provider_id"), self.danish | self.vipps)
        txs = (danish | norwegian)._vipps_request_payment()
        self.assertEqual(danish.transaction_ids.provider_id, self.danish)
        self.assertEqual(norwegian.transaction_ids.provider_id, self.vipps)
        payment = self.emulator.payment(danish.vipps_reference, msn=DANISH_MSN)
        self.assertEqual(payment.currency, "DKK")
        self.assertEqual(len(txs), 2)

    def test_links_buttons_and_qr_only_where_a_sales_unit_takes_the_currency(self):
        """No EUR sales unit: no QR, no button, no request for an EUR invoice."""
        euro = self.create_invoice(currency_id=self._enable_currency("EUR").id)
        danish = self._danish_invoice()
        self.assertFalse(euro._vipps_show_pay_qr())
        self.assertFalse(euro.vipps_can_request)
        self.assertTrue(danish._vipps_show_pay_qr())
        self.assertTrue(danish.vipps_can_request)
        with self.assertRaisesRegex(UserError, "not set up .* in EUR"):
            euro._vipps_request_payment()


@tagged("post_install", "-at_install")
class TestVippsBrand(VippsInvoiceCommon):
    """MobilePay becomes Vipps in Denmark and Finland on 12 January 2027."""

    def _render_pdf(self, invoice):
        return (
            self.env["ir.actions.report"]
            ._render_qweb_html("account.account_invoices", invoice.ids)[0]
            .decode()
        )

    def test_brand_follows_the_date(self):
        """Up to 11 January 2027 DKK and EUR customers read MobilePay, from the 12th
        Vipps, on the pay button, the QR caption and the e-mail; NOK is Vipps."""
        danish = self.create_invoice(currency_id=self._enable_currency("DKK").id)
        norwegian = self.create_invoice()
        for day, brand in (
            ("2027-01-11 23:00", "MobilePay"),
            ("2027-01-12 01:00", "Vipps"),
        ):
            with self.subTest(day=day), freeze_time(day):
                self.assertEqual(danish._vipps_brand(), brand)
                self.assertEqual(norwegian._vipps_brand(), "Vipps")
                self.assertEqual(
                    utils.brand("EUR", datetime.fromisoformat(day).date()), brand
                )

    def test_printed_invoice_brand(self):
        """The QR caption on the PDF follows the date."""
        self.danish = self.vipps.copy({"name": "DK"})
        self.danish.vipps_currency_id = self._enable_currency("DKK")
        self.danish.state = "test"
        invoice = self.create_invoice(currency_id=self.danish.vipps_currency_id.id)
        with freeze_time("2027-01-11"):
            self.assertIn("Scan to pay with MobilePay", self._render_pdf(invoice))
        with freeze_time("2027-01-12"):
            self.assertIn("Scan to pay with Vipps", self._render_pdf(invoice))


@tagged("post_install", "-at_install")
class TestVippsReferencesAndKeys(VippsInvoiceCommon):
    vipps_merchant = "approved"

    def test_databases_sharing_a_sales_unit_never_share_a_reference(self):
        """The database's prefix makes the same invoice name two references."""
        other = self.vipps.copy({"vipps_reference_prefix": "B2"})
        one = self.env["payment.transaction"]._compute_reference(
            "vipps", provider_id=self.vipps.id, invoice_ids=[Command.set([1])]
        )
        two = self.env["payment.transaction"]._compute_reference(
            "vipps", provider_id=other.id, invoice_ids=[Command.set([1])]
        )
        self.assertNotEqual(one, two)
        for reference in (one, two):
            self.assertRegex(reference, r"^[A-Za-z0-9-]{8,50}$")
        with self.assertRaises(ValidationError):
            other.vipps_reference_prefix = "with space"

    def test_existing_reference_never_adopted_by_amount_alone(self):
        """Vipps has a payment under the reference, for the same amount, without our
        database's marker: it is not taken for ours (4150 is the answer)."""
        invoice = self.create_invoice()
        tx = self.env["payment.transaction"]._vipps_create_for_invoice(
            invoice,
            self.vipps,
            invoice.amount_residual,
            "PUSH_MESSAGE",
            vipps_phone=self.PHONE_E164,
            vipps_expires_at=invoice._vipps_default_expiry(self.vipps),
        )
        theirs = dict(tx._vipps_prepare_create_payload(), metadata={"shop": "other"})
        self.vipps._vipps_create_payment(theirs, "someone-elses-key", lambda p: True)
        with self.assertRaisesRegex(ValidationError, "4150"):
            tx._vipps_send()
        self.assertFalse(tx.vipps_state)

    def test_corrected_refund_after_refusal_is_a_new_attempt(self):
        """A refund Vipps refused (more than was captured), then the right amount:
        a new key, refunded once."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        self.assert_refund_refused(tx, tx.amount + 1, "6150")
        tx.action_refund(amount_to_refund=100.0)
        keys = {call["idempotencyKey"] for call in self.vipps_calls("refundPayment")}
        self.assertEqual(len(keys), 2)
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)

    def test_corrected_request_after_refusal_is_a_new_attempt(self):
        """Refused (an amount below Vipps's minimum), then corrected: a new
        Idempotency-Key, so Vipps does not answer 4020 for the reused one."""
        invoice = self.create_invoice()
        with self.assertRaisesRegex(ValidationError, "6010"):
            invoice._vipps_request_payment(amount=0.5)
        tx = invoice._vipps_request_payment(amount=500.0)
        self.assertEqual(tx.vipps_state, "CREATED")
        keys = [call["idempotencyKey"] for call in self.vipps_calls("createPayment")]
        self.assertEqual(len(set(keys)), 2)


@tagged("post_install", "-at_install")
class TestVippsReceipts(VippsInvoiceCommon):
    """Receipts that Vipps accepts for every invoice (the emulator checks sums)."""

    vipps_merchant = "approved"

    def _invoice_with(self, **line):
        return self.create_invoice(
            invoice_line_ids=[
                Command.create({"name": "Consulting", "price_unit": 100.0, **line})
            ]
        )

    def _receipt_line(self, invoice):
        tx = invoice._vipps_request_payment()
        self.assertEqual(tx.vipps_state, "CREATED", msg="Vipps accepted it.")
        receipt = self.emulator.payment(tx.reference).receipt
        return receipt["orderLines"][0]

    def test_long_quantity_fits_ten_characters(self):
        """12345.123456 hours: the quantity is rounded to fit 10 characters."""
        line = self._receipt_line(
            self._invoice_with(quantity=12345.123456, price_unit=1.0)
        )
        self.assertLessEqual(len(line["unitInfo"]["quantity"]), 10)

    def test_group_and_division_taxes_give_the_vat_rate(self):
        """A tax group of 25 % gives 2500; a price-included 25 % division tax is a
        quarter of the price with tax, a third of the price without: 3333."""
        vat = self.env["account.tax"].create(
            {"name": "VAT 25", "amount": 25.0, "amount_type": "percent"}
        )
        group = self.env["account.tax"].create(
            {
                "name": "Group",
                "amount_type": "group",
                "children_tax_ids": [Command.set(vat.ids)],
            }
        )
        division = self.env["account.tax"].create(
            {
                "name": "Division 25",
                "amount": 25.0,
                "amount_type": "division",
                "price_include_override": "tax_included",
            }
        )
        for tax, rate in ((group, 2500), (division, 3333)):
            with self.subTest(tax=tax.name):
                line = self._receipt_line(
                    self._invoice_with(tax_ids=[Command.set(tax.ids)])
                )
                self.assertEqual(line["taxRate"], rate)

    def test_withholding_tax_keeps_the_line_consistent(self):
        """25 % VAT and a 10 % withholding: the rate matches the amounts."""
        vat = self.env["account.tax"].create(
            {"name": "VAT 25", "amount": 25.0, "amount_type": "percent"}
        )
        withholding = self.env["account.tax"].create(
            {"name": "Withholding", "amount": -10.0, "amount_type": "percent"}
        )
        line = self._receipt_line(
            self._invoice_with(tax_ids=[Command.set((vat | withholding).ids)])
        )
        self.assertEqual(
            line["totalTaxAmount"],
            round(line["totalAmountExcludingTax"] * line["taxRate"] / 10000),
        )

    def test_no_negative_discount(self):
        """A negative discount (a surcharge) is never sent as a negative discount."""
        line = self._receipt_line(self._invoice_with(discount=-10.0))
        self.assertGreaterEqual(line["discount"], 0)


@tagged("post_install", "-at_install")
class TestVippsConfiguration(VippsInvoiceCommon):
    """Configuration errors are caught when the provider is saved."""

    vipps_merchant = "approved"

    def test_merchant_serial_number_pattern(self):
        with self.assertRaisesRegex(ValidationError, "4 to 6 digits"):
            self.vipps.vipps_merchant_serial_number = "12ab"

    def test_https_base_url_required(self):
        """Webhooks need https; a loopback address (the emulator) is the exception."""
        self.env["ir.config_parameter"].sudo().set_param(
            "web.base.url", "http://odoo.example.com"
        )
        self.vipps.state = "disabled"
        with self.assertRaisesRegex(ValidationError, "https"):
            self.vipps.state = "test"

    def test_failed_webhook_registration_refuses_the_save(self):
        self.vipps.state = "disabled"
        self.emulator.inject_fault("registerWebhook", count=3, status=400)
        with self.fast_retries(), self.assertRaises(ValidationError):
            self.vipps.state = "test"

    def test_invoice_access_token_never_logged(self):
        """The invoice's access token in orderDetailsUrl and the return token are
        masked in the logs."""
        invoice = self.create_invoice()
        with self.assertLogs("odoo.addons.payment_vipps", level=logging.INFO) as logs:
            tx = invoice._vipps_request_payment()
        text = "\n".join(logs.output)
        self.assertIn("access_token=***", text)
        self.assertNotIn(invoice.access_token, text)
        self.assertNotIn(tx._vipps_return_token(), text)


@tagged("post_install", "-at_install")
class TestVippsCaptureAndUnknownPayments(VippsInvoiceCommon):
    """What Vipps answers a capture, and a payment it does not know."""

    vipps_merchant = "approved"

    def _approved(self):
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        return invoice, tx

    def test_capture_failed_try_again_later(self):
        """6280: nothing is booked; the next read captures with the same key."""
        invoice, tx = self._approved()
        self.emulator.capture_error(tx.reference, 6280, count=1)
        tx._vipps_sync()
        self.assertEqual(tx.state, "authorized")
        self.assertFalse(self.payments(tx))
        tx._vipps_sync()
        self.assertEqual(tx.state, "done")
        keys = {call["idempotencyKey"] for call in self.vipps_calls("capturePayment")}
        self.assertEqual(len(keys), 1)

    def test_funds_unavailable_told_and_invoice_due_again(self):
        """6260: the reservation is gone: the accountant is told, the invoice is due
        again and a new request can be sent."""
        invoice, tx = self._approved()
        self.emulator.capture_error(tx.reference, 6260)
        tx._vipps_sync()
        self.assertEqual(tx.state, "error")
        self.assertIn("6260", tx.state_message)
        self.assertTrue(invoice.message_ids.filtered(lambda m: "6260" in m.body))
        self.assertFalse(invoice._vipps_payable()[1], msg="Due again.")
        self.assertEqual(invoice._vipps_request_payment().vipps_state, "CREATED")

    def test_capture_guaranteed_until_shown_for_manual_capture(self):
        """With manual capture, the date until which Vipps guarantees the capture
        is kept on the transaction."""
        self.vipps.capture_manually = True
        invoice, tx = self._approved()
        tx._vipps_sync()
        self.assertEqual(tx.state, "authorized")
        self.assertTrue(tx.vipps_capture_guaranteed_until)
        self.assertGreater(tx.vipps_capture_guaranteed_until, tx.create_date)

    def test_payment_vipps_does_not_know_is_ended(self):
        """5090 (another environment or sales unit): the request is ended in Odoo
        with a note, and no longer blocks a new request or cancelling."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.reset(keep_webhooks=True)  # Vipps forgets it
        self.emulator.update_merchant(approved=True)
        invoice.action_vipps_check_status()
        self.assertEqual(tx.state, "cancel")
        self.assertIn("no payment with this reference", tx.state_message)
        self.assertEqual(invoice._vipps_request_payment().vipps_state, "CREATED")

    def test_greenlandic_number_gets_the_request(self):
        """A Greenlandic number (+299, six digits) is accepted and pushed to."""
        greenland = self.env["res.partner"].create(
            {"name": "Aviaja", "country_id": self.env.ref("base.gl").id}
        )
        invoice = self.create_invoice(partner=greenland)
        tx = invoice._vipps_request_payment(phone="55 12 34", consent=True)
        self.assertEqual(tx.vipps_phone, "+299551234")
        self.assertEqual(self.emulator.payment(tx.reference).phone, "299551234")
