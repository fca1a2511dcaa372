"""Races with real processes: Odoo in prefork mode against the emulator.

The other tests run Odoo in the test process, where one test cursor serialises
everything. Here a real server runs through `odoo-bin` with 2 HTTP workers and 2 cron
workers (processes of their own, as in production), on a database of its own copied
from the template that `tools/dev.py test` names, and the emulator runs as a process
too. The tests drive the server over JSON-RPC and plain HTTP, the emulator over its
control API, and read the results with SQL; workers are killed with SIGKILL where the
point is a crash. Set-up and teardown happen once for the class; the server's log
is kept in `<data_dir>/test_workers/` (`.dev/data/test_workers/` with dev.py).
"""

import collections
import concurrent.futures
import configparser
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psutil
import psycopg2
from psycopg2 import sql

from odoo.tests import BaseCase, tagged

ADDON = Path(__file__).resolve().parents[1]
DEMO_DATA = ADDON / "tools" / "demo_data.py"
SERVER_OPTIONS = {"workers": 2, "max_cron_threads": 2}
# Customers and invoices of the set-up, one group per test: (ref, invoices, posted).
GROUPS = [("race", 20, True), ("cancel", 4, True), ("capturing", 2, True)]
GROUPS += [("crash", 3, True), ("auto", 40, False)]
# How Odoo refuses to run a job that is running: "currently being executed" on 18.0,
# "already executing" on 19.0.
CRON_BUSY = re.compile("currently being executed|already executing")

# Installs the addon, then creates the company, the provider (pointed at the emulator;
# its webhook registers when its state is set) and the invoices: one Odoo process, the
# way dev.py's demo loads its data.
SETUP = textwrap.dedent(
    """
    import json, sys, odoo
    from odoo import Command, fields
    from odoo.tools import config
    config.parse_config(["-c", sys.argv[1], "-i", "payment_vipps", "--workers=0"])
    odoo.modules.module.initialize_sys_path()
    from odoo.addons.payment_vipps import compat
    from odoo.addons.payment_vipps.compat import testing
    params = json.loads(sys.argv[3])
    registry = testing.registry_installing(sys.argv[2], ["payment_vipps"])
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        demo = {"__name__": "demo_data"}
        with open(params["demo_data"]) as source:
            exec(compile(source.read(), params["demo_data"], "exec"), demo)
        demo["load"](env, params)
        product = demo["_ref"](env, "product_call_out")
        today = fields.Date.today()
        customers, invoices, number = [], [], 0
        for ref, count, post in params["groups"]:
            for __ in range(count):
                number += 1
                msisdn = f"47415{number:05d}"
                customers.append(
                    {
                        "name": f"Customer {ref} {number}",
                        compat.MOBILE: "+" + msisdn,
                        "country_id": env.ref("base.no").id,
                        "vipps_phone": "+" + msisdn,
                        "vipps_consent_date": fields.Datetime.now(),
                        "vipps_consent_source": "test_workers set-up",
                    }
                )
                invoices.append(
                    {
                        "move_type": "out_invoice",
                        "ref": ref,
                        "invoice_date": today,
                        "invoice_date_due": fields.Date.add(today, days=14),
                        "invoice_line_ids": [
                            Command.create({"product_id": product.id, "quantity": 1})
                        ],
                    }
                )
        partners = env["res.partner"].create(customers)
        for values, partner in zip(invoices, partners):
            values["partner_id"] = partner.id
        moves = env["account.move"].create(invoices)
        posted = {ref for ref, __, post in params["groups"] if post}
        moves.filtered(lambda move: move.ref in posted).action_post()
    """
)


class RpcError(Exception):
    """An error Odoo answered a JSON-RPC call with (its message and class)."""


