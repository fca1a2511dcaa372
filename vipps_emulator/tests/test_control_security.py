"""The control API refuses what a web page or another machine could send, and
every path limits the size of request bodies."""

import base64
import http.client
import urllib.parse
from email.message import Message
from typing import ClassVar

from .. import api, control
from ..config import IMAGE_BODY_LIMIT
from .common import PHONE, EmulatorCase, send

JSON = {"Content-Type": "application/json"}
REF = "inv-2026-00001-1"


def _request(client, method="GET", headers=None):
    message = Message()
    for name, value in (headers or {}).items():
        message[name] = value
    return api.Request(method, "/_emulator/health", {}, message, b"", client=client)


class TestForgedControlRequests(EmulatorCase):
    """What a web page in the developer's browser could send is refused."""

    def reset_with(self, **headers):
        """POST /_emulator/reset with ``headers``; True if a payment survived."""
        if not self.emu.payments:
            self.new_payment()
        answer = send(
            "POST", f"{self.emu.url}/_emulator/reset", raw=b"{}", headers=headers
        )
        return answer, bool(self.emu.payments)

    def test_write_needs_json_content_type(self):
        """A form post or a body-less fetch (no preflight) is refused with 415."""
        for headers in (
            {},
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/x-www-form-urlencoded"},
        ):
            with self.subTest(headers=headers):
                answer, survived = self.reset_with(**headers)
                self.assertEqual(answer.status, 415)
                self.assertIn("application/json", answer.json["error"])
                self.assertTrue(survived)
        answer, survived = self.reset_with(**JSON)
        self.assertEqual(answer.status, 200)
        self.assertFalse(survived)

    def test_foreign_origin_is_refused(self):
        """An Origin other than the emulator's own is refused (403)."""
        for origin in ("https://evil.example.com", "null", "http://localhost:1"):
            with self.subTest(origin=origin):
                answer, survived = self.reset_with(**JSON, Origin=origin)
                self.assertEqual(answer.status, 403)
                self.assertTrue(survived)
        answer, _ = self.reset_with(**JSON, Origin=self.emu.url)
        self.assertEqual(answer.status, 200)

    def test_cross_site_fetch_metadata_is_refused(self):
        """Sec-Fetch-Site cross-site or same-site (another port) is refused."""
        for site in ("cross-site", "same-site"):
            with self.subTest(site=site):
                answer, _ = self.reset_with(**JSON, **{"Sec-Fetch-Site": site})
                self.assertEqual(answer.status, 403)
        answer, _ = self.reset_with(**JSON, **{"Sec-Fetch-Site": "none"})
        self.assertEqual(answer.status, 200)

    def test_foreign_host_is_refused(self):
        """A Host that is not the emulator (DNS rebinding) is refused, GET too."""
        url = f"{self.emu.url}/_emulator/webhooks"
        self.emu.register_webhook("https://example.com/hook")
        answer = send("GET", url, headers={"Host": f"evil.example:{self.emu.port}"})
        self.assertEqual(answer.status, 403)
        self.assertNotIn(b"secret", answer.raw)
        for host in (f"localhost:{self.emu.port}", f"127.0.0.1:{self.emu.port}"):
            with self.subTest(host=host):
                self.assertEqual(send("GET", url, headers={"Host": host}).status, 200)

    def test_existing_callers_still_work(self):
        """The callers of tools/dev.py and the SDK check: JSON on every call."""
        for method, path, body, status in (
            ("GET", "/health", None, 200),
            ("DELETE", "/requests", None, 200),
            ("POST", "/webhook-faults", {"mode": "drop", "count": 1}, 201),
            ("GET", "/payments", None, 200),
            ("POST", "/deliveries/wait", {"timeout": 1}, 200),
        ):
            with self.subTest(path=path):
                answer = send(method, f"{self.emu.url}/_emulator{path}", body, JSON)
                self.assertEqual(answer.status, status)

    def test_app_pages_are_not_the_control_api(self):
        """The customer's browser posts forms to /app from anywhere."""
        self.new_payment()
        token = self.emu.payments[REF].token
        answer = send(
            "POST",
            f"{self.emu.url}/app/landing",
            raw=urllib.parse.urlencode(
                {"token": token, "phone": PHONE, "approve": "1"}
            ).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://shop.example.com",
                "Sec-Fetch-Site": "cross-site",
            },
            follow=False,
        )
        self.assertEqual(answer.status, 303)
        self.assertEqual(self.emu.payments[REF].state, "AUTHORIZED")


