"""The fault matrix: every money operation against lost answers, failures, hangs and
crashes, over real HTTP to the emulator. Each test names the invariant it protects:

1. Vipps's captured - refunded equals Odoo's booked payments - refunds, and nothing is
   booked unless Vipps's aggregate moved.
2. Nothing stays reserved or live in the app for an invoice that is paid, cancelled
   or in draft.
3. Nothing is paid or refunded twice.
4. Every payment carrying our marker has an Odoo transaction.
5. One failing item never blocks the others.
"""

from contextlib import contextmanager
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .. import const
from ..exceptions import VippsError
from ..models.payment_provider import PaymentProvider
from .common import VippsInvoiceCommon


class Crash(Exception):
    """Odoo dies after Vipps did the work, before committing it."""


@tagged("post_install", "-at_install")
class VippsFaultCommon(VippsInvoiceCommon):
    vipps_merchant = "approved"
    # === FAULTS === #

    def inject(self, operation, kind):
        """Make the next call(s) of `operation` fail in one of the matrix's ways."""
        attempts = const.MAX_ATTEMPTS
        if kind == "lost_done":  # Vipps does it; every answer is lost
            self.emulator.inject_fault(
                operation, count=attempts, timeout=True, processed=True
            )
        elif kind == "lost_not_done":  # the call never reaches Vipps
            self.emulator.inject_fault(operation, count=attempts, disconnect=True)
        elif kind == "5xx_then_ok":
            self.emulator.inject_fault(operation, count=1, status=503)
        elif kind == "hang":  # longer than our timeout; Vipps does it late
            self.emulator.inject_fault(operation, count=1, latency=1.0)

    @contextmanager
    def faulty(self, kind):
        """Quick retries, and a short client timeout for the hang."""
        with self.fast_retries():
            if kind == "hang":
                with patch.object(const, "REQUEST_TIMEOUT", 0.3):
                    yield
            else:
                yield

    @contextmanager
    def crash_after(self, method):
        """Odoo crashes right after a successful call of a provider method."""
        original = getattr(PaymentProvider, method)

        def call_then_crash(provider, *args, **kwargs):
            original(provider, *args, **kwargs)
            raise Crash(method)

        with patch.object(PaymentProvider, method, call_then_crash):
            yield

    def crashed(self, function):
        """Run `function` and roll back all it did in Odoo, as a crash does (not
        assertRaises: Odoo's rolls back everything inside it anyway).

        The records of Vipps writes that the code commits apart before calling
        Vipps survive, as they do in PostgreSQL (in tests every cursor shares the
        test's transaction, so they are written again after the rollback).
        """
        outbox = type(self.env["payment.vipps.outbox"])
        record = outbox._vipps_record_intent
        recorded = []

        def remember(model, tx):
            committed = tx.vipps_state and tx.id
            recorded.append(
                {
                    "operation": "sync",
                    "provider_id": tx.provider_id.id,
                    "move_id": tx.invoice_ids[:1].id,
                    "transaction_id": committed,
                    "reference": False if committed else tx.reference,
                    "next_attempt_at": fields.Datetime.now(),
                }
            )
            return record(model, tx)

        crashed = False
        try:
            with patch.object(outbox, "_vipps_record_intent", remember):
                with self.env.cr.savepoint():
                    function()
        except Crash:
            crashed = True
        self.assertTrue(crashed, msg="The operation ran to its end.")
        self.env.invalidate_all()
        self.env["payment.vipps.outbox"].sudo().create(recorded)

    def settle(self):
        """Let the safety nets run: the poll, then everything in the outbox."""
        for __ in range(2):
            self.run_poll()
            self.run_outbox(due_in_minutes=30)

    # === INVARIANTS === #

    def assert_books_match(self, invoice):
        """Invariant 1: for each Vipps payment of the invoice, what Vipps captured
        minus refunded is what Odoo registered."""
        for tx in self.vipps_transactions(invoice):
            payment = self.emulator.payment(tx.reference)
            family = tx | tx.child_transaction_ids
            booked = sum(
                pay.amount if pay.payment_type == "inbound" else -pay.amount
                for pay in family.payment_id.filtered(lambda p: p.state != "canceled")
            )
            self.assertEqual(
                tx._vipps_minor(booked),
                payment.captured - payment.refunded,
                msg=f"Invariant 1: Odoo's books and Vipps disagree on {tx.reference}",
            )

    def assert_nothing_live(self, invoice):
        """Invariant 2: no request waiting in the app, nothing reserved."""
        for tx in self.vipps_transactions(invoice):
            payment = self.emulator.payment(tx.reference)
            self.assertNotEqual(payment.state, "CREATED", msg="Invariant 2: live")
            if payment.state == "AUTHORIZED":
                self.assertEqual(
                    payment.value - payment.captured - payment.cancelled,
                    0,
                    msg=f"Invariant 2: {tx.reference} still reserved",
                )

    def assert_paid_once(self, invoice):
        """Invariant 3: what Vipps captured for the invoice is at most its total,
        and the invoice has exactly the payments that match it."""
        captured = sum(
            self.emulator.payment(tx.reference).captured
            for tx in self.vipps_transactions(invoice)
        )
        self.assertLessEqual(
            captured,
            round(invoice.amount_total * 100),
            msg="Invariant 3: the customer paid more than the invoice",
        )

    def vipps_transactions(self, invoice):
        return invoice.sudo().transaction_ids.filtered(
            lambda tx: tx.provider_code == "vipps" and not tx.source_transaction_id
        )

    def approved_request(self, invoice=None):
        invoice = invoice or self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        return invoice, tx


