"""Demo data for `tools/dev.py demo`: a Norwegian company with customers and invoices.

Run by dev.py inside Odoo as ``load(env, params)``. Idempotent: records are found by
their XML ids (module ``payment_vipps_demo``) and created only when missing, so the demo
can be restarted on the same database.
"""

from odoo import Command, fields

from odoo.addons.payment_vipps import utils

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
            "mobile": "+47 412 34 567",
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
            "mobile": "915 55 123",
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
                utils.to_e164(partner.mobile, "NO"), "agreed on the service contract"
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
        invoice = _create(
            env,
            name,
            "account.move",
            {
                "move_type": "out_invoice",
                "partner_id": partners[partner].id,
                "invoice_date": today,
                "invoice_date_due": fields.Date.add(today, days=due_in_days),
                "invoice_line_ids": [
                    Command.create(
                        {"product_id": products[product].id, "quantity": qty}
                    )
                    for product, qty in lines
                ],
            },
        )
        if invoice.state == "draft":
            invoice.action_post()
