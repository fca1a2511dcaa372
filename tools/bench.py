"""Benchmarks of `tools/dev.py bench`: what one invoice request costs.

Run by dev.py inside Odoo as ``load(env, params)`` on a database of its own, against
an in-process Vipps emulator. The figures that matter are counts (API calls, SQL
queries), which are stable on a noisy machine; wall times, invoices per second and
memory are printed for information. Writes a JSON file; dev.py prints the table.

Phases:
- counts: push requests sent, approved and followed to reconciled invoices at each
  batch size, next to Odoo's own payment_demo doing the same post-processing; and
  the "Pay with Vipps" link flow. Rolled back.
- profile: the same lifecycle for the largest batch under cProfile: where the time
  goes, ours and Odoo's. Rolled back.
- bulk: 1,000 posted invoices through the wizard and through the automation (posting
  with automatic requests on), sent by the job in committed batches, one batch
  killed half-way and resumed. Committed (the database is the benchmark's own).
"""

import cProfile
import io
import json
import os
import pstats
import resource
import sys
import threading
import time
from pathlib import Path
from unittest.mock import patch

from odoo import Command, fields

from odoo.addons.payment_vipps import compat

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import demo_data  # noqa: E402

# The work a request needs at the floor: category + create to send; read + capture to
# follow it to the end. The token is amortised over the whole batch.
FLOOR_SEND = {"putCategory": 1, "createPayment": 1}
FLOOR_PROCESS = {"getPayment": 1, "capturePayment": 1}
FLOOR_LINK = {**FLOOR_SEND, **FLOOR_PROCESS, "getUserinfo": 1}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


class RssSampler(threading.Thread):
    """The highest resident memory seen while a phase runs (sampled every 20 ms)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss_mib()
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.join()


def _queries():
    """Queries run so far on every cursor (those committed apart included)."""
    from odoo import sql_db

    return sql_db.sql_counter


class Counter:
    """Count SQL queries (every cursor) and API calls in the emulator's log."""

    def __init__(self, env, emulator):
        self.env, self.emulator = env, emulator

    def __enter__(self):
        self._settle()
        self.queries = _queries()
        self.calls = len(self.emulator.requests)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._settle()
        self.seconds = time.perf_counter() - self.started
        self.query_count = _queries() - self.queries
        operations = {}
        for call in self.emulator.requests[self.calls :]:
            operations[call["operation"]] = operations.get(call["operation"], 0) + 1
        self.operations = operations

    def _settle(self):
        """Write what is pending, and the chatter's tracking (done before commit):
        each phase pays for its own work, not for the set-up's."""
        self.env.flush_all()
        self.env.cr.precommit.run()
        self.env.flush_all()


def _customers(env, count, prefix, consent=False):
    """Norwegian customers; with `consent`, each agreed to receive payment requests
    in the app on the mobile number it has."""
    now = fields.Datetime.now()
    return env["res.partner"].create(
        [
            {
                "name": f"{prefix} customer {index}",
                compat.MOBILE: f"+47 4{1000001 + index:07d}",
                "email": f"{prefix.lower()}{index}@example.com",
                "country_id": env.ref("base.no").id,
                **(
                    {
                        "vipps_phone": f"+474{1000001 + index:07d}",
                        "vipps_consent_date": now,
                        "vipps_consent_source": "bench",
                    }
                    if consent
                    else {}
                ),
            }
            for index in range(count)
        ]
    )


def _invoices(env, partners, product, post=True):
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
    if post:
        invoices.action_post()
    return invoices


def _customers_and_invoices(env, count, product, prefix, consent=True):
    """Posted invoices of new customers; with `consent`, each agreed to receive
    payment requests in the app on the number the bench uses."""
    return _invoices(env, _customers(env, count, prefix, consent=consent), product)


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
        "ms_per_invoice": round(counter.seconds * 1000 / count, 1),
        "invoices_per_second": round(count / counter.seconds, 1),
    }


def _paid(invoices):
    return sum(inv.payment_state in ("paid", "in_payment") for inv in invoices)


# === COUNTS === #