@tagged("post_install", "-at_install")
class TestVippsCreateFaults(VippsFaultCommon):
    """Create: the payment request sent to the app."""

    def test_create_answer_lost_after_done(self):
        """Invariants 3 and 4: Vipps created it, every answer was lost; the read-back
        finds our payment, the transaction follows it, nothing is sent twice."""
        invoice = self.create_invoice()
        self.inject("createPayment", "lost_done")
        with self.faulty("lost_done"):
            tx = invoice._vipps_request_payment()
        self.assertEqual((tx.state, tx.vipps_state), ("pending", "CREATED"))
        self.assertEqual(len(self.emulator.payments), 1)

    def test_create_lost_not_done(self):
        """Invariant 4: the create never reached Vipps, which the read-back proves:
        the accountant is told that nothing was sent, and nothing exists."""
        invoice = self.create_invoice()
        self.inject("createPayment", "lost_not_done")
        with (
            self.faulty("lost_not_done"),
            self.assertRaisesRegex(VippsError, "Nothing was sent"),
        ):
            invoice._vipps_request_payment()
        self.assertFalse(self.emulator.payments)
        self.assertFalse(self.vipps_transactions(invoice))

    def test_create_uncertain_never_says_nothing_sent(self):
        """Invariant 4: no answer to the create nor to the read-back: the request is
        kept as unconfirmed (the chatter says it may have reached the customer), and
        the check of the create settles it once Vipps answers."""
        invoice = self.create_invoice()
        self.inject("createPayment", "lost_done")
        self.emulator.inject_fault(
            "getPayment", count=const.MAX_ATTEMPTS, disconnect=True
        )
        with self.faulty("lost_done"):
            tx = invoice._vipps_request_payment()
        self.assertEqual((tx.state, tx.vipps_state), ("pending", False))
        self.assertIn("may have reached the customer", invoice.message_ids[0].body)
        self.run_outbox(due_in_minutes=const.CREATE_CHECK_DELAY_MINUTES + 1)
        self.assertEqual(tx.vipps_state, "CREATED", msg="Confirmed by the check.")
        self.emulator.approve(tx.reference)
        self.settle()
        self.assertEqual(invoice.vipps_state, "paid")
        self.assert_books_match(invoice)

    def test_create_5xx_then_success(self):
        """Invariant 3: a 503 then success: one payment, one key."""
        invoice = self.create_invoice()
        self.inject("createPayment", "5xx_then_ok")
        with self.faulty("5xx_then_ok"):
            tx = invoice._vipps_request_payment()
        self.assertEqual(tx.vipps_state, "CREATED")
        calls = self.vipps_calls("createPayment")
        self.assertEqual([call["status"] for call in calls], [503, 201])
        self.assertEqual(len({call["idempotencyKey"] for call in calls}), 1)

    def test_create_hang_longer_than_timeout(self):
        """Invariant 3: Vipps hangs past our timeout and creates it late; the retry
        with the same key gets the answer: one payment."""
        invoice = self.create_invoice()
        self.inject("createPayment", "hang")
        with self.faulty("hang"):
            tx = invoice._vipps_request_payment()
        self.assertEqual(tx.vipps_state, "CREATED")
        self.emulator.wait_for_webhooks(timeout=5)
        self.assertEqual(len(self.emulator.payments), 1)

    def _crash_on_create(self, invoice):
        """Send, Vipps creates it, Odoo's side is rolled back."""
        with self.crash_after("_vipps_create_payment"):
            self.crashed(invoice._vipps_request_payment)
        self.assertFalse(self.vipps_transactions(invoice), msg="Odoo forgot it.")
        (payment,) = self.emulator.payments.values()
        self.assertEqual(payment.state, "CREATED")
        return payment.reference

    def test_create_crash_adopted_from_record(self):
        """Invariant 4: a create whose Odoo side was rolled back is found from its
        record and adopted; the customer's approval is then captured (invariant 1)."""
        invoice = self.create_invoice()
        reference = self._crash_on_create(invoice)
        self.run_outbox()
        tx = self.vipps_transactions(invoice)
        self.assertEqual(tx.reference, reference)
        self.assertEqual(tx.vipps_state, "CREATED")
        self.assertTrue(
            invoice.message_ids.filtered(lambda m: "Odoo had lost" in m.body)
        )
        self.emulator.approve(reference)
        self.settle()
        self.assertEqual(invoice.vipps_state, "paid")
        self.assert_books_match(invoice)

    def test_create_crash_adopted_from_webhook(self):
        """Invariant 4: the approval webhook of a payment Odoo lost is not dropped as
        an unknown reference: it is looked at shortly after, adopted and captured."""
        invoice = self.create_invoice()
        reference = self._crash_on_create(invoice)
        self.outbox(reference=reference).unlink()  # only the webhook is left
        self.emulator.approve(reference)
        event = {"msn": "123456", "reference": reference, "name": "AUTHORIZED"}
        self.env["payment.transaction"].sudo()._vipps_handle_webhook(self.vipps, event)
        row = self.outbox(reference=reference)
        self.assertEqual(row.state, "pending")
        self.run_outbox(due_in_minutes=2)
        self.assertEqual(invoice.vipps_state, "paid")
        self.assert_books_match(invoice)
        self.assert_paid_once(invoice)

    def test_create_crash_of_cancelled_invoice_withdrawn(self):
        """Invariants 2 and 4: the invoice of a lost create was cancelled meanwhile:
        the payment is adopted and withdrawn from the customer's app."""
        invoice = self.create_invoice()
        reference = self._crash_on_create(invoice)
        invoice.button_cancel()
        self.run_outbox()
        self.assertEqual(self.emulator.payment(reference).state, "TERMINATED")
        self.assert_nothing_live(invoice)

    def test_payment_of_another_database_left_alone(self):
        """Invariant 4 is about our payments only: one that carries another
        database's marker is neither adopted nor touched."""
        invoice = self.create_invoice()
        reference = self._crash_on_create(invoice)
        payment = self.emulator.payment(reference)
        payment.metadata = dict(payment.metadata, odooDatabase="someone-else")
        self.run_outbox()
        self.assertFalse(self.vipps_transactions(invoice))
        self.assertEqual(payment.state, "CREATED")


