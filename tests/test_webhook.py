import email.utils
import json
import time
from datetime import timedelta

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from .. import const, utils
from ..vipps_emulator import sign
from .common import VippsHttpCommon, VippsInvoiceCommon

CONTROLLER_LOGGER = "odoo.addons.payment_vipps.controllers.main"


@tagged("post_install", "-at_install")
class TestVippsSignature(VippsInvoiceCommon):
    def test_signature_matches_published_test_vector(self):
        """Our signature maths reproduces Vipps's published example."""
        body = (
            b'{"some-unique-content":'
            b'"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-world"}'
        )
        content = utils.content_sha256(body)
        self.assertEqual(content, "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4=")
        signature = utils.compute_webhook_signature(
            "A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKXCIcrLoHncVJKDILsQSxS6NWCccwWm6r6FhGKhiHTBsG2wo/xU6FY/A==",
            "/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63",
            "Thu, 30 Mar 2023 08:38:32 GMT",
            "webhook.site",
            content,
        )
        self.assertEqual(signature, "agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=")


@tagged("post_install", "-at_install")
class TestVippsWebhook(VippsHttpCommon):
    """Webhooks from the emulator into a running Odoo, over real HTTP."""

    vipps_merchant = "approved"

    def _deliver_and_process(self):
        """Wait for the emulator's deliveries: Odoo follows them as they arrive."""
        self.wait_for_webhooks()

    def _post_event(self, event, secret=None, date=None, tamper=False, headers=None):
        """POST an event to our endpoint, signed like Vipps unless told otherwise.

        :param event: a dict, or the raw body (bytes)
        """
        url = self.vipps.sudo().vipps_webhook_url
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        host, path = url.split("://", 1)[1].split("/", 1)
        date = date or email.utils.formatdate(usegmt=True)
        content, authorization = sign(
            secret or self.vipps.sudo().vipps_webhook_secret,
            "POST",
            "/" + path,
            date,
            host,
            body,
        )
        if tamper:
            body = body.replace(b"AUTHORIZED", b"CANCELLED")
        all_headers = {
            "Content-Type": "application/json",
            "x-ms-date": date,
            "x-ms-content-sha256": content,
            "Authorization": authorization,
        }
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        with self.server_turn():
            return self.url_open(url, data=body, headers=all_headers)

    def _event(self, tx, name="AUTHORIZED"):
        return {
            "msn": "123456",
            "reference": tx.reference,
            "pspReference": f"psp-{name}",
            "name": name,
            "amount": {"currency": "NOK", "value": tx._vipps_minor(tx.amount)},
            "timestamp": "2026-11-24T10:00:00.000Z",
            "idempotencyKey": None,
            "success": True,
        }

    # === REGISTRATION === #

    def test_webhook_registered_once_when_enabled(self):
        """Enabling registers our URL once; doing it again registers nothing."""
        hooks = [
            h for h in self.emulator.webhooks() if h["url"].startswith(self.base_url())
        ]
        self.assertEqual(len(hooks), 1)
        self.assertEqual(hooks[0]["url"], f"{self.base_url()}{const.WEBHOOK_ROUTE}")
        self.assertEqual(self.vipps.sudo().vipps_webhook_id, hooks[0]["id"])
        self.emulator.clear_requests()
        self.vipps.state = "test"
        self.vipps._vipps_ensure_webhook()
        self.assertFalse(self.vipps_calls("registerWebhook"))
        self.assertEqual(
            len([h for h in self.emulator.webhooks() if h["url"] == hooks[0]["url"]]), 1
        )

    def test_lost_registration_replaced(self):
        """A registration Vipps no longer has (deleted after 2 weeks) is renewed."""
        self.vipps._vipps_delete_webhook(self.vipps.sudo().vipps_webhook_id)
        self.assertTrue(self.vipps._vipps_ensure_webhook())
        hooks = [
            h for h in self.emulator.webhooks() if h["url"].startswith(self.base_url())
        ]
        self.assertEqual(len(hooks), 1)
        self.assertEqual(self.vipps.sudo().vipps_webhook_id, hooks[0]["id"])

    # === END TO END === #

    def test_authorized_webhook_pays_invoice(self):
        """The customer approves; Vipps's webhook makes Odoo capture and reconcile."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        self._deliver_and_process()
        deliveries = [
            d for d in self.emulator.deliveries if d["reference"] == tx.reference
        ]
        self.assertTrue(deliveries)
        self.assertEqual({d["status"] for d in deliveries}, {200})
        self.assertEqual(tx.state, "done")
        self.assertEqual(invoice.vipps_state, "paid")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)

    def test_capture_echo_not_read_back(self):
        """The CREATED and CAPTURED webhooks that Odoo's own calls cause are
        acknowledged without calling Vipps: a paid invoice costs one read and one
        capture."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        self._deliver_and_process()
        self._deliver_and_process()
        names = {
            d["name"]
            for d in self.emulator.deliveries
            if d["reference"] == tx.reference
        }
        self.assertEqual(names, {"AUTHORIZED", "CAPTURED", "CREATED"})
        self.assertEqual(len(self.vipps_calls("getPayment")), 1)
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assertEqual(invoice.vipps_state, "paid")

    def test_duplicate_and_reordered_webhooks_pay_once(self):
        """Duplicated and out-of-order deliveries end in one capture, one payment."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.duplicate_webhooks(count=5)
        self.emulator.reorder_webhooks(count=2)
        self.emulator.approve(tx.reference)
        self._deliver_and_process()
        # The capture itself causes a CAPTURED webhook: deliver and process that too.
        self._deliver_and_process()
        self.assertEqual(tx.state, "done")
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assertEqual(len(self.payments(invoice.transaction_ids)), 1)
        self.assertEqual(invoice.vipps_state, "paid")

    def test_webhook_poll_and_check_status_capture_once(self):
        """Webhook, poll and the button all racing: one capture, one payment."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.emulator.approve(tx.reference)
        self.wait_for_webhooks()
        invoice.action_vipps_check_status()
        tx.vipps_last_sync = False
        self.env.ref("payment_vipps.cron_poll_payments").method_direct_trigger()
        self.env.ref("payment_vipps.cron_process_outbox").method_direct_trigger()
        invoice.action_vipps_check_status()
        self.assertEqual(len(self.vipps_calls("capturePayment")), 1)
        self.assertEqual(len(self.payments(invoice.transaction_ids)), 1)
        self.assertEqual(len(invoice._get_reconciled_payments()), 1)

    def test_webhook_body_never_trusted(self):
        """A validly signed 'AUTHORIZED' for an unapproved payment changes nothing."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        response = self._post_event(self._event(tx))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(self.vipps_calls("getPayment")), 1, msg="Read back.")
        self.assertEqual(tx.state, "pending", msg="Vipps says CREATED: still pending.")
        self.assertFalse(self.vipps_calls("capturePayment"))

    def test_unknown_reference_acknowledged(self):
        """An event for a payment we do not know is answered 200 and looked at a
        little later: Vipps has no such payment of ours, so nothing happens."""
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        event = dict(self._event(tx), reference="not-ours-123")
        self.assertEqual(self._post_event(event).status_code, 200)
        row = self.env["payment.vipps.outbox"].search(
            [("reference", "=", "not-ours-123")]
        )
        self.assertEqual((row.operation, row.state), ("sync", "pending"))
        row.next_attempt_at = fields.Datetime.now() - timedelta(minutes=1)
        self.env.ref("payment_vipps.cron_process_outbox").method_direct_trigger()
        self.assertEqual(row.state, "done")
        self.assertFalse(
            self.env["payment.transaction"].search([("reference", "=", "not-ours-123")])
        )

    # === SECURITY === #

    def _assert_refused(self, **kwargs):
        invoice = self.create_invoice()
        tx = invoice._vipps_request_payment()
        self.wait_for_webhooks()
        self.emulator.clear_requests()
        outbox = self.env["payment.vipps.outbox"].search([])
        with mute_logger(CONTROLLER_LOGGER):
            response = self._post_event(self._event(tx), **kwargs)
        self.assertEqual(response.status_code, 403)
        self.assertFalse(self.emulator.requests, msg="Vipps is not called.")
        self.assertEqual(
            self.env["payment.vipps.outbox"].search([]), outbox, msg="Nothing queued."
        )
        self.assertEqual(tx.state, "pending", msg="Nothing changes.")

    def test_tampered_webhook_refused(self):
        """A body changed after signing is refused with 403."""
        self._assert_refused(tamper=True)

    def test_unsigned_webhook_refused(self):
        """A delivery without signature is refused with 403."""
        self._assert_refused(headers={"Authorization": None})

    def test_wrong_secret_refused(self):
        """A delivery signed with another secret is refused with 403."""
        self._assert_refused(secret="not-the-secret")

    def test_stale_webhook_refused(self):
        """A replay signed long ago is refused with 403."""
        old = email.utils.formatdate(time.time() - 3600, usegmt=True)
        self._assert_refused(date=old)

    # === HARDENING === #

    def test_signed_host_follows_vipps_rule(self):
        """The signed host is the URL's host in lower case, with the port only when
        it is not the default."""
        cases = {
            "https://Odoo.Example.COM/payment/vipps/webhook": "odoo.example.com",
            "https://odoo.example.com:443/x": "odoo.example.com",
            "https://odoo.example.com:8443/x": "odoo.example.com:8443",
            "http://127.0.0.1:8069/x": "127.0.0.1:8069",
            "http://localhost:80/x": "localhost",
        }
        for url, host in cases.items():
            with self.subTest(url=url):
                self.assertEqual(utils.signed_host(url), host)

    def test_malformed_deliveries_refused_never_500(self):
        """Non-ASCII signature headers, a signed body that is not JSON or is nested
        too deep get 403; a body over the limit gets 413; none reaches Vipps."""
        tx = self.create_invoice()._vipps_request_payment()
        self.wait_for_webhooks()
        self.emulator.clear_requests()
        deep = b"[" * 100000 + b"]" * 100000
        with mute_logger(CONTROLLER_LOGGER, "odoo.http"):
            statuses = [
                self._post_event(
                    self._event(tx), headers={"x-ms-date": "Tø, 1 Jan"}
                ).status_code,
                self._post_event(b"not json").status_code,
                self._post_event(deep[: const.WEBHOOK_MAX_BODY - 10]).status_code,
                self._post_event(
                    b"{" + b" " * const.WEBHOOK_MAX_BODY + b"}"
                ).status_code,
            ]
        self.assertEqual(statuses, [403, 403, 403, 413])
        self.assertFalse(self.emulator.requests)

    def test_registration_dropped_on_disable_and_renewed_on_new_credentials(self):
        """Disabling deletes our registration at Vipps; new credentials on an
        enabled provider replace it (the old one is deleted first)."""
        old = self.vipps.sudo().vipps_webhook_id
        self.vipps.state = "disabled"
        self.assertFalse(self.vipps.sudo().vipps_webhook_id)
        self.assertNotIn(old, [hook["id"] for hook in self.emulator.webhooks()])
        self.vipps.state = "test"
        renewed = self.vipps.sudo().vipps_webhook_id
        self.assertTrue(renewed)
        self.vipps.vipps_api_url_override = self.emulator.url + "/"
        self.assertNotIn(renewed, [hook["id"] for hook in self.emulator.webhooks()])
        self.assertTrue(self.vipps.sudo().vipps_webhook_id)

    def test_daily_check_registers_again_what_vipps_removed(self):
        """Vipps deletes a registration unresponsive for two weeks: the daily check
        registers it again."""
        self.vipps._vipps_delete_webhook(self.vipps.sudo().vipps_webhook_id)
        self.env.ref("payment_vipps.cron_check_webhooks").method_direct_trigger()
        hooks = [
            h for h in self.emulator.webhooks() if h["url"].startswith(self.base_url())
        ]
        self.assertEqual(len(hooks), 1)
        self.assertEqual(self.vipps.sudo().vipps_webhook_id, hooks[0]["id"])
