"""Benchmarks of `tools/dev.py bench`: what one invoice request costs.

Run by dev.py inside Odoo as ``load(env, params)`` on a database of its own, against
an in-process Vipps emulator. Figures are counts (API calls, SQL queries), which are
stable on a noisy machine, plus wall time and peak Python memory for information.
Prints a table and writes a JSON file.
"""

import json
import sys
import time
import tracemalloc
from pathlib import Path

from odoo import Command, fields

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import demo_data  # noqa: E402

# The work a request needs at the floor: category + create to send; read + capture to
# follow it to the end. The token is amortised over the whole batch.
FLOOR_SEND = {"putCategory": 1, "createPayment": 1}
FLOOR_PROCESS = {"getPayment": 1, "capturePayment": 1}


class Counter:
    """Count SQL queries on the cursor and API calls in the emulator's log."""

    def __init__(self, env, emulator):
        self.env, self.emulator = env, emulator

    def __enter__(self):
        self.env.flush_all()
        self.queries = self.env.cr.sql_log_count
        self.calls = len(self.emulator.requests)
        self.started = time.perf_counter()
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.env.flush_all()
        self.seconds = time.perf_counter() - self.started
        self.peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        self.query_count = self.env.cr.sql_log_count - self.queries
        operations = {}
        for call in self.emulator.requests[self.calls :]:
            operations[call["operation"]] = operations.get(call["operation"], 0) + 1
        self.operations = operations


def _customers_and_invoices(env, count, product, prefix):
    partners = env["res.partner"].create(
        [
            {
                "name": f"{prefix} customer {index}",
                "mobile": f"+47 4{1000001 + index:07d}",
                "country_id": env.ref("base.no").id,
            }
            for index in range(count)
        ]
    )
    invoices = env["account.move"].create(
        [
            {
                "move_type": "out_invoice",
                "partner_id": partner.id,
                "invoice_date": fields.Date.today(),
                "invoice_line_ids": [
                    Command.create({"product_id": product.id, "quantity": 1})
                ],
            }
            for partner in partners
        ]
    )
    invoices.action_post()
    return invoices


def _per_invoice(counter, count, floor=None):
    calls = {op: n / count for op, n in counter.operations.items()}
    extra = {}
    if floor is not None:
        for op, n in counter.operations.items():
            needed = floor.get(op, 0) * count
            if op != "accessToken" and n > needed:
                extra[op] = n - needed
    return {
        "queries_per_invoice": round(counter.query_count / count, 1),
        "api_calls_per_invoice": round(sum(counter.operations.values()) / count, 3),
        "api_calls": calls,
        "unneeded_calls": extra,
        "seconds": round(counter.seconds, 2),
        "invoices_per_second": round(count / counter.seconds, 1),
        "peak_python_mib": round(counter.peak_mib, 1),
    }


def _bench_vipps(env, emulator, sizes, product):
    results = {}
    for size in sizes:
        invoices = _customers_and_invoices(env, size, product, f"V{size}")
        with Counter(env, emulator) as send:
            transactions = invoices.vipps_request_payment()
        for tx in transactions:
            emulator.approve(tx.reference)
        with Counter(env, emulator) as process:
            transactions._vipps_sync()
        paid = sum(inv.payment_state in ("paid", "in_payment") for inv in invoices)
        results[size] = {
            "send": _per_invoice(send, size, FLOOR_SEND),
            "process": _per_invoice(process, size, FLOOR_PROCESS),
            "paid": paid,
        }
    return results


def _bench_demo(env, sizes, product):
    """Odoo's own payment_demo: a done transaction, post-processed and reconciled."""
    provider = env.ref("payment.payment_provider_demo")
    provider.write({"state": "test", "company_id": env.company.id})
    method = env.ref("payment_demo.payment_method_demo")
    results = {}
    for size in sizes:
        invoices = _customers_and_invoices(env, size, product, f"D{size}")
        transactions = env["payment.transaction"].create(
            [
                {
                    "provider_id": provider.id,
                    "payment_method_id": method.id,
                    "reference": f"DEMO-{size}-{invoice.id}",
                    "amount": invoice.amount_residual,
                    "currency_id": invoice.currency_id.id,
                    "partner_id": invoice.partner_id.id,
                    "operation": "online_direct",
                    "invoice_ids": [Command.set(invoice.ids)],
                }
                for invoice in invoices
            ]
        )
        with Counter(env, _NoEmulator()) as process:
            for tx in transactions:
                tx._process_notification_data(
                    {"reference": tx.reference, "simulated_state": "done"}
                )
                tx._post_process()
        paid = sum(inv.payment_state in ("paid", "in_payment") for inv in invoices)
        results[size] = {"process": _per_invoice(process, size), "paid": paid}
    return results


