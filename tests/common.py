from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

from odoo import Command, fields
from odoo.exceptions import UserError
from odoo.tests import HttpCase

from odoo.addons.account_payment.tests.common import AccountPaymentCommon

from .. import compat, const
from ..compat import testing
from ..models.payment_provider import _TOKEN_CACHE
from ..vipps_emulator import Emulator

MSN = "123456"
EMULATOR_CREDENTIALS = {
    "vipps_merchant_serial_number": MSN,
    "vipps_client_id": "emulator-client-id",
    "vipps_client_secret": "emulator-client-secret",
    "vipps_subscription_key": "emulator-subscription-key",
}
# Quick retries and short hangs so that failure tests take milliseconds, not minutes.
EMULATOR_SETTINGS = {
    "webhook_retry_delays": (0.05, 0.1),
    "webhook_timeout": 5.0,
    "fault_hang_seconds": 0.2,
    "expiry_interval": 0.05,
}

_emulator = None


def get_emulator():
    """The emulator shared by the test run, started on a free port on first use."""
    global _emulator  # noqa: PLW0603 - one emulator per test process
    if _emulator is None:
        _emulator = Emulator(port=0, **EMULATOR_SETTINGS).start()
    return _emulator


class VippsCommon(AccountPaymentCommon):
    """A Vipps provider talking to the local emulator, in a NOK company.

    The emulator plays what Vipps gives an ordinary sales unit (no push messages,
    no long-living requests, profile.sub written a little after approval). Classes
    that follow push requests say so with ``vipps_merchant = "approved"``: a sales
    unit Vipps approved for both.
    """

    vipps_merchant = "ordinary"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # As in HttpCase: cursors opened by the code under test (the token store,
        # the HTTP server) join the test transaction instead of waiting for it.
        testing.enter_test_mode(cls)
        cls.emulator = get_emulator()
        cls.emulator.reset()
        _TOKEN_CACHE.clear()
        cls.env["ir.config_parameter"].sudo().set_param(
            "web.base.url", cls._vipps_base_url()
        )
        cls.currency_nok = cls._enable_currency("NOK")
        cls.vipps = cls._prepare_provider(
            "vipps",
            update_values={
                **EMULATOR_CREDENTIALS,
                "vipps_api_url_override": cls.emulator.url,
            },
        )
        cls.provider = cls.vipps

    @classmethod
    def _vipps_base_url(cls):
        """Where the emulator sends webhooks; HttpCase classes return their server."""
        return "http://127.0.0.1:9"

    def setUp(self):
        super().setUp()
        self.emulator.reset(keep_webhooks=True)
        self.emulator.update_merchant(approved=self.vipps_merchant == "approved")
        self.emulator.clear_requests()

    # === HELPERS === #

    def payments(self, tx):
        """The payments Odoo posted for a Vipps payment: on the transaction, or on
        its captures when they are child transactions (always on 19.0)."""
        captures = tx.child_transaction_ids.filtered(lambda t: t.operation != "refund")
        return (tx | captures).payment_id

    def assert_refund_refused(self, tx, amount, pattern):
        """A refund Vipps refuses is booked nowhere. 18.0 raises the refusal to the
        accountant and keeps nothing; 19.0's engine keeps an errored refund
        transaction and tells the accountant in a notification."""
        before = tx.child_transaction_ids
        if compat.REFUSAL_KEPT_AS_ERROR:
            tx.action_refund(amount_to_refund=amount)
            refund = tx.child_transaction_ids - before
            self.assertEqual(refund.mapped("state"), ["error"])
            self.assertRegex(refund.state_message, pattern)
            self.assertFalse(refund.payment_id)
        else:
            # Odoo's assertRaises rolls back, as the failed request does.
            with self.assertRaises(UserError) as error:
                tx.action_refund(amount_to_refund=amount)
            self.assertRegex(str(error.exception), pattern)
            self.assertEqual(tx.child_transaction_ids, before)

    def vipps_calls(self, operation=None):
        """The calls the emulator received (optionally of one operation)."""
        return [
            call
            for call in self.emulator.requests
            if operation is None or call["operation"] == operation
        ]

    def run_outbox(self, due_in_minutes=0):
        """Run the outbox job, with everything due within `due_in_minutes` made due."""
        if due_in_minutes:
            rows = self.env["payment.vipps.outbox"].search([("state", "=", "pending")])
            limit = fields.Datetime.now() + timedelta(minutes=due_in_minutes)
            rows.filtered(lambda row: row.next_attempt_at <= limit).write(
                {"next_attempt_at": fields.Datetime.now() - timedelta(seconds=1)}
            )
        self.env.ref("payment_vipps.cron_process_outbox").method_direct_trigger()
        self.env.invalidate_all()

    def run_poll(self, *transactions):
        """Run the poll, with these transactions (default: all) due for it."""
        transactions = transactions or self.env["payment.transaction"].search(
            [("provider_code", "=", "vipps")]
        )
        for tx in transactions:
            tx.vipps_last_sync = fields.Datetime.now() - timedelta(hours=1)
        self.env.ref("payment_vipps.cron_poll_payments").method_direct_trigger()
        self.env.invalidate_all()

    def outbox(self, **values):
        """The outbox rows matching `values` (field: value)."""
        return self.env["payment.vipps.outbox"].search(
            [(field, "=", value) for field, value in values.items()]
        )

    @contextmanager
    def emulator_settings(self, **settings):
        """Change emulator settings (what Vipps does when it is uncertain) for a
        while."""
        old = {name: getattr(self.emulator.settings, name) for name in settings}
        for name, value in settings.items():
            setattr(self.emulator.settings, name, value)
        try:
            yield
        finally:
            for name, value in old.items():
                setattr(self.emulator.settings, name, value)

    @contextmanager
    def fast_retries(self):
        """No pause between retries: the retry logic is under test, not the clock."""
        with patch.object(const, "RETRY_BACKOFF", (0.0,)):
            yield