@tagged("post_install", "-at_install")
class TestVippsCaptureFaults(VippsFaultCommon):
    """Capture: Odoo captures an approved payment as soon as it reads it."""

    def _capture_with(self, kind):
        invoice, tx = self.approved_request()
        self.inject("capturePayment", kind)
        with self.faulty(kind):
            tx._vipps_sync()
        return invoice, tx

    def test_capture_answer_lost_after_done(self):
        """Invariants 1 and 3: captured, answers lost; the read-back shows it: booked
        once."""
        invoice, tx = self._capture_with("lost_done")
        self.assertEqual(tx.state, "done")
        self.assertEqual(self.emulator.payment(tx.reference).captured, 115000)
        self.settle()
        self.assert_books_match(invoice)
        self.assertEqual(len(self.payments(tx)), 1)

    def test_capture_lost_not_done(self):
        """Invariant 1: not captured; nothing is booked (the transaction shows the
        approval), and the next read captures it once."""
        invoice, tx = self._capture_with("lost_not_done")
        self.assertEqual(tx.state, "authorized")
        self.assertFalse(self.payments(tx))
        self.assertEqual(invoice.vipps_state, "authorized")
        self.assert_books_match(invoice)
        self.settle()
        self.assertEqual(tx.state, "done")
        self.assertEqual(self.emulator.payment(tx.reference).captured, 115000)
        self.assert_books_match(invoice)

    def test_capture_5xx_then_success(self):
        """Invariants 1 and 3: 503 then success with the same key."""
        invoice, tx = self._capture_with("5xx_then_ok")
        self.assertEqual(tx.state, "done")
        self.assertEqual(len(self.vipps_calls("capturePayment")), 2)
        self.assert_books_match(invoice)

    def test_capture_hang_longer_than_timeout(self):
        """Invariants 1 and 3: the capture hangs past our timeout; the retry with
        the same key gets it; Vipps captured once."""
        invoice, tx = self._capture_with("hang")
        self.emulator.wait_for_webhooks(timeout=5)
        self.settle()
        self.assertEqual(tx.state, "done")
        self.assertEqual(self.emulator.payment(tx.reference).captured, 115000)
        self.assert_books_match(invoice)

    def test_capture_crash_before_commit(self):
        """Invariant 1: captured at Vipps, Odoo crashed before booking it: the next
        read books it, with no second capture."""
        invoice, tx = self.approved_request()
        with self.crash_after("_vipps_modify_payment"):
            self.crashed(tx._vipps_sync)
        self.assertEqual(tx.state, "pending")
        self.assertEqual(self.emulator.payment(tx.reference).captured, 115000)
        self.settle()
        self.assertEqual(tx.state, "done")
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assert_books_match(invoice)

    def test_manual_capture_unconfirmed_is_an_error(self):
        """Invariant 1: a capture the accountant asks for and Vipps does not confirm
        books nothing and says so."""
        self.vipps.capture_manually = True
        invoice, tx = self.approved_request()
        tx._vipps_sync()
        self.inject("capturePayment", "lost_not_done")
        with (
            self.faulty("lost_not_done"),
            self.assertRaisesRegex(UserError, "did not confirm the capture"),
        ):
            tx.action_capture()
        self.env.invalidate_all()
        self.assertEqual(tx.state, "authorized")
        self.assert_books_match(invoice)


