"""The pages that stand in for the Vipps MobilePay app."""

import datetime as dt
import re
import urllib.parse
from typing import ClassVar

from .common import PHONE, EmulatorCase, send

REF = "inv-2026-00001-1"
RETURN = "https://shop.example.com/payment/vipps/return?ref=1"


class TestLandingPage(EmulatorCase):
    """redirectUrl of a WEB_REDIRECT payment."""

    def landing(self, **changes):
        redirect = self.new_payment(returnUrl=RETURN, **changes).json["redirectUrl"]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)["token"][0]
        return redirect, token

    def post(self, path, fields):
        return send(
            "POST",
            self.emu.url + path,
            raw=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow=False,
        )

    def test_page_shows_merchant_amount_and_buttons(self):
        """The landing page shows merchant, amount, description and buttons."""
        redirect, _ = self.landing(profile={"scope": "phoneNumber"})
        page = send("GET", redirect)
        text = page.raw.decode()
        self.assertEqual(page.status, 200)
        self.assertIn("text/html", page.headers["Content-Type"])
        self.assertIn("Emulated Merchant AS", text)
        self.assertIn("1 250.00 NOK", text)
        self.assertIn("Invoice INV/2026/00001", text)
        for hook in ("name='approve'", "name='reject'", "id='phone'", "id='consent'"):
            self.assertIn(hook, text)

    def test_approve_redirects_to_return_url(self):
        """Approve authorizes and sends the browser to returnUrl (303)."""
        _, token = self.landing()
        answer = self.post(
            "/app/landing", {"token": token, "phone": PHONE, "approve": "1"}
        )
        self.assertEqual(answer.status, 303)
        self.assertEqual(answer.headers["Location"], RETURN)
        self.assertEqual(self.emu.payments[REF].state, "AUTHORIZED")
        self.assertEqual(self.emu.payments[REF].approved_phone, PHONE)

    def test_reject_aborts_and_redirects(self):
        """Reject aborts the payment and returns to the merchant."""
        _, token = self.landing()
        answer = self.post("/app/landing", {"token": token, "reject": "1"})
        self.assertEqual(answer.status, 303)
        self.assertEqual(self.emu.payments[REF].state, "ABORTED")

    def test_bad_phone_shows_an_error(self):
        """An invalid or unknown phone keeps the payment and shows #error."""
        _, token = self.landing()
        for phone in ("12345", "4790000000"):
            with self.subTest(phone=phone):
                answer = self.post(
                    "/app/landing", {"token": token, "phone": phone, "approve": "1"}
                )
                self.assertEqual(answer.status, 400)
                self.assertIn("id='error'", answer.raw.decode())
        self.assertEqual(self.emu.payments[REF].state, "CREATED")

    def test_unchecked_consent_aborts(self):
        """Approving without ticking consent aborts, as in the app."""
        _, token = self.landing(profile={"scope": "phoneNumber"})
        self.post("/app/landing", {"token": token, "phone": PHONE, "approve": "1"})
        self.assertEqual(self.emu.payments[REF].state, "ABORTED")

    def test_final_payment_shows_its_state(self):
        """A decided payment shows #status and a link back."""
        redirect, _ = self.landing()
        self.emu.approve(REF, phone=PHONE)
        text = send("GET", redirect).raw.decode()
        self.assertIn("id='status'", text)
        self.assertIn("AUTHORIZED", text)
        self.assertNotIn("name='approve'", text)

    def test_unknown_token_is_404(self):
        """An unknown token shows a 404 page."""
        self.assertEqual(send("GET", self.emu.url + "/app/landing?token=x").status, 404)


class TestInbox(EmulatorCase):
    """Push requests per phone (a sales unit approved for PUSH_MESSAGE)."""

    options: ClassVar[dict] = {"approved": True}

    def test_inbox_lists_push_requests_and_approves(self):
        """The inbox lists the phone's push request; Approve authorizes it."""
        self.new_payment(userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE})
        page = send("GET", f"{self.emu.url}/app/inbox?phone={PHONE}")
        text = page.raw.decode()
        self.assertIn(f"data-reference='{REF}'", text)
        self.assertIn(f"id='approve-{REF}'", text)
        token = self.emu.payments[REF].token
        answer = send(
            "POST",
            self.emu.url + "/app/inbox",
            raw=urllib.parse.urlencode(
                {"token": token, "phone": PHONE, "approve": "1"}
            ).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow=False,
        )
        self.assertEqual(answer.status, 303)
        self.assertIn(f"phone={PHONE}", answer.headers["Location"])
        self.assertEqual(self.emu.payments[REF].state, "AUTHORIZED")

    def test_other_phones_do_not_see_the_request(self):
        """Another phone's inbox is empty."""
        self.new_payment(userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE})
        text = send("GET", f"{self.emu.url}/app/inbox?phone=4798765432").raw.decode()
        self.assertIn("id='empty'", text)
        self.assertEqual(self.emu.inbox("4798765432"), [])


UTC = dt.timezone.utc


