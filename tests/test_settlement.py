import datetime as dt
import random
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from ..vipps_emulator import report
from .common import MSN, VippsHttpCommon, VippsInvoiceCommon
from .test_merchant import DANISH, DANISH_MSN

OSLO = report.zoneinfo.ZoneInfo("Europe/Oslo")
# A Monday morning in Oslo; the month of payments starts here.
START = dt.datetime(2026, 11, 2, 10, 0, tzinfo=OSLO)


class VippsSettlementCommon(VippsInvoiceCommon):
    """A sales unit that books payouts, and a month starting on a Monday."""

    vipps_merchant = "approved"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        cls.fee_account = cls.company_data["default_account_expense"]
        cls.transfer_account = company.transfer_account_id
        cls.vipps.write(
            {
                "vipps_settlement_enabled": True,
                "vipps_fee_account_id": cls.fee_account.id,
                "vipps_transfer_account_id": cls.transfer_account.id,
                "vipps_settlement_start": START.date(),
            }
        )

    def setUp(self):
        super().setUp()
        self.emulator.set_time(START)
        self.rng = random.Random(9)

    def pay(self, amount=1000.0, **invoice_values):
        """An invoice requested, approved and captured at the emulator's now."""
        invoice = self.create_invoice(amount=amount, **invoice_values)
        tx = invoice._vipps_request_payment()
        self.emulator.approve(
            tx.reference, msn=tx.provider_id.vipps_merchant_serial_number
        )
        tx._vipps_sync()
        self.assertEqual(tx.state, "done")
        return tx

    def next_day(self, days=1):
        self.emulator.advance(days * 86400)

    def read_ledger(self, provider=None):
        provider = provider or self.vipps
        payouts = provider._vipps_read_settlements()
        self.env.invalidate_all()
        return payouts

    def payouts(self, provider=None):
        return self.env["payment.vipps.payout"].search(
            [("provider_id", "=", (provider or self.vipps).id)], order="ledger_date"
        )


@tagged("post_install", "-at_install")
class TestVippsPayoutTour(VippsSettlementCommon, VippsHttpCommon):
    def test_accountant_reviews_and_books_a_payout(self):
        """In the browser: a payout with a payment Odoo does not know is reviewed
        and booked with it on the suspense account."""
        self.env.ref("base.user_admin").company_ids |= self.env.company
        self.env.ref("base.user_admin").company_id = self.env.company
        self.pay()
        self.emulator.add_ledger_entry(MSN, "capture", 30000, reference="shop-991")
        self.next_day()
        (payout,) = self.read_ledger()
        with self.server_turn():
            self.start_tour(
                f"/odoo/action-payment_vipps.action_payment_vipps_payout/{payout.id}",
                "payment_vipps_payout_review",
                login="admin",
            )
        self.env.invalidate_all()
        self.assertEqual(payout.state, "booked")
        self.assertEqual(payout.move_id.state, "posted")