@tagged("post_install", "-at_install")
class TestVippsWithdrawFaults(VippsFaultCommon):
    """Withdraw (cancelTransactionOnly): the request of a cancelled invoice."""

    def _withdraw_with(self, kind):
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        invoice.button_cancel()
        self.inject("cancelPayment", kind)
        with self.faulty(kind):
            self.run_outbox()
        return invoice, tx

    def test_withdraw_answer_lost_after_done(self):
        """Invariant 2: terminated at Vipps, answers lost; the read-back shows it."""
        invoice, tx = self._withdraw_with("lost_done")
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_withdraw_lost_not_done(self):
        """Invariant 2: not withdrawn: the request stays visibly open (not marked
        cancelled while it is live) and the outbox withdraws it later."""
        invoice, tx = self._withdraw_with("lost_not_done")
        self.assertEqual(tx.state, "pending")
        self.assertEqual(self.emulator.payment(tx.reference).state, "CREATED")
        self.assertEqual(self.outbox(transaction_id=tx.id).attempts, 1)
        self.settle()
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_withdraw_lost_then_approved_is_released(self):
        """Invariants 1 and 2: the withdrawal was lost and the customer approved
        meanwhile: the approval is released, not captured, not ignored."""
        invoice, tx = self._withdraw_with("lost_not_done")
        self.emulator.approve(tx.reference)
        self.settle()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual((payment.captured, payment.cancelled), (0, payment.value))
        self.assert_nothing_live(invoice)
        self.assert_books_match(invoice)

    def test_withdraw_5xx_then_success(self):
        """Invariant 2: a 503 then success."""
        invoice, tx = self._withdraw_with("5xx_then_ok")
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_withdraw_hang_longer_than_timeout(self):
        """Invariant 2: the cancel hangs past our timeout and is done late."""
        invoice, tx = self._withdraw_with("hang")
        self.emulator.wait_for_webhooks(timeout=5)
        self.settle()
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_withdraw_crash_before_commit(self):
        """Invariant 2: terminated at Vipps, Odoo crashed before booking it: the row
        is tried again and the read books it."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        invoice.button_cancel()
        with self.crash_after("_vipps_modify_payment"):
            self.run_outbox()  # the row's own transaction is rolled back
        self.assertEqual(tx.state, "pending")
        self.settle()
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_staff_withdraw_unreachable_keeps_request_open(self):
        """Invariant 2: Cancel Request with Vipps down is refused; the request is not
        marked cancelled while it may be live."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.inject("cancelPayment", "lost_not_done")
        self.emulator.inject_fault(
            "getPayment", count=const.MAX_ATTEMPTS, disconnect=True
        )
        with self.faulty("lost_not_done"), self.assertRaises(VippsError):
            invoice.action_vipps_cancel_request()
        self.assertEqual(tx.state, "pending")
        self.assertEqual(invoice.vipps_state, "pending")


