from datetime import timedelta

from odoo import fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from .. import const
from .common import VippsInvoiceCommon


@tagged("post_install", "-at_install")
class TestVippsPaymentRequest(VippsInvoiceCommon):
    """Request via Vipps: push requests sent, followed, captured and reconciled."""

    vipps_merchant = "approved"

    def _request(self, invoice, **kwargs):
        return invoice._vipps_request_payment(**kwargs)

    # === SENDING === #

    def test_request_sends_push_with_receipt_and_order_link(self):
        """The request registers the order link, then pushes the payment."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.assertEqual(tx.state, "pending")
        self.assertEqual(invoice.vipps_state, "pending")
        prefix = self.vipps.vipps_reference_prefix
        self.assertRegex(prefix, r"^[A-Z0-9]{4}$")
        self.assertEqual(tx.reference, f"{prefix}-" + invoice.name.replace("/", "-"))
        self.assertEqual(invoice.vipps_reference, tx.reference)
        self.assertEqual(
            [call["operation"] for call in self.vipps_calls() if call["reference"]],
            ["putCategory", "createPayment"],
        )
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.flow, "PUSH_MESSAGE")
        self.assertEqual(payment.phone, self.PHONE)
        self.assertEqual(payment.value, round(invoice.amount_total * 100))
        self.assertIsNotNone(
            payment.expires_at, msg="A push request has a long expiry."
        )
        order = self.vipps._vipps_get_order(tx.reference)
        self.assertEqual(order["category"]["category"], "GENERAL")
        invoice.invalidate_recordset(["access_token"])
        self.assertEqual(
            order["category"]["orderDetailsUrl"],
            f"http://127.0.0.1:9{const.ORDER_DETAILS_ROUTE}/{invoice.id}"
            f"?access_token={invoice.access_token}",
        )
        lines = order["receipt"]["orderLines"]
        self.assertEqual(
            sum(line["totalAmount"] for line in lines),
            round(invoice.amount_total * 100),
        )
        self.assertEqual(lines[0]["taxRate"], 1500)
        self.assertIn("sent to 47******67", invoice.message_ids[0].body)

    def test_description_shows_invoice_and_due_date(self):
        """The text in the app names the invoice and its due date."""
        invoice = self.create_invoice()
        self.assertEqual(
            invoice._vipps_payment_description(),
            f"Invoice {invoice.name}, due 12/31/2026",
        )
        self._request(invoice)
        payment = self.emulator.payment(invoice.vipps_reference)
        self.assertEqual(payment.description, invoice._vipps_payment_description())

    def test_instalment_receipt_adds_up_to_requested_amount(self):
        """A smaller amount is an instalment; the receipt still adds up exactly."""
        invoice = self.create_invoice()
        tx = self._request(invoice, amount=500.0)
        self.assertEqual(tx.amount, 500.0)
        receipt = self.vipps._vipps_get_order(tx.reference)["receipt"]
        total = sum(
            -line["totalAmount"] if line.get("isReturn") else line["totalAmount"]
            for line in receipt["orderLines"]
        )
        self.assertEqual(total, 50000)

    def test_phone_typed_by_hand_is_normalised(self):
        """A number typed with spaces and +47 is sent as Vipps's MSISDN."""
        invoice = self.create_invoice(partner=self.customer_without_phone)
        self._request(invoice, phone="+47 412 34 567", consent=True)
        self.assertEqual(
            self.emulator.payment(invoice.vipps_reference).phone, "4741234567"
        )

    def test_expiry_defaults_to_due_date_within_limit(self):
        """The request expires at the due date, but never later than the limit."""
        self.vipps.vipps_max_expiry_hours = 24 * 28
        soon = fields.Date.today() + timedelta(days=3)
        invoice = self.create_invoice(invoice_date_due=soon)
        expiry = invoice._vipps_default_expiry(self.vipps)
        self.assertEqual(expiry.date(), soon, msg="End of the due date (UTC user).")
        self.vipps.vipps_max_expiry_hours = 24
        capped = invoice._vipps_default_expiry(self.vipps)
        self.assertLessEqual(capped, fields.Datetime.now() + timedelta(hours=24))

    # === BAD INPUT === #

    def _assert_refused(self, invoice, message, **kwargs):
        transactions = self.env["payment.transaction"].search_count([])
        with self.assertRaisesRegex(UserError, message):
            self._request(invoice, **kwargs)
        self.assertEqual(
            self.env["payment.transaction"].search_count([]),
            transactions,
            msg="No transaction may be left behind.",
        )
        self.assertFalse(
            self.vipps_calls("createPayment"), msg="Nothing sent to Vipps."
        )

    def test_draft_invoice_refused(self):
        """A draft invoice cannot be requested."""
        self._assert_refused(self.create_invoice(post=False), "Only posted invoices")

    def test_vendor_bill_refused(self):
        """A vendor bill cannot be requested."""
        bill = self.create_invoice(post=False, move_type="in_invoice")
        bill.action_post()
        self._assert_refused(bill, "Only customer invoices")

    def test_paid_invoice_refused(self):
        """Nothing due, nothing to request."""
        invoice = self.create_invoice()
        self.pay_otherwise(invoice)
        self._assert_refused(invoice, "already paid")

    def test_unsupported_currency_refused(self):
        """Vipps MobilePay takes NOK, DKK and EUR only."""
        invoice = self.create_invoice(post=False)
        invoice.currency_id = self.env.ref("base.USD")
        invoice.action_post()
        self._assert_refused(invoice, "cannot take payments in USD")

    def test_missing_phone_and_email_refused(self):
        """A customer with neither mobile number nor e-mail cannot be asked."""
        invoice = self.create_invoice(partner=self.customer_without_phone)
        self._assert_refused(invoice, "no e-mail address for the pay link")

    def test_invalid_phone_refused(self):
        """A number that is no mobile number is refused before Vipps sees it."""
        invoice = self.create_invoice()
        self._assert_refused(invoice, "not a valid mobile number", phone="22 33 44 55")

    def test_provider_not_configured_refused(self):
        """Without an enabled Vipps provider nothing is sent."""
        self.vipps.state = "disabled"
        self._assert_refused(self.create_invoice(), "not set up")

    def test_amount_above_due_refused(self):
        """More than the amount due cannot be requested."""
        self._assert_refused(
            self.create_invoice(), "more than the amount due", amount=5e6
        )

    def test_open_request_blocks_second(self):
        """While a request waits for the customer, a second one is refused."""
        invoice = self.create_invoice()
        self._request(invoice)
        self.emulator.clear_requests()
        self._assert_refused(invoice, "already waiting")

    def test_batch_refused_whole_when_one_is_bad(self):
        """In a batch, one bad invoice stops all: nothing is sent."""
        good = self.create_invoice()
        bad = self.create_invoice(partner=self.customer_without_phone)
        self._assert_refused(good | bad, "Ola Hansen cannot get a payment request")

    # === VIPPS REFUSES OR FAILS === #

    def test_vipps_error_reaches_accountant_and_leaves_nothing(self):
        """A refusal with no way round (an amount below Vipps's minimum) comes back
        with Vipps's explanation and code; no transaction is left behind."""
        invoice = self.create_invoice()
        before = self.env["payment.transaction"].search_count([])
        with self.assertRaisesRegex(ValidationError, "6010"):
            self._request(invoice, amount=0.5)
        self.assertEqual(self.env["payment.transaction"].search_count([]), before)
        self.assertFalse(invoice.vipps_state)

    def _assert_link_emailed(self, invoice, why):
        self.assertFalse(invoice.transaction_ids, msg="Nothing left half-sent.")
        mail = invoice.message_ids.filtered(
            lambda m: m.partner_ids and f"{const.PAY_ROUTE}/{invoice.id}" in m.body
        )
        self.assertEqual(len(mail), 1, msg="The customer got the pay link.")
        note = invoice.message_ids.filtered(lambda m: "e-mailed instead" in m.body)
        self.assertIn(why, note.body, msg="The chatter says why.")

    def test_not_a_vipps_user_gets_the_link_by_email(self):
        """7010 (not a Vipps user): the customer is e-mailed the pay link at once."""
        invoice = self.create_invoice()
        result = self._request(invoice, phone="+47 912 30 000", consent=True)
        self.assertFalse(result)
        self._assert_link_emailed(invoice, "7010")
        self.assertTrue(self.vipps._vipps_push_possible(), msg="Not the sales unit's.")

    def test_push_not_approved_learned_and_link_emailed(self):
        """5080: the sales unit may not push: the link goes by e-mail, the provider
        learns it, and the next request does not ask Vipps again."""
        self.emulator.update_merchant(push_allowed=False)
        invoice = self.create_invoice()
        self._request(invoice)
        self._assert_link_emailed(invoice, "5080")
        self.assertFalse(self.vipps.vipps_push_allowed)
        self.assertIn("5080", self.vipps.vipps_capability_note)
        self.emulator.clear_requests()
        following = self.create_invoice()
        self._request(following)
        self.assertFalse(self.vipps_calls("createPayment"), msg="Not asked again.")
        self._assert_link_emailed(following, "not approved")

    def test_long_living_not_approved_learned_and_link_emailed(self):
        """5050: without long-living approval a push would expire within minutes:
        the link goes by e-mail and the provider stops asking."""
        self.emulator.update_merchant(long_living_max_days=0)
        invoice = self.create_invoice()
        self._request(invoice)
        self._assert_link_emailed(invoice, "5050")
        self.assertFalse(self.vipps.vipps_long_living_allowed)
        self.assertTrue(self.vipps.vipps_push_allowed)

    def test_vipps_down_sends_nothing(self):
        """Vipps unreachable: no payment at Vipps, no transaction in Odoo."""
        invoice = self.create_invoice()
        self.emulator.inject_fault(
            "createPayment", count=const.MAX_ATTEMPTS, disconnect=True
        )
        with (
            self.fast_retries(),
            self.assertRaisesRegex(ValidationError, "could not be reached"),
        ):
            self._request(invoice)
        self.assertFalse(self.emulator.payments)
        self.assertFalse(invoice.transaction_ids)
        # Sent later: once.
        tx = self._request(invoice)
        self.assertEqual(tx.state, "pending")
        self.assertEqual(len(self.emulator.payments), 1)

    def test_lost_answer_sends_once(self):
        """Vipps slow (answers lost): the request exists once and is tracked."""
        invoice = self.create_invoice()
        self.emulator.inject_fault(
            "createPayment", count=const.MAX_ATTEMPTS, timeout=True, processed=True
        )
        with self.fast_retries():
            tx = self._request(invoice)
        self.assertEqual(tx.state, "pending")
        self.assertEqual(len(self.emulator.payments), 1)

    def test_batch_continues_after_vipps_refusal(self):
        """In a batch, an invoice Vipps refuses (and whose customer has no e-mail
        for the link) is noted; the others go out."""
        first = self.create_invoice()
        other_customer = self.customer.copy({"email": False})
        other_customer._vipps_store_consent("+4791230000", "test")
        refused = self.create_invoice(partner=other_customer)
        transactions = (first | refused)._vipps_request_payment()
        self.assertEqual(transactions.invoice_ids, first)
        self.assertFalse(refused.transaction_ids)
        self.assertIn("was not sent", refused.message_ids[0].body)

    # === FOLLOWING THE PAYMENT === #

    def test_approved_payment_captured_and_invoice_paid(self):
        """Approval, then Check status: captured once, paid and reconciled."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.approve(tx.reference)
        invoice.action_vipps_check_status()
        self.assertEqual(tx.state, "done")
        self.assertTrue(tx.is_post_processed)
        self.assertEqual(invoice.vipps_state, "paid")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertEqual(len(self.payments(tx)), 1)
        self.assertEqual(
            self.emulator.payment(tx.reference).captured, tx._vipps_minor(tx.amount)
        )
        # Checking again changes nothing and captures nothing more.
        invoice.action_vipps_check_status()
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assertEqual(len(self.payments(invoice.transaction_ids)), 1)

    def test_approval_confirmed_in_one_chatter_message(self):
        """Sent and paid each leave one line in the chatter, not one per step
        (plus Odoo's own line for the payment it posts)."""
        invoice = self.create_invoice()
        before = invoice.message_ids
        tx = self._request(invoice)
        sent = invoice.message_ids - before
        self.assertEqual(len(sent), 1)
        self.assertIn(f"{tx.reference} of", sent.body)
        self.assertIn("sent to 47******67", sent.body)
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        bodies = (invoice.message_ids - before - sent).mapped("body")
        self.assertEqual(tx.state, "done")
        self.assertEqual(len([b for b in bodies if "confirmed" in b]), 1, bodies)
        self.assertEqual(len([b for b in bodies if tx.reference in b]), 2, bodies)
        self.assertFalse([b for b in bodies if "authorized" in b], bodies)

    def test_failed_capture_retried_by_poll(self):
        """Vipps down at capture time: the approval is kept and the poll captures it
        later, once."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.approve(tx.reference)
        self.emulator.inject_fault(
            "capturePayment", count=const.MAX_ATTEMPTS, status=503
        )
        tx.vipps_last_sync = fields.Datetime.now() - timedelta(hours=1)
        poll = self.env.ref("payment_vipps.cron_poll_payments")
        with self.fast_retries():
            poll.method_direct_trigger()
        self.assertNotIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertEqual(self.emulator.payment(tx.reference).captured, 0)
        tx.vipps_last_sync = fields.Datetime.now() - timedelta(hours=1)
        poll.method_direct_trigger()
        self.assertEqual(invoice.vipps_state, "paid")
        self.assertEqual(len(self.payments(tx)), 1)
        self.assertEqual(
            self.emulator.payment(tx.reference).captured, tx._vipps_minor(tx.amount)
        )

    def test_manual_capture_keeps_payment_authorized(self):
        """With manual capture, approval only authorizes; capture is a button."""
        self.vipps.capture_manually = True
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        self.assertEqual(tx.state, "authorized")
        self.assertEqual(invoice.vipps_state, "authorized")
        self.assertFalse(self.vipps_calls("capturePayment"))
        tx.action_capture()
        self.assertEqual(tx.state, "done")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))

    def test_rejected_request_recorded(self):
        """The customer declines: the invoice shows it and can be requested again."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.reject(tx.reference)
        tx._vipps_sync()
        self.assertEqual(tx.state, "cancel")
        self.assertEqual(invoice.vipps_state, "rejected")
        second = self._request(invoice)
        self.assertEqual(second.reference, f"{tx.reference}-1")

    def test_expired_request_recorded(self):
        """A request that runs out unpaid is marked expired by the poll."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.expire(tx.reference)
        tx.vipps_last_sync = fields.Datetime.now() - timedelta(hours=1)
        self.env.ref("payment_vipps.cron_poll_payments").method_direct_trigger()
        self.assertEqual(invoice.vipps_state, "expired")
        self.assertEqual(tx.state, "cancel")

    def test_poll_captures_approved_request(self):
        """Webhook lost: the poll finds the approval and the invoice gets paid."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.approve(tx.reference)
        tx.vipps_last_sync = fields.Datetime.now() - timedelta(hours=1)
        self.env.ref("payment_vipps.cron_poll_payments").method_direct_trigger()
        self.assertEqual(invoice.vipps_state, "paid")

    def test_staff_cancel_withdraws_request(self):
        """Staff cancel an open request: it is terminated at Vipps."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        invoice.action_vipps_cancel_request()
        self.assertEqual(self.emulator.payment(tx.reference).state, "TERMINATED")
        self.assertEqual(invoice.vipps_state, "cancelled")
        self.assertEqual(tx.state, "cancel")

    def test_cancel_after_approval_captures_instead(self):
        """If the customer approved meanwhile, cancelling captures the payment."""
        invoice = self.create_invoice()
        tx = self._request(invoice)
        self.emulator.approve(tx.reference)
        action = invoice.action_vipps_cancel_request()
        self.assertEqual(action["params"]["type"], "warning")
        self.assertEqual(invoice.vipps_state, "paid")
        self.assertEqual(tx.state, "done")

    def test_wizard_sends_requests_for_many_invoices(self):
        """The list action's wizard sends one request per selected invoice."""
        invoices = self.create_invoice() | self.create_invoice()
        wizard = (
            self.env["payment.vipps.request.wizard"]
            .with_context(active_model="account.move", active_ids=invoices.ids)
            .create({})
        )
        self.assertEqual(len(wizard.line_ids), 2)
        self.assertEqual(wizard.line_ids[0].phone, "+47 91 23 45 67")
        self.assertTrue(wizard.line_ids[0].consent)
        self.assertEqual(wizard.line_ids[0].sent_as, "push")
        self.assertEqual(wizard.line_ids[0].provider_id, self.vipps)
        self.assertEqual(wizard.line_ids[0].amount, invoices[0].amount_residual)
        action = wizard.action_send()
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(set(invoices.mapped("vipps_state")), {"pending"})

    def test_server_action_can_request(self):
        """Automated actions call the public method with defaults."""
        invoice = self.create_invoice()
        action = self.env["ir.actions.server"].create(
            {
                "name": "Send via Vipps",
                "model_id": self.env.ref("account.model_account_move").id,
                "state": "code",
                "code": "records._vipps_request_payment()",
            }
        )
        action.with_context(active_model="account.move", active_ids=invoice.ids).run()
        self.assertEqual(invoice.vipps_state, "pending")
        self.assertEqual(len(invoice.transaction_ids), 1)
