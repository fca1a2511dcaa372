#!/usr/bin/env python3
"""Development environment of payment_vipps: demo server, tests and linters.

    python3 tools/dev.py demo        PostgreSQL + emulator + Odoo with demo invoices
    python3 tools/dev.py test        the addon's test suite (pytest-odoo)
    python3 tools/dev.py test-odoo   Odoo's own payment/account_payment suites
    python3 tools/dev.py lint        the pre-commit linters on the whole repository

Every command first makes sure of its prerequisites, and does nothing twice: the
virtualenv (``.dev/venv``) is rebuilt only when a requirements file changes, the
PostgreSQL template database only when the addon's dependencies or Odoo change.

The first stage runs on the system Python with the standard library only; once the
virtualenv exists the script re-executes itself inside it.
"""

import argparse
import ast
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "payment_vipps"
STATE = REPO / ".dev"
TOOLS = REPO / "tools"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / MODULE
# The Odoo series the addon supports; the first is the default.
SERIES = ("18.0", "19.0")
DB_ROLE = "odoo"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The emulator behaves as Vipps does for an ordinary sales unit unless asked:
# long-living payments (5050) and PUSH_MESSAGE (5080) refused, profile.sub written a
# few seconds after approval. The demo (unless --ordinary-merchant) and the
# benchmarks use a sales unit Vipps approved for both, with profile.sub at once, to
# show and measure requests sent to the app.
EMULATOR_APPROVED = ["--approved", "--sub-delay", "0"]


def select_series(series):
    """Point every per-series path and database name at `series`.

    Each series has its own source tree, virtualenv, configuration files and
    databases; the PostgreSQL server and the addon link are shared. 18.0 keeps the
    names it always had, so an existing demo database stays where it was.
    """
    global SERIE, DEFAULT_ODOO_SRC, ODOO_DOWNLOAD_URL, VENV, SERIES_STATE
    global TEST_DB, DEMO_DB, TEMPLATE_PREFIX
    SERIE = series
    DEFAULT_ODOO_SRC = CACHE / f"odoo-{series}"
    ODOO_DOWNLOAD_URL = (
        f"https://nightly.odoo.com/{series}/nightly/src/odoo_{series}.latest.tar.gz"
    )
    suffix = "" if series == SERIES[0] else "_" + series.split(".")[0]
    SERIES_STATE = STATE if series == SERIES[0] else STATE / series
    VENV = SERIES_STATE / "venv"
    TEST_DB = f"payment_vipps_test{suffix}"
    DEMO_DB = f"payment_vipps_demo{suffix}"
    TEMPLATE_PREFIX = f"payment_vipps_tmpl{suffix}_"


select_series(os.environ.get("ODOO_SERIES") or SERIES[0])


def say(message):
    print(f"[dev] {message}", flush=True)


def fail(message):
    print(f"\n[dev] ERROR: {message}\n", file=sys.stderr, flush=True)
    sys.exit(2)


def run(cmd, check=True, **kwargs):
    """Run a command, echoing it; exit with its code on failure when `check`."""
    say("$ " + " ".join(str(part) for part in cmd))
    result = subprocess.run([str(part) for part in cmd], check=False, **kwargs)
    if check and result.returncode:
        sys.exit(result.returncode)
    return result


# --------------------------------------------------------------------------------------
# Stage 1 (system Python): Odoo source and virtualenv
# --------------------------------------------------------------------------------------


def is_odoo_source(path):
    release = Path(path) / "odoo" / "release.py"
    if not release.is_file() or not (Path(path) / "requirements.txt").is_file():
        return False
    namespace = {}
    exec(release.read_text(), namespace)  # noqa: S102 - Odoo's own version file
    addons = Path(path) / "odoo" / "addons"
    return namespace.get("serie") == SERIE and (addons / "account_payment").is_dir()


def find_odoo_source():
    """Return the Odoo source tree of the series: ODOO_SRC, the default place, or a
    download of the official Community nightly."""
    explicit = os.environ.get("ODOO_SRC")
    if explicit:
        if not is_odoo_source(explicit):
            fail(
                f"ODOO_SRC={explicit} is not an Odoo {SERIE} source tree (expected "
                "setup.py, requirements.txt and odoo/ with every addon in odoo/addons)."
            )
        return Path(explicit).resolve()
    if is_odoo_source(DEFAULT_ODOO_SRC):
        return DEFAULT_ODOO_SRC
    say(
        f"No Odoo {SERIE} source in {DEFAULT_ODOO_SRC}; downloading {ODOO_DOWNLOAD_URL}"
    )
    try:
        download_odoo_source(DEFAULT_ODOO_SRC)
    except OSError as err:
        fail(
            f"Could not find or download the Odoo {SERIE} source ({err}).\n"
            f"Point ODOO_SRC at an Odoo {SERIE} source tree (setup.py, "
            "requirements.txt, odoo/ with its addons), or unpack one into "
            f"{DEFAULT_ODOO_SRC}."
        )
    return DEFAULT_ODOO_SRC


def download_odoo_source(target):
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "odoo.tar.gz"
        with urllib.request.urlopen(ODOO_DOWNLOAD_URL, timeout=60) as response:  # noqa: S310
            with archive.open("wb") as out:
                shutil.copyfileobj(response, out)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        roots = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(roots) != 1 or not is_odoo_source(roots[0]):
            raise OSError(f"the downloaded archive is not an Odoo {SERIE} source tree")
        roots[0].rename(target)