@tagged("post_install", "-at_install")
class TestVippsVoidFaults(VippsFaultCommon):
    """Void: the accountant releases an approved payment (manual capture)."""

    def _authorized(self):
        self.vipps.capture_manually = True
        invoice, tx = self.approved_request()
        tx._vipps_sync()
        self.assertEqual(tx.state, "authorized")
        return invoice, tx

    def _void_with(self, kind):
        invoice, tx = self._authorized()
        self.inject("cancelPayment", kind)
        with self.faulty(kind):
            tx.action_void()
        return invoice, tx

    def test_void_answer_lost_after_done(self):
        """Invariant 2: released, answers lost; the read-back shows it."""
        invoice, tx = self._void_with("lost_done")
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_void_lost_not_done(self):
        """Invariant 1: not released: nothing is booked and the accountant is told;
        the payment stays approved in Odoo as at Vipps."""
        invoice, tx = self._authorized()
        self.inject("cancelPayment", "lost_not_done")
        with self.faulty("lost_not_done"), self.assertRaises(UserError) as error:
            tx.action_void()
        self.assertIn("did not confirm the release", str(error.exception))
        self.assertEqual(tx.state, "authorized")
        self.assertEqual(self.emulator.payment(tx.reference).cancelled, 0)

    def test_void_5xx_then_success(self):
        """Invariant 2: a 503 then success."""
        invoice, tx = self._void_with("5xx_then_ok")
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_void_hang_longer_than_timeout(self):
        """Invariant 2: the release hangs past our timeout; the retry gets it."""
        invoice, tx = self._void_with("hang")
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)

    def test_void_crash_before_commit(self):
        """Invariant 1: released at Vipps, Odoo crashed: the next read books it."""
        invoice, tx = self._authorized()
        with self.crash_after("_vipps_modify_payment"):
            self.crashed(tx.action_void)
        self.assertEqual(tx.state, "authorized")
        self.settle()
        self.assertEqual(tx.state, "cancel")
        self.assert_nothing_live(invoice)
        self.assert_books_match(invoice)


