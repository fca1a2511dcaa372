"""Webhooks API and signed, ordered, retried delivery."""

import datetime as dt
import unittest
from typing import ClassVar

from .. import sign, signing_target
from .common import PHONE, EmulatorCase, Receiver, send, verify_webhook

# The test vector published by Vipps MobilePay (shared/docs/vipps-api.md, section 6).
VECTOR = {
    "secret": "A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKXCIcrLoHncVJKDILsQSxS6NWCccwW"
    "m6r6FhGKhiHTBsG2wo/xU6FY/A==",
    "url": "https://webhook.site/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63",
    "date": "Thu, 30 Mar 2023 08:38:32 GMT",
    "body": b'{"some-unique-content":'
    b'"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-world"}',
    "content": "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4=",
    "signature": "agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=",
}
ALL = [
    f"epayments.payment.{name}.v1"
    for name in (
        "created",
        "authorized",
        "aborted",
        "expired",
        "cancelled",
        "captured",
        "refunded",
        "terminated",
    )
]
REF = "inv-2026-00001-1"


class TestSignature(unittest.TestCase):
    """The signature scheme against the published test vector."""

    def test_emulator_signing_matches_the_test_vector(self):
        """The emulator's sign() reproduces the published hash and signature."""
        host, path = signing_target(VECTOR["url"])
        self.assertEqual(host, "webhook.site")
        content, authorization = sign(
            VECTOR["secret"], "POST", path, VECTOR["date"], host, VECTOR["body"]
        )
        self.assertEqual(content, VECTOR["content"])
        self.assertTrue(authorization.endswith("&Signature=" + VECTOR["signature"]))

    def test_independent_verifier_accepts_the_test_vector(self):
        """The test's own verifier accepts the vector and rejects a tampered body."""
        headers = {
            "x-ms-date": VECTOR["date"],
            "x-ms-content-sha256": VECTOR["content"],
            "Authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;"
            "x-ms-content-sha256&Signature=" + VECTOR["signature"],
        }
        self.assertTrue(
            verify_webhook(VECTOR["secret"], VECTOR["url"], headers, VECTOR["body"])
        )
        self.assertFalse(
            verify_webhook(
                VECTOR["secret"], VECTOR["url"], headers, VECTOR["body"] + b" "
            )
        )

    def test_signing_target_keeps_non_default_port_and_query(self):
        """Host keeps a non-default port; path keeps the query string."""
        self.assertEqual(
            signing_target("http://127.0.0.1:8069/hook?db=a"),
            ("127.0.0.1:8069", "/hook?db=a"),
        )
        self.assertEqual(signing_target("https://EX.com:443"), ("ex.com", "/"))


class WebhookCase(EmulatorCase):
    """An emulator plus a local receiver registered for every event."""

    def setUp(self):
        super().setUp()
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)
        answer = self.call(
            "POST", "/webhooks/v1/webhooks", {"url": self.receiver.url, "events": ALL}
        )
        self.assertEqual(answer.status, 201, answer)
        self.secret = answer.json["secret"]

    def names(self, calls):
        return [call["json"]["name"] for call in calls]


class TestWebhooksApi(WebhookCase):
    """Register, list and delete."""

    def test_list_shows_registrations_without_secret(self):
        """List returns id, url and events, never the secret."""
        answer = self.call("GET", "/webhooks/v1/webhooks")
        self.assertEqual(answer.status, 200)
        (item,) = answer.json["webhooks"]
        self.assertEqual(set(item), {"id", "url", "events"})
        self.assertEqual(item["url"], self.receiver.url)
        self.assertNotIn(self.secret, answer.raw.decode())

    def test_delete_removes_the_registration(self):
        """Delete answers 204, then 404 for the same id."""
        webhook_id = self.call("GET", "/webhooks/v1/webhooks").json["webhooks"][0]["id"]
        self.assertEqual(
            self.call("DELETE", f"/webhooks/v1/webhooks/{webhook_id}").status, 204
        )
        self.assertEqual(
            self.call("DELETE", f"/webhooks/v1/webhooks/{webhook_id}").status, 404
        )
        self.assertEqual(self.call("GET", "/webhooks/v1/webhooks").json["webhooks"], [])

    def test_registration_rules(self):
        """The URL must be https (loopback http allowed) and events valid."""
        for body, field in (
            ({"url": "http://example.com/hook", "events": ALL}, "url"),
            ({"url": "https://example.com/hook", "events": []}, "events"),
            ({"url": "https://example.com/hook", "events": ["nope"]}, "events[0]"),
        ):
            with self.subTest(field=field):
                answer = self.call("POST", "/webhooks/v1/webhooks", body)
                self.assertEqual(answer.status, 400)
                self.assertEqual(answer.fields, [field])


