"""What must hold on both Odoo series, where 18.0 and 19.0 differ (see `compat`)."""

from unittest.mock import patch

import psycopg2

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from .. import compat
from .common import VippsInvoiceCommon


@tagged("post_install", "-at_install")
class TestVippsOnBothSeries(VippsInvoiceCommon):
    vipps_merchant = "approved"

    def _pdf_html(self, invoice):
        return (
            self.env["ir.actions.report"]
            ._render_qweb_html("account.account_invoices", invoice.ids)[0]
            .decode()
        )

    def test_unique_keys_exist_in_the_database(self):
        """The unique keys that stop a second token, ledger entry or payout are in
        PostgreSQL (19.0 silently ignores `_sql_constraints`)."""
        for table, name in (
            ("payment_vipps_token", "unique_provider"),
            ("payment_vipps_outbox", "target"),
            ("payment_vipps_settlement_line", "entry_unique"),
            ("payment_vipps_payout", "payout_unique"),
        ):
            self.env.cr.execute(
                "SELECT 1 FROM pg_constraint WHERE conname = %s", [f"{table}_{name}"]
            )
            self.assertTrue(self.env.cr.fetchone(), f"{table}_{name}")
        Token = self.env["payment.vipps.token"].sudo()
        values = {
            "provider_id": self.vipps.id,
            "fingerprint": "test",
            "token": "secret",
            "expires_at": fields.Datetime.now(),
        }
        Token.search([("provider_id", "=", self.vipps.id)]).unlink()
        Token.create(values)
        with self.assertRaises(psycopg2.IntegrityError), mute_logger("odoo.sql_db"):
            Token.create(values)
            self.env.flush_all()

    def test_request_actions_for_billing_users_only(self):
        """Request via Vipps (Action menu) and the server action for automations
        are offered to billing users only."""
        billing = self.env.ref("account.group_account_invoice")
        for xmlid in (
            "payment_vipps.action_vipps_request_payment",
            "payment_vipps.action_server_vipps_request_payment",
        ):
            self.assertEqual(self.env.ref(xmlid)[compat.GROUPS], billing, xmlid)

    def test_one_pay_qr_code_on_the_invoice(self):
        """The printed invoice has one QR code to pay with: ours, or Odoo's own when
        the company prints that one (19.0's Display Link QR-code)."""
        invoice = self.create_invoice()
        html = self._pdf_html(invoice)
        self.assertIn('id="vipps_pay_qr"', html)
        self.assertNotIn('id="payment_link_qrcode"', html)
        if compat.ODOO_19:
            invoice.company_id.link_qr_code = True
            self.env["account.move"].invalidate_model(["display_link_qr_code"])
            self.assertTrue(invoice.display_link_qr_code)
            # Odoo's link is signed for the web request that prints it; a fixed
            # one stands for it here.
            with patch.object(
                type(invoice),
                "_get_portal_payment_link",
                lambda move: "https://example.test/pay",
            ):
                html = self._pdf_html(invoice)
            self.assertIn('id="payment_link_qrcode"', html)
            self.assertNotIn('id="vipps_pay_qr"', html)

    def test_send_and_print_by_email(self):
        """Send & Print of an invoice without Vipps works with the addon installed
        (19.0 gives the success hook one more argument)."""
        invoice = self.create_invoice()
        self.env["account.move.send.wizard"].with_context(
            active_model="account.move", active_ids=invoice.ids
        ).create({"sending_methods": ["email"]}).action_send_and_print()
        self.assertTrue(invoice.is_move_sent)
        self.assertFalse(self.vipps_calls("createPayment"))

    def test_captured_once_and_paid_through_the_engine(self):
        """An approval is captured once, through the engine of the series: on the
        payment itself on 18.0, as a child capture transaction on 19.0. Either way
        one payment pays the invoice, and the payment is done."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        tx._vipps_sync()
        self.assertEqual(tx.state, "done")
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        captures = tx.child_transaction_ids
        if compat.ODOO_19:
            self.assertEqual(captures.mapped("state"), ["done"])
            self.assertEqual(captures.vipps_operation, "capture")
            self.assertEqual(captures.amount, tx.amount)
            self.assertTrue(captures.reference.startswith("P-"))
            payment = captures.payment_id
            self.assertFalse(tx.payment_id)
        else:
            self.assertFalse(captures)
            payment = tx.payment_id
        self.assertEqual(len(payment), 1)
        self.assertEqual(payment.invoice_ids, invoice)
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