def venv_python():
    return VENV / "bin" / "python"


def requirements_fingerprint(odoo_src):
    digest = hashlib.sha256(sys.version.encode())
    for path in (
        odoo_src / "requirements.txt",
        TOOLS / "requirements.txt",
        TOOLS / "constraints.txt",
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv(odoo_src):
    """Create .dev/venv with Odoo's requirements and ours; put Odoo on its path."""
    stamp = VENV / ".payment_vipps-requirements"
    fingerprint = requirements_fingerprint(odoo_src)
    if stamp.exists() and stamp.read_text() == fingerprint and venv_python().exists():
        return
    release = {}
    exec((odoo_src / "odoo" / "release.py").read_text(), release)  # noqa: S102
    # 18.0's release.py does not say; its README does: 3.10 to 3.12.
    lowest = release.get("MIN_PY_VERSION", (3, 10))
    highest = release.get("MAX_PY_VERSION", (3, 12))
    if not lowest <= sys.version_info[:2] <= highest:
        fail(
            f"Odoo {SERIE} needs Python {'.'.join(map(str, lowest))} to "
            f"{'.'.join(map(str, highest))}; this is {sys.version.split()[0]}."
        )
    say(f"Creating the virtualenv in {VENV}")
    started = time.monotonic()
    SERIES_STATE.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "venv", VENV])
    # python-ldap needs system headers and serves only auth_ldap: leave it out.
    odoo_requirements = SERIES_STATE / "odoo-requirements.txt"
    odoo_requirements.write_text(
        "".join(
            line + "\n"
            for line in (odoo_src / "requirements.txt").read_text().splitlines()
            if not line.lower().startswith("python-ldap")
        )
    )
    env = dict(os.environ, PIP_CONSTRAINT=str(TOOLS / "constraints.txt"))
    pip = [
        venv_python(),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    run([*pip, "-r", odoo_requirements, "-r", TOOLS / "requirements.txt"], env=env)
    site_packages = subprocess.check_output(
        [venv_python(), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        text=True,
    ).strip()
    Path(site_packages, "odoo-source.pth").write_text(f"{odoo_src}\n")
    stamp.write_text(fingerprint)
    say(f"Virtualenv ready in {time.monotonic() - started:.0f} s")


def bootstrap():
    """Stage 1: make sure of Odoo and the virtualenv, then continue inside it."""
    odoo_src = find_odoo_source()
    ensure_venv(odoo_src)
    if Path(sys.prefix).resolve() != VENV.resolve():
        env = dict(os.environ, PAYMENT_VIPPS_ODOO_SRC=str(odoo_src), ODOO_SERIES=SERIE)
        os.execve(venv_python(), [str(venv_python()), __file__, *sys.argv[1:]], env)
    return odoo_src


# --------------------------------------------------------------------------------------
# Stage 2 (virtualenv): PostgreSQL, configuration, databases
# --------------------------------------------------------------------------------------


class Database:
    """Where PostgreSQL is: a server the user points at, or the embedded one."""

    def __init__(self, args):
        self.options = {}
        self._server = None
        external = {
            "db_host": args.db_host or os.environ.get("PGHOST"),
            "db_port": args.db_port or os.environ.get("PGPORT"),
            "db_user": args.db_user or os.environ.get("PGUSER"),
            "db_password": args.db_password or os.environ.get("PGPASSWORD"),
        }
        if any(external.values()):
            self.options = {key: value for key, value in external.items() if value}
            say(f"Using the PostgreSQL server given by {', '.join(self.options)}")
        else:
            self._start_embedded()

    def _start_embedded(self):
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver

        pgdata = STATE / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        say(f"Starting the embedded PostgreSQL (pgserver) in {pgdata}")
        self._server = pgserver.get_server(pgdata)
        info = self._server.get_postmaster_info()
        self.options = {"db_host": str(info.socket_dir), "db_port": str(info.port)}
        self._server.psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{DB_ROLE}') THEN CREATE ROLE {DB_ROLE} SUPERUSER LOGIN; END IF; END $$;"
        )
        self.options["db_user"] = DB_ROLE

    def connect(self, dbname="postgres"):
        import psycopg2

        keys = {"db_host": "host", "db_port": "port", "db_user": "user"}
        keys["db_password"] = "password"
        params = {keys[key]: value for key, value in self.options.items()}
        connection = psycopg2.connect(dbname=dbname, **params)
        connection.autocommit = True
        return connection

    def sql(self, query, params=None, dbname="postgres"):
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall() if cursor.description else None
        finally:
            connection.close()

    def exists(self, name):
        return bool(self.sql("SELECT 1 FROM pg_database WHERE datname = %s", [name]))

    def drop(self, name):
        self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [name],
        )
        self.sql(f'DROP DATABASE IF EXISTS "{name}"')

    def copy(self, template, name):
        self.drop(name)
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manifest():
    return ast.literal_eval((REPO / "__manifest__.py").read_text())


def addons_dir():
    """Return a folder that holds the addon under its technical name.

    The clone may have any name; Odoo and pytest-odoo need the folder to be named
    after the module, so the folder holds a symlink to the repository.
    """
    folder = STATE / "addons"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / MODULE
    if not link.is_symlink() or link.resolve() != REPO:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(REPO, target_is_directory=True)
    return folder