class TestDelivery(WebhookCase):
    """Delivery of ePayment events."""

    def test_events_are_delivered_signed_and_in_order(self):
        """Each event arrives signed (verified independently), in order."""
        self.authorized()
        self.modify("capture", 125000, key="cap-1")
        calls = self.receiver.wait(3)
        self.assertEqual(self.names(calls), ["CREATED", "AUTHORIZED", "CAPTURED"])
        for call in calls:
            self.assertTrue(
                verify_webhook(
                    self.secret, self.receiver.url, call["headers"], call["body"]
                )
            )
            self.assertEqual(call["path"], "/vipps/webhook?db=x")
        payload = calls[2]["json"]
        self.assertEqual(
            set(payload),
            {
                "msn",
                "reference",
                "pspReference",
                "name",
                "amount",
                "timestamp",
                "idempotencyKey",
                "success",
            },
        )
        self.assertEqual(payload["msn"], "123456")
        self.assertEqual(payload["idempotencyKey"], "cap-1")
        self.assertEqual(payload["amount"], {"currency": "NOK", "value": 125000})
        self.assertIn("x-ms-date", calls[0]["headers"])  # sent in lower case
        self.assertTrue(calls[0]["headers"]["x-ms-date"].endswith(" GMT"))

    def test_only_subscribed_events_are_sent(self):
        """A registration for 'authorized' only gets AUTHORIZED events."""
        other = Receiver()
        self.addCleanup(other.close)
        self.call(
            "POST",
            "/webhooks/v1/webhooks",
            {"url": other.url, "events": ["epayments.payment.authorized.v1"]},
        )
        self.authorized()
        self.assertEqual(self.names(other.wait(1)), ["AUTHORIZED"])
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.assertEqual(len(other.calls), 1)

    def test_failed_delivery_is_retried_and_blocks_later_events(self):
        """A 500 is retried; the next event for the payment waits for it."""
        self.receiver.statuses = [500, 503]
        self.new_payment()
        self.emu.approve(REF, phone=PHONE)
        calls = self.receiver.wait(4)
        self.assertEqual(
            [(c["json"]["name"], c["status"]) for c in calls],
            [("CREATED", 500), ("CREATED", 503), ("CREATED", 200), ("AUTHORIZED", 200)],
        )
        self.assertTrue(self.emu.wait_for_webhooks(5))
        outcomes = [d["outcome"] for d in self.emu.deliveries]
        self.assertEqual(outcomes, ["retry", "retry", "delivered", "delivered"])

    def test_delivery_gives_up_after_the_last_retry(self):
        """After len(retry_delays) + 1 failed attempts the delivery is failed."""
        self.receiver.statuses = [500] * 4
        self.new_payment()
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.assertEqual(len(self.receiver.calls), 4)
        self.assertEqual(self.emu.deliveries[-1]["outcome"], "failed")

    def test_drop_fault(self):
        """A dropped delivery is never sent."""
        self.emu.drop_webhooks(1)
        self.authorized()
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.assertEqual(self.names(self.receiver.calls), ["AUTHORIZED"])
        self.assertEqual(self.emu.deliveries[0]["outcome"], "dropped")

    def test_duplicate_fault(self):
        """A duplicated delivery arrives twice with the same pspReference."""
        self.emu.duplicate_webhooks(1)
        self.new_payment()
        calls = self.receiver.wait(2)
        self.assertEqual(calls[0]["body"], calls[1]["body"])

    def test_delay_fault_holds_later_events_of_the_payment(self):
        """A delayed delivery keeps its place: later events still come after."""
        self.emu.delay_webhooks(0.3)
        self.authorized()
        calls = self.receiver.wait(2)
        self.assertEqual(self.names(calls), ["CREATED", "AUTHORIZED"])

    def test_reorder_fault_swaps_with_the_next_event(self):
        """A reordered delivery is sent after the next event of the payment."""
        self.emu.reorder_webhooks(1)
        self.authorized()
        calls = self.receiver.wait(2)
        self.assertEqual(self.names(calls), ["AUTHORIZED", "CREATED"])

    def test_api_call_does_not_wait_for_a_slow_receiver(self):
        """Deliveries run in the background: create answers at once."""
        self.emu.delay_webhooks(2.0)
        self.new_payment()
        entry = self.emu.requests[-1]
        self.assertLess(entry["durationMs"], 500)


class TestAuthorizedPayload(WebhookCase):
    """What the authorized webhook carries besides the common members."""

    def authorized_payload(self, **changes):
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        self._token = None
        self.new_payment(**changes)
        self.emu.approve(REF, phone=PHONE)
        calls = self.receiver.wait(2)
        self.assertEqual(self.names(calls), ["CREATED", "AUTHORIZED"])
        return calls[0]["json"], calls[1]["json"]

    def test_user_details_and_sub_ride_along(self):
        """userDetails (mobileNumber) and profile.sub, before Get payment has them."""
        created, authorized = self.authorized_payload(profile={"scope": "phoneNumber"})
        sub = self.emu.payments[REF].sub
        self.assertEqual(authorized["profile"], {"sub": sub})
        self.assertEqual(authorized["userDetails"]["mobileNumber"], PHONE)
        self.assertEqual(
            authorized["captureGuaranteedUntil"], "2027-03-30T12:00:00.000Z"
        )
        self.assertNotIn("userDetails", created)
        self.assertNotIn("captureGuaranteedUntil", created)
        # Get payment, read at once, does not have them yet (sub_delay).
        self.assertEqual(self.get()["profile"], {})

    def test_without_scope_only_the_capture_guarantee(self):
        """No profile.scope: no userDetails, no profile; captureGuaranteedUntil."""
        _, authorized = self.authorized_payload()
        self.assertNotIn("userDetails", authorized)
        self.assertNotIn("profile", authorized)
        self.assertIn("captureGuaranteedUntil", authorized)

    def test_other_events_keep_the_common_members(self):
        """A captured event has only the common members."""
        self.authorized(profile={"scope": "phoneNumber"})
        self.modify("capture", 125000)
        (captured,) = [c["json"] for c in self.receiver.wait(3)][2:]
        self.assertEqual(captured["name"], "CAPTURED")
        self.assertNotIn("userDetails", captured)
        self.assertNotIn("captureGuaranteedUntil", captured)


