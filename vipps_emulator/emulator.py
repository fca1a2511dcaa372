"""The ``Emulator``: one running, stateful Vipps MobilePay API on a local port.

Use it in-process::

    emu = Emulator(port=0)      # any keyword of Merchant or Settings
    emu.start()
    ...                          # point the client at emu.url
    emu.stop()

or as a context manager (``with Emulator() as emu: ...``). The same controls
are available over HTTP under ``/_emulator`` (see ``control.py``).
"""

import contextlib
import dataclasses
import itertools
import threading

from . import config, faults, state, webhooks
from .api import VippsApi
from .clock import Clock, isoformat
from .server import make_server

MAX_LOG_ENTRIES = 10_000  # per log (requests, deliveries); older entries go

_MERCHANT_ALIASES = {"merchant_name": "name", "msn": "merchant_serial_number"}


def split_options(options):
    """Split keyword options into (Merchant fields, Settings fields)."""
    merchant, settings = {}, {}
    for key, value in options.items():
        key = _MERCHANT_ALIASES.get(key, key)
        if key in config.MERCHANT_FIELDS or key == "approved":
            merchant[key] = value
        elif key in config.SETTINGS_FIELDS:
            settings[key] = value
        else:
            raise TypeError(f"unknown emulator option {key!r}")
    return config.merchant_fields(merchant), settings