def write_config(odoo_src, database, name, **extra):
    options = {
        "addons_path": f"{odoo_src / 'odoo' / 'addons'},{addons_dir()}",
        "data_dir": str(STATE / "data"),
        "admin_passwd": "admin",
        # Without demo data: 18.0 says so with without_demo, 19.0 by default.
        **({"without_demo": "all"} if SERIE == "18.0" else {}),
        "http_interface": "127.0.0.1",
        "max_cron_threads": "0",
        **database.options,
        **extra,
    }
    path = SERIES_STATE / f"{name}.conf"
    path.write_text(
        "[options]\n" + "".join(f"{key} = {value}\n" for key, value in options.items())
    )
    return path


def odoo(config, *args, check=True, **kwargs):
    return run(
        [sys.executable, "-m", "odoo", "-c", config, *args], check=check, **kwargs
    )


def ensure_template(odoo_src, database, config):
    """Return a database with the addon's dependencies installed, built once."""
    depends = sorted(manifest()["depends"])
    release = (odoo_src / "odoo" / "release.py").read_bytes()
    digest = hashlib.sha256(json.dumps(depends).encode() + release)
    digest.update(str(odoo_src).encode())
    # The modules Odoo can find: a tree unpacked again with other modules needs a
    # template that lists them.
    digest.update(" ".join(sorted(os.listdir(odoo_src / "odoo" / "addons"))).encode())
    name = TEMPLATE_PREFIX + digest.hexdigest()[:12]
    if database.exists(name):
        return name
    for (stale,) in database.sql(
        "SELECT datname FROM pg_database WHERE datname LIKE %s", [TEMPLATE_PREFIX + "%"]
    ):
        database.drop(stale)
    say(f"Building the template database {name} ({', '.join(depends)})")
    started = time.monotonic()
    building = name + "_building"
    database.drop(building)
    odoo(config, "-d", building, "-i", ",".join(depends), "--stop-after-init")
    database.sql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    say(f"Template ready in {time.monotonic() - started:.0f} s")
    return name


def fresh_database(odoo_src, database, config, name):
    """Copy the template into `name` and install the addon in it."""
    template = ensure_template(odoo_src, database, config)
    database.copy(template, name)
    odoo(config, "-d", name, "-i", MODULE, "--stop-after-init")


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def ensure_browser():
    """Make sure Chromium and websocket-client are there; say so loudly when not."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium and os.geteuid() == 0 and shutil.which("apt-get"):
        say("Chromium is missing: installing it with apt-get (browser tests need it)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], check=False, env=env)
        run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        chromium = shutil.which("chromium")
    try:
        import websocket  # noqa: F401
    except ImportError:
        chromium = None
    if not chromium:
        banner = "!" * 78
        message = (
            f"\n{banner}\n  Chromium (or websocket-client) is missing: the browser "
            "tests WILL BE SKIPPED.\n  Install it with: apt-get install chromium\n"
            f"{banner}\n"
        )
        print(message, file=sys.stderr, flush=True)
        if IN_CI:
            fail("CI=true and browser tests cannot run.")


def cmd_test(odoo_src, args):
    database = Database(args)
    ensure_browser()
    config = write_config(odoo_src, database, "test", http_port=free_port())
    fresh_database(odoo_src, database, config, TEST_DB)
    junit = SERIES_STATE / "pytest-junit.xml"
    env = dict(
        os.environ,
        PAYMENT_VIPPS_TEMPLATE_DB=ensure_template(odoo_src, database, config),
        PAYMENT_VIPPS_ODOO_CONFIG=str(config),
    )
    targets = args.pytest_args or [
        str(addons_dir() / MODULE / "tests"),
        str(addons_dir() / MODULE / "vipps_emulator" / "tests"),
    ]
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--odoo-config={config}",
            f"--odoo-database={TEST_DB}",
            "--odoo-http",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit2",
            "-rs",
            f"--rootdir={addons_dir()}",
            *targets,
        ],
        check=False,
        env=env,
        # Run from the folder that holds the addon under its technical name, so that
        # pytest imports the tests as odoo.addons.payment_vipps.tests.*
        cwd=addons_dir(),
    )
    skipped = count_skipped(junit)
    if skipped and IN_CI:
        fail(f"{skipped} test(s) were skipped; under CI=true every test must run.")
    sys.exit(result.returncode)


def count_skipped(junit):
    import xml.etree.ElementTree as ET

    if not junit.exists():
        return 0
    root = ET.parse(junit).getroot()
    return sum(int(suite.get("skipped", 0)) for suite in root.iter("testsuite"))


def cmd_test_odoo(odoo_src, args):
    """Run Odoo's own payment and account_payment tests with payment_vipps installed."""
    database = Database(args)
    name = TEST_DB + "_odoo"
    config = write_config(odoo_src, database, "test-odoo", http_port=free_port())
    fresh_database(odoo_src, database, config, name)
    odoo(
        config,
        "-d",
        name,
        "-u",
        "payment,account_payment",
        "--test-enable",
        "--test-tags",
        "/payment,/account_payment",
        "--log-level=test",
        "--stop-after-init",
    )