@tagged("post_install", "-at_install")
class TestVippsSettlement(VippsSettlementCommon):
    """Payouts read from the Report API and booked, one entry per payout.

    Invariants: (1) every Vipps payment and refund is taken off the account its
    payment was booked on by exactly one payout, and a payout is booked only when its
    entries add up to what Vipps paid out; (2) a ledger date is stored whole or not
    at all; (3) what Odoo does not know is never booked without the accountant; (4)
    a payout is booked once, whatever Vipps shows later."""

    def assert_booked(self, payout):
        """The entry of a payout: balanced, the net on the payout account, the fees
        on the fee account, the payments taken off their accounts and reconciled."""
        self.assertEqual(payout.state, "booked")
        move = payout.move_id
        self.assertEqual(move.state, "posted")
        net = move.line_ids.filtered(lambda ml: ml.account_id == self.transfer_account)
        self.assertAlmostEqual(sum(net.mapped("amount_currency")), payout.amount)
        fees = move.line_ids.filtered(lambda ml: ml.account_id == self.fee_account)
        self.assertAlmostEqual(sum(fees.mapped("amount_currency")), payout.fee_amount)
        for line in payout.line_ids.filtered("transaction_id"):
            payment = line.transaction_id.payment_id
            self.assertTrue(payment.is_matched or payment.state == "paid", payment)

    # === TESTS === #

    def test_a_month_reconciles_to_the_ore(self):
        """Invariant 1 (the books follow the money). A month of payments and
        refunds: one booked payout per day Vipps paid
        out, summing to the ledger's payouts and fees to the øre; every payment and
        refund settled by exactly one payout; invoices paid; a re-run books
        nothing more and asks Vipps only for the last dates."""
        txs = self.env["payment.transaction"]
        for __ in range(30):
            for __ in range(self.rng.randint(0, 3)):
                tx = self.pay(amount=self.rng.randint(100, 20000) + 0.5)
                txs |= tx
                if self.rng.random() < 0.25:
                    tx.action_refund(amount_to_refund=round(tx.amount / 3, 2))
            self.next_day()
        self.next_day()  # the last day is closed too
        payouts = self.read_ledger()
        totals = self.emulator.ledger_totals()
        self.assertEqual(len(payouts), len(self.payouts()))
        self.assertEqual(
            self.payouts().mapped("state"), ["booked"] * len(payouts), payouts
        )
        self.assertAlmostEqual(
            sum(payouts.mapped("amount")), -totals["payout-scheduled"] / 100
        )
        self.assertAlmostEqual(
            sum(payouts.mapped("fee_amount")), -totals["fees-retained"] / 100
        )
        self.assertAlmostEqual(
            sum(payouts.mapped("captured_amount")), totals["capture"] / 100
        )
        self.assertAlmostEqual(
            sum(payouts.mapped("refunded_amount")), -totals["refund"] / 100
        )
        for payout in payouts:
            self.assert_booked(payout)
        family = txs | txs.child_transaction_ids
        settled = family.filtered(lambda tx: tx.payment_id)
        self.assertTrue(all(len(tx.vipps_settlement_line_ids) == 1 for tx in settled))
        self.assertEqual(set(txs.invoice_ids.mapped("payment_state")), {"paid"}, txs)
        balance = sum(
            self.env["account.move.line"]
            .search([("move_id", "in", payouts.move_id.ids)])
            .filtered(lambda ml: ml.account_id == self.transfer_account)
            .mapped("balance")
        )
        self.assertAlmostEqual(balance, -totals["payout-scheduled"] / 100)

        # Again: nothing new, and only the last dates are read.
        self.emulator.clear_requests()
        moves = self.env["account.move"].search_count([])
        self.assertFalse(self.read_ledger())
        self.assertEqual(self.env["account.move"].search_count([]), moves)
        calls = self.vipps_calls("getReportByDate")
        self.assertLessEqual(len(calls), 2 * 3 + 1)

    def test_open_or_late_date_read_on_a_later_run(self):
        """Invariant 2 (nothing half-booked). A date Vipps has not closed (or whose
        entries arrive late) is not booked
        in part: the run stops there and a later run reads it whole."""
        tx = self.pay()
        self.emulator.set_time(dt.datetime(2026, 11, 3, 1, 0, tzinfo=OSLO))
        self.assertFalse(self.read_ledger())  # closes at 03:00
        self.assertFalse(self.vipps.vipps_settled_until)
        self.assertFalse(tx.vipps_settlement_line_ids)
        with self.emulator_settings(report_lag=30 * 3600):
            late = self.pay(amount=500.0)  # on the 3rd, showing at 07:00 on the 4th
            self.emulator.set_time(dt.datetime(2026, 11, 4, 4, 0, tzinfo=OSLO))
            (first,) = self.read_ledger()
            self.assertEqual(first.ledger_date, dt.date(2026, 11, 2))
            self.assertEqual(self.vipps.vipps_settled_until, dt.date(2026, 11, 2))
            self.emulator.set_time(dt.datetime(2026, 11, 4, 8, 0, tzinfo=OSLO))
            (second,) = self.read_ledger()
        self.assertEqual(second.ledger_date, dt.date(2026, 11, 3))
        self.assertAlmostEqual(second.captured_amount, late.amount)
        self.assert_booked(first)
        self.assert_booked(second)
        self.assertEqual(tx.vipps_payout_id, first)

    def test_unknown_entries_listed_not_booked(self):
        """Invariant 3 (nothing booked Odoo does not know). A payment of another
        system, a refund made in the business portal and an
        amount Odoo did not record are exceptions: the payout waits for the
        accountant, who books it with them on the suspense account."""
        tx = self.pay()
        self.emulator.add_ledger_entry(MSN, "capture", 30000, reference="shop-991")
        self.emulator.add_ledger_entry(MSN, "refund", -10000, reference=tx.reference)
        self.emulator.add_ledger_entry(MSN, "capture", 5000, reference=tx.reference)
        self.next_day()
        (payout,) = self.read_ledger()
        self.assertEqual(payout.state, "review")
        self.assertFalse(payout.move_id)
        exceptions = payout.line_ids.filtered("exception")
        self.assertEqual(
            sorted(exceptions.mapped("exception")),
            ["amount_differs", "unknown_payment", "unknown_refund"],
        )
        self.assertEqual(
            payout.line_ids.filtered("transaction_id").transaction_id,
            tx._vipps_settled_by("capture"),
        )
        self.assertFalse(self.read_ledger())  # read again: still one payout, not booked
        payout.action_book()
        self.assert_booked(payout)
        suspense = self.vipps.journal_id.suspense_account_id
        parked = payout.move_id.line_ids.filtered(lambda ml: ml.account_id == suspense)
        self.assertAlmostEqual(sum(parked.mapped("balance")), -(300 - 100 + 50))

    def test_correction_after_booking_shown_never_rebooked(self):
        """Invariant 4 (nothing booked twice). Vipps changes a date after its payout
        was booked: the payout says so,
        its entry stays as it was, and nothing is booked a second time."""
        self.pay()
        self.next_day()
        (payout,) = self.read_ledger()
        self.assert_booked(payout)
        move_lines = payout.move_id.line_ids.read(["balance", "account_id"])
        self.emulator.add_ledger_entry(
            MSN, "correction", -2500, ledger_date="2026-11-02"
        )
        self.emulator.advance(60)
        self.assertFalse(self.read_ledger())
        self.assertTrue(payout.changed)
        self.assertIn("changed ledger date", payout.message_ids[0].body)
        self.assertEqual(
            payout.move_id.line_ids.read(["balance", "account_id"]), move_lines
        )
        messages = len(payout.message_ids)
        self.read_ledger()
        self.assertEqual(len(payout.message_ids), messages, "Told once.")

    def test_missing_accounts_refused_before_reading(self):
        """Without a fee or payout account nothing is read or booked: a clear
        error names what to set."""
        self.vipps.vipps_fee_account_id = False
        self.pay()
        self.next_day()
        with self.assertRaisesRegex(UserError, "Fee Account"):
            self.vipps.action_vipps_read_settlements()
        self.assertFalse(self.vipps_calls("getLedgers"))
        self.env.ref("payment_vipps.cron_read_settlements").method_direct_trigger()
        self.assertIn("Fee Account", self.vipps.vipps_settlement_error)
        self.assertFalse(self.payouts())

    def test_report_api_down_then_caught_up(self):
        """Invariant 2 (nothing half-booked). The Report API failing half-way: the
        dates read before stay, nothing of
        the failing date is stored or booked, and the next run catches up to the
        same books as a run that never failed."""
        self.pay()
        self.next_day()
        later = self.pay(amount=700.0)
        self.next_day()
        calls = []
        real = type(self.vipps)._vipps_make_request

        def failing(provider, endpoint, *args, **kwargs):
            calls.append(endpoint)
            if "/fees/dates/2026-11-03" in endpoint:
                self.emulator.inject_fault("getReportByDate", status=503, count=3)
            return real(provider, endpoint, *args, **kwargs)

        with (
            self.fast_retries(),
            patch.object(type(self.vipps), "_vipps_make_request", failing),
        ):
            self.env.ref("payment_vipps.cron_read_settlements").method_direct_trigger()
        self.env.invalidate_all()
        self.assertIn("503", self.vipps.vipps_settlement_error or "")
        self.assertEqual(self.vipps.vipps_settled_until, dt.date(2026, 11, 2))
        (first,) = self.payouts()
        self.assertFalse(
            self.env["payment.vipps.settlement.line"].search(
                [("ledger_date", "=", "2026-11-03")]
            )
        )
        self.env.ref("payment_vipps.cron_read_settlements").method_direct_trigger()
        self.env.invalidate_all()
        self.assertFalse(self.vipps.vipps_settlement_error)
        first, second = self.payouts()
        self.assert_booked(first)
        self.assert_booked(second)
        self.assertAlmostEqual(second.captured_amount, later.amount)

    def test_fee_tax_when_the_company_sets_one(self):
        """With a fee tax the fee is split into its base and the deductible tax."""
        tax = self.env["account.tax"].create(
            {"name": "Fee VAT 25%", "amount": 25, "type_tax_use": "purchase"}
        )
        self.vipps.vipps_fee_tax_id = tax
        tx = self.pay(amount=1000.0)  # 1 150,00 with the sales tax
        self.next_day()
        (payout,) = self.read_ledger()
        self.assert_booked(payout)
        fee = report.fee(round(tx.amount * 100), (175, 100)) / 100  # 21.13
        lines = payout.move_id.line_ids
        base = lines.filtered("tax_ids")
        tax_line = lines.filtered("tax_line_id")
        self.assertAlmostEqual(base.balance + tax_line.balance, fee)
        self.assertAlmostEqual(base.balance, round(fee / 1.25, 2))  # 16.90
        self.assertEqual(base.tax_ids, tax)

    def test_one_payout_per_sales_unit_and_currency(self):
        """A NOK and a DKK sales unit: each ledger has its payouts, in its own
        currency, booked at the rate of the payout date."""
        if DANISH_MSN not in self.emulator.store.merchants:
            self.emulator.add_merchant(currency="DKK", approved=True, **DANISH)
        dkk = self._enable_currency("DKK")
        self.env["res.currency.rate"].create(
            {"name": "2026-01-01", "rate": 0.65, "currency_id": dkk.id}
        )
        danish = self.vipps.copy(
            {
                "name": "Vipps MobilePay (Denmark)",
                "vipps_merchant_serial_number": DANISH_MSN,
                "vipps_client_id": DANISH["client_id"],
                "vipps_client_secret": DANISH["client_secret"],
                "vipps_subscription_key": DANISH["subscription_key"],
                "vipps_api_url_override": self.emulator.url,
                "vipps_settlement_enabled": True,
                "vipps_fee_account_id": self.fee_account.id,
                "vipps_transfer_account_id": self.transfer_account.id,
                "vipps_settlement_start": START.date(),
            }
        )
        danish.vipps_currency_id = dkk
        danish.state = "test"
        self.pay(amount=1000.0)
        danish_tx = self.pay(amount=650.0, currency_id=dkk.id)
        self.assertEqual(danish_tx.provider_id, danish)
        self.next_day()
        self.env.ref("payment_vipps.cron_read_settlements").method_direct_trigger()
        self.env.invalidate_all()
        (norwegian,) = self.payouts()
        (payout,) = self.payouts(danish)
        self.assertEqual(payout.currency_id, dkk)
        self.assertEqual(norwegian.currency_id, self.currency_nok)
        self.assertEqual(payout.ledger_id, report.ledger_id(DANISH_MSN))
        self.assert_booked(payout)
        net = payout.move_id.line_ids.filtered(
            lambda ml: ml.account_id == self.transfer_account
        )
        self.assertEqual(net.currency_id, dkk)
        self.assertAlmostEqual(net.balance, round(payout.amount / 0.65, 2), places=2)
        self.assertEqual(danish_tx.vipps_payout_id, payout)

    def test_unsettled_payments_listed(self):
        """A payment no payout settled yet is listed as not settled."""
        settled = self.pay()
        self.next_day()
        (payout,) = self.read_ledger()
        later = self.pay(amount=300.0)
        action = payout.action_view_unsettled()
        listed = self.env["payment.transaction"].search(action["domain"])
        # The capture is what a payout settles: the payment itself, or its capture
        # transaction (always one on 19.0).
        self.assertEqual(listed, later._vipps_settled_by("capture"))
        self.assertFalse(listed & settled._vipps_settled_by("capture"))
        self.assertEqual(payout.ledger_date, fields.Date.to_date("2026-11-02"))

    def test_payments_without_outstanding_account(self):
        """Where the Vipps payment method has no outstanding account, payments have
        no journal entry (Odoo 18 with the Enterprise accounting app, which cannot
        run here: its one switch is played): the payout settles the invoices'
        receivables and the invoices show paid."""
        # The line Odoo's payment engine gives the provider's payments.
        method_line = self.vipps.journal_id.inbound_payment_method_line_ids.filtered(
            lambda line: line.payment_provider_id == self.vipps
        )
        method_line.payment_account_id = False
        Move = type(self.env["account.move"])
        with patch.object(
            Move, "_get_invoice_in_payment_state", lambda self: "in_payment"
        ):
            tx = self.pay()
            payment = self.payments(tx)
            self.assertEqual(payment.payment_method_line_id, method_line)
            self.assertFalse(payment.move_id)
            self.assertEqual(tx.invoice_ids.payment_state, "in_payment")
            self.next_day()
            (payout,) = self.read_ledger()
            self.assert_booked(payout)
            receivable = payout.move_id.line_ids.filtered(
                lambda line: line.account_id == payment.destination_account_id
            )
            self.assertTrue(receivable.reconciled)
            self.assertEqual(tx.invoice_ids.payment_state, "paid")

    def test_only_accounting_managers_read_and_book(self):
        """A billing user sees payouts but cannot read the ledger or book; an
        accounting manager can, through the button and Book with Exceptions."""
        billing = new_test_user(
            self.env, "vipps_billing_payout", groups="account.group_account_invoice"
        )
        manager = new_test_user(
            self.env,
            "vipps_manager_payout",
            groups="account.group_account_manager,base.group_system",
        )
        self.pay()
        self.emulator.add_ledger_entry(MSN, "capture", 30000, reference="shop-991")
        self.next_day()
        with self.assertRaises(AccessError):
            self.vipps.with_user(billing).action_vipps_read_settlements()
        self.vipps.with_user(manager).action_vipps_read_settlements()
        payout = self.payouts()
        self.assertEqual(payout.with_user(billing).state, "review")
        with self.assertRaises(AccessError):
            payout.with_user(billing).action_book()
        payout.with_user(manager).action_book()
        self.assertEqual(payout.state, "booked")

    def test_crash_while_booking_leaves_nothing_then_books_once(self):
        """Invariant 2 (nothing half-booked) and 4 (nothing booked twice). The
        worker dies after the payout's entry is posted but before it is reconciled:
        the whole date is rolled back (no entry, no payout, the date not read), and
        the next run books it exactly once."""
        self.pay()
        self.next_day()
        MoveLine = type(self.env["account.move.line"])
        with (
            patch.object(MoveLine, "_reconcile_plan", side_effect=RuntimeError("kill")),
            self.assertRaises(RuntimeError),
        ):
            self.read_ledger()
        self.env.invalidate_all()
        self.assertFalse(self.payouts())
        self.assertFalse(self.vipps.vipps_settled_until)
        self.assertFalse(
            self.env["account.move"].search([("ref", "like", "Vipps 2026-11-02%")])
        )
        (payout,) = self.read_ledger()
        self.assert_booked(payout)
        self.assertEqual(
            self.env["account.move"].search_count([("ref", "=", payout.name)]), 1
        )

    def test_other_run_books_the_date_first(self):
        """Invariant 4 (nothing booked twice). Another run (the daily job while the
        accountant clicks Read Payouts Now) stores and books the date between this
        run's reading of it and its storing: this run finds the payout there and
        books nothing more."""
        self.pay()
        self.next_day()
        real = type(self.vipps)._vipps_fetch_report
        raced = []

        def fetch(provider, ledger, topic, day):
            items = real(provider, ledger, topic, day)
            if topic == "fees" and not raced:
                raced.append(day)
                provider._vipps_read_settlements()  # the other run, to the end
            return items

        with patch.object(type(self.vipps), "_vipps_fetch_report", fetch):
            self.assertFalse(self.read_ledger())
        (payout,) = self.payouts()
        self.assert_booked(payout)
        self.assertEqual(len(payout.line_ids), 3)  # capture, fees, payout
        self.assertEqual(
            self.env["account.move"].search_count([("ref", "=", payout.name)]), 1
        )