class VippsInvoiceCommon(VippsCommon):
    """Customers and posted NOK invoices to request payment for."""

    PHONE = "4791234567"  # the MSISDN Vipps knows
    PHONE_E164 = "+4791234567"  # how Odoo keeps it

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Kari Nordmann",
                compat.MOBILE: "+47 912 34 567",
                "country_id": cls.env.ref("base.no").id,
                "email": "kari@example.com",
            }
        )
        # Kari agreed to receive payment requests in the app on her mobile.
        cls.customer._vipps_store_consent(cls.PHONE_E164, "test set-up")
        cls.customer_without_phone = cls.env["res.partner"].create(
            {"name": "Ola Hansen", "country_id": cls.env.ref("base.no").id}
        )

    def pay_otherwise(self, invoice):
        """Register a payment the way an accountant does for a bank transfer."""
        self.env["account.payment.register"].with_context(
            active_model="account.move", active_ids=invoice.ids
        ).create({})._create_payments()

    def create_invoice(self, partner=None, amount=1000.0, post=True, **values):
        """A customer invoice in NOK with one line taxed at the test sales tax."""
        invoice = self.env["account.move"].create(
            {
                "move_type": "out_invoice",
                "partner_id": (partner or self.customer).id,
                "currency_id": self.currency_nok.id,
                "invoice_date": "2026-11-20",
                "invoice_date_due": "2026-12-31",
                "invoice_line_ids": [
                    Command.create(
                        {
                            "name": "Plumbing work",
                            "quantity": 2,
                            "price_unit": amount / 2,
                            "tax_ids": [Command.set(self.tax_sale_a.ids)],
                        }
                    )
                ],
                **values,
            }
        )
        if post:
            invoice.action_post()
        return invoice


class VippsHttpCommon(VippsInvoiceCommon, HttpCase):
    """With Odoo's HTTP server: webhooks, the portal, the browser.

    The emulator delivers webhooks from its own threads at any moment, and the server
    threads handling them share this test's transaction. The test thread holds the
    test cursor lock while it works and lets the server in only while it waits
    (`server_turn`), so that two threads never use the connection at once.
    """

    @classmethod
    def _vipps_base_url(cls):
        return cls.base_url()

    def setUp(self):
        super().setUp()
        testing.share_with_server(self)
        # The emulator outlives each test's rollback: re-align its registrations.
        self.vipps._vipps_ensure_webhook()

    @contextmanager
    def server_turn(self):
        """Let the server threads use the database (webhooks, HTTP requests)."""
        self.env.flush_all()
        try:
            with testing.server_turn(self):
                yield
        finally:
            self.env.invalidate_all()

    def wait_for_webhooks(self):
        with self.server_turn():
            self.assertTrue(self.emulator.wait_for_webhooks(timeout=20))
