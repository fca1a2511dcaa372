"""The payment state machine: approve, reject, expire, capture, refund, cancel,
the event log and idempotent retries."""

import datetime as dt
from typing import ClassVar

from ..clock import parse_rfc3339
from .common import PHONE, EmulatorCase

REF = "inv-2026-00001-1"


def _amounts(payment):
    aggregate = payment["aggregate"]
    return {
        name: aggregate[f"{name}Amount"]["value"]
        for name in ("authorized", "captured", "refunded", "cancelled")
    }


class TestStateMachine(EmulatorCase):
    """States and aggregate amounts."""

    def test_new_payment_is_created_with_zero_aggregate(self):
        """Get payment shows CREATED, the amount and an all-zero aggregate."""
        self.new_payment(metadata={"move_id": "42"})
        payment = self.get()
        self.assertEqual(payment["state"], "CREATED")
        self.assertEqual(payment["amount"], {"currency": "NOK", "value": 125000})
        self.assertEqual(set(_amounts(payment).values()), {0})
        self.assertEqual(payment["paymentMethod"]["type"], "WALLET")
        self.assertEqual(payment["metadata"], {"move_id": "42"})
        self.assertEqual(payment["profile"], {})

    def test_force_approve_by_phone_authorizes(self):
        """The test approve endpoint with a phone number authorizes the payment."""
        self.new_payment()
        answer = self.call(
            "POST",
            f"/epayment/v1/test/payments/{REF}/approve",
            {"customer": {"phoneNumber": PHONE}},
        )
        self.assertEqual(answer.status, 200)
        payment = self.get()
        self.assertEqual(payment["state"], "AUTHORIZED")
        self.assertEqual(_amounts(payment)["authorized"], 125000)

    def test_force_approve_by_token(self):
        """The token from redirectUrl approves; a wrong token gives 10010."""
        redirect = self.new_payment().json["redirectUrl"]
        token = redirect.split("token=")[1]
        path = f"/epayment/v1/test/payments/{REF}/approve"
        wrong = self.call(
            "POST", path, {"token": "nope", "customer": {"phoneNumber": PHONE}}
        )
        self.assertEqual((wrong.status, wrong.code), (400, 10010))
        self.assertEqual(
            self.call(
                "POST", path, {"token": token, "customer": {"phoneNumber": PHONE}}
            ).status,
            200,
        )
        again = self.call(
            "POST", path, {"token": token, "customer": {"phoneNumber": PHONE}}
        )
        self.assertEqual(again.code, 6230)

    def test_push_request_can_only_be_approved_by_its_customer(self):
        """A push request approved from another phone fails with 10010."""
        self.emu.update_merchant(approved=True)
        self.new_payment(userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE})
        answer = self.call(
            "POST",
            f"/epayment/v1/test/payments/{REF}/approve",
            {"customer": {"phoneNumber": "4798765432"}},
        )
        self.assertEqual(answer.code, 10010)
        self.assertEqual(self.get()["state"], "CREATED")

    def test_reject_aborts(self):
        """A customer rejection makes the payment ABORTED (final)."""
        self.new_payment()
        self.emu.reject(REF)
        self.assertEqual(self.get()["state"], "ABORTED")
        self.assertEqual(self.modify("capture", 125000).code, 6200)

    def test_unknown_reference_is_404(self):
        """Get payment of an unknown reference is 404 with 5090."""
        answer = self.call("GET", "/epayment/v1/payments/inv-unknown-1")
        self.assertEqual((answer.status, answer.code), (404, 5090))

    def test_capture_before_approval_gives_6080(self):
        """Capturing a CREATED payment gives 6080."""
        self.new_payment()
        self.assertEqual(self.modify("capture", 125000).code, 6080)

    def test_partial_captures_up_to_authorized(self):
        """Partial captures add up; above the rest is 6090, after full capture 6170."""
        self.authorized()
        answer = self.modify("capture", 25000)
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json["aggregate"]["capturedAmount"]["value"], 25000)
        self.assertEqual(answer.json["state"], "AUTHORIZED")
        self.assertEqual(self.modify("capture", 100001).code, 6090)
        self.assertEqual(self.modify("capture", 100000).status, 200)
        self.assertEqual(self.modify("capture", 1).code, 6170)
        self.assertEqual(_amounts(self.get())["captured"], 125000)

    def test_partial_capture_can_be_refused_by_the_sales_unit(self):
        """A sales unit that must capture in full gives 6140 on a part."""
        self.emu.update_merchant(partial_capture_allowed=False)
        self.authorized()
        self.assertEqual(self.modify("capture", 1000).code, 6140)
        self.assertEqual(self.modify("capture", 125000).status, 200)

    def test_capture_currency_must_match(self):
        """A capture in another currency gives 5040."""
        self.authorized()
        answer = self.call(
            "POST",
            f"/epayment/v1/payments/{REF}/capture",
            {"modificationAmount": {"currency": "EUR", "value": 100}},
            key=self.new_key(),
        )
        self.assertEqual(answer.code, 5040)

    def test_refund_limits(self):
        """Refunds: 6020 before reservation, up to the captured amount (6150)."""
        self.new_payment()
        self.assertEqual(self.modify("refund", 100).code, 6020)
        self.emu.approve(REF, phone=PHONE)
        self.assertEqual(self.modify("refund", 100).code, 6150)
        self.modify("capture", 50000)
        self.assertEqual(self.modify("refund", 30000).status, 200)
        self.assertEqual(self.modify("refund", 20001).code, 6150)
        answer = self.modify("refund", 20000)
        self.assertEqual(answer.json["aggregate"]["refundedAmount"]["value"], 50000)

    def test_cancel_created_terminates(self):
        """Cancelling a CREATED payment makes it TERMINATED."""
        self.new_payment()
        answer = self.modify("cancel")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json["state"], "TERMINATED")
        self.assertEqual(self.modify("capture", 100).code, 6070)
        self.assertEqual(self.modify("cancel").code, 6190)

    def test_cancel_transaction_only_on_authorized_gives_6060(self):
        """cancelTransactionOnly on an authorized payment gives 6060."""
        self.authorized()
        answer = self.call(
            "POST",
            f"/epayment/v1/payments/{REF}/cancel",
            {"cancelTransactionOnly": True},
            key=self.new_key(),
        )
        self.assertEqual(answer.code, 6060)
        self.assertEqual(_amounts(self.get())["cancelled"], 0)

    def test_cancel_transaction_only_on_created_terminates(self):
        """cancelTransactionOnly withdraws a request not yet approved."""
        self.new_payment()
        answer = self.call(
            "POST",
            f"/epayment/v1/payments/{REF}/cancel",
            {"cancelTransactionOnly": True},
            key=self.new_key(),
        )
        self.assertEqual(answer.json["state"], "TERMINATED")

    def test_cancel_authorized_releases_the_rest(self):
        """Cancel after a partial capture releases the rest; later captures: 6070."""
        self.authorized()
        self.modify("capture", 25000)
        answer = self.modify("cancel")
        self.assertEqual(answer.json["state"], "AUTHORIZED")
        self.assertEqual(_amounts(answer.json)["cancelled"], 100000)
        self.assertEqual(self.modify("capture", 100).code, 6070)

    def test_cancel_fully_captured_gives_6040(self):
        """A fully captured payment cannot be cancelled (6040)."""
        self.authorized()
        self.modify("capture", 125000)
        self.assertEqual(self.modify("cancel").code, 6040)

    def test_event_log_records_every_step(self):
        """The event log lists each step with its own pspReference and key."""
        self.authorized()
        self.modify("capture", 125000, key="cap-1")
        self.modify("refund", 5000, key="ref-1")
        answer = self.call("GET", f"/epayment/v1/payments/{REF}/events")
        events = answer.json
        self.assertEqual(
            [e["name"] for e in events],
            ["CREATED", "AUTHORIZED", "CAPTURED", "REFUNDED"],
        )
        self.assertEqual(events[2]["idempotencyKey"], "cap-1")
        self.assertEqual(events[3]["amount"], {"currency": "NOK", "value": 5000})
        self.assertTrue(all(e["success"] for e in events))
        self.assertEqual(len({e["pspReference"] for e in events}), 4)
        self.assertEqual(self.get()["pspReference"], events[0]["pspReference"])

    def test_capture_deadline_for_dkk_is_14_days(self):
        """After the capture deadline, capture gives 6100 and cancel 6030."""
        self.emu.update_merchant(currency="DKK")
        self.new_payment(amount={"currency": "DKK", "value": 1000})
        self.emu.approve(REF, phone=PHONE)
        self.emu.advance(15 * 86400)
        self._token = None  # the old token expired with the clock
        answer = self.call(
            "POST",
            f"/epayment/v1/payments/{REF}/capture",
            {"modificationAmount": {"currency": "DKK", "value": 1000}},
            key=self.new_key(),
        )
        self.assertEqual(answer.code, 6100)
        self.assertEqual(self.modify("cancel").code, 6030)