def cmd_bench(odoo_src, args):
    """Benchmarks: API calls, queries, throughput per invoice, next to payment_demo."""
    database = Database(args)
    name = TEST_DB + "_bench"
    config = write_config(odoo_src, database, "bench")
    template = ensure_template(odoo_src, database, config)
    database.copy(template, name)
    odoo(config, "-d", name, "-i", f"{MODULE},payment_demo", "--stop-after-init")
    output = Path(args.output).resolve()
    started = time.monotonic()
    run_in_odoo(
        config,
        name,
        TOOLS / "bench.py",
        sizes=args.sizes.split(","),
        output=str(output),
        bulk=args.bulk,
        profile=str(output.with_suffix(".prof")) if args.profile else "",
    )
    report = json.loads(output.read_text())
    if args.burst:
        report["webhook_burst"] = bench_burst(odoo_src, database, args.burst)
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    report["minutes"] = round((time.monotonic() - started) / 60, 1)
    output.write_text(json.dumps(report, indent=2))
    print_bench(report)
    say(f"Figures written to {output}")
    problems = bench_problems(report)
    if problems:
        fail("The benchmark saw wrong results:\n- " + "\n- ".join(problems))


def bench_problems(report):
    """What went wrong, not what was slow: figures are never pass/fail."""
    problems = []
    for size in report["sizes"]:
        for path in ("vipps", "payment_demo"):
            paid = report[path][str(size)]["paid"]
            if paid != size:
                problems.append(f"{path}, batch {size}: {paid} invoices paid")
    if report["link"]["paid"] != report["link"]["invoices"]:
        problems.append(f"link flow: {report['link']['paid']} invoices paid")
    for path, result in report.get("bulk", {}).items():
        if result["batches"] > 1 and not result["batch_killed_and_resumed"]:
            problems.append(f"bulk {path}: the second batch was not killed")
        if result["requests_sent"] != result["invoices"] or result["sent_twice"]:
            problems.append(
                f"bulk {path}: {result['requests_sent']} sent for "
                f"{result['invoices']} invoices, {result['sent_twice']} twice"
            )
    for size, result in report.get("settlement", {}).items():
        if not result["booked"] or result["settled"] != int(size):
            problems.append(f"payout of {size} payments: {result}")
        if result["again_payouts"]:
            problems.append(f"payout of {size} payments booked again: {result}")
    for key in ("1_worker", "2_workers"):
        burst = report.get("webhook_burst", {}).get(key)
        if burst and not (
            burst["invoices_paid"] == burst["payments_created"] == burst["requests"]
            and burst["webhook_statuses"] == ["200"]
        ):
            problems.append(f"webhook burst ({key}): {burst}")
        singles = (burst or {}).get("single_approvals")
        if singles and singles["count"] != SINGLE_APPROVALS:
            problems.append(f"single approvals: {singles}")
    return problems


