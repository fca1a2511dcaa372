"""Who may drive Vipps, over the UI and RPC, and what an anonymous visitor cannot."""

import xmlrpc.client
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from .. import const
from ..models.payment_transaction import PaymentTransaction
from .common import VippsHttpCommon


@tagged("post_install", "-at_install")
class TestVippsAccess(VippsHttpCommon):
    vipps_merchant = "approved"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        values = {"company_id": company.id, "company_ids": [(6, 0, company.ids)]}
        cls.billing = new_test_user(
            cls.env, "vipps_billing", groups="account.group_account_invoice", **values
        )
        cls.readonly = new_test_user(
            cls.env,
            "vipps_readonly",
            groups="base.group_user,account.group_account_readonly",
            **values,
        )
        cls.portal = new_test_user(
            cls.env, "vipps_portal", groups="base.group_portal", **values
        )

    # === RIGHTS === #

    def test_readonly_and_portal_users_cannot_drive_vipps(self):
        """Sending, Check status, Cancel request and clearing consent need Billing."""
        invoice = self.create_invoice()
        invoice._vipps_request_payment()
        self.customer._vipps_store_consent(self.PHONE, "test")
        for user in (self.readonly, self.portal):
            as_user = invoice.with_user(user)
            for action in (
                as_user.vipps_request_payment,
                as_user.action_vipps_check_status,
                as_user.action_vipps_cancel_request,
                as_user.action_vipps_request_payment,
                self.customer.with_user(user).action_vipps_clear_consent,
            ):
                with self.subTest(user=user.login, action=action.__name__):
                    with self.assertRaises(AccessError):
                        action()
        self.assertEqual(invoice.vipps_state, "pending")
        self.assertTrue(self.customer.vipps_consent_date)

    def _xmlrpc(self, user, method, *args, **kwargs):
        with self.server_turn():
            return self.xmlrpc_object.execute_kw(
                self.env.cr.dbname,
                user.id,
                user.login,
                "account.move",
                method,
                list(args),
                kwargs,
            )

    def test_readonly_refused_over_xmlrpc(self):
        """Over XML-RPC too, a read-only accountant gets an AccessError and nothing
        is sent."""
        invoice = self.create_invoice()
        with self.assertRaises(xmlrpc.client.Fault) as fault:
            self._xmlrpc(self.readonly, "vipps_request_payment", invoice.ids)
        self.assertIn("Billing", fault.exception.faultString)
        self.assertFalse(self.vipps_calls("createPayment"))

    # === RPC === #

    def test_request_over_xmlrpc_returns_transaction_ids(self):
        """The public method answers over XML-RPC (ids, not records) after the push
        went out, with the phone, amount and expiry as RPC carries them."""
        invoice = self.create_invoice()
        expires = fields.Datetime.to_string(fields.Datetime.now() + timedelta(hours=2))
        ids = self._xmlrpc(
            self.billing,
            "vipps_request_payment",
            invoice.ids,
            phone="+47 912 34 567",
            amount=500.0,
            expires_at=expires,
        )
        self.env.invalidate_all()
        tx = self.env["payment.transaction"].browse(ids)
        self.assertEqual(tx.invoice_ids, invoice)
        self.assertEqual((tx.amount, tx.vipps_phone), (500.0, self.PHONE_E164))
        self.assertEqual(fields.Datetime.to_string(tx.vipps_expires_at), expires)

    def test_request_over_jsonrpc(self):
        """The public method answers over JSON-RPC (a web client session)."""
        invoice = self.create_invoice()
        with self.server_turn():
            self.authenticate(self.billing.login, self.billing.login)
            ids = self.make_jsonrpc_request(
                "/web/dataset/call_kw",
                {
                    "model": "account.move",
                    "method": "vipps_request_payment",
                    "args": [invoice.ids],
                    "kwargs": {},
                },
            )
        self.env.invalidate_all()
        self.assertEqual(
            self.env["payment.transaction"].browse(ids).invoice_ids, invoice
        )

    def test_wrong_argument_types_get_a_clear_error(self):
        """A string amount or an unreadable expiry is a UserError naming the
        expected form, never a server error; nothing is sent."""
        invoice = self.create_invoice()
        for kwargs, expected in (
            ({"amount": "500"}, "must be a number"),
            ({"expires_at": "tomorrow"}, "YYYY-MM-DD HH:MM:SS"),
            ({"phone": 91234567}, "must be text"),
        ):
            with self.subTest(**kwargs), self.assertRaises(xmlrpc.client.Fault) as f:
                self._xmlrpc(
                    self.billing, "vipps_request_payment", invoice.ids, **kwargs
                )
            self.assertIn(expected, f.exception.faultString)
        with self.assertRaisesRegex(UserError, "must be a number"):
            invoice.vipps_request_payment(amount="500")
        self.assertFalse(self.vipps_calls("createPayment"))

    # === THE ANONYMOUS RETURN PAGE === #

    def _return(self, tx, token=None):
        url = (
            f"{self.base_url()}{const.RETURN_ROUTE}?reference={tx.reference}"
            f"&token={tx._vipps_return_token() if token is None else token}"
        )
        with self.server_turn():
            return self.url_open(url, allow_redirects=False)

    def test_return_reads_vipps_only_for_the_token_holder(self):
        """Without the transaction's token the return page calls nothing."""
        tx = self.create_invoice()._vipps_request_payment()
        self.emulator.clear_requests()
        for token in (
            "",
            "forged",
            self.create_invoice()._vipps_request_payment()._vipps_return_token(),
        ):
            response = self._return(tx, token=token)
            self.assertEqual(response.status_code, 303)
        self.assertFalse(self.vipps_calls("getPayment"))
        self._return(tx)
        self.assertEqual(len(self.vipps_calls("getPayment")), 1)

    def test_return_not_read_again_within_interval_or_when_final(self):
        """Reloading the return page does not hammer Vipps, and a finished payment
        is not read at all."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        self.wait_for_webhooks()
        self.emulator.clear_requests()
        self.assertEqual(tx.state, "done")
        self._return(tx)
        self.assertFalse(self.vipps_calls("getPayment"), msg="Final: not read.")
        pending = self.create_invoice()._vipps_request_payment()
        self.emulator.clear_requests()
        for __ in range(5):
            self._return(pending)
        self.assertEqual(len(self.vipps_calls("getPayment")), 1)

    def test_return_writes_nothing_when_nothing_changed_and_hides_errors(self):
        """A read that changes nothing writes nothing; a Vipps error is logged, not
        shown to the visitor."""
        tx = self.create_invoice()._vipps_request_payment()
        written = []
        write = PaymentTransaction.write

        def spy(records, values):
            written.append(values)
            return write(records, values)

        with patch.object(PaymentTransaction, "write", spy):
            self._return(tx)
        self.assertEqual(written, [])
        self.emulator.inject_fault("getPayment", count=1, status=400, code=9999)
        with patch(
            "odoo.addons.payment_vipps.controllers.main._return_read_due",
            return_value=True,
        ):
            response = self._return(tx)
            with self.server_turn():
                page = self.url_open(response.headers["Location"])
        self.assertNotIn("Injected by the emulator", page.text)
        self.assertNotIn("9999", page.text)