def _vipps_lifecycle(env, emulator, size, product, prefix="V"):
    invoices = _customers_and_invoices(env, size, product, f"{prefix}{size}")
    with Counter(env, emulator) as send:
        transactions = invoices._vipps_request_payment()
    for tx in transactions:
        emulator.approve(tx.reference)
    with Counter(env, emulator) as process:
        transactions._vipps_sync()
    return {
        "send": _per_invoice(send, size, FLOOR_SEND),
        "process": _per_invoice(process, size, FLOOR_PROCESS),
        "paid": _paid(invoices),
    }


def _demo_lifecycle(env, size, product, prefix="D"):
    """Odoo's own payment_demo: a transaction done, post-processed and reconciled."""
    provider = env.ref("payment.payment_provider_demo")
    method = env.ref("payment_demo.payment_method_demo")
    invoices = _customers_and_invoices(
        env, size, product, f"{prefix}{size}", consent=False
    )
    tx_model = env["payment.transaction"]
    with Counter(env, _NoEmulator()) as create:
        transactions = tx_model.create(
            [
                {
                    "provider_id": provider.id,
                    "payment_method_id": method.id,
                    "reference": tx_model._compute_reference(
                        "demo", invoice_ids=[Command.set(invoice.ids)]
                    ),
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
            compat.process_payment_data(
                tx, "demo", {"reference": tx.reference, "simulated_state": "done"}
            )
            tx._post_process()
    return {
        "create": _per_invoice(create, size),
        "process": _per_invoice(process, size),
        "paid": _paid(invoices),
    }


def _link_lifecycle(env, emulator, size, product):
    """The customer clicks "Pay with Vipps", shares the number and approves."""
    invoices = _customers_and_invoices(env, size, product, f"L{size}", consent=False)
    with Counter(env, emulator) as counter:
        for index, invoice in enumerate(invoices):
            tx = invoice._vipps_link_payment(share_phone=True)
            emulator.approve(tx.reference, phone=f"4792{index:05d}1")
            tx._vipps_sync()
    learned = sum(bool(partner.vipps_phone) for partner in invoices.partner_id)
    return {
        **_per_invoice(counter, size, FLOOR_LINK),
        "invoices": size,
        "paid": _paid(invoices),
        "phones_learned": learned,
    }


def _ratio(ours, theirs):
    return round(ours / theirs, 2) if theirs else None


def _bench_counts(env, emulator, sizes, product):
    provider = env.ref("payment.payment_provider_demo")
    provider.write({"state": "test", "company_id": env.company.id})
    # Warm both paths up (Odoo's caches), so batch 1 compares like with like.
    _vipps_lifecycle(env, emulator, 1, product, prefix="WV")
    _demo_lifecycle(env, 1, product, prefix="WD")
    report = {"vipps": {}, "payment_demo": {}, "ratios": {}}
    for size in sizes:
        ours = report["vipps"][size] = _vipps_lifecycle(env, emulator, size, product)
        demo = report["payment_demo"][size] = _demo_lifecycle(env, size, product)

        def total(result, phases, key):
            return sum(result[phase][key] for phase in phases)

        report["ratios"][size] = {
            "process_queries": _ratio(
                ours["process"]["queries_per_invoice"],
                demo["process"]["queries_per_invoice"],
            ),
            "lifecycle_queries": _ratio(
                total(ours, ("send", "process"), "queries_per_invoice"),
                total(demo, ("create", "process"), "queries_per_invoice"),
            ),
            "lifecycle_time": _ratio(
                total(ours, ("send", "process"), "seconds"),
                total(demo, ("create", "process"), "seconds"),
            ),
        }
    report["link"] = _link_lifecycle(env, emulator, 10, product)
    # The access token is fetched once and shared by every request of the run.
    report["token"] = {
        "token_calls": sum(
            call["operation"] == "accessToken" for call in emulator.requests
        ),
        "api_calls": len(emulator.requests),
        "invoices": 1 + sum(sizes) + 10,  # warm-up, batches, link flow
    }
    return report


# === SETTLEMENT === #


def _bench_settlement(env, emulator, sizes, product):
    """Reading and booking one payout of `size` payments: queries and API calls per
    payment, and for a second read of the same dates (which must book nothing)."""
    import datetime as dt
    import zoneinfo

    provider = env.ref("payment_vipps.payment_provider_vipps")
    company = provider.company_id
    fee_account = env["account.account"].search(
        [
            *env["account.account"]._check_company_domain(company),
            ("account_type", "=", "expense"),
        ],
        limit=1,
    )
    oslo = zoneinfo.ZoneInfo("Europe/Oslo")
    day = dt.date(2026, 11, 2)
    report = {}
    for size in sizes:
        emulator.reset(keep_webhooks=True)
        emulator.set_time(dt.datetime.combine(day, dt.time(10, 0), tzinfo=oslo))
        provider.write(
            {
                "vipps_settlement_enabled": True,
                "vipps_fee_account_id": fee_account.id,
                "vipps_transfer_account_id": company.transfer_account_id.id,
                "vipps_settlement_start": day,
                "vipps_settled_until": False,
                "vipps_ledger_id": False,
            }
        )
        invoices = _customers_and_invoices(env, size, product, f"S{size}")
        transactions = invoices._vipps_request_payment()
        for tx in transactions:
            emulator.approve(tx.reference)
        transactions._vipps_sync()
        emulator.set_time(
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(12, 0), tzinfo=oslo)
        )
        with Counter(env, emulator) as first:
            payouts = provider._vipps_read_settlements()
        with Counter(env, emulator) as again:
            rebooked = provider._vipps_read_settlements()
        report[size] = {
            "payouts": len(payouts),
            "booked": payouts.mapped("state") == ["booked"],
            "settled": len(payouts.line_ids.filtered("transaction_id")),
            "queries_per_payment": round(first.query_count / size, 1),
            "api_calls": first.operations,
            "ms_per_payment": round(first.seconds * 1000 / size, 1),
            "again_queries": again.query_count,
            "again_api_calls": again.operations,
            "again_payouts": len(rebooked),
        }
        env.cr.rollback()
    emulator.reset(keep_webhooks=True)
    return report


# === PROFILE === #


def _bench_profile(env, emulator, size, product, output):
    """cProfile of one lifecycle (send, approve, process) of `size` invoices."""
    invoices = _customers_and_invoices(env, size, product, f"P{size}")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    transactions = invoices._vipps_request_payment()
    for tx in transactions:
        emulator.approve(tx.reference)
    transactions._vipps_sync()
    env.flush_all()
    profiler.disable()
    seconds = time.perf_counter() - started
    profiler.dump_stats(output)
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # own time of every function

    def cumulative(function, path=""):
        """Time spent in and under a function (the outermost of its overrides)."""
        return max(
            (
                row[3]
                for (filename, __, name), row in stats.stats.items()
                if name == function and path in filename
            ),
            default=0.0,
        )

    own = {}  # own time by area: who does the work at the bottom of the stack
    for (filename, __, function), row in stats.stats.items():
        if "psycopg2" in function or "psycopg2" in filename:
            key = "PostgreSQL"
        elif "socket" in function or "ssl" in function or "urllib3" in filename:
            key = "network (HTTP to the emulator)"
        elif "/addons/payment_vipps/" in filename and "/odoo-" not in filename:
            key = "payment_vipps code"
        elif "/odoo/" in filename:
            key = "Odoo (ORM, accounting, mail, payment)"
        else:
            key = "Python and libraries"
        own[key] = own.get(key, 0) + row[2]
    steps = {
        "Vipps API calls (HTTP, emulator included)": cumulative("_vipps_make_request"),
        "send: our request code": cumulative("_vipps_send_request"),
        "process: _vipps_sync": cumulative("_vipps_sync"),
        "Odoo _post_process (payment + reconcile)": cumulative("_post_process"),
        "Odoo _create_payment": cumulative("_create_payment"),
        "Odoo reconcile": cumulative("reconcile", "/account/"),
        "chatter (message_post, _message_log)": cumulative("message_post")
        + cumulative("_message_log_batch"),
        "flush to PostgreSQL": cumulative("flush_all"),
    }
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(25)
    top = [
        line.strip()
        for line in buffer.getvalue().splitlines()
        if line.strip() and line.strip()[0].isdigit()
    ]
    return {
        "invoices": size,
        "seconds_profiled": round(seconds, 1),
        "paid": _paid(invoices),
        "share_of_time_own": {
            key: round(value / total, 3)
            for key, value in sorted(own.items(), key=lambda item: -item[1])
        },
        "share_of_time_in_steps": {
            key: round(value / total, 3) for key, value in steps.items()
        },
        "top_cumulative": top[:25],
        "stats_file": output,
    }


# === BULK === #


def _run_killed_batch(env, crash_after):
    """Run one batch of the outbox job and kill the worker in the middle of its
    `crash_after`-th send, after Vipps created the payment and before Odoo
    committed it (as when the process dies): that row's Odoo work is lost."""
    model = type(env["account.move"])
    send = model._vipps_send_queued
    sent = []

    def send_then_maybe_die(invoice, values):
        send(invoice, values)
        sent.append(invoice.id)
        if len(sent) == crash_after:
            raise KeyboardInterrupt("the worker was killed")

    with patch.object(model, "_vipps_send_queued", send_then_maybe_die):
        try:
            env["payment.vipps.outbox"]._cron_process()
        except KeyboardInterrupt:
            env.cr.rollback()
            env.invalidate_all()
            return True
    return False


def _requests_due(env):
    return env["payment.vipps.outbox"].search_count(
        [("operation", "=", "request"), ("state", "=", "pending")]
    )


def _run_send_job(env, crash_after=None):
    """Run the outbox job as Odoo's cron does, batch after batch, each row committed
    on its own.

    :param int crash_after: kill the second batch after this many sends, then go on
    """
    outbox = env["payment.vipps.outbox"]
    batches, crashed = [], False
    while _requests_due(env):
        started, queries = time.perf_counter(), _queries()
        if crash_after and len(batches) == 1 and not crashed:
            crashed = _run_killed_batch(env, crash_after)
            if crashed:
                continue  # the next batch resumes it
        else:
            outbox._cron_process()
        env.cr.commit()  # pylint: disable=invalid-commit - as the cron runner does
        env.invalidate_all()
        batches.append(
            {
                "seconds": time.perf_counter() - started,
                "queries": _queries() - queries,
                "rss_mib": rss_mib(),
            }
        )
    return batches, crashed


def _bulk_path(env, emulator, invoices, start, start_key):
    """One bulk request: `start()` does what the user does (committed, as the HTTP
    request would be), then the job sends everything in committed batches with its
    second batch killed half-way. Counts what Vipps received meanwhile."""
    env.cr.commit()  # pylint: disable=invalid-commit - a benchmark's own data
    payments_before = len(emulator.store.all_payments())
    calls_before = len(emulator.requests)
    with RssSampler() as sampler:
        started = time.perf_counter()
        start()
        env.cr.commit()  # pylint: disable=invalid-commit - the end of the request
        start_seconds = time.perf_counter() - started
        batches, crashed = _run_send_job(env, crash_after=25)
    seconds = time.perf_counter() - started
    references = set(invoices.transaction_ids.mapped("reference"))
    created = [
        call
        for call in emulator.requests[calls_before:]
        if call["operation"] == "createPayment"
    ]
    # Every payment Vipps created during the run, whatever its reference: an invoice
    # requested twice would show as one more payment than requests.
    at_vipps = len(emulator.store.all_payments()) - payments_before
    rss = [batch["rss_mib"] for batch in batches]
    half = len(rss) // 2
    return {
        "invoices": len(invoices),
        "requests_sent": len(references),
        start_key: round(start_seconds, 1),
        "seconds": round(seconds, 1),
        "invoices_per_second": round(len(invoices) / seconds, 1),
        "job_invoices_per_second": round(
            len(invoices) / sum(batch["seconds"] for batch in batches), 1
        ),
        "batches": len(batches),
        "queries_per_invoice": round(
            sum(batch["queries"] for batch in batches) / len(invoices), 1
        ),
        "peak_rss_mib": round(sampler.peak, 1),
        "rss_first_half_max_mib": round(max(rss[:half] or rss), 1),
        "rss_second_half_max_mib": round(max(rss[half:]), 1),
        "batch_killed_and_resumed": crashed,
        "create_calls": len(created),
        "payments_at_vipps": at_vipps,
        "sent_twice": max(0, at_vipps - len(references)),
    }


def _bench_bulk(env, emulator, count, product):
    provider = env.ref("payment_vipps.payment_provider_vipps")
    results = {}
    # The wizard: select the invoices, Request via Vipps, Send.
    selected = _invoices(env, _customers(env, count, "W", consent=True), product)
    results["wizard"] = _bulk_path(
        env,
        emulator,
        selected,
        lambda: env["payment.vipps.request.wizard"]
        .with_context(active_model="account.move", active_ids=selected.ids)
        .create({})
        .action_send(),
        "wizard_seconds",
    )
    # The automation: requests sent on posting, to customers who opted in.
    provider.write({"vipps_auto_request": True, "vipps_auto_push": True})
    drafts = _invoices(env, _customers(env, count, "A", consent=True), product, False)
    results["automation"] = _bulk_path(
        env, emulator, drafts, drafts.action_post, "posting_seconds"
    )
    provider.write({"vipps_auto_request": False})
    env.cr.commit()  # pylint: disable=invalid-commit - a benchmark's own data
    return results


# === ENTRY POINTS === #


def _fresh_statistics(env):
    """VACUUM ANALYZE, outside any transaction.

    A rolled-back phase leaves dead rows and statistics that no longer match the
    tables; the next phase's queries would get plans that slow down as it inserts
    (measured: processing went quadratic after the counts phase's rollback).
    Production commits every batch and autovacuum keeps up; so does this.
    """
    import psycopg2

    from odoo.sql_db import connection_info_for

    __, info = connection_info_for(env.cr.dbname)
    connection = psycopg2.connect(**info)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


class _NoEmulator:
    requests = ()


def load(env, params):
    if params.get("mode") == "burst_setup":
        return _burst_setup(env, params)
    return _bench(env, params)


def _setup(env, emulator_url):
    company = demo_data._setup_company(env)
    tax = demo_data._sales_tax(env, company)
    demo_data._setup_provider(env, company, {"emulator_url": emulator_url})
    return env["product.product"].create(
        {"name": "Service", "list_price": 1000.0, "taxes_id": [Command.set(tax.ids)]}
    )


def _burst_setup(env, params):
    """Open requests for the webhook burst, committed, against an external emulator
    and the Odoo server that will receive the webhooks."""
    env["ir.config_parameter"].set_param("web.base.url", params["base_url"])
    env["ir.config_parameter"].set_param("web.base.url.freeze", "True")
    product = _setup(env, params["emulator_url"])
    invoices = _customers_and_invoices(env, int(params["count"]), product, "B")
    for start in range(0, len(invoices), 100):
        invoices[start : start + 100].vipps_request_payment()
        env.cr.commit()  # pylint: disable=invalid-commit - a benchmark's own setup
    invoices[:1]._portal_ensure_token()


def _bench(env, params):
    from odoo.addons.payment_vipps.vipps_emulator import APPROVED, Emulator

    sizes = [int(size) for size in params["sizes"]]
    # A sales unit approved for PUSH_MESSAGE, with profile.sub written at once: the
    # path that sends to the app and learns phones on the link flow. (An ordinary
    # one would e-mail pay links instead, which measures Odoo's mailer.)
    emulator = Emulator(
        port=0, webhook_retry_delays=(), sub_delay=0, **APPROVED
    ).start()
    report = {"sizes": sizes}
    try:
        env["ir.config_parameter"].set_param("web.base.url", "http://127.0.0.1:9")
        product = _setup(env, emulator.url)
        env.cr.commit()  # pylint: disable=invalid-commit - a benchmark's own set-up
        _fresh_statistics(env)
        report.update(_bench_counts(env, emulator, sizes, product))
        # Rolled back: invoice numbers, hence Vipps references, start over.
        env.cr.rollback()
        emulator.reset(keep_webhooks=True)
        _fresh_statistics(env)
        report["settlement"] = _bench_settlement(env, emulator, sizes, product)
        _fresh_statistics(env)
        if params.get("profile"):
            report["profile"] = _bench_profile(
                env, emulator, max(sizes), product, params["profile"]
            )
            env.cr.rollback()
            emulator.reset(keep_webhooks=True)
            _fresh_statistics(env)
        if params.get("bulk"):
            report["bulk"] = _bench_bulk(env, emulator, int(params["bulk"]), product)
        report["max_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    finally:
        emulator.stop()
    Path(params["output"]).write_text(json.dumps(report, indent=2, default=str))
