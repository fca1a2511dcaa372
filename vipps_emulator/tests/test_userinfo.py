"""Profile sharing: sub on the payment and the merchant Userinfo call."""

from .common import PHONE, EmulatorCase

REF = "inv-2026-00001-1"


class TestUserinfo(EmulatorCase):
    """GET /vipps-userinfo-api/userinfo/{sub}."""

    def test_phone_number_after_consent(self):
        """After approval with scope phoneNumber, sub gives the phone number."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.assertEqual(self.get()["profile"], {})
        self.emu.approve(REF, phone=PHONE)
        payment = self.get()
        sub = payment["profile"]["sub"]
        self.assertEqual(payment["userDetails"]["mobileNumber"], PHONE)
        answer = self.call("GET", f"/vipps-userinfo-api/userinfo/{sub}")
        self.assertEqual(answer.status, 200)
        self.assertEqual(
            answer.json,
            {"sub": sub, "phone_number": PHONE, "phone_number_verified": True},
        )

    def test_sub_is_stable_per_sales_unit(self):
        """The same person gets the same sub on a second payment."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.new_payment("inv-2026-00002-1", profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        self.emu.approve("inv-2026-00002-1", phone=PHONE)
        self.assertEqual(
            self.get()["profile"]["sub"], self.get("inv-2026-00002-1")["profile"]["sub"]
        )

    def test_no_scope_means_no_sub(self):
        """Without profile.scope, no sub is set."""
        self.authorized()
        self.assertEqual(self.get()["profile"], {})
        self.assertNotIn("userDetails", self.get())

    def test_unknown_sub_is_404(self):
        """An unknown sub is a 404."""
        answer = self.call("GET", "/vipps-userinfo-api/userinfo/not-a-sub")
        self.assertEqual(answer.status, 404)

    def test_data_expires_after_168_hours(self):
        """After 7 days the claims read [Expired]."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        sub = self.emu.payments[REF].sub
        self.emu.advance(169 * 3600)
        self._token = None
        answer = self.call("GET", f"/vipps-userinfo-api/userinfo/{sub}")
        self.assertEqual(answer.json["phone_number"], "[Expired]")

    def test_refused_consent_aborts(self):
        """Approving without consent aborts the payment."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE, consent=False)
        self.assertEqual(self.get()["state"], "ABORTED")

    def test_subscription_key_is_optional_here(self):
        """Userinfo works without Ocp-Apim-Subscription-Key."""
        self.new_payment(profile={"scope": "phoneNumber name"})
        self.emu.approve(REF, phone=PHONE)
        sub = self.emu.payments[REF].sub
        answer = self.call(
            "GET",
            f"/vipps-userinfo-api/userinfo/{sub}",
            headers={"Ocp-Apim-Subscription-Key": None, "Merchant-Serial-Number": None},
        )
        self.assertEqual(answer.status, 200)
        self.assertIn("family_name", answer.json)