class TestCaptureGuarantee(EmulatorCase):
    """captureGuaranteedUntil on Get payment, from the market's deadline."""

    def test_absent_before_approval_then_180_days_in_norway(self):
        """NOK: 180 days after approval; not shown before."""
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        self.new_payment()
        self.assertNotIn("captureGuaranteedUntil", self.get())
        self.emu.advance(60)
        self.emu.approve(REF, phone=PHONE)
        payment = self.get()
        self.assertEqual(payment["captureGuaranteedUntil"], "2027-03-30T12:01:00.000Z")
        self.modify("capture", 125000)
        self.assertIn("captureGuaranteedUntil", self.get())

    def test_capture_fails_after_the_guarantee(self):
        """The guarantee is the capture deadline: 6100 after it."""
        self.authorized()
        until = self.get()["captureGuaranteedUntil"]
        self.emu.set_time(parse_rfc3339(until))
        self._token = None
        self.assertEqual(self.modify("capture", 1000).status, 200)
        self.emu.advance(1)
        self._token = None
        self.assertEqual(self.modify("capture", 1000).code, 6100)


class TestCaptureGuaranteeDenmark(EmulatorCase):
    """DKK (and EUR): 14 days."""

    options: ClassVar[dict] = {"currency": "DKK"}

    def test_14_days(self):
        """A Danish payment is guaranteed for 14 days."""
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        self.authorized(amount={"currency": "DKK", "value": 1000})
        self.assertEqual(
            self.get()["captureGuaranteedUntil"], "2026-10-15T12:00:00.000Z"
        )


