import json
import os
import subprocess
import sys
import textwrap
import uuid

from odoo.sql_db import db_connect
from odoo.tests import BaseCase, tagged
from odoo.tools import config

from .common import EMULATOR_CREDENTIALS, get_emulator

# Installs the addon into a copy of the template database, uninstalls it, and reports
# what is left. Runs in a separate Odoo process: uninstalling needs its own registry.
ROUND_TRIP = textwrap.dedent(
    """
    import json, sys, odoo
    from odoo.tools import config
    config.parse_config(["-c", sys.argv[1]])
    registry = odoo.modules.registry.Registry.new(sys.argv[2], update_module=True)
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        module = env["ir.module.module"].search([("name", "=", "payment_vipps")])
        module.button_immediate_install()
    with odoo.modules.registry.Registry(sys.argv[2]).cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        installed = env["payment.provider"].search_count([("code", "=", "vipps")])
        env.ref("base.partner_admin").invoice_sending_method = "vipps"
        # A provider in use: its webhook is registered at the emulator.
        env["ir.config_parameter"].set_param("web.base.url", "http://localhost:1")
        provider = env.ref("payment_vipps.payment_provider_vipps")
        provider.write({**json.loads(sys.argv[3]), "state": "test"})
        webhook = provider.vipps_webhook_id
        env["ir.module.module"].search(
            [("name", "=", "payment_vipps")]
        ).button_immediate_uninstall()
    print("RESULT " + json.dumps({"providers_when_installed": installed}))
    print("WEBHOOK " + webhook)
    """
)


@tagged("post_install", "-at_install")
class TestInstallUninstall(BaseCase):
    def test_install_then_uninstall_leaves_nothing(self):
        """The addon installs into a clean database and uninstalls without leftovers."""
        template = os.environ.get("PAYMENT_VIPPS_TEMPLATE_DB")
        if not template:
            self.skipTest("run through `tools/dev.py test`: no template database known")
        dbname = f"payment_vipps_roundtrip_{uuid.uuid4().hex[:8]}"
        with db_connect("postgres").cursor() as cr:
            cr._cnx.autocommit = True
            cr.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
        try:
            emulator = get_emulator()
            credentials = {
                **EMULATOR_CREDENTIALS,
                "vipps_api_url_override": emulator.url,
            }
            process = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    ROUND_TRIP,
                    config.rcfile,
                    dbname,
                    json.dumps(credentials),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            self.assertEqual(process.returncode, 0, msg=process.stderr[-3000:])
            self.assertIn('RESULT {"providers_when_installed": 1}', process.stdout)
            webhook = process.stdout.split("WEBHOOK ")[1].strip()
            self.assertTrue(webhook, msg="The provider registered its webhook.")
            self.assertNotIn(
                webhook,
                [hook["id"] for hook in emulator.webhooks()],
                msg="Uninstalling deletes the webhook registration at Vipps.",
            )
            with db_connect(dbname).cursor() as cr:
                cr.execute(
                    "SELECT state FROM ir_module_module WHERE name = 'payment_vipps'"
                )
                self.assertEqual(cr.fetchone()[0], "uninstalled")
                cr.execute(
                    "SELECT column_name FROM information_schema.columns WHERE"
                    " table_name = 'payment_provider' AND column_name LIKE 'vipps%'"
                )
                self.assertFalse(cr.fetchall(), msg="Vipps columns must be dropped.")
                cr.execute(
                    "SELECT count(*) FROM res_partner"
                    " WHERE invoice_sending_method::text LIKE '%vipps%'"
                )
                self.assertEqual(cr.fetchone()[0], 0, msg="No customer keeps 'vipps'.")
                cr.execute("SELECT count(*) FROM payment_provider WHERE code = 'vipps'")
                self.assertEqual(cr.fetchone()[0], 0)
                cr.execute(
                    "SELECT count(*) FROM account_payment_method WHERE code = 'vipps'"
                )
                self.assertEqual(cr.fetchone()[0], 0, msg="The payment method must go.")
                cr.execute(
                    "SELECT model, name FROM ir_model_data"
                    " WHERE module = 'payment_vipps'"
                )
                self.assertEqual(cr.fetchall(), [], msg="No data of the addon remains.")
        finally:
            with db_connect("postgres").cursor() as cr:
                cr._cnx.autocommit = True
                cr.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