def print_bench(report):
    """The benchmark's figures as tables (the JSON file has them all)."""

    def table(title, header, rows):
        widths = [
            max(len(str(cell)) for cell in column)
            for column in zip(header, *rows, strict=False)
        ]
        lines = ["", title]
        for row in (header, ["-" * width for width in widths], *rows):
            lines.append(
                " | ".join(
                    str(cell).rjust(width)
                    for cell, width in zip(row, widths, strict=False)
                )
            )
        print("\n".join(lines))

    rows = []
    for size in report["sizes"]:
        ours = report["vipps"][str(size)]
        demo = report["payment_demo"][str(size)]
        ratios = report["ratios"][str(size)]
        rows.append(
            [
                size,
                ours["send"]["queries_per_invoice"],
                ours["send"]["api_calls_per_invoice"],
                ours["process"]["queries_per_invoice"],
                ours["process"]["api_calls_per_invoice"],
                demo["create"]["queries_per_invoice"],
                demo["process"]["queries_per_invoice"],
                ratios["process_queries"],
                ratios["lifecycle_queries"],
                round(
                    ours["send"]["ms_per_invoice"] + ours["process"]["ms_per_invoice"]
                ),
                round(
                    demo["create"]["ms_per_invoice"] + demo["process"]["ms_per_invoice"]
                ),
                ratios["lifecycle_time"],
                f"{ours['paid']}/{size}",
            ]
        )
    table(
        "Per invoice: push request sent, approved, captured, reconciled "
        "(payment_demo: transaction created, done, post-processed, reconciled)",
        [
            "batch",
            "send q",
            "send calls",
            "process q",
            "process calls",
            "demo create q",
            "demo process q",
            "process q ratio",
            "lifecycle q ratio",
            "ours ms",
            "demo ms",
            "time ratio",
            "paid",
        ],
        rows,
    )
    unneeded = [
        f"batch {size} {phase}: {report['vipps'][str(size)][phase]['unneeded_calls']}"
        for size in report["sizes"]
        for phase in ("send", "process")
        if report["vipps"][str(size)][phase]["unneeded_calls"]
    ]
    link = report["link"]
    if link["unneeded_calls"]:
        unneeded.append(f"link: {link['unneeded_calls']}")
    print(f"API calls beyond the floor: {'; '.join(unneeded) or 'none'}")
    settlement = report.get("settlement") or {}
    if settlement:
        table(
            "Payouts: one payout of the batch's payments read from the Report API "
            "and booked; then the same dates read again",
            [
                "payments",
                "booked",
                "settled",
                "q/payment",
                "ms/payment",
                "API calls",
                "again q",
                "again calls",
                "again payouts",
            ],
            [
                [
                    size,
                    "yes" if result["booked"] else "NO",
                    result["settled"],
                    result["queries_per_payment"],
                    result["ms_per_payment"],
                    sum(result["api_calls"].values()),
                    result["again_queries"],
                    sum(result["again_api_calls"].values()),
                    result["again_payouts"],
                ]
                for size, result in settlement.items()
            ],
        )
    token = report["token"]
    print(
        f"Access token: {token['token_calls']} call(s) for {token['api_calls']} API "
        f"calls and {token['invoices']} invoices"
    )
    print(
        f"Pay with Vipps link (phone shared): {link['api_calls_per_invoice']} API calls"
        f" and {link['queries_per_invoice']} queries per invoice"
        f" ({link['api_calls']}), {link['paid']} paid, "
        f"{link['phones_learned']} phone numbers learned"
    )
    if report.get("bulk"):
        rows = [
            [
                path,
                result["invoices"],
                result["requests_sent"],
                result["seconds"],
                result["invoices_per_second"],
                result["job_invoices_per_second"],
                result["batches"],
                result["queries_per_invoice"],
                result["peak_rss_mib"],
                f"{result['rss_first_half_max_mib']} / "
                f"{result['rss_second_half_max_mib']}",
                "yes" if result["batch_killed_and_resumed"] else "no",
                result["create_calls"],
                result["payments_at_vipps"],
                result["sent_twice"],
            ]
            for path, result in report["bulk"].items()
        ]
        table(
            "Bulk requests (s and inv/s from Send or posting to the last request "
            "sent; the job's own rate without the killed batch)",
            [
                "path",
                "invoices",
                "sent",
                "s",
                "inv/s",
                "job inv/s",
                "batches",
                "q/inv",
                "peak RSS MiB",
                "RSS max 1st/2nd half",
                "batch killed",
                "create calls",
                "at Vipps",
                "sent twice",
            ],
            rows,
        )
    profile = report.get("profile")
    if profile:
        print(
            f"\nProfile of the {profile['invoices']}-invoice lifecycle "
            f"({profile['seconds_profiled']} s under cProfile)"
        )
        for title, key in (
            ("Time spent in and under", "share_of_time_in_steps"),
            ("Own time (where the work is done)", "share_of_time_own"),
        ):
            shares = ", ".join(
                f"{area} {share:.0%}" for area, share in profile[key].items()
            )
            print(f"{title}: {shares}")
        print(f"Top functions by cumulative time in {profile['stats_file']}")
    bursts = report.get("webhook_burst")
    if bursts:
        for key in ("1_worker", "2_workers"):
            burst = bursts[key]
            print(
                f"\nWebhook burst, {burst['workers']} HTTP worker(s) and as many cron "
                f"workers: {burst['requests']} approvals, {burst['webhook_deliveries']}"
                f" deliveries ({burst['webhooks_per_second']}/s, statuses "
                f"{burst['webhook_statuses']}), endpoint p50 {burst['endpoint_ms_p50']}"
                f" ms p95 {burst['endpoint_ms_p95']} ms; last invoice reconciled after "
                f"{burst['seconds_until_last_reconciled']} s "
                f"({burst['invoices_per_second']} invoices/s); {burst['invoices_paid']}"
                f" paid, {burst['payments_created']} payments; Vipps API calls per "
                f"invoice {burst['api_calls_per_invoice']}"
            )
        print(
            "Throughput with 2 workers / with 1: "
            f"{bursts['throughput_ratio']}x (on {os.cpu_count()} CPUs)"
        )
        two = bursts["2_workers"]
        singles = two["single_approvals"]
        print(
            f"Single approvals on the idle server (2 workers): invoice Paid after "
            f"p50 {singles['paid_after_ms_p50']} ms, p95 {singles['paid_after_ms_p95']}"
            f" ms over {singles['count']}"
        )
        pages = two["pages_ms_p50"]
        print(
            f"Pages (median): order details {pages['order_details']} ms, Odoo portal "
            f"invoice {pages['odoo_portal_invoice']} ms (ratio "
            f"{pages['order_details'] / pages['odoo_portal_invoice']:.2f})"
        )
    print(f"\nBench run: {report['minutes']} min", flush=True)


SINGLE_APPROVALS = 20


def bench_burst(odoo_src, database, count):
    """The webhook burst with 1 worker, then with 2: throughput and its ratio; with 2
    workers, idle, the time from single approvals to the invoice showing Paid."""
    one = bench_burst_run(odoo_src, database, count, workers=1)
    two = bench_burst_run(odoo_src, database, count, workers=2, singles=True)
    return {
        "1_worker": one,
        "2_workers": two,
        "throughput_ratio": round(
            two["invoices_per_second"] / one["invoices_per_second"], 2
        ),
    }


def wait_until_paid(database, name, count, timeout, poll=0.5):
    """Wait until `count` customer invoices show Paid; return how many do."""
    deadline, paid = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        paid = database.sql(
            "SELECT count(*) FROM account_move WHERE move_type = 'out_invoice'"
            " AND vipps_state = 'paid'",
            dbname=name,
        )[0][0]
        if paid >= count:
            break
        time.sleep(poll)
    return paid


