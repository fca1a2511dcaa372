"""Webhook registrations and signed, ordered, retried delivery.

Each ePayment event is POSTed to every registration of the payment's sales
unit that subscribed to it. Deliveries run on background threads, so an API
call never waits for a receiver. Order is kept per (registration, payment): a
delivery that is not answered with 2xx is retried after a back-off and holds
back the later events of that payment, as Vipps does. A registration whose
deliveries keep failing for ``Settings.webhook_removal_after`` (two weeks of
the emulator clock) is deleted, as Vipps does since March 2026.

Requests are signed like Vipps signs them: ``x-ms-date``,
``x-ms-content-sha256`` and ``Authorization: HMAC-SHA256 SignedHeaders=...``
computed over the method, the registered URL's path and query, the date, the
registered URL's host and the content hash, with the registration secret
(its UTF-8 bytes) as the HMAC key.
"""

import base64
import collections
import concurrent.futures
import dataclasses
import email.utils
import hashlib
import hmac
import http.client
import itertools
import json
import logging
import secrets
import threading
import time
import urllib.parse
import uuid

from .clock import Clock, isoformat, utcnow
from .errors import invalid, not_found

_logger = logging.getLogger(__name__)

EPAYMENT_EVENT_NAMES = (
    "CREATED",
    "AUTHORIZED",
    "ABORTED",
    "EXPIRED",
    "CANCELLED",
    "CAPTURED",
    "REFUNDED",
    "TERMINATED",
)
MAX_REGISTRATIONS_PER_EVENT = 25
FAULT_MODES = ("drop", "duplicate", "delay", "reorder")
MAX_LOG_ENTRIES = 10_000
REORDER_WINDOW = 2.0  # seconds a "reorder" delivery waits for its successor
_DEFAULT_PORTS = {"http": 80, "https": 443}


def event_type(name):
    """Return the webhook event type for an ePayment event name."""
    return f"epayments.payment.{name.lower()}.v1"


def signing_target(url):
    """Return ``(host, path_and_query)`` of a registered URL, as signed.

    The host carries ``:port`` only when the port is not the scheme default.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return host, path


def sign(secret, method, path_and_query, date, host, body):
    """Return ``(content_sha256, authorization)`` for a webhook request."""
    content = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    message = f"{method}\n{path_and_query}\n{date};{host};{content}"
    digest = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    signature = base64.b64encode(digest.digest()).decode("ascii")
    authorization = (
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
        f"&Signature={signature}"
    )
    return content, authorization


@dataclasses.dataclass
class Registration:
    """One webhook registration of a sales unit."""

    id: str
    msn: str
    url: str
    events: list
    secret: str
    # Emulator time of the first failed delivery since the last good one.
    failing_since: object = None

    def to_api(self):
        """Return the registration as List shows it (no secret)."""
        return {"id": self.id, "url": self.url, "events": list(self.events)}


class Registry:
    """Webhook registrations per sales unit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = {}
        self.removed = []  # registrations Vipps deleted as unresponsive

    def register(self, msn, url, events):
        """Register ``url`` for ``events``; return the Registration."""
        with self._lock:
            for name in events:
                used = sum(
                    1
                    for item in self._items.values()
                    if item.msn == msn and name in item.events
                )
                if used >= MAX_REGISTRATIONS_PER_EVENT:
                    raise invalid(
                        "events",
                        f"At most {MAX_REGISTRATIONS_PER_EVENT} webhooks per event.",
                    )
            secret = base64.b64encode(secrets.token_bytes(64)).decode("ascii")
            item = Registration(str(uuid.uuid4()), msn, url, list(events), secret)
            self._items[item.id] = item
            return item

    def exists(self, webhook_id):
        """True while the registration ``webhook_id`` exists."""
        with self._lock:
            return webhook_id in self._items

    def list(self, msn):
        """Return the registrations of ``msn``."""
        with self._lock:
            return [item for item in self._items.values() if item.msn == msn]

    def delete(self, msn, webhook_id):
        """Delete a registration; raise 404 when ``msn`` has none by that id."""
        with self._lock:
            item = self._items.get(webhook_id)
            if item is None or item.msn != msn:
                raise not_found(f"No webhook with id {webhook_id}.")
            del self._items[webhook_id]

    def subscribed(self, msn, name):
        """Return the registrations of ``msn`` that subscribed to ``name``."""
        with self._lock:
            return [
                item
                for item in self._items.values()
                if item.msn == msn and name in item.events
            ]

    def clear(self):
        """Forget every registration."""
        with self._lock:
            self._items.clear()
            self.removed.clear()

    def forget_failures(self):
        """Count every registration as responsive again (after a reset)."""
        with self._lock:
            for item in self._items.values():
                item.failing_since = None

    def remove_unresponsive(self, now, limit):
        """Delete the registrations failing for ``limit`` seconds by ``now``;
        return them."""
        with self._lock:
            gone = [
                item
                for item in self._items.values()
                if item.failing_since is not None
                and (now - item.failing_since).total_seconds() >= limit
            ]
            for item in gone:
                del self._items[item.id]
                self.removed.append(
                    {
                        "id": item.id,
                        "msn": item.msn,
                        "url": item.url,
                        "events": list(item.events),
                        "failingSince": isoformat(item.failing_since),
                        "removedAt": isoformat(now),
                        "reason": "unresponsive",
                    }
                )
            return gone


