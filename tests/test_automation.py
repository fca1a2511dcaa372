from unittest.mock import patch

from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged

from .. import const
from .common import VippsInvoiceCommon


@tagged("post_install", "-at_install")
class TestVippsAutomation(VippsInvoiceCommon):
    """Requests sent on posting, the server action, and Send & Print."""

    vipps_merchant = "approved"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.opted_in = cls.env["res.partner"].create(
            {"name": "Opted In", "email": "in@example.com"}
        )
        cls.opted_in._vipps_store_consent("+4791234567", "test")
        cls.by_email = cls.env["res.partner"].create(
            {"name": "By Email", "email": "mail@example.com"}
        )

    def _run_queue(self):
        self.run_outbox()

    def _queued(self, invoices):
        return self.env["payment.vipps.outbox"].search(
            [
                ("move_id", "in", invoices.ids),
                ("operation", "=", "request"),
                ("state", "=", "pending"),
            ]
        )

    # === ON POSTING === #

    def test_posting_queues_and_job_sends(self):
        """Posting sends nothing itself; the job pushes or e-mails afterwards."""
        self.vipps.vipps_auto_request = True
        pushed = self.create_invoice(partner=self.opted_in)
        emailed = self.create_invoice(partner=self.by_email)
        self.assertEqual(self._queued(pushed | emailed).move_id, pushed | emailed)
        self.assertFalse(
            self.vipps_calls("createPayment"), msg="Posting sends nothing."
        )
        self._run_queue()
        self.assertFalse(self._queued(pushed | emailed))
        self.assertEqual(pushed.vipps_state, "pending")
        self.assertEqual(
            self.emulator.payment(pushed.vipps_reference).phone, "4791234567"
        )
        self.assertFalse(emailed.transaction_ids)
        self.assertIn(
            f"{const.PAY_ROUTE}/{emailed.id}", emailed.message_ids[0].body or ""
        )

    def test_mobile_without_opt_in_gets_email_not_push(self):
        """A customer who never opted in is not pushed automatically."""
        self.vipps.vipps_auto_request = True
        # A mobile number, but no consent.
        invoice = self.create_invoice(partner=self.customer.copy({"name": "Kari II"}))
        self._run_queue()
        self.assertFalse(invoice.transaction_ids)
        self.assertIn(f"{const.PAY_ROUTE}/{invoice.id}", invoice.message_ids[0].body)

    def test_settings_choose_what_goes_out(self):
        """With both kinds switched off nothing goes out."""
        self.vipps.write(
            {
                "vipps_auto_request": True,
                "vipps_auto_push": False,
                "vipps_auto_email": False,
            }
        )
        pushed = self.create_invoice(partner=self.opted_in)
        emailed = self.create_invoice(partner=self.by_email)
        messages = len(emailed.message_ids)
        self._run_queue()
        self.assertFalse(pushed.transaction_ids)
        self.assertEqual(len(emailed.message_ids), messages)

    def test_off_by_default(self):
        """Without the setting, posting queues nothing."""
        invoice = self.create_invoice(partner=self.opted_in)
        self.assertFalse(self._queued(invoice))

    def test_many_invoices_sent_in_batches(self):
        """A big posting is sent row by row, each committed, until none is left."""
        self.vipps.vipps_auto_request = True
        invoices = self.env["account.move"]
        for __ in range(5):
            invoices |= self.create_invoice(partner=self.opted_in)
        self.env["payment.vipps.outbox"]._cron_process(limit=2)
        self.env.invalidate_all()
        self.assertEqual(len(self._queued(invoices)), 3)
        self.env["payment.vipps.outbox"]._cron_process(limit=2)
        self.env["payment.vipps.outbox"]._cron_process(limit=2)
        self.env.invalidate_all()
        self.assertFalse(self._queued(invoices))
        self.assertEqual(set(invoices.mapped("vipps_state")), {"pending"})

    def test_interrupted_batch_resumes_without_sending_twice(self):
        """Invariants 3 and 4: sent, then Odoo's side was rolled back; sending again
        adopts the payment Vipps has (our marker, the same invoice and amount)."""
        invoice = self.create_invoice(partner=self.opted_in)
        reference = invoice._vipps_request_payment().reference
        payment = self.emulator.payment(reference)
        # The crash: Odoo forgets the transaction, Vipps keeps the payment.
        invoice.transaction_ids.unlink()
        tx = invoice._vipps_request_payment()
        self.assertEqual(tx.reference, reference)
        self.assertEqual(len(self.emulator.payments), 1, msg="Not sent twice.")
        self.assertIs(self.emulator.payment(reference), payment)
        self.assertEqual(tx.state, "pending")

    # === LARGE REQUESTS FROM THE LIST === #

    def _wizard(self, invoices):
        return (
            self.env["payment.vipps.request.wizard"]
            .with_context(active_model="account.move", active_ids=invoices.ids)
            .create({})
        )

    def test_large_wizard_request_queued_as_asked(self):
        """Above the threshold the wizard queues; the job sends what was asked,
        as the user who asked."""
        accountant = new_test_user(
            self.env, "vipps_accountant", groups="account.group_account_invoice"
        )
        invoices = self.create_invoice(partner=self.opted_in)
        invoices |= self.create_invoice(partner=self.by_email)
        wizard = self._wizard(invoices).with_user(accountant)
        # Another number, which the accountant confirms the customer agreed to.
        wizard.line_ids[0].write(
            {"phone": "+47 912 34 500", "consent": True, "amount": 300.0}
        )
        with patch.object(const, "BULK_QUEUE_THRESHOLD", 1):
            action = wizard.action_send()
        self.assertEqual(action["params"]["type"], "info")
        self.assertIn("2 payment requests", action["params"]["message"])
        self.assertFalse(invoices.transaction_ids, msg="Nothing sent yet.")
        self.assertEqual(len(self._queued(invoices)), 2)
        self._run_queue()
        self.assertFalse(self._queued(invoices))
        tx = invoices[0].transaction_ids
        self.assertEqual((tx.amount, tx.vipps_phone), (300.0, "+4791234500"))
        self.assertEqual(tx.vipps_state, "CREATED")
        self.assertEqual(self.opted_in.vipps_phone, "+4791234500")
        self.assertEqual(self.opted_in.vipps_consent_user_id, accountant)
        sent_note = invoices[0].message_ids.filtered(lambda m: "sent to" in m.body)
        self.assertEqual(sent_note.author_id, accountant.partner_id)
        # No number on the second line: the customer was e-mailed the pay link.
        self.assertFalse(invoices[1].transaction_ids)
        self.assertTrue(
            invoices[1].message_ids.filtered(lambda m: m.partner_ids == self.by_email)
        )

    def test_large_wizard_request_checked_before_queueing(self):
        """A problem on any line queues nothing and names the invoice."""
        invoices = self.create_invoice(partner=self.opted_in)
        invoices |= self.create_invoice(partner=self.opted_in)
        wizard = self._wizard(invoices)
        wizard.line_ids[1].amount = 99999.0
        with (
            patch.object(const, "BULK_QUEUE_THRESHOLD", 1),
            self.assertRaisesRegex(UserError, invoices[1].name),
        ):
            wizard.action_send()
        self.assertFalse(self._queued(invoices))

    def test_interrupted_queue_batch_resumes_without_sending_twice(self):
        """Invariants 3 and 5: the job dies after sending the second request, before
        committing it; the first stays sent, and the next run sends the other two.
        Vipps got each request once."""
        invoices = self.env["account.move"]
        for __ in range(3):
            invoices |= self.create_invoice(partner=self.opted_in)
        with patch.object(const, "BULK_QUEUE_THRESHOLD", 1):
            self._wizard(invoices).action_send()
        model = type(self.env["account.move"])
        send = model._vipps_send_queued
        sent = []

        def send_then_crash(invoice, values):
            send(invoice, values)
            sent.append(invoice)
            if len(sent) == 2:
                raise KeyboardInterrupt("worker killed")

        # Not assertRaises: Odoo's rolls back everything inside it.
        killed = False
        with patch.object(model, "_vipps_send_queued", send_then_crash):
            try:
                self.run_outbox()
            except KeyboardInterrupt:
                killed = True
        self.assertTrue(killed)
        self.env.invalidate_all()
        self.assertEqual(len(self.emulator.payments), 2)
        self.assertEqual(len(self._queued(invoices)), 2)
        self.assertEqual(len(invoices.transaction_ids), 1, msg="The first is kept.")
        self._run_queue()
        self.assertEqual(len(self.emulator.payments), 3, msg="None sent twice.")
        self.assertEqual(set(invoices.mapped("vipps_state")), {"pending"})
        self.assertEqual(len(self.vipps_calls("createPayment")), 4)

    # === SERVER ACTION AND SEND & PRINT === #

    def test_server_action_for_automation_rules(self):
        """The shipped server action sends the request of its records."""
        invoice = self.create_invoice(partner=self.opted_in)
        action = self.env.ref("payment_vipps.action_server_vipps_request_payment")
        action.with_context(active_model="account.move", active_ids=invoice.ids).run()
        self.assertEqual(invoice.vipps_state, "pending")

    def test_send_and_print_by_vipps(self):
        """'by Vipps MobilePay' in Send & Print sends the request, per customer."""
        self.opted_in.invoice_sending_method = "vipps"
        invoice = self.create_invoice(partner=self.opted_in)
        wizard = (
            self.env["account.move.send.wizard"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create({})
        )
        self.assertIn("vipps", wizard.sending_methods)
        wizard.action_send_and_print()
        self.assertEqual(invoice.vipps_state, "pending")