@tagged("post_install", "-at_install")
class TestVippsRefundFaults(VippsFaultCommon):
    """Refund: Odoo's refund button on a Vipps payment."""

    def _paid(self):
        invoice, tx = self.approved_request()
        tx._vipps_sync()
        self.assertEqual(tx.state, "done")
        return invoice, tx

    def _refunds(self, tx):
        return tx.child_transaction_ids.filtered(lambda t: t.operation == "refund")

    def test_refund_answer_lost_after_done(self):
        """Invariants 1 and 3: refunded, answers lost; the read-back shows it:
        booked once."""
        invoice, tx = self._paid()
        self.inject("refundPayment", "lost_done")
        with self.faulty("lost_done"):
            tx.action_refund(amount_to_refund=100.0)
        self.assertEqual(self._refunds(tx).state, "done")
        self.settle()
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)
        self.assert_books_match(invoice)

    def test_refund_lost_not_done(self):
        """Invariant 1: not refunded: no refund payment is posted (the refund stays
        visibly unconfirmed) and the outbox sends it again with its own key."""
        invoice, tx = self._paid()
        self.inject("refundPayment", "lost_not_done")
        with self.faulty("lost_not_done"):
            tx.action_refund(amount_to_refund=100.0)
        refund = self._refunds(tx)
        self.assertEqual(refund.state, "draft")
        self.assertFalse(refund.payment_id, msg="Nothing posted for money not moved.")
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 0)
        self.assert_books_match(invoice)
        self.settle()
        self.assertEqual(refund.state, "done")
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)
        keys = {call["idempotencyKey"] for call in self.vipps_calls("refundPayment")}
        self.assertEqual(len(keys), 1, msg="Invariant 3: one key, one refund.")
        self.assert_books_match(invoice)

    def test_refund_5xx_then_success(self):
        """Invariants 1 and 3: a 503 then success."""
        invoice, tx = self._paid()
        self.inject("refundPayment", "5xx_then_ok")
        with self.faulty("5xx_then_ok"):
            tx.action_refund(amount_to_refund=100.0)
        self.assertEqual(self._refunds(tx).state, "done")
        self.assert_books_match(invoice)

    def test_refund_hang_longer_than_timeout(self):
        """Invariant 3: the refund hangs past our timeout: refunded once."""
        invoice, tx = self._paid()
        self.inject("refundPayment", "hang")
        with self.faulty("hang"):
            tx.action_refund(amount_to_refund=100.0)
        self.emulator.wait_for_webhooks(timeout=5)
        self.settle()
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)
        self.assert_books_match(invoice)

    def test_refund_crash_before_commit(self):
        """Invariant 1: refunded at Vipps, Odoo crashed: the check recorded before
        the call reads the payment and records the money that went back (with a
        note), so the books match."""
        invoice, tx = self._paid()
        with self.crash_after("_vipps_modify_payment"):
            self.crashed(lambda: tx.action_refund(amount_to_refund=100.0))
        self.assertFalse(self._refunds(tx))
        self.settle()
        self.assertEqual(self._refunds(tx).state, "done")
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)
        self.assert_books_match(invoice)
        self.assertTrue(
            invoice.message_ids.filtered(lambda m: "had not recorded" in m.body)
        )

    def test_refund_crash_then_asked_again_refunds_once(self):
        """Invariant 3: refunded at Vipps, Odoo crashed, the accountant asks again:
        Vipps is read first and the refund it shows is this one, not a second."""
        invoice, tx = self._paid()
        with self.crash_after("_vipps_modify_payment"):
            self.crashed(lambda: tx.action_refund(amount_to_refund=100.0))
        tx.action_refund(amount_to_refund=100.0)
        self.assertEqual(self._refunds(tx).state, "done")
        self.assertEqual(len(self.vipps_calls("refundPayment")), 1)
        self.assertEqual(self.emulator.payment(tx.reference).refunded, 10000)
        self.settle()
        self.assert_books_match(invoice)

    def test_refund_refused_books_nothing(self):
        """Invariant 1: a refund Vipps refuses posts nothing."""
        invoice, tx = self._paid()
        self.assert_refund_refused(tx, tx.amount + 1, "6150")
        self.assertFalse(self._refunds(tx).filtered(lambda t: t.state == "done"))
        self.assert_books_match(invoice)


