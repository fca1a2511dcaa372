from datetime import timedelta

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .. import const
from .common import VippsInvoiceCommon


@tagged("post_install", "-at_install")
class TestVippsLifecycle(VippsInvoiceCommon):
    """What happens to a request when its invoice changes, and refunds."""

    vipps_merchant = "approved"

    def _paid_by_vipps(self):
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        self.assertEqual(tx.state, "done")
        return invoice, tx

    # === INVOICE CHANGES === #

    def test_cancelled_invoice_withdraws_request(self):
        """Invariant 2 (nothing live for a cancelled invoice): cancelling queues the
        withdrawal, which the outbox sends right after."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        invoice.button_cancel()
        self.assertEqual(invoice.state, "cancel")
        self.assertFalse(self.vipps_calls("cancelPayment"), msg="No call in cancel.")
        self.run_outbox()
        self.assertEqual(self.emulator.payment(tx.reference).state, "TERMINATED")
        self.assertEqual(tx.state, "cancel")

    def test_reset_to_draft_withdraws_request(self):
        """Invariant 2 (nothing live for an invoice in draft)."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        invoice.button_draft()
        self.assertEqual(invoice.state, "draft")
        self.run_outbox()
        self.assertEqual(self.emulator.payment(tx.reference).state, "TERMINATED")
        self.assertEqual(invoice.vipps_state, "cancelled")

    def test_paid_otherwise_withdraws_request(self):
        """Invariants 2 and 3: paid by bank transfer, the Vipps request is withdrawn
        and no second payment is made."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.pay_otherwise(invoice)
        self.assertFalse(self.vipps_calls("cancelPayment"), msg="No call in reconcile.")
        self.run_outbox()
        self.assertEqual(self.emulator.payment(tx.reference).state, "TERMINATED")
        self.assertEqual(tx.state, "cancel")
        self.assertFalse(tx.payment_id)

    def test_cancel_refused_when_approval_known(self):
        """An approval Odoo knows of (being captured) cannot be withdrawn: cancelling
        the invoice is refused and the invoice stays posted."""
        self.vipps.capture_manually = True
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        self.assertEqual(tx.state, "authorized")
        with self.assertRaisesRegex(UserError, "has approved"):
            invoice.button_cancel()

    def test_invoice_paid_through_vipps_cannot_be_reset_or_cancelled(self):
        """Invariant 2: the money was captured; the invoice is not cancelled or reset
        under it (a credit note reverses it)."""
        invoice, tx = self._paid_by_vipps()
        for button in (invoice.button_draft, invoice.button_cancel):
            with self.assertRaises(UserError) as error:
                button()
            self.assertIn("credit note", str(error.exception))
        self.assertEqual(invoice.state, "posted")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))

    def test_approval_racing_cancel_released(self):
        """Invariant 2: the customer approves just as the invoice is cancelled; the
        withdrawal finds the approval and releases it: nothing is captured."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)  # Odoo does not know yet
        invoice.button_cancel()
        self.run_outbox()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.captured, 0)
        self.assertEqual(payment.cancelled, tx._vipps_minor(tx.amount))
        self.assertEqual(tx.state, "cancel")
        self.assertIn("released", invoice.message_ids[0].body)

    def test_withdrawal_retried_when_vipps_unreachable(self):
        """Invariant 2: Vipps down at cancel time; the invoice is cancelled, the
        request stays visibly open and is withdrawn once Vipps answers again."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.inject_fault(
            "cancelPayment", count=const.MAX_ATTEMPTS, status=503
        )
        invoice.button_cancel()
        with self.fast_retries():
            self.run_outbox()
        self.assertEqual(tx.state, "pending", msg="Vipps was down: still open.")
        row = self.outbox(transaction_id=tx.id)
        self.assertEqual((row.state, row.attempts), ("pending", 1))
        self.run_outbox(due_in_minutes=5)
        self.assertEqual(self.emulator.payment(tx.reference).state, "TERMINATED")
        self.assertEqual(tx.state, "cancel")
        self.assertEqual(row.state, "done")

    # === REFUNDS === #

    def test_partial_refunds_through_vipps(self):
        """Odoo's refund on a Vipps payment refunds at Vipps, partially and again."""
        invoice, tx = self._paid_by_vipps()
        tx.action_refund(amount_to_refund=100.0)
        tx.action_refund(amount_to_refund=50.0)
        refunds = tx.child_transaction_ids.filtered(lambda t: t.operation == "refund")
        self.assertEqual(sorted(refunds.mapped("amount")), [-100.0, -50.0])
        self.assertEqual(set(refunds.mapped("state")), {"done"})
        self.assertEqual(len(refunds.payment_id), 2, msg="One outbound payment each.")
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 15000)
        self.assertEqual(tx.vipps_refunded_amount, 150.0)
        calls = self.vipps_calls("refundPayment")
        self.assertEqual(len({call["idempotencyKey"] for call in calls}), 2)

    def test_refund_above_captured_refused_by_vipps(self):
        """Refunding more than was captured is refused with Vipps's reason."""
        invoice, tx = self._paid_by_vipps()
        self.assert_refund_refused(tx, tx.amount + 1, "6150")

    # === EXPIRY RE-SENDS === #

    def _expire(self, tx, days_ago):
        self.env.cr.execute(
            "UPDATE payment_transaction SET create_date = %s WHERE id = %s",
            [fields.Datetime.now() - timedelta(days=days_ago), tx.id],
        )
        self.env.invalidate_all()
        self.emulator.expire(tx.reference)
        tx._vipps_sync()

    def _poll(self):
        self.run_outbox()

    def test_expired_request_resent_when_configured(self):
        """With re-sends on, an expired request goes out again the next day, N times."""
        self.vipps.vipps_resend_expired = 1
        invoice = self.create_invoice()
        first = invoice._vipps_request_payment()
        self._expire(first, days_ago=2)
        self._poll()
        second = invoice._vipps_last_transaction()
        self.assertNotEqual(second, first)
        self.assertEqual(invoice.vipps_state, "pending")
        self.assertEqual(second.vipps_phone, first.vipps_phone)
        self._expire(second, days_ago=2)
        self._poll()
        self.assertEqual(invoice._vipps_last_transaction(), second, msg="Only once.")
        self.assertEqual(invoice.vipps_state, "expired")

    def test_expired_request_not_resent_same_day_or_when_off(self):
        """Not the same day, and never when the setting is 0."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self._expire(tx, days_ago=2)
        self._poll()
        self.assertEqual(invoice._vipps_last_transaction(), tx, msg="Setting is 0.")
        self.vipps.vipps_resend_expired = 3
        second = self.create_invoice()
        tx = second._vipps_request_payment()
        self._expire(tx, days_ago=0)
        self._poll()
        self.assertEqual(second._vipps_last_transaction(), tx, msg="Once a day.")
        self.run_outbox(due_in_minutes=24 * 60)
        self.assertNotEqual(second._vipps_last_transaction(), tx, msg="Next day.")

    # === QR CODE ON THE PDF === #

    def test_invoice_pdf_has_pay_qr_code(self):
        """The printed invoice carries a QR code of its pay link, until it is paid."""
        invoice = self.create_invoice()
        html = (
            self.env["ir.actions.report"]
            ._render_qweb_html("account.account_invoices", invoice.ids)[0]
            .decode()
        )
        self.assertIn('id="vipps_pay_qr"', html)
        self.assertIn("Scan to pay with Vipps", html)
        self.assertIn(f"payment%2Fvipps%2Fpay%2F{invoice.id}", html)
        self.pay_otherwise(invoice)
        html = (
            self.env["ir.actions.report"]
            ._render_qweb_html("account.account_invoices", invoice.ids)[0]
            .decode()
        )
        self.assertNotIn('id="vipps_pay_qr"', html)

    # === CREDIT NOTES === #

    def _credit_note(self, invoice, amount=None):
        credit_note = invoice._reverse_moves()
        if amount is not None:
            credit_note.invoice_line_ids[0].quantity = 1
            credit_note.invoice_line_ids[0].price_unit = amount
        credit_note.action_post()
        self.assertFalse(self.vipps_calls("refundPayment"), msg="No call in _post.")
        self.run_outbox()
        return credit_note

    def test_credit_note_refunded_through_vipps_when_configured(self):
        """A credit note of a Vipps-paid invoice is refunded to the customer."""
        self.vipps.vipps_refund_credit_notes = True
        invoice, tx = self._paid_by_vipps()
        credit_note = self._credit_note(invoice, amount=200.0)
        refund = tx.child_transaction_ids.filtered(lambda t: t.operation == "refund")
        self.assertEqual(refund.amount, -credit_note.amount_total)
        self.assertEqual(refund.state, "done")
        self.assertEqual(
            self.emulator.payment(tx.reference).refunded,
            round(credit_note.amount_total * 100),
        )
        self.assertIn(credit_note.payment_state, ("paid", "in_payment"))

    def test_credit_note_not_refunded_by_default(self):
        """Without the setting a credit note stays a credit."""
        invoice, tx = self._paid_by_vipps()
        credit_note = self._credit_note(invoice)
        self.assertFalse(tx.child_transaction_ids.filtered(lambda t: t.amount < 0))
        self.assertFalse(self.vipps_calls("refundPayment"))
        self.assertEqual(credit_note.payment_state, "not_paid")