class TestAuthorizedPayloadWithoutProfile(WebhookCase):
    """authorized_webhook_profile=False: the webhook without profile data."""

    options: ClassVar[dict] = {"authorized_webhook_profile": False}

    def test_no_user_details(self):
        """The setting leaves userDetails and profile out of the webhook."""
        self.authorized(profile={"scope": "phoneNumber"})
        authorized = self.receiver.wait(2)[1]["json"]
        self.assertNotIn("userDetails", authorized)
        self.assertNotIn("profile", authorized)
        self.assertIn("captureGuaranteedUntil", authorized)


class TestUnresponsiveRegistration(WebhookCase):
    """A registration failing for two weeks (emulator clock) is deleted."""

    TWO_WEEKS = 14 * 86400

    def fail_deliveries(self, reference=REF):
        self.receiver.statuses = [500] * 1000  # the endpoint keeps failing
        self.new_payment(reference)
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.assertEqual(self.emu.deliveries[-1]["outcome"], "failed")

    def listed(self):
        self._token = None  # the clock moved past the token's lifetime
        return self.call("GET", "/webhooks/v1/webhooks").json["webhooks"]

    def test_deleted_after_two_weeks_of_failures(self):
        """Still listed just before two weeks; deleted at two weeks."""
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        self.fail_deliveries()
        self.emu.advance(self.TWO_WEEKS - 1)
        self.assertEqual(len(self.listed()), 1)
        self.emu.advance(1)
        self.assertEqual(self.listed(), [])
        (removed,) = self.emu.removed_webhooks
        self.assertEqual(removed["url"], self.receiver.url)
        self.assertEqual(removed["failingSince"], "2026-10-01T12:00:00.000Z")
        self.assertEqual(removed["reason"], "unresponsive")
        control = send("GET", f"{self.emu.url}/_emulator/webhooks").json
        self.assertEqual(control["webhooks"], [])
        self.assertEqual(control["removed"][0]["id"], removed["id"])
        # Later events go nowhere.
        self.assertTrue(self.emu.wait_for_webhooks(5))
        calls = len(self.receiver.calls)
        self._token = None
        self.new_payment("inv-2026-00002-1")
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.assertEqual(len(self.receiver.calls), calls)

    def test_a_good_delivery_restarts_the_count(self):
        """A delivered event in between: the two weeks start again."""
        self.fail_deliveries()
        self.receiver.statuses = []  # the endpoint answers again
        self.emu.advance(10 * 86400)
        self._token = None
        self.new_payment("inv-2026-00002-1")
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.emu.advance(10 * 86400)
        self.assertEqual(len(self.listed()), 1)

    def test_the_sweeper_notices_without_calls(self):
        """Moving the clock alone (no API call) is enough."""
        self.fail_deliveries()
        self.emu.clock.advance(self.TWO_WEEKS)
        for _ in range(100):
            if not self.emu.webhooks():
                break
            self.emu.stopping.wait(0.02)
        self.assertEqual(self.emu.webhooks(), [])

    def test_reset_keeping_webhooks_forgets_failures(self):
        """reset(keep_webhooks=True) counts the registration as responsive."""
        self.fail_deliveries()
        self.emu.reset(keep_webhooks=True)
        self.emu.advance(self.TWO_WEEKS)
        self.assertEqual(len(self.emu.webhooks()), 1)


class TestScaledRemoval(WebhookCase):
    """webhook_removal_after scales the two weeks down."""

    options: ClassVar[dict] = {"webhook_removal_after": 60}

    def test_deleted_after_a_minute(self):
        """With 60 seconds, one emulated minute of failures deletes it."""
        self.receiver.statuses = [500] * 4
        self.new_payment()
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.emu.advance(59)
        self.assertEqual(len(self.emu.webhooks()), 1)
        self.emu.advance(1)
        self.assertEqual(self.emu.webhooks(), [])


class TestRemovalSwitchedOff(WebhookCase):
    """webhook_removal_after=0: registrations are never deleted."""

    options: ClassVar[dict] = {"webhook_removal_after": 0}

    def test_never_deleted(self):
        """A month of failures later it is still there."""
        self.receiver.statuses = [500] * 4
        self.new_payment()
        self.assertTrue(self.emu.wait_for_webhooks(5))
        self.emu.advance(30 * 86400)
        self.assertEqual(len(self.emu.webhooks()), 1)