class _NoEmulator:
    requests = ()


def load(env, params):
    if params.get("mode") == "burst_setup":
        return _burst_setup(env, params)
    return _bench_counts(env, params)


def _burst_setup(env, params):
    """Open requests for the webhook burst, committed, against an external emulator
    and the Odoo server that will receive the webhooks."""
    env["ir.config_parameter"].set_param("web.base.url", params["base_url"])
    env["ir.config_parameter"].set_param("web.base.url.freeze", "True")
    company = demo_data._setup_company(env)
    tax = demo_data._sales_tax(env, company)
    demo_data._setup_provider(env, company, {"emulator_url": params["emulator_url"]})
    product = env["product.product"].create(
        {"name": "Service", "list_price": 1000.0, "taxes_id": [Command.set(tax.ids)]}
    )
    invoices = _customers_and_invoices(env, int(params["count"]), product, "B")
    for start in range(0, len(invoices), 100):
        invoices[start : start + 100].vipps_request_payment()
        env.cr.commit()  # pylint: disable=invalid-commit - a benchmark's own setup
    invoices[:1]._portal_ensure_token()


def _bench_counts(env, params):
    from odoo.addons.payment_vipps.vipps_emulator import Emulator

    sizes = [int(size) for size in params["sizes"]]
    emulator = Emulator(port=0, webhook_retry_delays=()).start()
    try:
        env["ir.config_parameter"].set_param("web.base.url", "http://127.0.0.1:9")
        company = demo_data._setup_company(env)
        tax = demo_data._sales_tax(env, company)
        demo_data._setup_provider(env, company, {"emulator_url": emulator.url})
        product = env["product.product"].create(
            {
                "name": "Service",
                "list_price": 1000.0,
                "taxes_id": [Command.set(tax.ids)],
            }
        )
        vipps = _bench_vipps(env, emulator, sizes, product)
        demo = _bench_demo(env, sizes, product)
    finally:
        emulator.stop()
    report = {"sizes": sizes, "vipps": vipps, "payment_demo": demo}
    for size in sizes:
        ours = vipps[size]["process"]["queries_per_invoice"]
        theirs = demo[size]["process"]["queries_per_invoice"]
        report.setdefault("ratios", {})[size] = (
            round(ours / theirs, 2) if theirs else None
        )
    Path(params["output"]).write_text(json.dumps(report, indent=2, default=str))
    _print(report)
    env.cr.rollback()  # benchmarks leave nothing behind


def _print(report):
    lines = [
        "",
        "batch | send q/inv | send calls/inv | process q/inv | calls/inv | "
        "demo q/inv | ours/demo | inv/s send | peak MiB | paid",
    ]
    for size in report["sizes"]:
        vipps, demo = report["vipps"][size], report["payment_demo"][size]
        lines.append(
            f"{size:5} | {vipps['send']['queries_per_invoice']:9} | "
            f"{vipps['send']['api_calls_per_invoice']:14} | "
            f"{vipps['process']['queries_per_invoice']:13} | "
            f"{vipps['process']['api_calls_per_invoice']:9} | "
            f"{demo['process']['queries_per_invoice']:10} | "
            f"{report['ratios'][size]!s:9} | "
            f"{vipps['send']['invoices_per_second']:10} | "
            f"{vipps['send']['peak_python_mib']:8} | {vipps['paid']}/{size}"
        )
    for size in report["sizes"]:
        for phase in ("send", "process"):
            extra = report["vipps"][size][phase]["unneeded_calls"]
            if extra:
                lines.append(f"unneeded API calls, batch {size}, {phase}: {extra}")
    print("\n".join(lines), flush=True)
