"""Profile sharing: sub on the payment and the merchant Userinfo call."""

import datetime as dt
import time
from typing import ClassVar

from .common import PHONE, EmulatorCase

REF = "inv-2026-00001-1"
SUB_DELAY = 3.0  # the default Settings.sub_delay


class TestUserinfo(EmulatorCase):
    """GET /vipps-userinfo-api/userinfo/{sub}."""

    def test_phone_number_after_consent(self):
        """After approval with scope phoneNumber, sub gives the phone number."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.assertEqual(self.get()["profile"], {})
        self.emu.approve(REF, phone=PHONE)
        self.emu.advance(SUB_DELAY)
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
        self.emu.advance(SUB_DELAY)
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
        self.emu.advance(SUB_DELAY)
        sub = self.emu.payments[REF].sub
        answer = self.call(
            "GET",
            f"/vipps-userinfo-api/userinfo/{sub}",
            headers={"Ocp-Apim-Subscription-Key": None, "Merchant-Serial-Number": None},
        )
        self.assertEqual(answer.status, 200)
        self.assertIn("family_name", answer.json)


class TestSubWrittenLater(EmulatorCase):
    """profile.sub is written asynchronously, a little after approval."""

    def approved_with_scope(self):
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        return self.emu.payments[REF].sub

    def userinfo(self, sub):
        return self.call("GET", f"/vipps-userinfo-api/userinfo/{sub}")

    def test_get_payment_right_after_approval_lacks_sub(self):
        """Right after approval: AUTHORIZED, no sub, no userDetails, Userinfo 404."""
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        sub = self.approved_with_scope()
        payment = self.get()
        self.assertEqual(payment["state"], "AUTHORIZED")
        self.assertEqual(payment["profile"], {})
        self.assertNotIn("userDetails", payment)
        self.assertEqual(self.userinfo(sub).status, 404)
        # The control API shows when it will be there.
        snapshot = self.emu.payments[REF].snapshot()
        self.assertEqual(snapshot["sub"], sub)
        self.assertEqual(snapshot["profileReadyAt"], "2026-10-01T12:00:03.000Z")

    def test_sub_appears_after_the_delay_on_the_emulator_clock(self):
        """A frozen clock keeps it missing; advancing the clock writes it."""
        self.emu.set_time(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc))
        sub = self.approved_with_scope()
        self.emu.advance(SUB_DELAY - 0.5)
        self.assertEqual(self.get()["profile"], {})
        self.emu.advance(0.5)
        payment = self.get()
        self.assertEqual(payment["profile"], {"sub": sub})
        self.assertEqual(payment["userDetails"]["mobileNumber"], PHONE)
        self.assertEqual(self.userinfo(sub).json["phone_number"], PHONE)


class TestShortSubDelay(EmulatorCase):
    """On the running (real-time) clock the delay passes by itself."""

    options: ClassVar[dict] = {"sub_delay": 0.2}

    def test_sub_appears_after_waiting(self):
        """Missing at first, there after sub_delay seconds of real time."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        self.assertEqual(self.get()["profile"], {})
        time.sleep(0.25)
        self.assertIn("sub", self.get()["profile"])


class TestSubWrittenAtOnce(EmulatorCase):
    """sub_delay=0: sub on the very first read after approval."""

    options: ClassVar[dict] = {"sub_delay": 0}

    def test_sub_and_user_details_at_once(self):
        """With sub_delay=0 Get payment has sub and userDetails at once."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        payment = self.get()
        self.assertTrue(payment["profile"]["sub"])
        self.assertEqual(payment["userDetails"]["mobileNumber"], PHONE)


class TestUserDetailsAtOnce(EmulatorCase):
    """user_details_delayed=False: userDetails before sub is written."""

    options: ClassVar[dict] = {"user_details_delayed": False}

    def test_user_details_without_sub(self):
        """userDetails is there at once; profile.sub still comes later."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        payment = self.get()
        self.assertEqual(payment["profile"], {})
        self.assertEqual(payment["userDetails"]["mobileNumber"], PHONE)


class TestUserDetailsNotOnGet(EmulatorCase):
    """user_details_on_get=False: Get payment has profile.sub only, as the spec."""

    options: ClassVar[dict] = {"sub_delay": 0, "user_details_on_get": False}

    def test_sub_without_user_details(self):
        """The shared number is read from Userinfo by sub, not from Get payment."""
        self.new_payment(profile={"scope": "phoneNumber"})
        self.emu.approve(REF, phone=PHONE)
        payment = self.get()
        self.assertTrue(payment["profile"]["sub"])
        self.assertNotIn("userDetails", payment)
