"""The pages that stand in for the Vipps MobilePay app."""

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