@tagged("post_install", "-at_install")
class TestVippsCreditNoteFaults(VippsFaultCommon):
    """Credit notes refunded through Vipps by the outbox."""

    def setUp(self):
        super().setUp()
        self.vipps.vipps_refund_credit_notes = True

    def _credit_note(self, invoice, amount=200.0):
        credit_note = invoice._reverse_moves()
        credit_note.invoice_line_ids[0].quantity = 1
        credit_note.invoice_line_ids[0].price_unit = amount
        credit_note.action_post()
        return credit_note

    def _paid(self):
        invoice, tx = self.approved_request()
        tx._vipps_sync()
        return invoice, tx

    def test_credit_note_refund_crash_refunds_once(self):
        """Invariant 3: the refund of a credit note is sent, Odoo crashes before
        committing: the row tries again with the same key; refunded once."""
        invoice, tx = self._paid()
        credit_note = self._credit_note(invoice)
        self.run_outbox()  # first step: the refund transaction is recorded
        with self.crash_after("_vipps_modify_payment"):
            self.run_outbox()
        self.settle()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.refunded, round(credit_note.amount_total * 100))
        self.assertIn(credit_note.payment_state, ("paid", "in_payment"))
        self.assert_books_match(invoice)

    def test_credit_note_reset_and_posted_again_refunded_once(self):
        """Invariant 3: a credit note reset to draft and posted again is not
        refunded again."""
        invoice, tx = self._paid()
        credit_note = self._credit_note(invoice)
        self.run_outbox()
        self.run_outbox()
        credit_note.button_draft()
        credit_note.action_post()
        self.settle()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.refunded, round(credit_note.amount_total * 100))
        self.assertEqual(len(self.vipps_calls("refundPayment")), 1)
        self.assert_books_match(invoice)

    def test_credit_note_refund_refused_marked_failed(self):
        """Invariant 5: Vipps refuses the refund: the row fails with the reason,
        noted once on the credit note, and nothing is posted."""
        invoice, tx = self._paid()
        credit_note = self._credit_note(invoice)
        self.emulator.inject_fault("refundPayment", count=1, status=400, code=6220)
        self.run_outbox()
        self.run_outbox()
        row = self.outbox(move_id=credit_note.id)
        self.assertEqual(row.state, "failed")
        self.assertIn("6220", row.last_error)
        self.assertEqual(credit_note.payment_state, "not_paid")
        self.settle()
        self.assertEqual(
            len(credit_note.message_ids.filtered(lambda m: "6220" in (m.body or ""))),
            1,
            msg="Noted once.",
        )
        self.assert_books_match(invoice)


@tagged("post_install", "-at_install")
class TestVippsRaces(VippsFaultCommon):
    """Two things at once, in the orders that matter."""

    def test_approval_after_full_bank_payment_released(self):
        """Invariants 2 and 3: the customer approves just as the invoice is paid by
        bank transfer: nothing is captured, the reservation is released, noted."""
        invoice, tx = self.approved_request()
        self.pay_otherwise(invoice)
        self.settle()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual((payment.captured, payment.cancelled), (0, payment.value))
        self.assertEqual(tx.state, "cancel")
        self.assertIn("Nothing was due", invoice.message_ids[0].body)
        self.assert_nothing_live(invoice)
        self.assert_books_match(invoice)

    def test_approval_after_partial_bank_payment_captures_the_rest(self):
        """Invariants 1, 2 and 3: 400 of 1,150 paid by bank, then the customer
        approves 1,150 in the app: 750 is captured, 400 released, with a note."""
        invoice, tx = self.approved_request()
        self.env["account.payment.register"].with_context(
            active_model="account.move", active_ids=invoice.ids
        ).create({"amount": 400.0})._create_payments()
        self.settle()
        payment = self.emulator.payment(tx.reference)
        self.assertEqual((payment.captured, payment.cancelled), (75000, 40000))
        self.assertEqual(tx.state, "done")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertTrue(
            invoice.message_ids.filtered(lambda m: "was released" in (m.body or ""))
        )
        self.assert_books_match(invoice)
        self.assert_nothing_live(invoice)

    def test_push_link_and_pay_now_all_approved_paid_once(self):
        """Invariant 3: a push request, a Pay with Vipps link payment and Odoo's Pay
        Now all approved: one is captured, the others released."""
        invoice = self.create_invoice()
        push = invoice._vipps_request_payment()
        link = invoice._vipps_link_payment()
        pay_now = self.env["payment.transaction"]._vipps_create_for_invoice(
            invoice, self.vipps, invoice.amount_residual, "WEB_REDIRECT"
        )
        pay_now._get_specific_rendering_values({})
        for tx in (push, link, pay_now):
            self.emulator.approve(tx.reference)
        link._vipps_sync()
        self.settle()
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assert_paid_once(invoice)
        self.assert_nothing_live(invoice)
        self.assert_books_match(invoice)
        captured = [tx for tx in (push, link, pay_now) if tx.vipps_captured_amount]
        self.assertEqual(len(captured), 1)

    def test_approval_read_twice_captured_once(self):
        """Invariant 3: webhook, poll, Check status and the return page all read
        the same approval: one capture, one payment."""
        invoice, tx = self.approved_request()
        event = {"msn": "123456", "reference": tx.reference, "name": "AUTHORIZED"}
        self.env["payment.transaction"].sudo()._vipps_handle_webhook(self.vipps, event)
        self.run_poll()
        invoice.action_vipps_check_status()
        self.settle()
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assertEqual(len(self.payments(tx)), 1)
        self.assert_books_match(invoice)


