"""Field rules of Create payment: each rule, with the status and code Vipps uses."""

import datetime as dt
from typing import ClassVar

from .common import PHONE, EmulatorCase

RECEIPT = {
    "orderLines": [
        {
            "name": "Consulting March",
            "id": "line-1",
            "totalAmount": 125000,
            "totalAmountExcludingTax": 100000,
            "totalTaxAmount": 25000,
            "taxRate": 2500,
            "unitInfo": {"unitPrice": 125000, "quantity": "1", "quantityUnit": "PCS"},
            "discount": 0,
            "isReturn": False,
            "isShipping": False,
        }
    ],
    "bottomLine": {"currency": "NOK", "receiptNumber": "INV/2026/00001"},
}


def _line(**changes):
    line = dict(RECEIPT["orderLines"][0])
    line.update(changes)
    return {"orderLines": [line], "bottomLine": dict(RECEIPT["bottomLine"])}


def _in(days=0, minutes=0):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days, minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


PUSH = {"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": PHONE}}


class TestCreateValidation(EmulatorCase):
    """Each rule of the create request, for an approved sales unit."""

    options: ClassVar[dict] = {"approved": True}

    def assert_refused(self, changes, status, code=None, fields=None):
        answer = self.new_payment(expect=status, **changes)
        self.assertEqual(answer.code, code, answer)
        if fields is not None:
            self.assertEqual(answer.fields, fields, answer)
        self.assertEqual(
            answer.headers["Content-Type"].split(";")[0], "application/problem+json"
        )
        for member in ("type", "title", "detail", "status", "instance", "traceId"):
            self.assertIn(member, answer.json)
        return answer

    def test_valid_web_redirect_payment_is_created(self):
        """A valid WEB_REDIRECT request gets 201 with a landing-page redirectUrl."""
        answer = self.new_payment()
        self.assertEqual(answer.json["reference"], "inv-2026-00001-1")
        self.assertTrue(
            answer.json["redirectUrl"].startswith(
                f"{self.emu.url}/app/landing/pay.vipps.no?token="
            )
        )

    def test_push_message_has_no_redirect_url(self):
        """A PUSH_MESSAGE payment answers without redirectUrl."""
        answer = self.new_payment(**PUSH)
        self.assertNotIn("redirectUrl", answer.json)

    def test_required_fields(self):
        """amount, paymentMethod, reference and userFlow are required."""
        for name in ("amount", "paymentMethod", "userFlow"):
            with self.subTest(field=name):
                self.assert_refused({name: None}, 400, fields=[name])

    def test_reference_pattern(self):
        """reference must be 8-50 characters of [a-zA-Z0-9-]."""
        for bad in ("short", "inv_2026_00001", "a" * 51, "inv 2026 0001"):
            with self.subTest(reference=bad):
                answer = self.new_payment(reference=bad, expect=400)
                self.assertEqual(answer.fields, ["reference"])
        self.new_payment(reference="a" * 50)

    def test_amount_rules(self):
        """Decimals give 4040, too small 6010, wrong types and ranges a 400."""
        cases = [
            ({"currency": "NOK", "value": 499.5}, 400, 4040, None),
            ({"currency": "NOK", "value": 99}, 400, 6010, None),
            ({"currency": "NOK", "value": "100"}, 400, None, ["amount.value"]),
            ({"currency": "NOK", "value": 65000001}, 400, None, ["amount.value"]),
            ({"currency": "SEK", "value": 1000}, 400, None, ["amount.currency"]),
            ({"currency": "DKK", "value": 1000}, 400, 5040, None),
        ]
        for amount, status, code, fields in cases:
            with self.subTest(amount=amount):
                self.assert_refused({"amount": amount}, status, code, fields)

    def test_phone_number_format(self):
        """customer.phoneNumber must be 10-15 digits (4070)."""
        for bad in ("+4791234567", "91234567", "47 91234567", "4791234567890123"):
            with self.subTest(phone=bad):
                self.assert_refused(
                    {"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": bad}},
                    400,
                    4070,
                )

    def test_greenlandic_number_accepted(self):
        """Greenland's MSISDNs are 9 digits (299 and six), accepted since 2026."""
        self.assert_refused(
            {"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": "29955123"}},
            400,
            4070,
        )
        self.emu.update_merchant(approved=True)
        self.new_payment(userFlow="PUSH_MESSAGE", customer={"phoneNumber": "299551234"})

    def test_customer_must_hold_exactly_one_identifier(self):
        """customer with two identifiers is a 400 on customer."""
        customer = {"phoneNumber": PHONE, "customerToken": "abc"}
        self.assert_refused({"customer": customer}, 400, fields=["customer"])

    def test_not_a_vipps_user_gives_7010(self):
        """A number ending in 0000 is not a Vipps user (7010)."""
        self.assert_refused(
            {"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": "4790000000"}},
            400,
            7010,
        )

    def test_user_flow_requirements(self):
        """PUSH_MESSAGE needs customer, WEB_REDIRECT needs returnUrl (4140)."""
        self.assert_refused({"userFlow": "PUSH_MESSAGE"}, 400, 4140)
        self.assert_refused({"returnUrl": None}, 400, 4140)
        self.assert_refused({"userFlow": "CARDLESS"}, 400, fields=["userFlow"])

    def test_return_url_rules(self):
        """returnUrl must be https or a custom scheme (4090); loopback http is ok."""
        for bad in ("http://shop.example.com/return", "javascript:alert(1)", "x"):
            with self.subTest(url=bad):
                self.assert_refused({"returnUrl": bad}, 400, 4090)
        for reference, good in (
            ("inv-2026-00002-1", "myapp://paid"),
            ("inv-2026-00003-1", "http://127.0.0.1:8069/payment/vipps/return"),
            ("inv-2026-00004-1", "http://localhost/return"),
        ):
            with self.subTest(url=good):
                self.new_payment(reference, returnUrl=good)

    def test_receipt_url_rules(self):
        """receiptUrl follows the URL rule and excludes receipt."""
        self.assert_refused({"receiptUrl": "ftp://x.example.com/r.pdf"}, 400, 4090)
        both = {"receipt": RECEIPT, "receiptUrl": "https://x.example.com/r.pdf"}
        self.assert_refused(both, 400, fields=["receipt", "receiptUrl"])

    def test_expires_at_only_with_push_or_qr(self):
        """expiresAt with WEB_REDIRECT is refused; its format is checked."""
        self.assert_refused(
            {"expiresAt": _in(days=2), "receipt": RECEIPT}, 400, fields=["expiresAt"]
        )
        self.assert_refused(
            {**PUSH, "expiresAt": "2026-09-15", "receipt": RECEIPT},
            400,
            fields=["expiresAt"],
        )

    def test_expires_at_window(self):
        """expiresAt must be > 10 minutes (6120) and <= 60 days ahead (6110)."""
        self.assert_refused(
            {**PUSH, "expiresAt": _in(minutes=5), "receipt": RECEIPT}, 400, 6120
        )
        self.assert_refused(
            {**PUSH, "expiresAt": _in(days=61), "receipt": RECEIPT}, 400, 6110
        )
        self.new_payment(**PUSH, expiresAt=_in(days=59), receipt=RECEIPT)

    def test_long_living_needs_order_details(self):
        """expiresAt without receipt or receiptUrl gives 6130."""
        self.assert_refused({**PUSH, "expiresAt": _in(days=2)}, 400, 6130)
        self.new_payment(
            **PUSH, expiresAt=_in(days=2), receiptUrl="https://x.example.com/inv/1"
        )

    def test_push_not_allowed_gives_5080(self):
        """A sales unit without PUSH_MESSAGE approval gets 5080 (403)."""
        self.emu.update_merchant(push_allowed=False)
        self.assert_refused(PUSH, 403, 5080)
        self.new_payment()

    def test_long_living_not_approved_gives_5050(self):
        """long_living_max_days=0 means not approved: 5050 (403)."""
        self.emu.update_merchant(long_living_max_days=0)
        self.assert_refused(
            {**PUSH, "expiresAt": _in(days=2), "receipt": RECEIPT}, 403, 5050
        )

    def test_payment_description_length(self):
        """paymentDescription is 3-100 characters."""
        for bad in ("ab", "x" * 101):
            with self.subTest(length=len(bad)):
                self.assert_refused(
                    {"paymentDescription": bad}, 400, fields=["paymentDescription"]
                )

    def test_metadata_limits(self):
        """metadata: <= 5 pairs (4100), keys <= 100 (4120), values <= 500 (4130)."""
        self.assert_refused({"metadata": {str(i): "v" for i in range(6)}}, 400, 4100)
        self.assert_refused({"metadata": {"k" * 101: "v"}}, 400, 4120)
        self.assert_refused({"metadata": {"k": "v" * 501}}, 400, 4130)
        self.assert_refused({"metadata": {"k": 1}}, 400, fields=["metadata.k"])

    def test_metadata_duplicate_keys_give_4110(self):
        """A JSON object with a repeated metadata key gives 4110."""
        raw = (
            b'{"amount":{"currency":"NOK","value":1000},"paymentMethod":{"type":"WALLET"},'
            b'"reference":"inv-2026-00001-1","userFlow":"WEB_REDIRECT",'
            b'"returnUrl":"https://x.example.com/r","metadata":{"a":"1","a":"2"}}'
        )
        headers = {"Content-Type": "application/json"}
        answer = self.call(
            "POST",
            "/epayment/v1/payments",
            key=self.new_key(),
            headers=headers,
            raw=raw,
        )
        self.assertEqual((answer.status, answer.code), (400, 4110))

    def test_profile_scope_values(self):
        """Unknown scopes give 4080; nin without permission gives 5030."""
        self.assert_refused({"profile": {"scope": "phoneNumber shoeSize"}}, 400, 4080)
        self.assert_refused({"profile": {"scope": "nin"}}, 403, 5030)
        self.new_payment(profile={"scope": "name phoneNumber"})

    def test_receipt_schema(self):
        """Receipt rules: taxRate range, quantity, tax field, totals, currency."""
        cases = [
            (_line(taxRate=10001), "receipt.orderLines[0].taxRate"),
            (
                _line(unitInfo={"unitPrice": 125000, "quantity": "1,5"}),
                "receipt.orderLines[0].unitInfo.quantity",
            ),
            (_line(taxPercentage=25), "receipt.orderLines[0].taxRate"),
            (_line(totalTaxAmount=24000), "receipt.orderLines[0].totalAmount"),
            (
                {"orderLines": RECEIPT["orderLines"], "bottomLine": {}},
                "receipt.bottomLine.currency",
            ),
        ]
        for receipt, field in cases:
            with self.subTest(field=field):
                self.assert_refused({"receipt": receipt}, 400, fields=[field])

    def test_receipt_must_add_up_to_the_amount(self):
        """The order lines must add up to amount.value (emulator rule)."""
        answer = self.assert_refused(
            {"amount": {"currency": "NOK", "value": 130000}, "receipt": RECEIPT}, 400
        )
        self.assertEqual(answer.fields, ["receipt.orderLines"])
        self.new_payment(receipt=RECEIPT)

    def test_idempotency_key_header_rules(self):
        """Idempotency-Key is required and at most 50 characters."""
        body = self.payment_body()
        for key in (None, "k" * 51):
            with self.subTest(key=key):
                answer = self.call("POST", "/epayment/v1/payments", body, key=key)
                self.assertEqual(answer.status, 400)
                self.assertEqual(answer.fields, ["Idempotency-Key"])

    def test_system_headers_are_limited_to_30_characters(self):
        """A Vipps-System-* header over 30 characters is a 400."""
        answer = self.call(
            "POST",
            "/epayment/v1/payments",
            self.payment_body(),
            key=self.new_key(),
            headers={"Vipps-System-Plugin-Name": "p" * 31},
        )
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.fields, ["Vipps-System-Plugin-Name"])

    def test_duplicate_reference_gives_4150(self):
        """A second payment with a used reference gives 409 with 4150."""
        self.new_payment()
        answer = self.new_payment(expect=409)
        self.assertEqual(answer.code, 4150)

    def test_body_must_be_json(self):
        """An unparseable body is a 400; a non-JSON content type a 415."""
        answer = self.call(
            "POST",
            "/epayment/v1/payments",
            key=self.new_key(),
            raw=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(answer.status, 400)
        answer = self.call(
            "POST",
            "/epayment/v1/payments",
            key=self.new_key(),
            raw=b"a=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(answer.status, 415)


class TestDanishMerchant(EmulatorCase):
    """A MobilePay (DKK) sales unit."""

    options: ClassVar[dict] = {"currency": "DKK"}

    def test_dkk_merchant_takes_one_ore_and_refuses_nok(self):
        """DKK allows 1 øre; NOK is refused with 5040."""
        self.new_payment(amount={"currency": "DKK", "value": 1})
        answer = self.new_payment("inv-2026-00002-1", expect=400)
        self.assertEqual(answer.code, 5040)
