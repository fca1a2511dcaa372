"""Capture errors injected per payment: 6260 (funds unavailable) and 6280
(capture failed, try again later)."""

from .common import EmulatorCase, send

REF = "inv-2026-00001-1"


class TestCaptureErrors(EmulatorCase):
    """The payment's state stays consistent around injected capture errors."""

    def amounts(self):
        aggregate = self.get()["aggregate"]
        return {
            name: aggregate[f"{name}Amount"]["value"]
            for name in ("authorized", "captured", "refunded", "cancelled")
        }

    def event_names(self):
        return [event.name for event in self.emu.payments[REF].events]

    def test_6280_then_the_same_key_succeeds(self):
        """6280 moves nothing; the retry with the same key captures once."""
        self.authorized()
        self.emu.capture_error(REF, 6280)
        failed = self.modify("capture", 125000, key="cap-1")
        self.assertEqual((failed.status, failed.code), (400, 6280))
        self.assertEqual(self.get()["state"], "AUTHORIZED")
        self.assertEqual(self.amounts()["captured"], 0)
        self.assertEqual(self.event_names(), ["CREATED", "AUTHORIZED"])
        retried = self.modify("capture", 125000, key="cap-1")
        self.assertEqual(retried.status, 200)
        again = self.modify("capture", 125000, key="cap-1")
        self.assertEqual(again.json, retried.json)
        self.assertEqual(self.amounts()["captured"], 125000)
        self.assertEqual(self.event_names(), ["CREATED", "AUTHORIZED", "CAPTURED"])

    def test_6280_for_several_attempts(self):
        """count=2: two attempts fail, the third (same key) succeeds."""
        self.authorized()
        self.emu.capture_error(REF, 6280, count=2)
        codes = [self.modify("capture", 1000, key="cap-1").code for _ in range(3)]
        self.assertEqual(codes, [6280, 6280, None])
        self.assertEqual(self.amounts()["captured"], 1000)

    def test_6260_lasts_and_nothing_more_can_be_captured(self):
        """6260: every capture fails, new key or not; the aggregate is unchanged."""
        self.authorized()
        self.modify("capture", 25000)
        self.emu.capture_error(REF, 6260)
        for key in ("cap-2", "cap-3", "cap-2"):
            answer = self.modify("capture", 1000, key=key)
            self.assertEqual((answer.status, answer.code), (400, 6260), key)
        self.assertEqual(
            self.amounts(),
            {"authorized": 125000, "captured": 25000, "refunded": 0, "cancelled": 0},
        )
        # What was captured can be refunded; the rest can be released.
        self.assertEqual(self.modify("refund", 25000).status, 200)
        cancelled = self.modify("cancel")
        self.assertEqual(cancelled.status, 200)
        self.assertEqual(self.amounts()["cancelled"], 100000)
        self.assertEqual(self.modify("capture", 1000).code, 6070)

    def test_6260_for_one_attempt_keeps_its_key(self):
        """Funds available again later: a new key captures; the old key replays."""
        self.authorized()
        self.emu.capture_error(REF, 6260, count=1)
        self.assertEqual(self.modify("capture", 1000, key="cap-1").code, 6260)
        self.assertEqual(self.modify("capture", 1000, key="cap-1").code, 6260)
        self.assertEqual(self.modify("capture", 1000, key="cap-2").status, 200)

    def test_checks_of_the_request_come_first(self):
        """Before approval it is still 6080, and the injected error waits."""
        self.new_payment()
        self.emu.capture_error(REF, 6280)
        self.assertEqual(self.modify("capture", 1000).code, 6080)
        self.emu.approve(REF)
        self.assertEqual(self.modify("capture", 1000).code, 6280)
        self.assertEqual(self.modify("capture", 1000).status, 200)

    def test_status_can_be_set(self):
        """status=503 answers 6280 with a 503 instead of a 400."""
        self.authorized()
        self.emu.capture_error(REF, 6280, status=503)
        answer = self.modify("capture", 1000, key="cap-1")
        self.assertEqual((answer.status, answer.code), (503, 6280))
        self.assertEqual(self.modify("capture", 1000, key="cap-1").status, 200)

    def test_clear_and_bad_input(self):
        """clear_capture_errors() removes them; unknown codes are refused."""
        self.authorized()
        self.emu.capture_error(REF, 6260)
        self.emu.clear_capture_errors(REF)
        self.assertEqual(self.modify("capture", 1000).status, 200)
        with self.assertRaises(ValueError):
            self.emu.capture_error(REF, 6100)
        with self.assertRaises(ValueError):
            self.emu.capture_error(REF, 6280, count=0)

    def test_control_api(self):
        """POST/DELETE /_emulator/payments/<ref>/capture-error."""
        self.authorized()
        url = f"{self.emu.url}/_emulator/payments/{REF}/capture-error"
        answer = send("POST", url, {"code": 6280, "count": 1})
        self.assertEqual(answer.status, 200)
        self.assertEqual(
            answer.json["captureErrors"],
            [{"code": 6280, "remaining": 1, "status": None}],
        )
        answer = send("POST", url, {"code": 6260, "count": None})
        self.assertEqual(answer.json["captureErrors"][1]["remaining"], None)
        self.assertEqual(self.modify("capture", 1000).code, 6280)
        self.assertEqual(self.modify("capture", 1000).code, 6260)
        cleared = send("DELETE", url, headers={"Content-Type": "application/json"})
        self.assertEqual(cleared.json["captureErrors"], [])
        self.assertEqual(self.modify("capture", 1000).status, 200)
        self.assertEqual(send("POST", url, {"code": 1234}).status, 400)
