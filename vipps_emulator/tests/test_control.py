"""The /_emulator control API and the command line."""

import os
import pathlib
import subprocess
import sys
import unittest

from .. import Emulator
from .common import PHONE, EmulatorCase, Receiver, send

REF = "inv-2026-00001-1"
ROOT = pathlib.Path(__file__).resolve().parents[2]


class TestControlApi(EmulatorCase):
    """Controls over HTTP, for tests in other processes."""

    def control(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        return send(method, f"{self.emu.url}/_emulator{path}", body, headers)

    def test_health_describes_without_secrets(self):
        """GET /_emulator/health lists merchants without secrets."""
        answer = self.control("GET", "/health")
        self.assertEqual(answer.json["status"], "ok")
        self.assertEqual(
            answer.json["merchants"][0]["merchant_serial_number"], "123456"
        )
        self.assertNotIn("emulator-client-secret", answer.raw.decode())

    def test_clock_advance_expires_payments(self):
        """POST /_emulator/clock/advance moves time and expires payments."""
        self.new_payment()
        answer = self.control("POST", "/clock/advance", {"seconds": 601})
        self.assertEqual(answer.status, 200)
        payment = self.control("GET", f"/payments/{REF}").json
        self.assertEqual(payment["state"], "EXPIRED")

    def test_clock_set_freezes_time(self):
        """POST /_emulator/clock/set pins the clock."""
        answer = self.control("POST", "/clock/set", {"time": "2026-05-01T10:00:00Z"})
        self.assertEqual(
            answer.json, {"now": "2026-05-01T10:00:00.000Z", "frozen": True}
        )

    def test_approve_reject_and_inbox(self):
        """Payments can be approved, rejected and listed per phone."""
        self.emu.update_merchant(approved=True)
        self.new_payment(userFlow="PUSH_MESSAGE", customer={"phoneNumber": PHONE})
        self.new_payment("inv-2026-00002-1")
        inbox = self.control("GET", f"/inbox?phone={PHONE}").json
        self.assertEqual([p["reference"] for p in inbox["payments"]], [REF])
        approved = self.control("POST", f"/payments/{REF}/approve", {}).json
        self.assertEqual(approved["state"], "AUTHORIZED")
        rejected = self.control("POST", "/payments/inv-2026-00002-1/reject").json
        self.assertEqual(rejected["state"], "ABORTED")
        again = self.control("POST", f"/payments/{REF}/approve", {})
        self.assertEqual(again.status, 400)
        self.assertEqual(self.control("GET", "/payments/nope-0001").status, 404)

    def test_merchant_settings_can_change(self):
        """POST /_emulator/merchants/<msn> approves the sales unit until reset."""
        push = {"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": PHONE}}
        self.assertEqual(self.new_payment(**push, expect=403).code, 5080)
        answer = self.control("POST", "/merchants/123456", {"approved": True})
        self.assertTrue(answer.json["push_allowed"])
        self.assertEqual(answer.json["long_living_max_days"], 60)
        self.assertTrue(answer.json["approved"])
        self.new_payment(**push)
        answer = self.control("POST", "/merchants/123456", {"push_allowed": False})
        self.assertEqual(
            (answer.json["push_allowed"], answer.json["approved"]), (False, False)
        )
        self.control("POST", "/reset")
        self.assertEqual(
            self.new_payment("inv-2026-00002-1", **push, expect=403).code, 5080
        )

    def test_webhook_faults_and_deliveries(self):
        """Delivery faults and the delivery log are reachable over HTTP."""
        receiver = Receiver()
        self.addCleanup(receiver.close)
        self.emu.register_webhook(receiver.url)
        self.control("POST", "/webhook-faults", {"mode": "drop", "count": 1})
        self.authorized()
        self.assertTrue(
            self.control("POST", "/deliveries/wait", {"timeout": 5}).json["idle"]
        )
        entries = self.control("GET", f"/deliveries?reference={REF}").json["entries"]
        self.assertEqual([e["outcome"] for e in entries], ["dropped", "delivered"])
        hooks = self.control("GET", "/webhooks").json["webhooks"]
        self.assertIn("secret", hooks[0])

    def test_bad_input_is_400(self):
        """Unknown fault options and bad JSON answer 400."""
        self.assertEqual(
            self.control("POST", "/faults", {"operation": "x"}).status, 400
        )
        answer = send(
            "POST",
            f"{self.emu.url}/_emulator/clock/advance",
            raw=b"{",
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(answer.status, 400)

    def test_reset_forgets_everything(self):
        """POST /_emulator/reset clears payments, logs and webhooks."""
        self.new_payment()
        self.emu.register_webhook("https://example.com/hook")
        self.control("POST", "/reset")
        self.assertEqual(self.emu.payments, {})
        self.assertEqual(self.emu.requests, [])
        self.assertEqual(self.emu.webhooks(), [])


class TestCommandLine(unittest.TestCase):
    """python3 -m vipps_emulator."""

    def test_module_starts_prints_url_and_stops_on_sigterm(self):
        """The CLI prints its URL first, applies --market, exits 0 on SIGTERM."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vipps_emulator",
                "--port",
                "0",
                "--currency",
                "EUR",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = process.stdout.readline().strip()
            self.assertTrue(url.startswith("http://127.0.0.1:"), url)
            answer = send("GET", url + "/_emulator/health")
            self.assertEqual(answer.json["merchants"][0]["currency"], "EUR")
        finally:
            process.terminate()
            self.assertEqual(process.wait(timeout=5), 0)
            process.stdout.close()


class TestLifecycle(unittest.TestCase):
    """Starting and stopping an in-process emulator."""

    def test_stop_then_start_again_keeps_serving(self):
        """An emulator can be stopped and started again, webhooks included."""
        emu = Emulator(port=0, approved=True, webhook_retry_delays=(0.05,))
        with emu:
            first = emu.url
        receiver = Receiver()
        self.addCleanup(receiver.close)
        with emu:
            self.assertEqual(emu.url, first)
            emu.register_webhook(receiver.url)
            token = emu.issue_token()
            answer = send(
                "POST",
                emu.url + "/epayment/v1/payments",
                {
                    "amount": {"currency": "NOK", "value": 1000},
                    "paymentMethod": {"type": "WALLET"},
                    "reference": REF,
                    "userFlow": "PUSH_MESSAGE",
                    "customer": {"phoneNumber": PHONE},
                },
                {
                    "Authorization": f"Bearer {token}",
                    "Ocp-Apim-Subscription-Key": "emulator-subscription-key",
                    "Merchant-Serial-Number": "123456",
                    "Idempotency-Key": "restart-1",
                },
            )
            self.assertEqual(answer.status, 201)
            self.assertEqual(receiver.wait(1)[0]["json"]["name"], "CREATED")
        with self.assertRaises(RuntimeError):
            emu.url  # noqa: B018 - the property raises once stopped