@dataclasses.dataclass
class Delivery:
    """One event on its way to one registration."""

    id: int
    registration: Registration
    reference: str
    event: str
    payload: dict
    body: bytes
    due: float
    attempt: int = 0
    held: bool = False
    hold_until: float = 0.0
    duplicate: bool = False

    @property
    def queue_key(self):
        return (self.registration.id, self.reference)


class Dispatcher:
    """Queues, signs, sends and retries webhook deliveries."""

    def __init__(self, registry, settings, workers=8, clock=None):
        self.registry = registry
        self.settings = settings
        self.clock = clock or Clock()
        self.log = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._queues = collections.OrderedDict()
        self._in_flight = set()
        self._faults = collections.deque()
        self._stop = threading.Event()
        self._workers = workers
        self._pool = None
        self._thread = None

    # === lifecycle === #

    def start(self):
        """Start the dispatcher thread and the sender pool."""
        self._stop.clear()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="vipps-emulator-webhook"
        )
        self._thread = threading.Thread(
            target=self._run, name="vipps-emulator-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self):
        """Stop dispatching; pending deliveries are dropped."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread = self._pool = None

    def reset(self):
        """Drop pending deliveries, faults and the delivery log."""
        with self._cond:
            self._queues.clear()
            self._faults.clear()
            self.log.clear()
            self._cond.notify_all()

    # === faults === #

    def add_fault(self, mode, count=1, delay=0.0):
        """Apply ``mode`` to the next ``count`` deliveries.

        ``drop``: never sent. ``duplicate``: sent twice. ``delay``: held for
        ``delay`` seconds (later events of that payment wait too). ``reorder``:
        sent after the next event of the same payment.
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        if int(count) < 1:
            raise ValueError("count must be at least 1")
        with self._cond:
            self._faults.append([mode, int(count), float(delay)])

    def faults(self):
        """Return the pending delivery faults."""
        with self._cond:
            return [
                {"mode": mode, "remaining": count, "delay": delay}
                for mode, count, delay in self._faults
            ]

    def clear_faults(self):
        """Remove all pending delivery faults."""
        with self._cond:
            self._faults.clear()

    def _take_fault(self):
        if not self._faults:
            return None, 0.0
        rule = self._faults[0]
        rule[1] -= 1
        if rule[1] <= 0:
            self._faults.popleft()
        return rule[0], rule[2]

    # === queueing === #

    def publish(self, msn, payment, event):
        """Queue ``event`` of ``payment`` for every subscribed registration."""
        name = event_type(event.name)
        payload = {
            "msn": msn,
            "reference": payment.reference,
            "pspReference": event.psp_reference,
            "name": event.name,
            "amount": {"currency": event.currency, "value": event.value},
            "timestamp": isoformat(event.timestamp),
            "idempotencyKey": event.idempotency_key,
            "success": event.success,
            **(event.webhook_extra or {}),
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        for registration in self.registry.subscribed(msn, name):
            delivery = Delivery(
                id=next(self._ids),
                registration=registration,
                reference=payment.reference,
                event=name,
                payload=payload,
                body=body,
                due=time.monotonic(),
            )
            self._enqueue(delivery)

    def _enqueue(self, delivery):
        with self._cond:
            mode, delay = self._take_fault()
            if mode == "drop":
                self._record(delivery, None, None, "dropped")
                return
            queue = self._queues.setdefault(delivery.queue_key, collections.deque())
            if mode == "delay":
                delivery.due += delay
            elif mode == "reorder":
                delivery.held = True
                delivery.hold_until = time.monotonic() + REORDER_WINDOW
            if queue and queue[-1].held:
                # A held ("reorder") delivery lets this later event go first.
                held = queue.pop()
                held.held = False
                queue.append(delivery)
                queue.append(held)
            else:
                queue.append(delivery)
            if mode == "duplicate":
                queue.append(
                    dataclasses.replace(delivery, id=next(self._ids), duplicate=True)
                )
            self._cond.notify_all()

    def pending(self):
        """Return how many deliveries are queued or in flight."""
        with self._cond:
            return sum(len(queue) for queue in self._queues.values())

    def wait_idle(self, timeout=10.0):
        """Wait until nothing is queued; return True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queues:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.05))
        return True

    # === sending === #

    def _run(self):
        while not self._stop.is_set():
            with self._cond:
                now = time.monotonic()
                next_due = now + 1.0
                for key, queue in list(self._queues.items()):
                    if key in self._in_flight or not queue:
                        continue
                    head = queue[0]
                    due = max(head.due, head.hold_until if head.held else 0.0)
                    if due <= now:
                        head.held = False
                        self._in_flight.add(key)
                        self._pool.submit(self._attempt, key, head)
                    else:
                        next_due = min(next_due, due)
                self._cond.wait(timeout=max(0.005, next_due - now))

    def _attempt(self, key, delivery):
        delivery.attempt += 1
        started = time.monotonic()
        status, error = self._send(delivery)
        delivery.duration_ms = round((time.monotonic() - started) * 1000, 1)
        delivered = status is not None and 200 <= status < 300
        delays = self.settings.webhook_retry_delays
        with self._cond:
            self._in_flight.discard(key)
            queue = self._queues.get(key)
            if queue is None or not queue or queue[0] is not delivery:
                self._cond.notify_all()
                return  # reset while in flight
            if not self.registry.exists(delivery.registration.id):
                del self._queues[key]  # deleted (by Vipps or the merchant)
                self._record(delivery, status, error, "removed")
                self._cond.notify_all()
                return
            registration = delivery.registration
            if delivered:
                registration.failing_since = None
            elif registration.failing_since is None:
                registration.failing_since = self.clock.now()
            if delivered or delivery.attempt > len(delays):
                queue.popleft()
                if not queue:
                    del self._queues[key]
                outcome = "delivered" if delivered else "failed"
            else:
                delivery.due = time.monotonic() + delays[delivery.attempt - 1]
                outcome = "retry"
            self._record(delivery, status, error, outcome)
            self._cond.notify_all()
        if not delivered:
            self.remove_unresponsive()

    def remove_unresponsive(self):
        """Delete the registrations whose deliveries have failed for
        ``webhook_removal_after`` seconds of emulator time, with their pending
        deliveries; return how many were deleted."""
        limit = self.settings.webhook_removal_after
        if not limit:
            return 0
        gone = self.registry.remove_unresponsive(self.clock.now(), limit)
        if gone:
            ids = {item.id for item in gone}
            with self._cond:
                for key in [key for key in self._queues if key[0] in ids]:
                    if key not in self._in_flight:
                        del self._queues[key]
                self._cond.notify_all()
            for item in gone:
                _logger.info("webhook %s removed: unresponsive", item.url)
        return len(gone)

    def _send(self, delivery):
        """POST one delivery; return ``(status, None)`` or ``(None, error)``."""
        registration = delivery.registration
        parts = urllib.parse.urlsplit(registration.url)
        host, path = signing_target(registration.url)
        date = email.utils.formatdate(usegmt=True)
        content, authorization = sign(
            registration.secret, "POST", path, date, host, delivery.body
        )
        if parts.scheme == "https":
            connection_class = http.client.HTTPSConnection
        else:
            connection_class = http.client.HTTPConnection
        connection = connection_class(
            parts.hostname, parts.port, timeout=self.settings.webhook_timeout
        )
        headers = (
            ("Host", host),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(delivery.body))),
            ("User-Agent", "vipps-emulator-webhooks"),
            ("x-ms-date", date),
            ("x-ms-content-sha256", content),
            ("Authorization", authorization),
        )
        try:
            connection.putrequest(
                "POST", path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(delivery.body)
            response = connection.getresponse()
            response.read()
            return response.status, None  # redirects are not followed
        except (OSError, http.client.HTTPException) as err:
            return None, str(err) or type(err).__name__
        finally:
            connection.close()

    def _record(self, delivery, status, error, outcome):
        entry = {
            "id": delivery.id,
            "webhookId": delivery.registration.id,
            "url": delivery.registration.url,
            "event": delivery.event,
            "name": delivery.payload["name"],
            "reference": delivery.reference,
            "pspReference": delivery.payload["pspReference"],
            "attempt": delivery.attempt,
            "durationMs": getattr(delivery, "duration_ms", None),
            "status": status,
            "error": error,
            "outcome": outcome,
            "duplicate": delivery.duplicate,
            "timestamp": isoformat(utcnow()),
            "payload": delivery.payload,
        }
        self.log.append(entry)
        del self.log[:-MAX_LOG_ENTRIES]
        _logger.debug(
            "webhook %s %s for %s: %s (%s)",
            delivery.event,
            outcome,
            delivery.reference,
            status,
            error,
        )
