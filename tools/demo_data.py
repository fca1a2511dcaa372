"""Demo data for `tools/dev.py demo`: a Norwegian company with customers and invoices.

Run by dev.py inside Odoo as ``load(env, params)``. Idempotent: records are found by
their XML ids (module ``payment_vipps_demo``) and created only when missing, so the demo
can be restarted on the same database.
"""

import datetime as dt
import zoneinfo

import requests

from odoo import Command, fields

from odoo.addons.payment_vipps import compat, utils

XMLID_MODULE = "payment_vipps_demo"

# The local emulator's documented default merchant (vipps_emulator/README.md).
EMULATOR_MERCHANT = {
    "vipps_merchant_serial_number": "123456",
    "vipps_client_id": "emulator-client-id",
    "vipps_client_secret": "emulator-client-secret",
    "vipps_subscription_key": "emulator-subscription-key",
}

CUSTOMERS = [
    # xmlid, values; the first two have a mobile number Vipps can push to.
    (
        "partner_kari",
        {
            "name": "Kari Nordmann",
            "email": "kari.nordmann@example.com",
            compat.MOBILE: "+47 412 34 567",
            "street": "Storgata 12",
            "zip": "0155",
            "city": "Oslo",
        },
    ),
    (
        "partner_lars",
        {
            "name": "Lars Berg",
            "email": "lars.berg@example.com",
            compat.MOBILE: "915 55 123",
            "street": "Bryggen 3",
            "zip": "5003",
            "city": "Bergen",
        },
    ),
    (
        "partner_fjellheim",
        {
            "name": "Fjellheim Bakeri AS",
            "is_company": True,
            "email": "post@fjellheim-bakeri.example.com",
            "phone": "+47 22 33 44 55",
            "street": "Kirkegata 7",
            "zip": "7011",
            "city": "Trondheim",
        },
    ),
    (
        "partner_ingrid",
        {
            "name": "Ingrid Solberg",
            "email": "ingrid.solberg@example.com",
            "street": "Havnegata 1",
            "zip": "9008",
            "city": "Tromsø",
        },
    ),
]

PRODUCTS = [
    ("product_call_out", "Call-out and first hour", 1190.0),
    ("product_hour", "Plumber, extra hour", 950.0),
    ("product_boiler", "Water heater 200 l, installed", 14900.0),
]

# Invoices paid through Vipps some days ago, settled by one payout: xmlid, customer,
# lines, and how much of it was refunded afterwards (the same day).
SETTLED_INVOICES = [
    ("invoice_settled_kari", "partner_kari", [("product_hour", 2)], 0.0),
    ("invoice_settled_lars", "partner_lars", [("product_call_out", 1)], 200.0),
    ("invoice_settled_kari_2", "partner_kari", [("product_hour", 1)], 0.0),
]
# Before the dates the payout job reads again (const.SETTLEMENT_REREAD_DAYS): the
# emulator forgets its payments when the demo stops, and a date read again with
# them gone would show as changed by Vipps.
SETTLED_DAYS_AGO = 6

INVOICES = [
    # xmlid, customer, [(product, quantity)], days until due
    (
        "invoice_kari",
        "partner_kari",
        [("product_call_out", 1), ("product_hour", 2)],
        14,
    ),
    ("invoice_lars", "partner_lars", [("product_call_out", 1)], 10),
    ("invoice_fjellheim", "partner_fjellheim", [("product_boiler", 1)], 30),
    ("invoice_ingrid", "partner_ingrid", [("product_hour", 3)], 14),
]


def _ref(env, name):
    return env.ref(f"{XMLID_MODULE}.{name}", raise_if_not_found=False)


def _create(env, name, model, values):
    """Return the record of XML id `name`, creating it with `values` when missing."""
    record = _ref(env, name)
    if record:
        return record
    record = env[model].create(values)
    env["ir.model.data"].create(
        {
            "module": XMLID_MODULE,
            "name": name,
            "model": model,
            "res_id": record.id,
            "noupdate": True,
        }
    )
    return record


def _invoice(env, name, partner, lines, invoice_date, due_date):
    """The customer invoice of XML id `name`: [(product, quantity)] lines."""
    return _create(
        env,
        name,
        "account.move",
        {
            "move_type": "out_invoice",
            "partner_id": partner.id,
            "invoice_date": invoice_date,
            "invoice_date_due": due_date,
            "invoice_line_ids": [
                Command.create({"product_id": product.id, "quantity": qty})
                for product, qty in lines
            ],
        },
    )


def _setup_company(env):
    company = env.ref("base.main_company")
    norway = env.ref("base.no")
    nok = env.ref("base.NOK")
    if company.currency_id != nok:
        nok.active = True
        company.currency_id = nok
    company.write(
        {
            "name": "Nordlys Rørlegger AS",
            "country_id": norway.id,
            "account_fiscal_country_id": norway.id,
            "street": "Karl Johans gate 20",
            "zip": "0159",
            "city": "Oslo",
            "email": "faktura@nordlys-vvs.example.com",
            "phone": "+47 21 00 00 00",
            "vat": "NO923456783MVA",
        }
    )
    env.ref("base.user_admin").tz = "Europe/Oslo"
    return company


def _sales_tax(env, company):
    group = _create(
        env,
        "tax_group_mva_25",
        "account.tax.group",
        {
            "name": "MVA 25%",
            "company_id": company.id,
            "country_id": company.country_id.id,
        },
    )
    return _create(
        env,
        "tax_mva_25",
        "account.tax",
        {
            "name": "25% MVA",
            "amount": 25.0,
            "amount_type": "percent",
            "type_tax_use": "sale",
            "company_id": company.id,
            "country_id": company.country_id.id,
            "tax_group_id": group.id,
        },
    )


