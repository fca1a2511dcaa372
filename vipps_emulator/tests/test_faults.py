"""Fault injection on API calls, and the request log."""

import socket
import time
import urllib.error

from .common import EmulatorCase, send

REF = "inv-2026-00001-1"


class TestFaults(EmulatorCase):
    """inject_fault() and its effects."""

    def test_status_fault_fails_without_processing(self):
        """A 503 fault answers a problem JSON and creates nothing."""
        self.emu.inject_fault("createPayment", status=503)
        answer = self.new_payment(expect=503)
        self.assertEqual(answer.json["status"], 503)
        self.assertNotIn(REF, self.emu.payments)
        self.new_payment()  # the fault is used up

    def test_fault_with_code_and_count(self):
        """count=2 fails two calls with the given code, the third passes."""
        self.authorized()
        self.emu.inject_fault("capturePayment", count=2, status=409, code=6160)
        self.assertEqual(self.modify("capture", 100).code, 6160)
        self.assertEqual(self.modify("capture", 100).code, 6160)
        self.assertEqual(self.modify("capture", 100).status, 200)

    def test_processed_fault_loses_only_the_answer(self):
        """processed=True captures, loses the answer; the same-key retry replays it."""
        self.authorized()
        self.emu.inject_fault("capturePayment", status=500, processed=True)
        self.assertEqual(self.modify("capture", 1000, key="cap-1").status, 500)
        self.assertEqual(self.emu.payments[REF].captured, 1000)
        retry = self.modify("capture", 1000, key="cap-1")
        self.assertEqual(retry.status, 200)
        self.assertEqual(self.emu.payments[REF].captured, 1000)

    def test_timeout_fault_hangs_past_the_client_timeout(self):
        """A timeout fault makes the client time out; nothing is created."""
        self.emu.inject_fault("createPayment", timeout=True, hang_seconds=0.5)
        started = time.monotonic()
        with self.assertRaises((TimeoutError, socket.timeout, urllib.error.URLError)):
            self.call(
                "POST",
                "/epayment/v1/payments",
                self.payment_body(),
                key="create-1",
                timeout=0.2,
            )
        self.assertLess(time.monotonic() - started, 0.45)
        self.assertNotIn(REF, self.emu.payments)

    def test_processed_timeout_creates_then_drops_the_answer(self):
        """A processed timeout creates the payment; the retry replays 201."""
        self.emu.inject_fault(
            "createPayment", timeout=True, processed=True, hang_seconds=0.3
        )
        body = self.payment_body()
        with self.assertRaises((TimeoutError, socket.timeout, urllib.error.URLError)):
            self.call("POST", "/epayment/v1/payments", body, key="k-1", timeout=0.1)
        self.assertIn(REF, self.emu.payments)
        retry = self.call("POST", "/epayment/v1/payments", body, key="k-1")
        self.assertEqual(retry.status, 201)

    def test_disconnect_fault_closes_the_connection(self):
        """A disconnect fault closes the connection without an answer."""
        self.new_payment()
        self.emu.inject_fault("getPayment", disconnect=True)
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.call("GET", f"/epayment/v1/payments/{REF}")
        self.assertEqual(self.get()["state"], "CREATED")

    def test_latency_fault_delays_the_answer(self):
        """A latency fault delays the answer but keeps it correct."""
        self.new_payment()
        self.emu.inject_fault("getPayment", latency=0.2)
        started = time.monotonic()
        self.assertEqual(self.get()["state"], "CREATED")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)

    def test_wildcard_and_429(self):
        """'*' matches any operation; 429 carries Retry-After."""
        self.token()
        self.emu.inject_fault("*", status=429)
        answer = self.call("GET", "/webhooks/v1/webhooks")
        self.assertEqual(answer.status, 429)
        self.assertEqual(answer.headers["Retry-After"], "1")

    def test_unknown_operation_is_refused(self):
        """inject_fault rejects an unknown operation name."""
        with self.assertRaises(ValueError):
            self.emu.inject_fault("capture", status=500)

    def test_control_api_injects_faults(self):
        """POST /_emulator/faults works like inject_fault()."""
        answer = send(
            "POST",
            self.emu.url + "/_emulator/faults",
            {"operation": "getPayment", "status": 502},
        )
        self.assertEqual(answer.status, 201)
        self.new_payment()
        self.assertEqual(self.call("GET", f"/epayment/v1/payments/{REF}").status, 502)


class TestRequestLog(EmulatorCase):
    """The request log."""

    def test_every_api_call_is_logged(self):
        """The log has operation, method, path, status, key and reference."""
        self.new_payment()
        self.modify("capture", 100, key="cap-1")
        self.emu.inject_fault("getPayment", status=503)
        self.call("GET", f"/epayment/v1/payments/{REF}")
        log = self.emu.requests
        self.assertEqual(
            [e["operation"] for e in log],
            ["accessToken", "createPayment", "capturePayment", "getPayment"],
        )
        capture = log[2]
        self.assertEqual(capture["status"], 400)
        self.assertEqual(capture["idempotencyKey"], "cap-1")
        self.assertEqual(capture["reference"], REF)
        self.assertEqual(capture["path"], f"/epayment/v1/payments/{REF}/capture")
        self.assertEqual(log[3]["fault"], "status 503")
        self.assertEqual(log[1]["reference"], REF)

    def test_log_holds_no_secrets(self):
        """Tokens and client secrets never appear in the request log."""
        self.new_payment()
        text = repr(self.emu.requests)
        self.assertNotIn(self.token(), text)
        self.assertNotIn("emulator-client-secret", text)

    def test_control_api_filters_the_log(self):
        """GET /_emulator/requests?operation=... filters entries."""
        self.new_payment()
        self.get()
        answer = send("GET", self.emu.url + "/_emulator/requests?operation=getPayment")
        self.assertEqual(len(answer.json["entries"]), 1)
        self.assertEqual(answer.json["entries"][0]["status"], 200)

    def test_unknown_path_is_404_problem(self):
        """An unknown path is a 404; a wrong method a 405 with Allow."""
        self.assertEqual(self.call("GET", "/epayment/v2/payments").status, 404)
        answer = self.call("DELETE", "/epayment/v1/payments")
        self.assertEqual(answer.status, 405)
        self.assertEqual(answer.headers["Allow"], "POST")