class TestBrandSwitch(EmulatorCase):
    """12 January 2027: MobilePay becomes Vipps in Denmark and Finland."""

    options: ClassVar[dict] = {"currency": "DKK"}

    def create_at(self, when, reference=REF, currency="DKK"):
        self.emu.set_time(when)
        self._token = None
        body = {"amount": {"currency": currency, "value": 1000}}
        return self.new_payment(reference, **body).json["redirectUrl"]

    def page_brand(self, url):
        text = send("GET", url).raw.decode()
        brand = re.search(r"<body data-brand='([^']+)'>", text).group(1)
        self.assertIn(f"<title>Pay with {brand}</title>", text)
        self.assertIn(f"<header id='brand'>{brand} ", text)
        return brand

    def test_mobilepay_until_midnight_in_copenhagen(self):
        """11 January: pay.mobilepay.dk and MobilePay; from 00:00 CET: Vipps."""
        before = dt.datetime(2027, 1, 11, 22, 59, 59, tzinfo=UTC)
        url = self.create_at(before)
        self.assertTrue(
            url.startswith(f"{self.emu.url}/app/landing/pay.mobilepay.dk?token="), url
        )
        self.assertEqual(self.page_brand(url), "MobilePay")
        health = send("GET", f"{self.emu.url}/_emulator/health").json
        self.assertEqual(health["merchants"][0]["brand"], "MobilePay")
        self.emu.advance(1)  # 2027-01-12 00:00 in Denmark
        # The page of the earlier payment now says Vipps; new payments go to
        # pay.vipps.dk.
        self.assertEqual(self.page_brand(url), "Vipps")
        later = self.create_at(self.emu.now(), "inv-2026-00002-1")
        self.assertIn("/app/landing/pay.vipps.dk?token=", later)
        health = send("GET", f"{self.emu.url}/_emulator/health").json
        self.assertEqual(health["merchants"][0]["landingHost"], "pay.vipps.dk")

    def test_finland_switches_at_its_own_midnight(self):
        """EUR: 22:00 UTC on 11 January is midnight in Helsinki."""
        self.emu.update_merchant(currency="EUR")
        url = self.create_at(
            dt.datetime(2027, 1, 11, 21, 59, tzinfo=UTC), currency="EUR"
        )
        self.assertIn("/app/landing/pay.mobilepay.fi?token=", url)
        self.assertEqual(self.page_brand(url), "MobilePay")
        self.emu.set_time(dt.datetime(2027, 1, 11, 22, 0, tzinfo=UTC))
        self.assertEqual(self.page_brand(url), "Vipps")
        later = self.create_at(self.emu.now(), "inv-2026-00002-1", currency="EUR")
        self.assertIn("/app/landing/pay.vipps.fi?token=", later)

    def test_norway_is_vipps_throughout(self):
        """NOK: pay.vipps.no and Vipps before and after the switch."""
        self.emu.update_merchant(currency="NOK")
        for when, reference in (
            (dt.datetime(2026, 6, 1, tzinfo=UTC), REF),
            (dt.datetime(2027, 6, 1, tzinfo=UTC), "inv-2026-00002-1"),
        ):
            url = self.create_at(when, reference, currency="NOK")
            self.assertIn("/app/landing/pay.vipps.no?token=", url)
            self.assertEqual(self.page_brand(url), "Vipps")

    def test_inbox_brand_follows_the_phone(self):
        """A Danish phone's app is MobilePay until the switch; a Norwegian one Vipps."""
        self.emu.set_time(dt.datetime(2026, 12, 1, tzinfo=UTC))
        inbox = f"{self.emu.url}/app/inbox?phone="
        brand = re.compile(r"data-brand='([^']+)'")
        danish = send("GET", inbox + "4512345678").raw.decode()
        self.assertEqual(brand.search(danish).group(1), "MobilePay")
        norwegian = send("GET", inbox + PHONE).raw.decode()
        self.assertEqual(brand.search(norwegian).group(1), "Vipps")
        self.emu.set_time(dt.datetime(2027, 1, 12, 12, 0, tzinfo=UTC))
        danish = send("GET", inbox + "4512345678").raw.decode()
        self.assertEqual(brand.search(danish).group(1), "Vipps")

    def test_the_date_is_a_setting(self):
        """brand_switch_date moves the switch (if Vipps moves it)."""
        self.emu.settings.brand_switch_date = "2027-03-01"
        self.addCleanup(setattr, self.emu.settings, "brand_switch_date", "2027-01-12")
        url = self.create_at(dt.datetime(2027, 2, 1, tzinfo=UTC))
        self.assertEqual(self.page_brand(url), "MobilePay")

    def test_the_plain_landing_path_still_works(self):
        """/app/landing?token=... (no host) serves the same page."""
        url = self.create_at(dt.datetime(2026, 12, 1, tzinfo=UTC))
        token = url.split("token=")[1]
        plain = f"{self.emu.url}/app/landing?token={token}"
        self.assertEqual(self.page_brand(plain), "MobilePay")