class TestExpiry(EmulatorCase):
    """Expiry on the emulator clock."""

    def test_default_expiry_is_ten_minutes(self):
        """Without expiresAt a payment expires after 10 minutes."""
        self.new_payment()
        self.emu.advance(9 * 60 + 50)
        self.assertEqual(self.get()["state"], "CREATED")
        self.emu.advance(11)
        self.assertEqual(self.emu.payments[REF].state, "EXPIRED")
        events = self.call("GET", f"/epayment/v1/payments/{REF}/events").json
        self.assertEqual(events[-1]["name"], "EXPIRED")

    def test_expired_payment_cannot_be_approved(self):
        """Approving after expiry fails (10020) and the state stays EXPIRED."""
        self.new_payment()
        self.emu.advance(601)
        answer = self.call(
            "POST",
            f"/epayment/v1/test/payments/{REF}/approve",
            {"customer": {"phoneNumber": PHONE}},
        )
        self.assertEqual(answer.code, 10020)
        self.assertEqual(self.get()["state"], "EXPIRED")

    def test_long_living_payment_expires_at_expires_at(self):
        """A long-living payment lives until its expiresAt."""
        start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
        self.emu.set_time(start)
        self.emu.update_merchant(approved=True)
        self.new_payment(
            userFlow="PUSH_MESSAGE",
            customer={"phoneNumber": PHONE},
            expiresAt="2026-03-08T12:00:00Z",
            receiptUrl="https://shop.example.com/invoices/1",
        )
        self.emu.advance(6 * 86400)
        self._token = None  # the old token expired with the clock
        self.assertEqual(self.get()["state"], "CREATED")
        self.emu.advance(86400)
        self._token = None
        self.assertEqual(self.get()["state"], "EXPIRED")

    def test_background_sweep_expires_without_calls(self):
        """The sweeper expires overdue payments without any API call."""
        self.new_payment()
        self.emu.clock.advance(601)  # clock only; the sweeper must notice
        for _ in range(100):
            if self.emu.payments[REF].state == "EXPIRED":
                break
            self.emu.stopping.wait(0.02)
        self.assertEqual(self.emu.payments[REF].state, "EXPIRED")