def bench_burst_run(odoo_src, database, count, workers, singles=False):
    """A burst of authorization webhooks (with duplicates) into Odoo with `workers`
    HTTP workers and as many cron workers."""
    import statistics

    name = TEST_DB + "_burst"
    port, emulator_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    config = write_config(
        odoo_src,
        database,
        "burst",
        http_port=port,
        gevent_port=free_port(),
        workers=workers,
        max_cron_threads=workers,
        log_level="warn",
    )
    database.copy(ensure_template(odoo_src, database, config), name)
    odoo(config, "-d", name, "-i", MODULE, "--stop-after-init")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "vipps_emulator", "--port", str(emulator_port)]
        + EMULATOR_APPROVED,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    server = None
    control = f"{emulator_url}/_emulator"
    extra = SINGLE_APPROVALS if singles else 0
    try:
        wait_for(f"{control}/health", timeout=30)
        run_in_odoo(
            config,
            name,
            TOOLS / "bench.py",
            mode="burst_setup",
            base_url=base_url,
            emulator_url=emulator_url,
            count=count + extra,
        )
        # odoo-bin, not `-m odoo`: with workers Odoo re-executes its own script.
        server = subprocess.Popen(
            [sys.executable, odoo_bin(odoo_src), "-c", config, "-d", name]
            + ["--db-filter", name]
        )
        wait_for(f"{base_url}/web/login", timeout=120)
        call_json("DELETE", f"{control}/deliveries")
        call_json("DELETE", f"{control}/requests")
        call_json(
            "POST",
            f"{control}/webhook-faults",
            {"mode": "duplicate", "count": count // 5},
        )
        payments = call_json("GET", f"{control}/payments")["payments"]
        created = sorted(p["reference"] for p in payments if p["state"] == "CREATED")
        references, later = created[:count], created[count:]
        started = time.monotonic()
        for reference in references:
            call_json("POST", f"{control}/payments/{reference}/approve", {})
        approved = time.monotonic() - started
        paid = wait_until_paid(database, name, len(references), timeout=900)
        reconciled = time.monotonic() - started
        call_json("POST", f"{control}/deliveries/wait", {"timeout": 60})
        deliveries = call_json("GET", f"{control}/deliveries")["entries"]
        operations = {}
        for call in call_json("GET", f"{control}/requests")["entries"]:
            operations[call["operation"]] = operations.get(call["operation"], 0) + 1
        durations = sorted(d["durationMs"] for d in deliveries if d.get("durationMs"))
        payments_made = database.sql(
            "SELECT count(*) FROM account_payment p JOIN payment_transaction t"
            " ON p.payment_transaction_id = t.id"
            " WHERE t.provider_reference IS NOT NULL",
            dbname=name,
        )[0][0]
        # One approval at a time on the idle server: from the approval (its webhook
        # leaves at once) to the invoice showing Paid.
        latencies = []
        for index, reference in enumerate(later):
            time.sleep(0.5)
            approved_at = time.monotonic()
            call_json("POST", f"{control}/payments/{reference}/approve", {})
            wait_until_paid(
                database, name, len(references) + index + 1, timeout=60, poll=0.01
            )
            latencies.append((time.monotonic() - approved_at) * 1000)
        pages = bench_pages(database, name, base_url) if singles else None
    finally:
        for process in (server, emulator):
            if process and process.poll() is None:
                process.terminate()
                process.wait(30)
    latencies.sort()
    result = {
        "workers": workers,
        "requests": len(references),
        "approvals_sent_in_s": round(approved, 1),
        "seconds_until_last_reconciled": round(reconciled, 1),
        "invoices_per_second": round(len(references) / reconciled, 2),
        "invoices_paid": paid,
        "payments_created": payments_made,
        "api_calls_per_invoice": {
            operation: round(calls / len(references), 3)
            for operation, calls in sorted(operations.items())
        },
        "webhook_deliveries": len(deliveries),
        "webhook_statuses": sorted({str(d["status"]) for d in deliveries}),
        "webhooks_per_second": round(len(deliveries) / reconciled, 1),
        "endpoint_ms_p50": statistics.median(durations) if durations else None,
        "endpoint_ms_p95": durations[int(len(durations) * 0.95) - 1]
        if durations
        else None,
    }
    if singles:
        result["single_approvals"] = {
            "count": len(latencies),
            "paid_after_ms_p50": round(statistics.median(latencies)),
            "paid_after_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1]),
        }
        result["pages_ms_p50"] = pages
    say(f"Webhook burst ({workers} worker(s)): {json.dumps(result)}")
    return result


def bench_pages(database, dbname, base_url, rounds=20):
    """Median time of our order-details page and Odoo's portal invoice page."""
    import statistics

    invoice_id, token = database.sql(
        "SELECT id, access_token FROM account_move WHERE access_token IS NOT NULL"
        " AND move_type = 'out_invoice' ORDER BY id LIMIT 1",
        dbname=dbname,
    )[0]
    query = f"{invoice_id}?access_token={token}"
    pages = {
        "order_details": f"{base_url}/payment/vipps/invoice/{query}",
        "odoo_portal_invoice": f"{base_url}/my/invoices/{query}",
    }
    result = {}
    for page, url in pages.items():
        urllib.request.urlopen(url, timeout=60).read()  # noqa: S310 - warm up
        times = []
        for __ in range(rounds):
            started = time.perf_counter()
            urllib.request.urlopen(url, timeout=60).read()  # noqa: S310
            times.append((time.perf_counter() - started) * 1000)
        result[page] = round(statistics.median(times), 1)
    return result


def call_json(method, url, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        body = response.read()
    return json.loads(body) if body else {}


def cmd_i18n(odoo_src, args):
    """Export the translatable texts with Odoo; update or check i18n/."""
    sys.path.insert(0, str(TOOLS))
    import i18n

    database = Database(args)
    name = TEST_DB + "_i18n"
    config = write_config(odoo_src, database, "i18n", http_port=free_port())
    fresh_database(odoo_src, database, config, name)
    with tempfile.TemporaryDirectory() as tmp:
        # Odoo extracts the texts of every Python file under the module's folder: it
        # reads a copy of what git holds, not .dev/ (the virtualenv, a symlink loop).
        copy = Path(tmp) / "addons" / MODULE
        files = subprocess.check_output(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
        ).split(b"\0")
        for relative in filter(None, (f.decode() for f in files)):
            if (REPO / relative).is_file():
                (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, copy / relative)
        config = write_config(
            odoo_src,
            database,
            "i18n",
            addons_path=f"{odoo_src / 'odoo' / 'addons'},{copy.parent}",
        )
        exported = Path(tmp) / f"{MODULE}.pot"
        odoo(
            config,
            "-d",
            name,
            f"--i18n-export={exported}",
            f"--modules={MODULE}",
            "--log-level=warn",
        )
        if not exported.exists() or "msgid" not in exported.read_text():
            fail("Odoo exported no texts of the addon")
        if args.check:
            problems = i18n.check(exported, REPO / "i18n")
            if problems:
                fail(
                    f"Translations: {len(problems)} problem(s):\n- "
                    + "\n- ".join(problems)
                )
            shipped = ", ".join(
                f"{code} {count}" for code, count in i18n.counts(REPO / "i18n").items()
            )
            say(f"Translations complete and up to date (entries: {shipped})")
            return
        todo = i18n.update(exported, REPO / "i18n")
    say(
        "i18n/ updated; entries left to translate: "
        + ", ".join(f"{code} {count}" for code, count in todo.items())
    )


def cmd_lint(odoo_src, args):
    run(
        [
            sys.executable,
            "-m",
            "pre_commit",
            "run",
            "--all-files",
            "--show-diff-on-failure",
        ]
    )


def cmd_shell(odoo_src, args):
    """Open an Odoo shell on a database (the demo one by default)."""
    database = Database(args)
    config = write_config(odoo_src, database, "shell")
    odoo_shell = [
        sys.executable,
        "-m",
        "odoo",
        "shell",
        "-c",
        config,
        "-d",
        args.database,
    ]
    sys.exit(run([*odoo_shell, "--no-http"], check=False).returncode)


def cmd_demo(odoo_src, args):
    # Stop Odoo, the emulator and PostgreSQL on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    database = Database(args)
    url = f"http://127.0.0.1:{args.port}"
    emulator_url = f"http://127.0.0.1:{args.emulator_port}"
    config = write_config(odoo_src, database, "demo", http_port=args.port)
    if args.reset or not database.exists(DEMO_DB):
        fresh_database(odoo_src, database, config, DEMO_DB)
    else:
        odoo(config, "-d", DEMO_DB, "-u", MODULE, "--stop-after-init")
    emulator = server = None
    try:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "vipps_emulator", "--port", str(args.emulator_port)]
            + ([] if args.ordinary_merchant else EMULATOR_APPROVED),
            cwd=REPO,
        )
        wait_for(f"{emulator_url}/_emulator/health", timeout=30)
        run_in_odoo(
            config,
            DEMO_DB,
            TOOLS / "demo_data.py",
            base_url=url,
            emulator_url=emulator_url,
        )
        server = start_odoo_server(odoo_src, config, DEMO_DB, DEMO_SERVER_OPTIONS)
        wait_for(f"{url}/web/login", timeout=120)
        banner = "=" * 78
        print(
            f"\n{banner}\n  Odoo with payment_vipps is running: {url}/odoo/action-"
            f"account.action_move_out_invoice_type\n  Login: admin   Password: admin\n"
            f"  Vipps emulator: {emulator_url}\n"
            f"  The customers' Vipps app: {emulator_url}/app/inbox?phone=4741234567"
            " (Kari), ?phone=4791555123 (Lars)\n"
            f"  Ctrl-C stops everything.\n{banner}\n",
            flush=True,
        )
        if args.check:
            check_reload(server, url)
            return
        server.wait()
    finally:
        stop_processes(server, emulator)