class TestLoopbackOnly(EmulatorCase):
    """Clients on other machines are refused unless allowed."""

    def test_remote_client_is_refused(self):
        """A client address off loopback gets 403; loopback ones pass."""
        self.assertEqual(control.refuse(self.emu, _request("192.0.2.10")).status, 403)
        for client in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
            with self.subTest(client=client):
                self.assertIsNone(control.refuse(self.emu, _request(client)))

    def test_remote_clients_can_be_allowed(self):
        """control_remote=True lets other machines in."""
        self.emu.settings.control_remote = True
        self.addCleanup(setattr, self.emu.settings, "control_remote", False)
        self.assertIsNone(control.refuse(self.emu, _request("192.0.2.10")))


class TestControlToken(EmulatorCase):
    """control_token: every control request carries X-Emulator-Token."""

    options: ClassVar[dict] = {"control_token": "s3cret-token"}

    def test_token_is_required(self):
        """Without or with a wrong token: 401; with it: 200."""
        url = f"{self.emu.url}/_emulator/health"
        self.assertEqual(send("GET", url).status, 401)
        wrong = {"X-Emulator-Token": "nope"}
        self.assertEqual(send("GET", url, headers=wrong).status, 401)
        right = {"X-Emulator-Token": "s3cret-token"}
        self.assertEqual(send("GET", url, headers=right).status, 200)

    def test_token_replaces_the_host_check(self):
        """With the token, a service name as Host (e.g. in Docker) is fine."""
        headers = {"X-Emulator-Token": "s3cret-token", "Host": "vipps-emulator:8123"}
        answer = send("GET", f"{self.emu.url}/_emulator/health", headers=headers)
        self.assertEqual(answer.status, 200)

    def test_the_api_itself_needs_no_token(self):
        """The Vipps API paths are unaffected."""
        self.new_payment()


class TestBodyLimit(EmulatorCase):
    """Request bodies above max_body_bytes (1 MiB) get 413, on every path."""

    def test_api_control_and_app_pages(self):
        """One byte over the limit: 413 (problem JSON on the API)."""
        big = b"{" + b" " * (1024 * 1024) + b"}"
        api_answer = self.call(
            "POST",
            "/epayment/v1/payments",
            raw=big,
            key=self.new_key(),
            headers=JSON,
        )
        self.assertEqual(api_answer.status, 413)
        self.assertEqual(api_answer.json["status"], 413)
        control_answer = send(
            "POST", f"{self.emu.url}/_emulator/reset", raw=big, headers=JSON
        )
        self.assertEqual(control_answer.status, 413)
        self.assertIn("error", control_answer.json)
        app_answer = send(
            "POST",
            f"{self.emu.url}/app/landing",
            raw=big,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(app_answer.status, 413)
        operations = {entry["operation"] for entry in self.emu.requests}
        self.assertEqual(operations, {"accessToken"})
        self.assertEqual(self.emu.payments, {})

    def test_at_the_limit_is_read(self):
        """A body of exactly 1 MiB is read (and then judged on its content)."""
        body = b"{" + b" " * (1024 * 1024 - 2) + b"}"
        answer = self.call(
            "POST", "/epayment/v1/payments", raw=body, key=self.new_key(), headers=JSON
        )
        self.assertEqual(answer.status, 400)

    def test_chunked_body_over_the_limit(self):
        """A chunked body is counted as it arrives."""
        connection = http.client.HTTPConnection("127.0.0.1", self.emu.port, timeout=5)
        self.addCleanup(connection.close)
        chunks = (b"x" * 65536 for _ in range(20))
        connection.request(
            "POST", "/_emulator/reset", body=chunks, headers=JSON, encode_chunked=True
        )
        self.assertEqual(connection.getresponse().status, 413)

    def test_a_2_mb_image_is_accepted(self):
        """Order Management images may be 2 MB (base64: about 2.8 MB of JSON)."""
        image = b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024 - 8)
        body = {
            "imageId": "logo-2mb",
            "src": base64.b64encode(image).decode(),
            "type": "base64",
        }
        answer = self.call("POST", "/order-management/v1/images", body)
        self.assertEqual(answer.status, 200, answer)
        too_big = {**body, "src": "A" * IMAGE_BODY_LIMIT}
        answer = self.call("POST", "/order-management/v1/images", too_big)
        self.assertEqual(answer.status, 413)