class TestIdempotency(EmulatorCase):
    """Idempotency-Key replay and conflicts."""

    def test_create_replay_returns_the_same_answer(self):
        """Same key and body: the first answer is replayed, nothing is added."""
        body = self.payment_body()
        first = self.call("POST", "/epayment/v1/payments", body, key="create-1")
        second = self.call("POST", "/epayment/v1/payments", body, key="create-1")
        self.assertEqual((first.status, second.status), (201, 201))
        self.assertEqual(first.json, second.json)
        self.assertEqual(len(self.emu.payments[REF].events), 1)

    def test_create_with_same_key_and_other_body_conflicts(self):
        """Same key, different body: 409."""
        self.call("POST", "/epayment/v1/payments", self.payment_body(), key="create-1")
        other = self.payment_body("inv-2026-00002-1")
        answer = self.call("POST", "/epayment/v1/payments", other, key="create-1")
        self.assertEqual(answer.status, 409)
        self.assertNotIn("inv-2026-00002-1", self.emu.payments)

    def test_capture_replay_does_not_capture_twice(self):
        """A retried capture with the same key is applied once."""
        self.authorized()
        first = self.modify("capture", 50000, key="cap-1")
        second = self.modify("capture", 50000, key="cap-1")
        self.assertEqual(first.json, second.json)
        self.assertEqual(_amounts(self.get())["captured"], 50000)

    def test_capture_key_with_other_amount_gives_4010(self):
        """Same capture key with another amount: 409 with 4010."""
        self.authorized()
        self.modify("capture", 50000, key="cap-1")
        answer = self.modify("capture", 60000, key="cap-1")
        self.assertEqual((answer.status, answer.code), (409, 4010))

    def test_refund_key_with_other_amount_gives_4150(self):
        """Same refund key with another amount: 409 with 4150."""
        self.authorized()
        self.modify("capture", 125000)
        self.modify("refund", 1000, key="refund-1")
        answer = self.modify("refund", 2000, key="refund-1")
        self.assertEqual((answer.status, answer.code), (409, 4150))

    def test_new_key_makes_a_new_operation(self):
        """A second capture with a new key captures again."""
        self.authorized()
        self.modify("capture", 1000, key="cap-1")
        self.modify("capture", 1000, key="cap-2")
        self.assertEqual(_amounts(self.get())["captured"], 2000)

    def test_rejected_request_is_replayed_with_the_same_key(self):
        """A 400 answer is replayed for the same key, even once it would pass."""
        self.new_payment()
        self.assertEqual(self.modify("capture", 1000, key="early").code, 6080)
        self.emu.approve(REF, phone=PHONE)
        self.assertEqual(self.modify("capture", 1000, key="early").code, 6080)
        self.assertEqual(self.modify("capture", 1000, key="later").status, 200)

    def test_keys_are_scoped_per_payment(self):
        """The same capture key on another payment is a separate operation."""
        self.authorized()
        self.authorized("inv-2026-00002-1")
        self.modify("capture", 1000, key="cap-1")
        answer = self.modify("capture", 1000, "inv-2026-00002-1", key="cap-1")
        self.assertEqual(answer.status, 200)

    def test_refused_create_key_is_remembered(self):
        """A refused create's key: same body replays, another body gets 4020."""
        push = self.payment_body(
            userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE}
        )
        refused = self.call("POST", "/epayment/v1/payments", push, key="create-1")
        self.assertEqual((refused.status, refused.code), (403, 5080))
        link = self.payment_body()
        other = self.call("POST", "/epayment/v1/payments", link, key="create-1")
        self.assertEqual((other.status, other.code), (409, 4020))
        again = self.call("POST", "/epayment/v1/payments", push, key="create-1")
        self.assertEqual((again.status, again.code), (403, 5080))
        self.assertEqual(self.emu.payments, {})
        created = self.call("POST", "/epayment/v1/payments", link, key="create-2")
        self.assertEqual(created.status, 201)

    def test_refused_even_once_it_would_pass(self):
        """The replayed refusal stands after the sales unit is approved."""
        push = self.payment_body(
            userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE}
        )
        self.call("POST", "/epayment/v1/payments", push, key="create-1")
        self.emu.update_merchant(approved=True)
        again = self.call("POST", "/epayment/v1/payments", push, key="create-1")
        self.assertEqual(again.code, 5080)
        new = self.call("POST", "/epayment/v1/payments", push, key="create-2")
        self.assertEqual(new.status, 201)

    def test_invalid_create_key_is_remembered(self):
        """A validation error (400, no code) also keeps its key."""
        bad = self.payment_body(paymentDescription="x")
        self.assertEqual(
            self.call("POST", "/epayment/v1/payments", bad, key="create-1").status, 400
        )
        good = self.payment_body()
        answer = self.call("POST", "/epayment/v1/payments", good, key="create-1")
        self.assertEqual((answer.status, answer.code), (409, 4020))

    def test_nothing_is_remembered_when_switched_off(self):
        """replay_client_errors=False: a refused key can be used again."""
        self.emu.settings.replay_client_errors = False
        self.addCleanup(setattr, self.emu.settings, "replay_client_errors", True)
        push = self.payment_body(
            userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE}
        )
        self.call("POST", "/epayment/v1/payments", push, key="create-1")
        answer = self.call(
            "POST", "/epayment/v1/payments", self.payment_body(), key="create-1"
        )
        self.assertEqual(answer.status, 201)