# Odoo as in production: prefork, HTTP workers and cron workers in processes of their
# own (their races are real), a websocket (gevent) process on a free port.
DEMO_SERVER_OPTIONS = {"workers": 2, "max_cron_threads": 2}


def odoo_bin(odoo_src):
    """Odoo's `odoo-bin`; a source tree without one (a snapshot of the `odoo/`
    package) gets the same few lines in .dev."""
    script = odoo_src / "odoo-bin"
    if script.is_file():
        return script
    script = SERIES_STATE / "odoo-bin"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "__import__('os').environ['TZ'] = 'UTC'\n"
        "from odoo.cli.command import main\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    return script


def start_odoo_server(odoo_src, config, dbname, options):
    """Start Odoo's server on one database through `odoo-bin`.

    `odoo-bin`, not `python -m odoo`: Odoo re-executes its own command line when it
    reloads (SIGHUP, or a time or memory limit in threaded mode) and starts its
    websocket process from it; a re-executed `odoo/__main__.py` fails on its
    relative import. Server options are given on the command line, so that the
    set-up commands sharing `config` never start workers.

    The re-executed command is `python` found on PATH (Odoo keeps only the basename
    of its interpreter), so the virtualenv's `bin` comes first on the server's PATH:
    else a system Python without Odoo's requirements would take over.
    """
    options = {"gevent_port": free_port(), **options}
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    return subprocess.Popen(
        [sys.executable, odoo_bin(odoo_src), "-c", config, "-d", dbname]
        + ["--db-filter", f"^{dbname}$"]
        + [f"--{key.replace('_', '-')}={value}" for key, value in options.items()],
        env=dict(os.environ, PATH=path),
    )