class Emulator:
    """A local Vipps MobilePay API with real state.

    Keyword options (all optional):

    * sales unit: ``merchant_serial_number`` (``msn``), ``client_id``,
      ``client_secret``, ``subscription_key``, ``currency``, ``merchant_name``,
      ``long_living_max_days``, ``push_allowed``, ``partial_capture_allowed``,
      ``nin_allowed``, and ``approved=True`` for Vipps's approvals (long-living
      payments and PUSH_MESSAGE; the default is an ordinary sales unit);
    * behaviour: ``token_ttl``, ``http_hosts``, ``not_user_suffix``,
      ``not_vipps_users``, ``receipt_sum_must_match``, ``replay_client_errors``,
      ``webhook_retry_delays``, ``webhook_timeout``, ``fault_hang_seconds``,
      ``expiry_interval``, ``public_url``.
    """

    def __init__(self, host="127.0.0.1", port=0, **options):
        merchant_options, settings_options = split_options(options)
        self.host = host
        self.port = port
        self.clock = Clock()
        self.settings = config.Settings(**settings_options)
        self.merchant = config.Merchant(**merchant_options)
        self.store = state.Store(self.clock, self.settings, [self.merchant])
        self.merchant = self.store.merchants[self.merchant.msn]
        self.registry = webhooks.Registry()
        self.dispatcher = webhooks.Dispatcher(
            self.registry, self.settings, clock=self.clock
        )
        self.store.listeners.append(self.dispatcher.publish)
        self.fault_rules = faults.Faults()
        self.api = VippsApi(self.store, self.registry, self.settings, self.base_url)
        self.stopping = threading.Event()
        self._requests = []
        self._request_ids = itertools.count(1)
        self._requests_lock = threading.Lock()
        self._server = None
        self._threads = []

    # === lifecycle === #

    def start(self):
        """Bind the port and start serving in daemon threads; return self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = make_server(self, self.host, self.port)
        self.port = self._server.server_address[1]
        self.dispatcher.start()
        for target, name in (
            (self._serve, "vipps-emulator-http"),
            (self._sweep, "vipps-emulator-expiry"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        """Stop serving and release the port."""
        if self._server is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.dispatcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._server = None

    def serve_forever(self):
        """Start (if needed) and block until ``stop()`` or KeyboardInterrupt."""
        self.start()
        try:
            with contextlib.suppress(KeyboardInterrupt):
                self.stopping.wait()
        finally:
            self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _serve(self):
        self._server.serve_forever(poll_interval=0.05)

    def _sweep(self):
        while not self.stopping.wait(self.settings.expiry_interval):
            self.store.expire_due()
            self.dispatcher.remove_unresponsive()

    @property
    def url(self):
        """The base URL, e.g. ``http://127.0.0.1:8123`` (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def base_url(self):
        """The public base URL used in ``redirectUrl`` (``public_url`` or url)."""
        return (self.settings.public_url or self.url).rstrip("/")

    # === state === #

    def reset(self, keep_webhooks=False, keep_tokens=True):
        """Forget payments, logs, faults, deliveries (and webhooks unless
        ``keep_webhooks``); return to real time; restore the merchants."""
        self.store.reset(keep_tokens=keep_tokens)
        self.merchant = self.store.merchants[self.merchant.msn]
        if keep_webhooks:
            self.registry.forget_failures()
        else:
            self.registry.clear()
        self.dispatcher.reset()
        self.fault_rules.clear()
        self.clock.reset()
        self.clear_requests()

    def describe(self):
        """Return a JSON summary: URL, time, merchants (no secrets), settings."""
        settings = dataclasses.asdict(self.settings)
        settings["not_vipps_users"] = sorted(settings["not_vipps_users"])
        if settings["control_token"]:
            settings["control_token"] = "***"
        return {
            "status": "ok",
            "url": self.url if self._server else None,
            "now": isoformat(self.clock.now()),
            "merchants": [
                {
                    **m.public_settings(),
                    "brand": config.brand(
                        m.currency, self.clock.now(), self.settings.brand_switch_date
                    ),
                    "landingHost": config.landing_host(
                        m.currency, self.clock.now(), self.settings.brand_switch_date
                    ),
                }
                for m in self.store.merchants.values()
            ],
            "settings": settings,
        }

    def add_merchant(self, **fields):
        """Add another sales unit (kept across ``reset()``); return it."""
        fields = {_MERCHANT_ALIASES.get(k, k): v for k, v in fields.items()}
        merchant = config.Merchant(**config.merchant_fields(fields))
        return self.store.add_merchant(merchant, initial=True)

    def update_merchant(self, msn=None, **changes):
        """Change settings of a sales unit (default: the first one) until the
        next ``reset()``; e.g. ``update_merchant(push_allowed=False)`` or
        ``update_merchant(approved=True)``."""
        changes = {_MERCHANT_ALIASES.get(k, k): v for k, v in changes.items()}
        changes = config.merchant_fields(changes)
        merchant = self.store.merchants.get(str(msn or self.merchant.msn))
        if merchant is None:
            raise LookupError(f"no merchant {msn}")
        with self.store.lock:
            merchant.update(**changes)
        return merchant

    @property
    def payments(self):
        """The first sales unit's payments: ``{reference: Payment}``."""
        with self.store.lock:
            return dict(self.store.payments.get(self.merchant.msn, {}))

    def payment(self, reference, msn=None):
        """Return a payment by reference (any sales unit unless ``msn``)."""
        return self.store.find(reference, msn)

    def add_ledger_entry(
        self, msn, entry_type, amount, reference=None, ledger_date=None
    ):
        """Add a funds entry Odoo did not cause (see ``Reports.add_entry``)."""
        return self.api.reports.add_entry(
            msn or self.merchant.msn,
            entry_type,
            amount,
            reference=reference,
            ledger_date=ledger_date,
        )

    def ledger_totals(self, msn=None):
        """Sums of the funds ledger of a sales unit, per entry type."""
        merchant = self.store.merchants.get(str(msn or self.merchant.msn))
        if merchant is None:
            raise LookupError(f"no sales unit {msn}")
        return self.api.reports.totals(merchant)

    def issue_token(self, msn=None):
        """Return a fresh access token without an HTTP call."""
        merchant = self.store.merchants[str(msn or self.merchant.msn)]
        return self.store.issue_token(merchant)[0].value

    # === the customer's side === #

    def approve(self, reference, phone=None, consent=True, msn=None):
        """Approve a payment as the customer with ``phone`` (default: the
        phone number the payment was sent to); return the Payment."""
        return self.store.approve(self.payment(reference, msn), phone, consent=consent)

    def reject(self, reference, msn=None):
        """Reject a payment as the customer; return the Payment."""
        return self.store.reject(self.payment(reference, msn))

    def expire(self, reference, msn=None):
        """Expire a CREATED payment now; return the Payment."""
        payment = self.payment(reference, msn)
        self.store.expire(payment)
        return payment

    def inbox(self, phone):
        """Return the push requests sent to ``phone`` (newest first)."""
        return self.store.inbox(phone)

    # === time === #

    def now(self):
        """Return the emulated current time."""
        return self.clock.now()

    def advance(self, seconds):
        """Move the clock forward, then expire payments that are due."""
        self.clock.advance(seconds)
        self.process_expiry()

    def set_time(self, when, frozen=True):
        """Set the clock (a datetime), then expire payments that are due."""
        self.clock.set_time(when, frozen=frozen)
        self.process_expiry()

    def process_expiry(self):
        """Expire every overdue CREATED payment now, and delete webhook
        registrations unresponsive for too long; return how many payments
        expired."""
        expired = self.store.expire_due()
        self.dispatcher.remove_unresponsive()
        return expired

    @property
    def removed_webhooks(self):
        """The registrations deleted as unresponsive (id, msn, url, events,
        failingSince, removedAt, reason)."""
        return list(self.registry.removed)

    # === faults === #

    def inject_fault(self, operation, count=1, **kwargs):
        """Make the next ``count`` calls of ``operation`` (or ``"*"``) fail.

        Keywords: ``status`` (answer with this HTTP status) and ``code`` (a
        Vipps error code for the body), ``timeout=True`` (hold the connection
        ``hang_seconds``, then close it unanswered), ``disconnect=True`` (close
        at once), ``latency`` (seconds to wait first), ``processed=True`` (carry
        out the call, then fail or drop only the answer).
        """
        return self.fault_rules.add(faults.Fault(operation, count, **kwargs))

    def clear_faults(self):
        """Remove all pending API faults."""
        self.fault_rules.clear()

    def capture_error(self, reference, code, count=..., status=None, msn=None):
        """Make captures of one payment fail with a Vipps capture error.

        ``code=6260``: funds unavailable, the reservation was released early;
        every capture fails until ``clear_capture_errors()`` (or ``count``
        attempts). ``code=6280``: capture failed, try again later; the next
        ``count`` (1) attempts fail, then the same Idempotency-Key succeeds.
        The payment stays AUTHORIZED and nothing moves. Return the Payment.
        """
        payment = self.payment(reference, msn)
        self.store.add_capture_error(payment, code, count, status)
        return payment

    def clear_capture_errors(self, reference, msn=None):
        """Remove the injected capture errors of one payment."""
        payment = self.payment(reference, msn)
        self.store.clear_capture_errors(payment)
        return payment

    # === webhooks === #

    def webhook_fault(self, mode, count=1, delay=0.0):
        """Apply ``drop``, ``duplicate``, ``delay`` or ``reorder`` to the next
        ``count`` webhook deliveries."""
        self.dispatcher.add_fault(mode, count, delay)

    def drop_webhooks(self, count=1):
        """Do not send the next ``count`` deliveries at all."""
        self.webhook_fault("drop", count)

    def duplicate_webhooks(self, count=1):
        """Send each of the next ``count`` deliveries twice."""
        self.webhook_fault("duplicate", count)

    def delay_webhooks(self, seconds, count=1):
        """Hold the next ``count`` deliveries for ``seconds``."""
        self.webhook_fault("delay", count, seconds)

    def reorder_webhooks(self, count=1):
        """Send each of the next ``count`` deliveries after its successor."""
        self.webhook_fault("reorder", count)

    def register_webhook(self, url, events=None, msn=None):
        """Register a webhook without an HTTP call; return ``(id, secret)``.

        ``events`` defaults to every ePayment event.
        """
        names = events or [
            webhooks.event_type(n) for n in webhooks.EPAYMENT_EVENT_NAMES
        ]
        item = self.registry.register(str(msn or self.merchant.msn), url, names)
        return item.id, item.secret

    def webhooks(self, include_secrets=False):
        """Return all registrations (with secrets if asked)."""
        items = []
        for msn in self.store.merchants:
            for item in self.registry.list(msn):
                data = {"msn": msn, **item.to_api()}
                if include_secrets:
                    data["secret"] = item.secret
                items.append(data)
        return items

    @property
    def deliveries(self):
        """The webhook delivery log: one entry per attempt (or drop)."""
        return list(self.dispatcher.log)

    def clear_deliveries(self):
        """Empty the delivery log."""
        self.dispatcher.log.clear()

    def wait_for_webhooks(self, timeout=5.0):
        """Wait until no delivery is pending; return True if that happened."""
        return self.dispatcher.wait_idle(timeout)

    # === request log === #

    def record_request(self, entry):
        """Append an entry to the request log (used by the server)."""
        with self._requests_lock:
            entry["id"] = next(self._request_ids)
            self._requests.append(entry)
            del self._requests[:-MAX_LOG_ENTRIES]

    @property
    def requests(self):
        """The request log: method, path, operation, status, idempotencyKey,
        reference, msn, time, durationMs and fault of every API call."""
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self):
        """Empty the request log."""
        with self._requests_lock:
            self._requests.clear()