class TestReferenceExists(EmulatorCase):
    """A second payment with a used reference: code 4150."""

    def test_reference_exists_is_4150_with_409(self):
        """By default 409 with 4150; the first payment is untouched."""
        self.new_payment(paymentDescription="First")
        answer = self.new_payment(paymentDescription="Second", expect=409)
        self.assertEqual(answer.code, 4150)
        self.assertEqual(self.emu.payments[REF].description, "First")
        self.assertEqual(len(self.emu.payments[REF].events), 1)

    def test_reference_exists_is_replayed_for_its_key(self):
        """The 4150 answer is a refusal: its key replays it."""
        self.new_payment()
        body = self.payment_body(paymentDescription="Second")
        first = self.call("POST", "/epayment/v1/payments", body, key="again-1")
        second = self.call("POST", "/epayment/v1/payments", body, key="again-1")
        self.assertEqual((first.code, second.code), (4150, 4150))


class TestReferenceExistsAs400(EmulatorCase):
    """reference_exists_status=400: the other status Vipps may use."""

    options: ClassVar[dict] = {"reference_exists_status": 400}

    def test_reference_exists_is_4150_with_400(self):
        """The status is 400; the code is still 4150."""
        self.new_payment()
        answer = self.new_payment(paymentDescription="Second", expect=400)
        self.assertEqual(answer.code, 4150)
