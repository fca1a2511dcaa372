import logging
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged

from .. import compat, const
from ..exceptions import VippsError, VippsUnreachableError
from ..models.payment_provider import _TOKEN_CACHE
from .common import VippsCommon

PHONE = "4791234567"


@tagged("post_install", "-at_install")
class TestVippsClient(VippsCommon):
    """The request helper over real HTTP against the local emulator."""

    vipps_merchant = "approved"

    def _payload(self, reference, **overrides):
        return {
            "amount": {"currency": "NOK", "value": 12500},
            "paymentMethod": {"type": "WALLET"},
            "reference": reference,
            "userFlow": "PUSH_MESSAGE",
            "customer": {"phoneNumber": PHONE},
            "returnUrl": "http://127.0.0.1/payment/status",
            "paymentDescription": "Invoice INV/2026/00001",
            **overrides,
        }

    def _create(self, reference, **overrides):
        return self.vipps._vipps_create_payment(
            self._payload(reference, **overrides),
            self.vipps._vipps_idempotency_key(reference, "create"),
            lambda payment: payment["reference"] == reference,
        )

    def _forget_token(self):
        """No token anywhere: neither in this process nor stored for the workers."""
        _TOKEN_CACHE.clear()
        self.env.cr.execute(
            "DELETE FROM payment_vipps_token WHERE provider_id = %s", [self.vipps.id]
        )
        self.env.invalidate_all()

    def _stored_token(self):
        return (
            self.env["payment.vipps.token"]
            .sudo()
            .search([("provider_id", "=", self.vipps.id)])
        )

    # === ACCESS TOKEN === #

    def test_one_token_serves_many_calls(self):
        """Consecutive calls reuse one access token."""
        self._forget_token()
        self.vipps._vipps_list_webhooks()
        self.vipps._vipps_list_webhooks()
        self._create("client-token-1")
        self.assertEqual(len(self.vipps_calls("accessToken")), 1)
        self.assertEqual(len(self.vipps_calls("listWebhooks")), 2)

    def test_token_shared_with_other_workers(self):
        """A token fetched by one worker is used by another (stored on the provider)."""
        self._forget_token()
        self.vipps._vipps_list_webhooks()
        self.assertTrue(self._stored_token().token)
        _TOKEN_CACHE.clear()  # another worker: nothing cached in its memory
        self.vipps._vipps_list_webhooks()
        self.assertEqual(
            len(self.vipps_calls("accessToken")),
            1,
            msg="The second worker must reuse the stored token.",
        )

    def test_token_renewed_shortly_before_expiry(self):
        """A token with less than the renewal margin left is replaced."""
        self._forget_token()
        self.vipps._vipps_list_webhooks()
        almost = fields.Datetime.now() + timedelta(
            seconds=const.TOKEN_RENEWAL_MARGIN - 5
        )
        self.env.cr.execute(
            "UPDATE payment_vipps_token SET expires_at = %s WHERE provider_id = %s",
            [almost, self.vipps.id],
        )
        self.env.invalidate_all()
        _TOKEN_CACHE.clear()
        self.vipps._vipps_list_webhooks()
        self.assertEqual(len(self.vipps_calls("accessToken")), 2)

    def test_rejected_token_renewed_once(self):
        """A 401 with a token Vipps no longer knows renews it and retries once."""
        _TOKEN_CACHE.clear()
        self.vipps._vipps_list_webhooks()
        token = self._stored_token().token
        self.env.cr.execute(
            "UPDATE payment_vipps_token SET token = 'forgotten-token',"
            " expires_at = %s WHERE provider_id = %s",
            [fields.Datetime.now() + timedelta(hours=1), self.vipps.id],
        )
        self.env.invalidate_all()
        _TOKEN_CACHE.clear()
        self.emulator.clear_requests()
        webhooks = self.vipps._vipps_list_webhooks()
        self.assertIsInstance(webhooks, list)
        statuses = [call["status"] for call in self.vipps_calls("listWebhooks")]
        self.assertEqual(statuses, [401, 200])
        self.assertNotIn(self._stored_token().token, (token, "forgotten-token"))

    def test_wrong_credentials_explained(self):
        """Wrong credentials are refused when the provider is saved, with a
        translated error that names what to check."""
        with self.assertRaises(VippsError) as error:
            self.vipps.sudo().vipps_client_secret = "wrong"
        self.assertIn("client secret", str(error.exception))
        self.assertEqual(len(self.vipps_calls("accessToken")), 1, msg="401 is final")
        self.assertEqual(
            self.vipps.sudo().vipps_client_secret, "emulator-client-secret"
        )

    def test_credentials_change_drops_token(self):
        """After a credential change, a token issued for the old one is not used."""
        self.vipps._vipps_list_webhooks()
        self.emulator.update_merchant(client_secret="rotated-secret")
        self.vipps.sudo().vipps_client_secret = "rotated-secret"
        self.vipps._vipps_list_webhooks()
        self.assertEqual(len(self.vipps_calls("accessToken")), 1)
        self.assertEqual(self.vipps_calls("listWebhooks")[-1]["status"], 200)

    # === HEADERS AND IDEMPOTENCY === #

    def test_every_call_sends_msn_and_system_headers(self):
        """MSN and the four Vipps-System-* headers go with every call."""
        self._forget_token()
        self._create("client-headers-1")
        self.vipps._vipps_get_payment("client-headers-1")
        module = self.env.ref("base.module_payment_vipps").sudo()
        for call in self.vipps_calls():
            headers = call["headers"]
            self.assertEqual(headers.get("Merchant-Serial-Number"), "123456")
            self.assertEqual(headers.get("Vipps-System-Name"), "odoo")
            self.assertTrue(
                headers.get("Vipps-System-Version", "").startswith(compat.SERIES)
            )
            self.assertEqual(headers.get("Vipps-System-Plugin-Name"), "payment_vipps")
            self.assertEqual(
                headers.get("Vipps-System-Plugin-Version"), module.installed_version
            )

    def test_idempotency_key_derived_from_operation(self):
        """The same operation always gets the same key; another gets another."""
        key = self.vipps._vipps_idempotency_key("INV-2026-00001", "capture", 100)
        self.assertEqual(
            key, self.vipps._vipps_idempotency_key("INV-2026-00001", "capture", 100)
        )
        self.assertNotEqual(
            key, self.vipps._vipps_idempotency_key("INV-2026-00001", "capture", 200)
        )
        self.assertLessEqual(len(key), 50)

    # === RETRIES === #

    def test_server_errors_retried_with_same_key(self):
        """5xx answers are retried with the unchanged key and body: one payment."""
        self.emulator.inject_fault("createPayment", count=2, status=503)
        with self.fast_retries():
            answer = self._create("client-retry-5xx")
        self.assertEqual(answer["reference"], "client-retry-5xx")
        calls = self.vipps_calls("createPayment")
        self.assertEqual([call["status"] for call in calls], [503, 503, 201])
        self.assertEqual(len({call["idempotencyKey"] for call in calls}), 1)
        self.assertTrue(calls[0]["idempotencyKey"])
        self.assertEqual(len(self.emulator.payments), 1)

    def test_rate_limit_honours_retry_after(self):
        """A 429 is retried after the Retry-After the API gives."""
        self.emulator.inject_fault("getPayment", count=1, status=429)
        self._create("client-retry-429")
        with patch("time.sleep") as sleep:
            payment = self.vipps._vipps_get_payment("client-retry-429")
        self.assertEqual(payment["state"], "CREATED")
        sleep.assert_called_once_with(1.0)  # the emulator says Retry-After: 1

    def test_client_errors_not_retried(self):
        """A 4xx is raised at once with Vipps's explanation and error code."""
        with self.assertRaises(VippsError) as error:
            self._create("client-bad-phone", customer={"phoneNumber": "12345"})
        self.assertEqual(len(self.vipps_calls("createPayment")), 1)
        self.assertEqual(error.exception.status, 400)
        self.assertIn("Vipps MobilePay refused the request", str(error.exception))

    def test_vipps_error_code_quoted(self):
        """A domain error quotes Vipps's title, detail and error code."""
        with self.assertRaises(VippsError) as error:
            self._create("client-not-user", customer={"phoneNumber": "4791230000"})
        self.assertEqual(error.exception.code, "7010")
        self.assertIn("7010", str(error.exception))
        self.assertIn(error.exception.problem["title"], str(error.exception))

    def test_lost_answer_on_create_read_back(self):
        """Create carried out but its answer lost: the payment is read back, once."""
        self.emulator.inject_fault(
            "createPayment", count=const.MAX_ATTEMPTS, timeout=True, processed=True
        )
        with self.fast_retries():
            answer = self._create("client-lost-create")
        self.assertEqual(answer["reference"], "client-lost-create")
        self.assertEqual(len(self.vipps_calls("createPayment")), const.MAX_ATTEMPTS)
        self.assertEqual(len(self.vipps_calls("getPayment")), 1)
        self.assertEqual(len(self.emulator.payments), 1, msg="Created exactly once.")

    def test_unreachable_create_not_created(self):
        """Create never reached Vipps, as the read-back shows: the error says that
        nothing was sent (it is certain), and nothing exists."""
        self.emulator.inject_fault(
            "createPayment", count=const.MAX_ATTEMPTS, disconnect=True
        )
        with self.fast_retries(), self.assertRaises(VippsError) as error:
            self._create("client-never-created")
        self.assertNotIsInstance(error.exception, VippsUnreachableError)
        self.assertIn("Nothing was sent", str(error.exception))
        self.assertFalse(self.emulator.payments)

    def test_unreachable_create_and_read_back_uncertain(self):
        """No answer to the create nor to the read-back: the error says Vipps may
        have it (VippsUnreachableError), never that nothing was sent."""
        self.emulator.inject_fault(
            "createPayment", count=const.MAX_ATTEMPTS, timeout=True, processed=True
        )
        self.emulator.inject_fault("getPayment", count=const.MAX_ATTEMPTS, timeout=True)
        with self.fast_retries(), self.assertRaises(VippsUnreachableError) as error:
            self._create("client-uncertain")
        self.assertNotIn("Nothing was sent", str(error.exception))
        self.assertEqual(len(self.emulator.payments), 1)

    def test_lost_capture_answer_read_back(self):
        """A capture whose answer is lost is confirmed by reading the payment."""
        self._create("client-lost-capture")
        self.emulator.approve("client-lost-capture", phone=PHONE)
        self.emulator.inject_fault(
            "capturePayment", count=const.MAX_ATTEMPTS, disconnect=True, processed=True
        )
        amount = {"currency": "NOK", "value": 12500}
        key = self.vipps._vipps_idempotency_key("client-lost-capture", "capture", 12500)
        with self.fast_retries():
            result = self.vipps._vipps_modify_payment(
                "client-lost-capture", "capture", {"modificationAmount": amount}, key
            )
        self.assertEqual(result["aggregate"]["capturedAmount"]["value"], 12500)
        captures = self.vipps_calls("capturePayment")
        self.assertEqual({call["idempotencyKey"] for call in captures}, {key})
        events = self.vipps._vipps_get_payment_events("client-lost-capture")
        self.assertEqual(
            [event["name"] for event in events].count("CAPTURED"),
            1,
            msg="Retries with one key capture once.",
        )

    # === LOGGING === #

    def test_no_secret_or_phone_in_logs(self):
        """Logs carry neither tokens, secrets, keys nor the full phone number."""
        self._forget_token()
        with self.assertLogs("odoo.addons.payment_vipps", level=logging.DEBUG) as logs:
            logging.getLogger("odoo.addons.payment_vipps").info("start")
            self._create("client-logging-1")
            with self.assertRaises(VippsError):
                self._create("client-logging-2", customer={"phoneNumber": "4791230000"})
        text = "\n".join(logs.output)
        token = self._stored_token().token
        for secret in (
            token,
            "emulator-client-secret",
            "emulator-subscription-key",
            PHONE,
            "4791230000",
        ):
            self.assertNotIn(secret, text)
        self.assertIn("47******67", text, msg="The masked number is logged.")

    # === OPERATIONS === #

    def test_payment_lifecycle_operations(self):
        """Create, read, capture, refund and read the event log."""
        self._create("client-lifecycle")
        self.assertEqual(
            self.vipps._vipps_get_payment("client-lifecycle")["state"], "CREATED"
        )
        self.emulator.approve("client-lifecycle", phone=PHONE)
        amount = {"currency": "NOK", "value": 12500}
        provider = self.vipps
        provider._vipps_modify_payment(
            "client-lifecycle",
            "capture",
            {"modificationAmount": amount},
            provider._vipps_idempotency_key("l", "capture"),
        )
        refunded = provider._vipps_modify_payment(
            "client-lifecycle",
            "refund",
            {"modificationAmount": {"currency": "NOK", "value": 2500}},
            provider._vipps_idempotency_key("l", "refund", 1),
        )
        self.assertEqual(refunded["aggregate"]["refundedAmount"]["value"], 2500)
        names = [
            e["name"] for e in provider._vipps_get_payment_events("client-lifecycle")
        ]
        self.assertEqual(names, ["CREATED", "AUTHORIZED", "CAPTURED", "REFUNDED"])

    def test_cancel_unapproved_payment_terminates_it(self):
        """Cancelling a request before approval terminates it."""
        self._create("client-cancel")
        result = self.vipps._vipps_modify_payment(
            "client-cancel",
            "cancel",
            {"cancelTransactionOnly": True},
            self.vipps._vipps_idempotency_key("c", "cancel"),
        )
        self.assertEqual(result["state"], "TERMINATED")

    def test_order_management_category_receipt_and_read(self):
        """Category and receipt are stored and read back with Get order."""
        self._create("client-order")
        self.vipps._vipps_add_category(
            "client-order", "GENERAL", "http://127.0.0.1:8069/payment/vipps/invoice/1"
        )
        receipt = {
            "orderLines": [
                {
                    "name": "Consulting",
                    "id": "1",
                    "totalAmount": 12500,
                    "totalAmountExcludingTax": 10000,
                    "totalTaxAmount": 2500,
                    "taxRate": 2500,
                    "unitInfo": {"unitPrice": 12500, "quantity": "1"},
                }
            ],
            "bottomLine": {"currency": "NOK", "receiptNumber": "INV/2026/00001"},
        }
        self.vipps._vipps_add_receipt("client-order", receipt)
        order = self.vipps._vipps_get_order("client-order")
        self.assertEqual(order["category"]["category"], "GENERAL")
        self.assertEqual(order["receipt"]["orderLines"][0]["totalAmount"], 12500)

    def test_webhook_register_list_delete(self):
        """Registering returns a secret once; list and delete follow it."""
        url = "http://127.0.0.1:9/other-webhook"
        answer = self.vipps._vipps_register_webhook(
            url, ["epayments.payment.authorized.v1"]
        )
        self.assertTrue(answer["secret"])
        listed = {hook["id"]: hook for hook in self.vipps._vipps_list_webhooks()}
        self.assertEqual(listed[answer["id"]]["url"], url)
        self.assertNotIn("secret", listed[answer["id"]])
        self.vipps._vipps_delete_webhook(answer["id"])
        ids = {hook["id"] for hook in self.vipps._vipps_list_webhooks()}
        self.assertNotIn(answer["id"], ids)

    def test_userinfo_after_profile_sharing(self):
        """UserInfo answers with the approving customer's phone number by `sub`."""
        self._create(
            "client-userinfo",
            userFlow="WEB_REDIRECT",
            customer=None,
            profile={"scope": "phoneNumber"},
        )
        self.emulator.approve("client-userinfo", phone=PHONE)
        payment = self.vipps._vipps_get_payment("client-userinfo")
        self.assertNotIn("sub", payment["profile"], msg="Vipps writes it a bit later.")
        self.emulator.advance(5)
        payment = self.vipps._vipps_get_payment("client-userinfo")
        info = self.vipps._vipps_get_userinfo(payment["profile"]["sub"])
        self.assertEqual(info["phone_number"], PHONE)
