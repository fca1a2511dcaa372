"""The ordinary sales unit (the default) and the approved one."""

import os
import subprocess
import sys
import unittest
from typing import ClassVar

from .. import APPROVED, ORDINARY, Emulator, Merchant
from .common import EmulatorCase, send
from .test_control import ROOT
from .test_create_validation import PUSH, RECEIPT, _in

LONG = {**PUSH, "receipt": RECEIPT}


class TestOrdinaryMerchant(EmulatorCase):
    """What every new sales unit gets from Vipps: refusals, not approvals."""

    def test_defaults_are_not_approved(self):
        """Merchant() is ordinary: no long-living payments, no PUSH_MESSAGE."""
        merchant = Merchant()
        self.assertEqual(merchant.long_living_max_days, 0)
        self.assertFalse(merchant.push_allowed)
        self.assertFalse(merchant.is_approved)
        self.assertEqual(
            {key: getattr(merchant, key) for key in ORDINARY},
            ORDINARY,
        )

    def test_push_message_gives_5080(self):
        """PUSH_MESSAGE is refused with 5080 (403); the link flow works."""
        answer = self.new_payment(**PUSH, expect=403)
        self.assertEqual(answer.code, 5080)
        self.new_payment()

    def test_expires_at_gives_5050(self):
        """expiresAt is refused with 5050, whatever the flow's other rules."""
        self.emu.update_merchant(push_allowed=True)
        answer = self.new_payment(**LONG, expiresAt=_in(days=2), expect=403)
        self.assertEqual(answer.code, 5050)

    def test_refusal_leaves_the_reference_free(self):
        """After 5080 the same reference can be sent as a link payment."""
        self.new_payment(**PUSH, expect=403)
        self.new_payment()
        self.assertEqual(self.emu.payments["inv-2026-00001-1"].flow, "WEB_REDIRECT")


class TestApprovedMerchant(EmulatorCase):
    """Emulator(approved=True): long-living payments and PUSH_MESSAGE allowed."""

    options: ClassVar[dict] = {"approved": True}

    def test_push_and_long_expiry_are_allowed(self):
        """PUSH_MESSAGE with expiresAt up to 60 days ahead is created."""
        self.new_payment(**LONG, expiresAt=_in(days=59, minutes=59))
        self.assertTrue(self.emu.merchant.is_approved)

    def test_beyond_the_maximum_gives_6110(self):
        """More than 60 days ahead is 6110."""
        answer = self.new_payment(**LONG, expiresAt=_in(days=60, minutes=5), expect=400)
        self.assertEqual(answer.code, 6110)

    def test_reset_keeps_the_start_settings(self):
        """An emulator started approved is approved again after reset()."""
        self.emu.update_merchant(approved=False)
        self.assertEqual(self.new_payment(**PUSH, expect=403).code, 5080)
        self.emu.reset()
        self.new_payment(**PUSH)


class TestApprovedVariants(unittest.TestCase):
    """Every way to ask for the approved sales unit."""

    def test_constant_class_method_and_keyword_agree(self):
        """APPROVED, Merchant.approved() and approved=True give the same unit."""
        self.assertEqual(APPROVED, {"long_living_max_days": 60, "push_allowed": True})
        self.assertEqual(Merchant(**APPROVED), Merchant.approved())
        self.assertTrue(Merchant.approved().is_approved)
        for options in ({"approved": True}, APPROVED):
            emu = Emulator(port=0, **options)
            self.assertEqual(emu.merchant, Merchant.approved())

    def test_explicit_fields_override_the_approval(self):
        """A Norwegian approved unit limited to one day: explicit fields win."""
        self.assertEqual(Merchant.approved(long_living_max_days=1).push_allowed, True)
        emu = Emulator(port=0, approved=True, long_living_max_days=1)
        self.assertEqual(emu.merchant.long_living_max_days, 1)
        self.assertTrue(emu.merchant.push_allowed)
        with self.assertRaises(ValueError):
            Emulator(port=0, approved="yes")

    def test_add_merchant_approved(self):
        """add_merchant(approved=True) adds an approved second sales unit."""
        emu = Emulator(port=0)
        other = emu.add_merchant(
            msn="654321",
            client_id="other-id",
            client_secret="other-secret",
            subscription_key="other-key",
            approved=True,
        )
        self.assertTrue(other.is_approved)
        self.assertFalse(emu.merchant.is_approved)

    def test_command_line_flag(self):
        """python3 -m vipps_emulator --approved starts an approved sales unit."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for flags, approved in (([], False), (["--approved"], True)):
            with self.subTest(flags=flags):
                process = subprocess.Popen(
                    [sys.executable, "-m", "vipps_emulator", "--port", "0", *flags],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    url = process.stdout.readline().strip()
                    merchant = send("GET", url + "/_emulator/health").json["merchants"]
                    self.assertEqual(merchant[0]["approved"], approved)
                    self.assertEqual(merchant[0]["push_allowed"], approved)
                finally:
                    process.terminate()
                    process.wait(timeout=5)
                    process.stdout.close()