@tagged("post_install", "-at_install")
class TestVippsIsolation(VippsFaultCommon):
    """Invariant 5: one failing item never blocks the others."""

    def test_failing_poll_item_does_not_roll_back_others(self):
        """Invariant 5: three approvals polled; one fails unexpectedly: the other two
        are captured and kept, the cron does not fail, the failed one is retried."""
        invoices = [self.approved_request() for __ in range(3)]
        broken = invoices[1][1]
        model = type(self.env["payment.transaction"])
        follow = model._vipps_follow

        def follow_or_fail(tx, payment):
            if tx == broken:
                raise RuntimeError("locked under us")
            return follow(tx, payment)

        with patch.object(model, "_vipps_follow", follow_or_fail):
            self.run_poll()
        states = [tx.state for __, tx in invoices]
        self.assertEqual(states, ["done", "pending", "done"])
        self.settle()
        self.assertEqual(broken.state, "done")
        for invoice, __ in invoices:
            self.assert_books_match(invoice)

    def test_failing_outbox_row_does_not_block_others(self):
        """Invariant 5: three queued requests, the middle one impossible (no number
        agreed to, no e-mail): it fails with its reason and a note, the others are
        sent."""
        invoices = [
            self.create_invoice(),
            self.create_invoice(partner=self.customer_without_phone),
            self.create_invoice(),
        ]
        outbox = self.env["payment.vipps.outbox"]
        for invoice in invoices:
            outbox._vipps_enqueue("request", move=invoice, values={})
        self.run_outbox()
        self.assertEqual(
            [invoice.vipps_state for invoice in invoices], ["pending", False, "pending"]
        )
        row = self.outbox(move_id=invoices[1].id)
        self.assertEqual(row.state, "failed")
        self.assertIn("no e-mail address", row.last_error)
        self.assertIn("was not sent", invoices[1].message_ids[0].body)

    def test_retried_withdrawal_noted_once(self):
        """A withdrawal that keeps failing is retried with growing delays and noted
        on the invoice once, not on every run."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        invoice.button_cancel()
        row = self.outbox(transaction_id=tx.id)
        delays = []
        for __ in range(5):
            self.emulator.inject_fault("cancelPayment", count=3, status=503)
            with self.fast_retries():
                self.run_outbox(due_in_minutes=24 * 60)
            delays.append(row.next_attempt_at - fields.Datetime.now())
        self.assertEqual(row.attempts, 5)
        self.assertEqual(row.state, "pending", msg="Withdrawals never give up.")
        self.assertEqual(delays, sorted(delays), msg="Backoff grows.")
        notes = invoice.message_ids.filtered(
            lambda m: "keeps failing" in (m.body or "")
        )
        self.assertEqual(len(notes), 1)
        self.run_outbox(due_in_minutes=24 * 60)
        self.assertEqual(tx.state, "cancel")
        self.assertEqual(row.state, "done")