class Stack:
    """PostgreSQL database, emulator and Odoo server of the test class."""

    def __init__(self, template, config_path):
        self.template = template
        parser = configparser.ConfigParser()
        parser.read(config_path)
        self.options = {
            key: value
            for key, value in parser["options"].items()
            if value not in ("", "False", "None")
        }
        data_dir = self.options.get("data_dir")
        if data_dir:
            # Kept after the run (replaced by the next one): the server's log, its
            # configuration and the emulator's log, to read when a test fails.
            self.folder = Path(data_dir) / "test_workers"
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
        else:
            self.folder = Path(tempfile.mkdtemp(prefix="payment_vipps_workers_"))
        self.dbname = f"payment_vipps_workers_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.folder / "odoo.conf"
        self.logfile = self.folder / "odoo.log"
        self.emulator = self.server = self.uid = self.emulator_url = None
        self._connection = None
        self.created = False

    # === LIFE CYCLE === #

    def start(self):
        started = time.monotonic()
        timings = {}

        def step(name, function, *args):
            begun = time.monotonic()
            function(*args)
            timings[name] = round(time.monotonic() - begun, 1)

        step("copy", self._admin_sql, self._create_database())
        self.created = True
        self._write_config()
        step("emulator", self.start_emulator)
        params = {
            "demo_data": str(DEMO_DATA),
            "base_url": self.url,
            "emulator_url": self.emulator_url,
            "groups": GROUPS,
        }
        step(
            "install and data",
            self.python,
            SETUP,
            str(self.config),
            self.dbname,
            json.dumps(params),
        )
        step("server", self.start_server)
        timings["total"] = round(time.monotonic() - started, 1)
        self.note(f"Odoo on {self.url}, database {self.dbname}: set-up {timings}")

    def note(self, line):
        """Add a line to `stack.log` next to the server's log (timings, outcomes)."""
        with (self.folder / "stack.log").open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _create_database(self):
        return sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(self.dbname), sql.Identifier(self.template)
        )

    def close(self):
        if self.server:
            # Its database is dropped next: no need to wait for a graceful stop.
            stop_process(self.server, timeout=5)
        if self.emulator:
            stop_process(self.emulator)
        if self._connection:
            self._connection.close()
        if self.created:
            self._admin_sql(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.dbname)
                )
            )

    def _write_config(self):
        options = {
            **self.options,
            **SERVER_OPTIONS,
            "http_port": self.port,
            "gevent_port": free_port(),
            "http_interface": "127.0.0.1",
            "db_name": self.dbname,
            "dbfilter": f"^{self.dbname}$",
            "logfile": self.logfile,
            "log_level": "info",
        }
        self.config.write_text(
            "[options]\n"
            + "".join(f"{key} = {value}\n" for key, value in options.items())
        )

    def python(self, script, *args):
        self.run([sys.executable, "-c", script, *args])

    def run(self, command):
        process = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if process.returncode:
            raise RuntimeError(
                f"{command[1:4]} failed ({process.returncode}):\n"
                + process.stderr[-3000:]
            )

    def start_emulator(self):
        with (self.folder / "emulator.log").open("a") as log:
            self.emulator = subprocess.Popen(
                [sys.executable, "-m", "vipps_emulator", "--port", "0"]
                # A sales unit approved for push messages: the races are about
                # following approvals, and push requests make them quickest.
                + ["--approved", "--webhook-retry-delays", "0.5,1,2,4,8,15"],
                cwd=ADDON,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.emulator_url = self.emulator.stdout.readline().strip()
        if not self.emulator_url.startswith("http"):
            raise RuntimeError("the emulator did not start (see emulator.log)")

    def start_server(self):
        """Start Odoo in prefork mode; return once a worker answers /web/login."""
        with (self.folder / "odoo.stderr").open("a") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "odoo", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_until(
            lambda: self.server.poll() is not None or self.answers("/web/login"),
            120,
            "Odoo did not answer /web/login",
        )
        if self.server.poll() is not None:
            raise RuntimeError(f"Odoo stopped at start, see {self.logfile}")
        self.uid = self.jsonrpc("common", "login", self.dbname, "admin", "admin")

    def kill_server(self):
        """SIGKILL the whole server: master, workers and websocket process."""
        master = psutil.Process(self.server.pid)
        for process in [master, *master.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.server.wait()
        self.server = None

    def workers(self):
        return psutil.Process(self.server.pid).children()

    def worker_calling_vipps(self):
        """The server process with a connection open to the emulator, if any."""
        port = urllib.parse.urlsplit(self.emulator_url).port
        for worker in self.workers():
            connections = getattr(worker, "net_connections", worker.connections)
            with contextlib.suppress(psutil.NoSuchProcess):
                for connection in connections(kind="tcp"):
                    remote = connection.raddr
                    if remote and remote.port == port:
                        return worker
        return None

    # === TALKING TO IT === #

    def answers(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def jsonrpc(self, service, method, *args):
        body = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": args},
            "id": uuid.uuid4().hex,
        }
        answer = post_json(f"{self.url}/jsonrpc", body)
        if "error" in answer:
            data = answer["error"].get("data") or {}
            raise RpcError(
                f"{data.get('name')}: {data.get('message') or answer['error']}"
            )
        return answer.get("result")  # absent when the method returned None

    def call(self, model, method, *args, **kwargs):
        """Call a public model method as admin, over JSON-RPC (execute_kw)."""
        return self.jsonrpc(
            "object",
            "execute_kw",
            self.dbname,
            self.uid,
            "admin",
            model,
            method,
            list(args),
            kwargs,
        )

    def emulator_call(self, method, path, payload=None):
        return call_json(method, f"{self.emulator_url}/_emulator/{path}", payload)

    def sql(self, query, params=None):
        """Run a query on the server's database (autocommit); return the rows."""
        if self._connection is None:
            self._connection = psycopg2.connect(dbname=self.dbname, **self._pg())
            self._connection.autocommit = True
        with self._connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else None

    def _admin_sql(self, query, params=None):
        connection = psycopg2.connect(dbname="postgres", **self._pg())
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
        finally:
            connection.close()

    def wake_crons(self):
        """Wake the cron workers now, as Odoo's `ir.cron._notifydb` does (they
        listen on the `postgres` database)."""
        self._admin_sql("SELECT pg_notify('cron_trigger', %s)", [self.dbname])

    def _pg(self):
        keys = {"db_host": "host", "db_port": "port", "db_user": "user"}
        keys["db_password"] = "password"
        return {keys[key]: self.options[key] for key in keys if key in self.options}

    def log_errors(self, since=0):
        """ERROR lines and tracebacks the server logged after byte `since`."""
        with self.logfile.open(errors="replace") as log:
            log.seek(since)
            return [line for line in log if " ERROR " in line or "Traceback" in line]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process, timeout=30):
    """Stop a process we started: SIGTERM, then SIGKILL with its children."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
        process.kill()
        process.wait()


def wait_until(condition, timeout, message):
    """Poll `condition` until it is true; fail with `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout} s")
        time.sleep(0.2)


def call_json(method, url, payload=None, timeout=60):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = response.read()
    return json.loads(body) if body else {}


def post_json(url, payload):
    return call_json("POST", url, payload, timeout=120)


def get_status(url):
    """GET without following redirects; return the status (the customer's return)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        return connection.getresponse().status
    finally:
        connection.close()


@tagged("post_install", "-at_install")
class TestWorkers(BaseCase):
    """Race-sensitive invariants with real Odoo workers, real crons, real kills."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        template = os.environ.get("PAYMENT_VIPPS_TEMPLATE_DB")
        config_path = os.environ.get("PAYMENT_VIPPS_ODOO_CONFIG")
        if not (template and config_path):
            raise unittest.SkipTest(
                "run through `tools/dev.py test`: no template database known"
            )
        cls.stack = Stack(template, config_path)
        cls.addClassCleanup(cls.stack.close)
        cls.stack.start()
        cls.crons = {
            name: res_id
            for name, res_id in cls.stack.sql(
                "SELECT name, res_id FROM ir_model_data WHERE module = 'payment_vipps'"
                " AND model = 'ir.cron'"
            )
        }

    def setUp(self):
        super().setUp()
        if self.stack.server is None or self.stack.server.poll() is not None:
            self.stack.start_server()  # a failed test left it down
        self.stack.emulator_call("DELETE", "faults")
        self.stack.emulator_call("DELETE", "webhook-faults")
        self.log_start = self.stack.logfile.stat().st_size
        self.started = time.monotonic()

    def tearDown(self):
        self.stack.note(
            f"{self._testMethodName}: {time.monotonic() - self.started:.1f} s, "
            f"{len(self.stack.log_errors(self.log_start))} ERROR line(s) in odoo.log"
        )
        super().tearDown()

    # === HELPERS === #

    def invoices(self, group):
        rows = self.stack.sql(
            "SELECT id FROM account_move WHERE ref = %s ORDER BY id", [group]
        )
        return [row[0] for row in rows]

    def references(self, tx_ids):
        rows = self.stack.sql(
            "SELECT id, reference FROM payment_transaction WHERE id IN %s",
            [tuple(tx_ids)],
        )
        return dict(rows)

    def vipps_payments(self):
        """Every payment at Vipps, by reference (the emulator's own view)."""
        payments = self.stack.emulator_call("GET", "payments")["payments"]
        return {payment["reference"]: payment for payment in payments}

    def vipps_calls(self, operation):
        query = urllib.parse.urlencode({"operation": operation})
        return self.stack.emulator_call("GET", f"requests?{query}")["entries"]

    def run_cron(self, name, timeout=60):
        """Run a cron job now in an HTTP worker (method_direct_trigger over RPC),
        waiting while a cron worker is running it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.stack.call(
                    "ir.cron", "method_direct_trigger", self.crons[name]
                )
            except RpcError as error:
                if not CRON_BUSY.search(str(error)):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def make_due(self, tx_ids=()):
        """Bring forward what waits for a retry delay, and these payments' poll."""
        self.stack.sql(
            "UPDATE payment_vipps_outbox SET next_attempt_at ="
            " now() at time zone 'utc' - interval '1 second' WHERE state = 'pending'"
        )
        if tx_ids:
            self.stack.sql(
                "UPDATE payment_transaction SET vipps_last_sync ="
                " now() at time zone 'utc' - interval '1 hour' WHERE id IN %s",
                [tuple(tx_ids)],
            )

    def settle(self, tx_ids=(), timeout=90):
        """Let every path finish: webhooks delivered, then the outbox and the poll
        (of these payments) run until no outbox row is left to do."""
        deadline = time.monotonic() + timeout
        while True:
            self.stack.emulator_call("POST", "deliveries/wait", {"timeout": 30})
            self.make_due(tx_ids)
            self.run_cron("cron_process_outbox")
            self.run_cron("cron_poll_payments")
            pending = self.stack.sql(
                "SELECT count(*) FROM payment_vipps_outbox WHERE state = 'pending'"
            )[0][0]
            idle = self.stack.emulator_call("POST", "deliveries/wait", {"timeout": 1})
            if not pending and idle.get("idle"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{pending} outbox rows still pending")

    def booked(self, tx_id):
        """What Odoo booked for a Vipps payment: its payments (and its children's),
        inbound minus outbound."""
        return self.stack.sql(
            """
            SELECT COALESCE(SUM(CASE WHEN p.payment_type = 'inbound'
                                     THEN p.amount ELSE -p.amount END), 0)
              FROM account_payment p
              JOIN payment_transaction t ON t.id = p.payment_transaction_id
             WHERE (t.id = %s OR t.source_transaction_id = %s)
               AND p.state != 'canceled'
            """,
            [tx_id, tx_id],
        )[0][0]

    def assert_books_match_vipps(self, tx_ids):
        """Invariant 1: Vipps's captured minus refunded equals Odoo's payments."""
        payments = self.vipps_payments()
        for tx_id, reference in self.references(tx_ids).items():
            aggregate = payments[reference]["aggregate"]
            at_vipps = (
                aggregate["capturedAmount"]["value"]
                - aggregate["refundedAmount"]["value"]
            )
            self.assertEqual(
                round(float(self.booked(tx_id)) * 100),
                at_vipps,
                msg=f"{reference}: Odoo's books differ from Vipps's aggregate.",
            )

    def invoice_states(self, invoice_ids):
        rows = self.stack.sql(
            "SELECT id, state, payment_state, vipps_state, amount_total"
            " FROM account_move WHERE id IN %s",
            [tuple(invoice_ids)],
        )
        return {row[0]: row[1:] for row in rows}

    def payments_per_invoice(self, invoice_ids):
        """The account.payment records of each invoice's Vipps transactions."""
        rows = self.stack.sql(
            """
            SELECT r.invoice_id, count(p.id)
              FROM account_invoice_transaction_rel r
              -- the invoice's transactions and their captures
              JOIN payment_transaction t
                ON r.transaction_id IN (t.id, t.source_transaction_id)
               AND t.operation != 'refund'
              LEFT JOIN account_payment p ON p.payment_transaction_id = t.id
                   AND p.state != 'canceled'
             WHERE r.invoice_id IN %s
             GROUP BY r.invoice_id
            """,
            [tuple(invoice_ids)],
        )
        return collections.Counter(dict(rows))

    def assert_paid_once(self, invoice_ids, tx_ids):
        """Invariant 3: each invoice paid, by one payment, captured once at Vipps."""
        states = self.invoice_states(invoice_ids)
        for invoice_id, (state, payment_state, vipps_state, __) in states.items():
            self.assertEqual(
                (state, vipps_state), ("posted", "paid"), msg=f"invoice {invoice_id}"
            )
            self.assertIn(payment_state, ("paid", "in_payment"))
        payments = self.payments_per_invoice(invoice_ids)
        self.assertEqual(
            set(payments.values()), {1}, msg=f"One payment per invoice: {payments}"
        )
        vipps = self.vipps_payments()
        for reference in self.references(tx_ids).values():
            payment = vipps[reference]
            captures = [e for e in payment["events"] if e["name"] == "CAPTURED"]
            self.assertEqual(len(captures), 1, msg=f"{reference} captured once")
            aggregate = payment["aggregate"]
            self.assertEqual(
                aggregate["capturedAmount"]["value"],
                aggregate["authorizedAmount"]["value"],
                msg=f"{reference}: all that was approved is captured",
            )
            keys = {c["idempotencyKey"] for c in self.calls_of(reference, "capture")}
            self.assertEqual(len(keys), 1, msg=f"{reference}: one capture key")

    def calls_of(self, reference, operation):
        operation = {"capture": "capturePayment", "create": "createPayment"}[operation]
        query = urllib.parse.urlencode({"operation": operation, "reference": reference})
        return self.stack.emulator_call("GET", f"requests?{query}")["entries"]

    def in_threads(self, *functions, timeout=180):
        """Run the functions in threads started at the same moment; return their
        results (or raise the first exception)."""
        barrier = threading.Barrier(len(functions))

        def started_together(function):
            barrier.wait()
            return function()

        with concurrent.futures.ThreadPoolExecutor(len(functions)) as pool:
            futures = [pool.submit(started_together, f) for f in functions]
            return [future.result(timeout=timeout) for future in futures]

    # === TESTS === #

    def test_paths_racing_an_approval_pay_each_invoice_once(self):
        """Invariants 3 (an invoice is never paid twice) and 1 (Vipps's captured
        minus refunded equals the payments Odoo booked).

        20 requests sent over RPC are approved at once, every webhook delivered twice,
        while other workers run Check status on the same invoices, the customers come
        back to the return URL and the poll runs: each invoice gets one payment and
        each Vipps payment is captured once.
        """
        invoices = self.invoices("race")
        tx_ids = self.stack.call("account.move", "vipps_request_payment", invoices)
        self.assertEqual(len(tx_ids), len(invoices))
        self.settle()
        references = self.references(tx_ids)
        vipps = self.vipps_payments()
        return_urls = [vipps[ref]["returnUrl"] for ref in references.values()]
        self.make_due(tx_ids)  # the poll takes them all
        self.stack.emulator_call(
            "POST", "webhook-faults", {"mode": "duplicate", "count": 4 * len(invoices)}
        )
        problems = collections.defaultdict(list)

        def approve():
            for reference in references.values():
                self.stack.emulator_call("POST", f"payments/{reference}/approve", {})

        def check_status():
            for invoice_id in random.sample(invoices * 2, 2 * len(invoices)):
                try:
                    self.stack.call(
                        "account.move", "action_vipps_check_status", [invoice_id]
                    )
                except RpcError as error:
                    problems["Check status"].append(str(error))

        def customer_returns():
            for url in random.sample(return_urls * 2, 2 * len(return_urls)):
                status = get_status(url)
                if status != 303:
                    problems["return"].append(status)

        def poll():
            # In a cron worker (due now, woken up) and in an HTTP worker (over RPC).
            self.stack.sql(
                "UPDATE ir_cron SET nextcall = now() at time zone 'utc' WHERE id = %s",
                [self.crons["cron_poll_payments"]],
            )
            self.stack.wake_crons()
            for __ in range(3):
                try:
                    self.run_cron("cron_poll_payments", timeout=5)
                except RpcError as error:
                    if not CRON_BUSY.search(str(error)):
                        problems["poll"].append(str(error))

        self.in_threads(approve, check_status, customer_returns, poll)
        self.settle(tx_ids)
        self.assertFalse(dict(problems), msg="No path may fail for the user.")
        self.assert_paid_once(invoices, tx_ids)
        self.assert_books_match_vipps(tx_ids)
        deliveries = self.stack.emulator_call("GET", "deliveries")["entries"]
        duplicates = [d for d in deliveries if d.get("duplicate")]
        self.assertTrue(duplicates, msg="Webhooks were delivered twice.")

    # The cancel may wait for the transaction of the worker that captures the
    # approval, fail on a serialization error and be retried by Odoo: the retry
    # finds the invoice paid through Vipps and refuses, so the money captured never
    # belongs to a cancelled invoice.
    def test_cancel_racing_approval_captures_nothing(self):
        """Invariant 2 (nothing live for a cancelled invoice).

        The customer approves in the app at the very moment the accountant cancels
        the invoice (button_cancel over RPC, in another worker than the webhook's):
        a cancelled invoice ends with nothing captured and its request terminated or
        its reservation released; a cancel refused because the approval was known
        leaves the invoice posted and paid once.
        """
        invoices = self.invoices("cancel")
        tx_ids = self.stack.call("account.move", "vipps_request_payment", invoices)
        self.settle()
        references = self.references(tx_ids)
        by_invoice = dict(
            self.stack.sql(
                "SELECT invoice_id, transaction_id FROM account_invoice_transaction_rel"
                " WHERE transaction_id IN %s",
                [tuple(tx_ids)],
            )
        )
        refused = {}

        def approver(invoice_id):
            reference = references[by_invoice[invoice_id]]
            return lambda: self.stack.emulator_call(
                "POST", f"payments/{reference}/approve", {}
            )

        def canceller(invoice_id):
            def cancel():
                try:
                    self.stack.call("account.move", "button_cancel", [invoice_id])
                except RpcError as error:
                    refused[invoice_id] = str(error)

            return cancel

        self.in_threads(
            *[approver(invoice_id) for invoice_id in invoices],
            *[canceller(invoice_id) for invoice_id in invoices],
        )
        self.settle(tx_ids)
        states = self.invoice_states(invoices)
        vipps = self.vipps_payments()
        outcomes = {}
        for invoice_id in invoices:
            payment = vipps[references[by_invoice[invoice_id]]]
            outcomes[invoice_id] = self._cancel_outcome(
                states[invoice_id], payment, refused.get(invoice_id)
            )
        self.stack.note(f"Cancel racing approval: {outcomes}")
        wrong = {
            invoice_id: outcome
            for invoice_id, outcome in outcomes.items()
            if outcome.startswith("WRONG")
        }
        open_txs = self.stack.sql(
            "SELECT reference, state FROM payment_transaction WHERE id IN %s"
            " AND state NOT IN ('done', 'cancel')",
            [tuple(tx_ids)],
        )
        self.assertFalse(open_txs, msg="Every payment is settled in Odoo.")
        self.assert_books_match_vipps(tx_ids)
        self.assertEqual(wrong, {}, msg="A cancelled invoice must not be charged.")

    # The approval's capture is in flight when the accountant cancels (or resets to
    # draft, the button the invoice form shows): the call waits for the capture's
    # transaction and Odoo retries it after the serialization error; the retry finds
    # the invoice paid through Vipps and refuses.
    def test_cancel_while_approval_is_captured_is_refused(self):
        """Invariant 2 (a cancelled or reset invoice is never charged).

        The customer approves and the worker following the approval is capturing
        (Vipps answers the capture slowly) when the accountant cancels the invoice,
        or resets it to draft, in the other worker: the payment is registered and
        the change refused with the reason, the invoice stays posted and paid once.
        """
        invoices = self.invoices("capturing")
        problems = [
            problem
            for invoice, button in zip(
                invoices, ("button_cancel", "button_draft"), strict=False
            )
            for problem in self._change_while_capturing(invoice, button)
        ]
        self.assertEqual(problems, [], msg="Charged for a cancelled or reset invoice.")

    def _change_while_capturing(self, invoice, button):
        """Call `button` on the invoice while its approval is being captured; return
        what went wrong."""
        (tx_id,) = self.stack.call("account.move", "vipps_request_payment", [invoice])
        self.settle()
        reference = self.references([tx_id])[tx_id]
        self.stack.emulator_call(
            "POST", "faults", {"operation": "capturePayment", "latency": 3.0}
        )
        self.stack.emulator_call("POST", f"payments/{reference}/approve", {})
        wait_until(
            lambda: any(
                call["reference"] == reference
                for call in self.stack.emulator_call("GET", "requests")["entries"]
                if call["operation"] == "getPayment"
            )
            and self.stack.worker_calling_vipps(),
            10,
            "No worker is capturing",
        )
        problems = []
        try:
            self.stack.call("account.move", button, [invoice])
            problems.append(f"{button} was not refused")
        except RpcError as error:
            self.assertIn("Vipps", str(error))
        self.settle([tx_id])
        self.assert_books_match_vipps([tx_id])
        state, payment_state, __, __ = self.invoice_states([invoice])[invoice]
        captured = self.vipps_payments()[reference]["aggregate"]["capturedAmount"]
        if state != "posted" or payment_state not in ("paid", "in_payment"):
            problems.append(
                f"{button}: invoice {invoice} ended {state} ({payment_state}) with "
                f"{captured['value'] / 100} {captured['currency']} captured by Vipps"
            )
        return problems

    @staticmethod
    def _cancel_outcome(invoice_state, payment, refusal):
        """Where an invoice cancelled as it was approved ended, "WRONG..." if it
        breaks invariant 2."""
        state, payment_state, __, __ = invoice_state
        aggregate = {key: value["value"] for key, value in payment["aggregate"].items()}
        captured = aggregate["capturedAmount"]
        if refusal:
            paid = state == "posted" and payment_state in ("paid", "in_payment")
            if "Vipps" in refusal and paid and captured == payment["amount"]["value"]:
                return "cancel refused, invoice paid"
            return f"WRONG: cancel refused ({refusal}), invoice {state} {payment_state}"
        if state != "cancel":
            return f"WRONG: cancel accepted, invoice {state}"
        if captured:
            return f"WRONG: invoice cancelled, {captured / 100} captured at Vipps"
        if payment["state"] == "TERMINATED":
            return "cancelled, request terminated"
        if aggregate["cancelledAmount"] == aggregate["authorizedAmount"]:
            return "cancelled, reservation released"
        return f"WRONG: invoice cancelled, payment {payment['state']} {aggregate}"

    def test_outbox_shared_by_two_cron_workers_sends_each_request_once(self):
        """Invariant 5 (queued work is done once, by whichever worker takes it).

        40 invoices posted with automatic requests on queue 40 requests in the
        outbox; two cron jobs running its code in the 2 cron workers at once share
        the rows: each request reaches Vipps once, none is left pending.
        """
        invoices = self.invoices("auto")
        outbox_cron = self.crons["cron_process_outbox"]
        provider_id = self.stack.sql(
            "SELECT id FROM payment_provider WHERE code = 'vipps'"
        )[0][0]
        self.stack.call(
            "payment.provider",
            "write",
            [provider_id],
            {"vipps_auto_request": True, "vipps_auto_push": True},
        )
        self.addCleanup(
            self.stack.call,
            "payment.provider",
            "write",
            [provider_id],
            {"vipps_auto_request": False},
        )
        (second,) = self.stack.call(
            "ir.cron",
            "copy",
            outbox_cron,
            {"name": "Vipps outbox, second runner", "active": False},
        )
        self.addCleanup(self.stack.call, "ir.cron", "unlink", [second])
        # Held back while posting, then both runners are woken together.
        activate = "UPDATE ir_cron SET active = %s WHERE id = %s"
        self.stack.sql(activate, [False, outbox_cron])
        self.addCleanup(self.stack.sql, activate, [True, outbox_cron])
        self.stack.emulator_call(
            "POST",
            "faults",
            {"operation": "createPayment", "count": 40, "latency": 0.1},
        )
        self.stack.call("account.move", "action_post", invoices)
        queued = self.stack.sql(
            "SELECT count(*) FROM payment_vipps_outbox WHERE operation = 'request'"
            " AND state = 'pending' AND move_id IN %s",
            [tuple(invoices)],
        )[0][0]
        self.assertEqual(queued, len(invoices))
        self.stack.sql(
            "UPDATE ir_cron SET active = true,"
            " nextcall = now() at time zone 'utc' - interval '1 second'"
            " WHERE id IN %s",
            [(outbox_cron, second)],
        )
        woken_at = self.stack.sql("SELECT now() at time zone 'utc'")[0][0]
        self.stack.wake_crons()

        def pending():
            return self.stack.sql(
                "SELECT count(*) FROM payment_vipps_outbox WHERE operation = 'request'"
                " AND state = 'pending' AND move_id IN %s",
                [tuple(invoices)],
            )[0][0]

        wait_until(lambda: not pending(), 90, "The outbox was not emptied")
        runs = self.stack.sql(
            "SELECT cron_id, sum(done) FROM ir_cron_progress"
            " WHERE cron_id IN %s AND create_date >= %s GROUP BY cron_id",
            [(outbox_cron, second), woken_at],
        )
        self.stack.note(f"Outbox rows done per cron job: {dict(runs)}")
        self.assertEqual(len(runs), 2, msg=f"Both runners took rows: {runs}")
        self.assertTrue(all(done for __, done in runs), msg=f"Shared: {runs}")
        creates = collections.Counter(
            call["reference"] for call in self.vipps_calls("createPayment")
        )
        per_invoice = collections.Counter(
            payment["metadata"].get("odooInvoice")
            for payment in self.vipps_payments().values()
        )
        for invoice_id in invoices:
            self.assertEqual(per_invoice[str(invoice_id)], 1, msg="One at Vipps")
        rows = self.stack.sql(
            "SELECT m.id, t.reference, t.vipps_state FROM account_move m"
            " JOIN account_invoice_transaction_rel r ON r.invoice_id = m.id"
            " JOIN payment_transaction t ON t.id = r.transaction_id"
            " WHERE m.id IN %s",
            [tuple(invoices)],
        )
        self.assertEqual(len(rows), len(invoices), msg="One transaction per invoice.")
        for __, reference, vipps_state in rows:
            self.assertEqual(vipps_state, "CREATED")
            self.assertEqual(creates[reference], 1, msg=f"{reference} sent once")
        self.settle()

    def test_worker_killed_between_capture_and_commit(self):
        """Invariant 4 (a crash between the Vipps call and the commit loses nothing
        and repeats nothing), with invariants 1 and 3.

        Vipps carries out the capture but its answer hangs; the HTTP worker that
        follows the approval webhook is killed (SIGKILL) while it waits, so Odoo
        rolls back what it knew. The webhook comes again to another worker: Odoo
        books what Vipps's aggregate shows, once, without capturing again.
        """
        invoice = self.invoices("crash")[0]
        (tx_id,) = self.stack.call("account.move", "vipps_request_payment", [invoice])
        self.settle()
        reference = self.references([tx_id])[tx_id]
        self.stack.emulator_call(
            "POST",
            "faults",
            {
                "operation": "capturePayment",
                "timeout": True,
                "processed": True,
                "hang_seconds": 8,
            },
        )
        self.stack.emulator_call("POST", f"payments/{reference}/approve", {})
        wait_until(
            lambda: self.vipps_payments()[reference]["aggregate"]["capturedAmount"][
                "value"
            ],
            20,
            "Vipps did not capture",
        )
        worker = None

        def found():
            nonlocal worker
            worker = self.stack.worker_calling_vipps()
            return worker

        wait_until(found, 5, "No worker waits for the capture")
        state = self.stack.sql(
            "SELECT state FROM payment_transaction WHERE id = %s", [tx_id]
        )[0][0]
        self.assertIn(state, ("pending", "authorized"), msg="Not committed yet.")
        worker.send_signal(signal.SIGKILL)
        wait_until(
            lambda: worker.pid not in {w.pid for w in self.stack.workers()},
            10,
            "The killed worker is still there",
        )
        self.settle([tx_id])
        # The emulator logs the capture once its hang is over.
        wait_until(lambda: self.calls_of(reference, "capture"), 15, "No capture log")
        self.assert_paid_once([invoice], [tx_id])
        self.assert_books_match_vipps([tx_id])
        self.assertEqual(
            len(self.calls_of(reference, "capture")), 1, msg="Not captured again."
        )

    def test_server_killed_between_create_and_commit(self):
        """Invariant 4 (a crash between the Vipps call and the commit loses nothing
        and repeats nothing), with invariants 1 and 3.

        Vipps creates a request but its answer hangs; the whole server is killed
        (SIGKILL) while the worker waits, so the request exists at Vipps and not in
        Odoo. After a restart the accountant sends both invoices again and the
        outbox checks what it recorded: Vipps has one request per invoice, and once
        approved each invoice is paid once.
        """
        invoices = self.invoices("crash")[1:]
        self.stack.emulator_call(
            "POST",
            "faults",
            {
                "operation": "createPayment",
                "timeout": True,
                "processed": True,
                "hang_seconds": 15,
            },
        )
        failed = []

        def send():
            try:
                self.stack.call("account.move", "vipps_request_payment", invoices)
            except OSError as error:
                failed.append(error)

        sender = threading.Thread(target=send)
        sender.start()

        def created():
            return [
                payment
                for payment in self.vipps_payments().values()
                if payment["metadata"].get("odooInvoice") == str(invoices[0])
            ]

        wait_until(created, 20, "Vipps did not create the request")
        self.assertTrue(self.stack.worker_calling_vipps(), msg="A worker waits.")
        self.stack.kill_server()
        sender.join(30)
        self.assertTrue(failed, msg="The accountant saw the call fail.")
        self.assertFalse(
            self.stack.sql(
                "SELECT transaction_id FROM account_invoice_transaction_rel"
                " WHERE invoice_id IN %s",
                [tuple(invoices)],
            ),
            msg="Odoo rolled the requests back.",
        )
        self.stack.start_server()
        tx_ids = self.stack.call("account.move", "vipps_request_payment", invoices)
        self.settle()
        per_invoice = collections.Counter(
            payment["metadata"].get("odooInvoice")
            for payment in self.vipps_payments().values()
        )
        self.assertEqual(
            [per_invoice[str(invoice)] for invoice in invoices],
            [1, 1],
            msg="One request per invoice at Vipps: none sent twice.",
        )
        for reference in self.references(tx_ids).values():
            self.stack.emulator_call("POST", f"payments/{reference}/approve", {})
        self.settle(tx_ids)
        self.assert_paid_once(invoices, tx_ids)
        self.assert_books_match_vipps(tx_ids)
