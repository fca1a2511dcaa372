"""Access token endpoint and the credential checks on every API call."""

from typing import ClassVar

from .common import CLIENT_ID, CLIENT_SECRET, MSN, SUBSCRIPTION_KEY, EmulatorCase, send


class TestAccessToken(EmulatorCase):
    """POST /accesstoken/get."""

    def fetch(self, **headers):
        base = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
        }
        base.update(headers)
        base = {k: v for k, v in base.items() if v is not None}
        return send("POST", self.emu.url + "/accesstoken/get", headers=base)

    def test_token_response_uses_string_typed_numbers(self):
        """The token answer has the spec's fields, with numbers as strings."""
        answer = self.fetch()
        self.assertEqual(answer.status, 200)
        body = answer.json
        self.assertEqual(body["token_type"], "Bearer")
        for name in ("expires_in", "ext_expires_in", "expires_on", "not_before"):
            self.assertIsInstance(body[name], str, name)
        self.assertEqual(body["expires_in"], "3600")
        self.assertEqual(int(body["expires_on"]) - int(body["not_before"]), 3600)
        self.assertGreater(len(body["access_token"]), 1000)

    def test_wrong_client_secret_is_refused(self):
        """A wrong client_secret gives 401."""
        answer = self.fetch(client_secret="wrong")
        self.assertEqual(answer.status, 401)
        self.assertEqual(answer.json["error"], "unauthorized_client")

    def test_missing_or_unknown_subscription_key_is_refused(self):
        """A missing or unknown subscription key gives 401."""
        self.assertEqual(self.fetch(**{"Ocp-Apim-Subscription-Key": None}).status, 401)
        self.assertEqual(self.fetch(**{"Ocp-Apim-Subscription-Key": "x"}).status, 401)

    def test_missing_client_headers_is_bad_request(self):
        """Without client_id the request is a 400."""
        self.assertEqual(self.fetch(client_id=None).status, 400)

    def test_token_expires_with_the_clock(self):
        """A token stops working after its lifetime on the emulator clock."""
        self.new_payment()
        self.emu.advance(3601)
        answer = self.call("GET", "/epayment/v1/payments/inv-2026-00001-1")
        self.assertEqual(answer.status, 401)
        self.assertIn("expired", answer.json["detail"])


class TestShortTokenTtl(EmulatorCase):
    """The --token-ttl option."""

    options: ClassVar[dict] = {"token_ttl": 120}

    def test_token_ttl_option_sets_expires_in(self):
        """token_ttl sets expires_in and the real lifetime."""
        answer = send(
            "POST",
            self.emu.url + "/accesstoken/get",
            headers={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
            },
        )
        self.assertEqual(answer.json["expires_in"], "120")
        self._token = answer.json["access_token"]
        self.emu.advance(119)
        self.assertEqual(self.call("GET", "/webhooks/v1/webhooks").status, 200)
        self.emu.advance(2)
        self.assertEqual(self.call("GET", "/webhooks/v1/webhooks").status, 401)


class TestApiCredentials(EmulatorCase):
    """Bearer token, subscription key and MSN on API calls."""

    options: ClassVar[dict] = {}

    def test_missing_bearer_is_unauthorized(self):
        """Without 'Bearer' or without a token the call is a 401 problem."""
        for value in (None, self.token(), "Basic abc"):
            with self.subTest(authorization=value):
                answer = self.call(
                    "GET", "/webhooks/v1/webhooks", headers={"Authorization": value}
                )
                self.assertEqual(answer.status, 401)
                self.assertIn("traceId", answer.json)

    def test_unknown_token_is_unauthorized(self):
        """A made-up token gives 401."""
        answer = self.call(
            "GET", "/webhooks/v1/webhooks", headers={"Authorization": "Bearer abc.def"}
        )
        self.assertEqual(answer.status, 401)

    def test_wrong_subscription_key_is_unauthorized(self):
        """An unknown subscription key gives 401 even with a valid token."""
        answer = self.call(
            "GET",
            "/epayment/v1/payments/inv-2026-00001-1",
            headers={"Ocp-Apim-Subscription-Key": "not-the-key"},
        )
        self.assertEqual(answer.status, 401)

    def test_other_msn_is_forbidden(self):
        """A Merchant-Serial-Number that is not the token's gives 403."""
        answer = self.call(
            "GET",
            "/epayment/v1/payments/inv-2026-00001-1",
            headers={"Merchant-Serial-Number": "654321"},
        )
        self.assertEqual(answer.status, 403)

    def test_missing_msn_is_bad_request_on_epayment(self):
        """ePayment requires the Merchant-Serial-Number header."""
        answer = self.call(
            "GET",
            "/epayment/v1/payments/inv-2026-00001-1",
            headers={"Merchant-Serial-Number": None},
        )
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.fields, ["Merchant-Serial-Number"])

    def test_second_sales_unit_cannot_mix_credentials(self):
        """A token of one sales unit with another's subscription key gives 403."""
        self.emu.add_merchant(
            msn="7777",
            client_id="dk-id",
            client_secret="dk-secret",
            subscription_key="dk-key",
            currency="DKK",
        )
        answer = self.call(
            "GET",
            "/webhooks/v1/webhooks",
            headers={"Ocp-Apim-Subscription-Key": "dk-key"},
        )
        self.assertEqual(answer.status, 403)
        self.assertEqual(MSN, self.emu.merchant.msn)