def _setup_provider(env, company, params):
    provider = env.ref("payment_vipps.payment_provider_vipps")
    provider.write(
        {
            **EMULATOR_MERCHANT,
            "vipps_api_url_override": params["emulator_url"],
            # Learned again from the emulator this demo runs with (approved or not).
            "vipps_push_allowed": True,
            "vipps_long_living_allowed": True,
            "vipps_capability_note": False,
            "state": "test",
            "is_published": True,
            "company_id": company.id,
        }
    )
    return provider


def _norwegian(env, company, partners):
    """The company and its customers read Norwegian (pages, e-mails, the app's
    texts); the accountant logged in as admin keeps English."""
    lang = env["res.lang"]._activate_lang("nb_NO")
    if not env["ir.model.data"].search_count(
        [("module", "=", XMLID_MODULE), ("name", "=", "demo_nb_loaded")]
    ):
        env["base.language.install"].create(
            {"lang_ids": [Command.set(lang.ids)], "overwrite": False}
        ).lang_install()
        env["ir.model.data"].create(
            {
                "module": XMLID_MODULE,
                "name": "demo_nb_loaded",
                "model": "res.lang",
                "res_id": lang.id,
                "noupdate": True,
            }
        )
    company.partner_id.lang = lang.code
    for partner in partners:
        partner.lang = lang.code


def load(env, params):
    env["ir.config_parameter"].set_param("web.base.url", params["base_url"])
    env["ir.config_parameter"].set_param("web.base.url.freeze", "True")
    company = _setup_company(env)
    tax = _sales_tax(env, company)
    _setup_provider(env, company, params)
    partners = {
        name: _create(
            env, name, "res.partner", {**values, "country_id": company.country_id.id}
        )
        for name, values in CUSTOMERS
    }
    # Kari and Lars agreed to receive payment requests in the app when they signed
    # up; Lars gets his invoices "by Vipps MobilePay" from Send & Print.
    for name in ("partner_kari", "partner_lars"):
        partner = partners[name]
        if not partner.vipps_consent_date:
            partner._vipps_store_consent(
                utils.to_e164(partner[compat.MOBILE], "NO"),
                "agreed on the service contract",
            )
    partners["partner_lars"].invoice_sending_method = "vipps"
    _norwegian(env, company, partners.values())
    products = {
        name: _create(
            env,
            name,
            "product.product",
            {
                "name": label,
                "type": "service",
                "list_price": price,
                "taxes_id": [Command.set(tax.ids)],
            },
        )
        for name, label, price in PRODUCTS
    }
    today = fields.Date.context_today(env["account.move"])
    for name, partner, lines, due_in_days in INVOICES:
        invoice = _invoice(
            env,
            name,
            partners[partner],
            [(products[product], qty) for product, qty in lines],
            today,
            fields.Date.add(today, days=due_in_days),
        )
        if invoice.state == "draft":
            invoice.action_post()
    _demo_payout(env, company, partners, products, params)


def _demo_payout(env, company, partners, products, params):
    """Three invoices paid through Vipps a few days ago (one partly refunded), and
    the payout that settled them, read from the emulator's Report API and booked.

    The emulator's clock is moved back to the day of the payments while they are
    made, then returned to real time, when that ledger date is long closed.
    """
    provider = env.ref("payment_vipps.payment_provider_vipps")
    accounts = env["account.account"].search(
        [
            *env["account.account"]._check_company_domain(company),
            ("account_type", "=", "expense"),
        ],
        order="code",
    )
    # The generic chart's "Bank Fees", else the first expense account.
    fee_account = accounts.filtered(lambda a: a.code.startswith("620"))[:1]
    provider.write(
        {
            "vipps_settlement_enabled": True,
            "vipps_fee_account_id": (fee_account or accounts[:1]).id,
            "vipps_transfer_account_id": company.transfer_account_id.id,
        }
    )
    if env["payment.vipps.payout"].search_count([("provider_id", "=", provider.id)]):
        return
    oslo = zoneinfo.ZoneInfo("Europe/Oslo")
    day = dt.datetime.now(oslo).date() - dt.timedelta(days=SETTLED_DAYS_AGO)
    provider.vipps_settlement_start = day
    control = params["emulator_url"] + "/_emulator"
    moment = dt.datetime.combine(day, dt.time(10, 0), tzinfo=oslo)
    requests.post(
        f"{control}/clock/set",
        json={"time": moment.isoformat(), "frozen": False},
        timeout=10,
    ).raise_for_status()
    try:
        for name, partner, lines, refund in SETTLED_INVOICES:
            invoice = _invoice(
                env,
                name,
                partners[partner],
                [(products[product], qty) for product, qty in lines],
                day,
                day + dt.timedelta(days=14),
            )
            if invoice.state != "draft":
                continue  # made by an earlier, interrupted run
            invoice.action_post()
            tx = invoice._vipps_request_payment()
            requests.post(
                f"{control}/payments/{tx.reference}/approve", json={}, timeout=10
            ).raise_for_status()
            tx._vipps_sync()
            # A refund records its intent in a transaction of its own, which must
            # see the payment: commit it first, as a click in the browser would.
            env.cr.commit()
            if refund and tx.state == "done":
                tx.action_refund(amount_to_refund=refund)
    finally:
        requests.post(f"{control}/clock/reset", json={}, timeout=10)
    provider._vipps_read_settlements()