def check_reload(server, url, timeout=120):
    """Prove that Odoo survives its own reload: SIGHUP to the master, which stops its
    workers and re-executes itself; wait for new workers and the login page."""
    import psutil

    master = psutil.Process(server.pid)
    before = {child.pid for child in master.children()}
    expected = 1 + sum(DEMO_SERVER_OPTIONS.values())  # workers + websocket process
    say(f"Reloading Odoo: SIGHUP to its master process {server.pid}")
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            fail(f"Odoo stopped (exit code {server.returncode}) instead of reloading")
        children = {child.pid for child in master.children()}
        if len(children) >= expected and not children & before and answers(url):
            break
        if time.monotonic() > deadline:
            fail(f"Odoo did not come back within {timeout} s of its reload")
        time.sleep(0.5)
    say(
        f"Odoo reloaded: master {server.pid} re-executed {' '.join(master.cmdline())}"
        f" with {len(children)} new processes; {url}/web/login answers"
    )


def answers(url):
    try:
        with urllib.request.urlopen(f"{url}/web/login", timeout=5) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def stop_processes(*processes, timeout=60):
    """Stop processes we started (SIGTERM, then SIGKILL with their children), even
    when interrupted again meanwhile."""
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"Process {process.pid} did not stop in {timeout} s: killed")
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait()


def wait_for(url, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                fail(f"{url} did not answer within {timeout} s")
            time.sleep(1)


def run_in_odoo(config, dbname, script, **params):
    """Run `load(env, params)` of a Python script with a superuser env, and commit."""
    runner = (
        "import json, sys, odoo\n"
        "import odoo.api, odoo.modules.registry, odoo.service.server\n"
        "from odoo.tools import config\n"
        "config.parse_config(['-c', sys.argv[1]])\n"
        "odoo.service.server.load_server_wide_modules()\n"
        "registry = odoo.modules.registry.Registry(sys.argv[2])\n"
        "with registry.cursor() as cr:\n"
        "    env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})\n"
        "    namespace = {'__file__': sys.argv[3], '__name__': 'odoo_script'}\n"
        "    exec(compile(open(sys.argv[3]).read(), sys.argv[3], 'exec'), namespace)\n"
        "    namespace['load'](env, json.loads(sys.argv[4]))\n"
    )
    run([sys.executable, "-c", runner, config, dbname, script, json.dumps(params)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--series",
        choices=SERIES,
        default=SERIE,
        help=f"the Odoo series to run on (default: ODOO_SERIES or {SERIES[0]})",
    )
    parser.add_argument(
        "--db-host", help="PostgreSQL host (default: PGHOST or embedded)"
    )
    parser.add_argument("--db-port", help="PostgreSQL port (default: PGPORT)")
    parser.add_argument("--db-user", help="PostgreSQL role (default: PGUSER)")
    parser.add_argument(
        "--db-password", help="PostgreSQL password (default: PGPASSWORD)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run Odoo with the addon and demo invoices")
    demo.add_argument(
        "--port", type=int, default=int(os.environ.get("ODOO_PORT", 8069))
    )
    demo.add_argument("--emulator-port", type=int, default=8077)
    demo.add_argument(
        "--ordinary-merchant",
        action="store_true",
        help="an emulated sales unit as Vipps gives most merchants (5050, 5080, "
        "profile.sub a little after approval)",
    )
    demo.add_argument("--reset", action="store_true", help="rebuild the demo database")
    demo.add_argument(
        "--check",
        action="store_true",
        help="stop once the server answers, after a reload (SIGHUP) it survives",
    )
    test = commands.add_parser("test", help="run the addon's tests")
    test.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        help="pytest paths/options (default: all)",
    )
    commands.add_parser("test-odoo", help="run Odoo's payment suites with the addon")
    shell = commands.add_parser("shell", help="an Odoo shell (reads a script on stdin)")
    shell.add_argument("database", nargs="?", default=DEMO_DB)
    commands.add_parser("lint", help="run the linters on the whole repository")
    i18n = commands.add_parser(
        "i18n", help="update i18n/ from the code (or --check it, as CI does)"
    )
    i18n.add_argument(
        "--check",
        action="store_true",
        help="fail when the .pot is out of date or a .po is incomplete",
    )
    bench = commands.add_parser("bench", help="measure what one invoice request costs")
    bench.add_argument("--sizes", default="1,10,100,1000", help="batch sizes")
    bench.add_argument("--output", help="where the figures go (default: .dev/)")
    bench.add_argument(
        "--bulk", type=int, default=1000, help="bulk request size (0: skip)"
    )
    bench.add_argument(
        "--burst", type=int, default=1000, help="webhook burst size (0: skip)"
    )
    bench.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the cProfile run of the largest batch",
    )
    args = parser.parse_args()
    select_series(args.series)
    if args.command == "bench" and not args.output:
        args.output = str(SERIES_STATE / "bench.json")
    odoo_src = bootstrap()
    handler = {
        "demo": cmd_demo,
        "test": cmd_test,
        "test-odoo": cmd_test_odoo,
        "lint": cmd_lint,
        "shell": cmd_shell,
        "bench": cmd_bench,
        "i18n": cmd_i18n,
    }[args.command]
    handler(odoo_src, args)


if __name__ == "__main__":
    main()
