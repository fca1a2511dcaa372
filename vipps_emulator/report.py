"""The Report API: settlement ledgers, funds and fees per ledger date, the feed.

Nothing here is stored twice: the ledger of a sales unit is derived, on every
call, from what happened to its payments (each successful capture and refund)
plus the entries a test added through the control API (a payment made by
another system, a correction Vipps makes afterwards). So the funds always add
up to the captures and refunds the ePayment API shows.

How a ledger date is built (our model of Vipps's documented behaviour):

* A ledger date runs from midnight to midnight in the sales unit's time zone.
* Captures (+) and refunds (-) are funds entries of the date they happened on.
  Each capture costs a fee (the price model of ``Settings.report_fees``); the
  fees ledger shows one ``capture-fee`` per capture, under its pspReference.
* An entry shows in the Report API ``Settings.report_lag`` seconds after it
  happened. A date is closed ``Settings.report_close_delay`` seconds after its
  end, and not before all its entries show. Until then its report answers with
  ``tryLater: true``; a date that has not started answers 404.
* At the close the day's fees are retained from the funds (``fees-retained``,
  in both ledgers), then the balance, when positive, is scheduled for payout
  (``payout-scheduled``): one payout per ledger date. A balance that is not
  positive (more refunded than sold) is carried over to the next date.
"""

import base64
import dataclasses
import datetime as dt
import json
import zoneinfo

from . import state
from .clock import isoformat
from .errors import ApiError, invalid

# The time zone of the ledger dates of a sales unit, by its currency (market).
TIME_ZONES = {
    "NOK": "Europe/Oslo",
    "DKK": "Europe/Copenhagen",
    "EUR": "Europe/Helsinki",
    "SEK": "Europe/Stockholm",
}
FUNDS, FEES = "funds", "fees"
TOPICS = (FUNDS, FEES)
# Entry types the control API may add to a funds ledger.
EXTRA_TYPES = ("capture", "refund", "correction", "top-up")
# The organisation number and payout account the ledgers show (fictitious).
OWNER = {"scheme": "business:NO:ORG", "id": "987654321"}
PAYOUT_ACCOUNT = {"scheme": "BBAN:NO", "id": "86011117947"}


def ledger_id(msn):
    """The ledger of a sales unit: one per MSN, with a number of its own."""
    return f"30{msn}"


def fee(amount, price):
    """The fee of a capture of ``amount`` (minor units) under ``price``:
    ``(basis points, fixed minor units)``, rounded half up to the minor unit."""
    basis_points, fixed = price
    return (amount * int(basis_points) + 5000) // 10000 + int(fixed)


@dataclasses.dataclass
class Extra:
    """A funds entry added through the control API."""

    entry_type: str
    amount: int
    time: dt.datetime
    ledger_date: dt.date
    visible_at: dt.datetime
    reference: str = None
    psp_reference: str = None
    # Added to a date already closed: Vipps amending a published report.
    amends: bool = False
    order: int = 0


@dataclasses.dataclass
class Entry:
    """One row of a ledger, as the API shows it (without balances)."""

    psp_reference: str
    time: dt.datetime
    ledger_date: dt.date
    entry_type: str
    amount: int
    visible_at: dt.datetime
    reference: str = None
    amends: bool = False
    order: int = 0

    def to_api(self, currency, balance_before, handle):
        item = {
            "pspReference": self.psp_reference,
            "time": isoformat(self.time),
            "ledgerDate": self.ledger_date.isoformat(),
            "entryType": self.entry_type,
            "currency": currency,
            "amount": self.amount,
            "balanceBefore": balance_before,
            "balanceAfter": balance_before + self.amount,
            "recipientHandle": handle,
        }
        if self.reference is not None:
            item["reference"] = self.reference
        return item


class Reports:
    """The Report API of one emulator, read from its store."""

    def __init__(self, store, settings):
        self.store = store
        self.settings = settings

    @property
    def clock(self):
        return self.store.clock

    # === control === #

    def add_entry(self, msn, entry_type, amount, reference=None, ledger_date=None):
        """Add a funds entry Odoo did not cause: a capture or refund of a payment
        made by another system (``reference``), a ``correction`` or ``top-up``.

        ``ledger_date`` (default: today) may be a date already closed and paid
        out: Vipps correcting a day afterwards. The entry shows after the lag.
        """
        if entry_type not in EXTRA_TYPES:
            raise ValueError(f"entry_type must be one of {', '.join(EXTRA_TYPES)}")
        amount = int(amount)
        if not amount:
            raise ValueError("amount cannot be 0")
        with self.store.lock:
            merchant = self.store.merchants.get(str(msn))
            if merchant is None:
                raise LookupError(f"no sales unit {msn}")
            now = self.clock.now()
            zone = self._zone(merchant)
            day = (
                dt.date.fromisoformat(str(ledger_date))
                if ledger_date
                else now.astimezone(zone).date()
            )
            when = now
            if day != now.astimezone(zone).date():
                when = _midnight(day, zone) + dt.timedelta(hours=12)
            days, __ = self.ledger(merchant)
            extras = self._extras(merchant.msn)
            extra = Extra(
                amends=days.get(day, (False,))[0],
                order=state.next_order(),
                entry_type=entry_type,
                amount=amount,
                time=when,
                ledger_date=day,
                visible_at=now + dt.timedelta(seconds=self.settings.report_lag),
                reference=reference,
                psp_reference=f"x{len(extras) + 1:05d}{merchant.msn}",
            )
            extras.append(extra)
            return extra

    def _extras(self, msn):
        return self.store.ledger_extras.setdefault(msn, [])

    # === ledger arithmetic === #

    def _zone(self, merchant):
        return zoneinfo.ZoneInfo(TIME_ZONES.get(merchant.currency, "Europe/Oslo"))

    def _price(self, merchant):
        return tuple(self.settings.report_fees.get(merchant.currency, (0, 0)))

    def _movements(self, merchant):
        """Captures, refunds and added entries, by ledger date."""
        zone = self._zone(merchant)
        lag = dt.timedelta(seconds=self.settings.report_lag)
        days = {}
        for payment in self.store.payments.get(merchant.msn, {}).values():
            for event in payment.events:
                if not event.success or event.name not in ("CAPTURED", "REFUNDED"):
                    continue
                sign = 1 if event.name == "CAPTURED" else -1
                entry = Entry(
                    psp_reference=event.psp_reference,
                    time=event.timestamp,
                    ledger_date=event.timestamp.astimezone(zone).date(),
                    entry_type="capture" if sign > 0 else "refund",
                    amount=sign * event.value,
                    visible_at=event.timestamp + lag,
                    reference=payment.reference,
                    order=event.order,
                )
                days.setdefault(entry.ledger_date, []).append(entry)
        for extra in self._extras(merchant.msn):
            days.setdefault(extra.ledger_date, []).append(
                Entry(
                    psp_reference=extra.psp_reference,
                    time=extra.time,
                    ledger_date=extra.ledger_date,
                    entry_type=extra.entry_type,
                    amount=extra.amount,
                    visible_at=extra.visible_at,
                    reference=extra.reference,
                    amends=extra.amends,
                    order=extra.order,
                )
            )
        for entries in days.values():
            entries.sort(key=lambda e: (e.time, e.order))
        return days

    def _close_at(self, day, entries, zone):
        end = _midnight(day + dt.timedelta(days=1), zone)
        close = end + dt.timedelta(seconds=self.settings.report_close_delay)
        return max([close] + [e.visible_at for e in entries if not e.amends])

    def ledger(self, merchant):
        """Every date of the ledger up to today: ``{date: (closed, {topic: [(entry,
        balance before)]})}``, with the closing entries of the closed dates."""
        now = self.clock.now()
        zone = self._zone(merchant)
        price = self._price(merchant)
        movements = self._movements(merchant)
        today = now.astimezone(zone).date()
        if not movements:
            return {}, today
        day = min(movements)
        funds_balance = 0
        result = {}
        while day <= today:
            close_at = self._close_at(day, movements.get(day, []), zone)
            closed = now >= close_at
            entries = [e for e in movements.get(day, []) if e.visible_at <= now]
            funds, fees = [], []
            fees_balance = 0
            for entry in entries:
                funds.append((entry, funds_balance))
                funds_balance += entry.amount
                if entry.entry_type == "capture":
                    charge = fee(entry.amount, price)
                    if charge:
                        fees.append(
                            (
                                dataclasses.replace(
                                    entry, entry_type="capture-fee", amount=charge
                                ),
                                fees_balance,
                            )
                        )
                        fees_balance += charge
            if closed:
                if fees_balance:
                    retained = _closing(
                        merchant, day, close_at, "fees-retained", -fees_balance
                    )
                    funds.append((retained, funds_balance))
                    funds_balance -= fees_balance
                    fees.append((retained, fees_balance))
                if funds_balance > 0:
                    payout = _closing(
                        merchant, day, close_at, "payout-scheduled", -funds_balance
                    )
                    funds.append((payout, funds_balance))
                    funds_balance = 0
            visible = {
                FUNDS: [(e, b) for e, b in funds if e.visible_at <= now],
                FEES: [(e, b) for e, b in fees if e.visible_at <= now],
            }
            result[day] = (closed, visible)
            day += dt.timedelta(days=1)
        return result, today

    # === API === #

    def merchant_of_ledger(self, merchant, ledger):
        """The sales unit whose ledger ``ledger`` is, when the caller may read it."""
        if ledger != ledger_id(merchant.msn):
            raise ApiError(
                403, detail=f"These credentials do not give access to ledger {ledger}."
            )
        return merchant

    def ledgers(self, merchant, query):
        """GET /settlement/v1/ledgers: the ledger of the caller's sales unit."""
        handle = f"api:{merchant.msn}"
        wanted = (query.get("settlesForRecipientHandles") or [None])[0]
        items = []
        if not wanted or wanted == handle:
            items.append(
                {
                    "ledgerId": ledger_id(merchant.msn),
                    "currency": merchant.currency,
                    "payoutBankAccount": dict(PAYOUT_ACCOUNT),
                    "owner": dict(OWNER),
                    "settlesForRecipientHandles": [handle],
                }
            )
        return {"items": items}

    def by_date(self, merchant, topic, ledger_date, cursor):
        """GET /report/v2/ledgers/{ledgerId}/{topic}/dates/{ledgerDate}."""
        _check_topic(topic)
        try:
            day = dt.date.fromisoformat(ledger_date)
        except ValueError as err:
            raise invalid("ledgerDate", "Use the format YYYY-MM-DD.") from err
        offset = 0
        if cursor:
            position = _decode_cursor(cursor)
            if position.get("d") != ledger_date or position.get("t") != topic:
                raise invalid("cursor", "The cursor belongs to another report.")
            offset = int(position.get("o", 0))
        with self.store.lock:
            days, today = self.ledger(merchant)
        if day > today:
            raise ApiError(404, detail="The report for this date is not available yet.")
        closed, visible = days.get(day, (True, {FUNDS: [], FEES: []}))
        rows = [
            entry.to_api(merchant.currency, balance, f"api:{merchant.msn}")
            for entry, balance in visible[topic]
        ]
        size = self.settings.report_page_size
        page = rows[offset : offset + size]
        body = {"items": page, "hasMore": offset + size < len(rows)}
        if body["hasMore"]:
            body["cursor"] = _encode_cursor(
                {"d": ledger_date, "t": topic, "o": offset + size}
            )
        body["tryLater"] = not closed
        return body

    def feed(self, merchant, topic, cursor):
        """GET /report/v2/ledgers/{ledgerId}/{topic}/feed: every entry in the
        order it became visible; the cursor always points past the last one."""
        _check_topic(topic)
        offset = 0
        if cursor:
            position = _decode_cursor(cursor)
            if position.get("t") != topic or "f" not in position:
                raise invalid("cursor", "The cursor belongs to another feed.")
            offset = int(position["f"])
        with self.store.lock:
            days, __ = self.ledger(merchant)
        rows = sorted(
            (
                (entry.visible_at, entry.ledger_date, index, entry, balance)
                for day in days.values()
                for index, (entry, balance) in enumerate(day[1][topic])
            ),
            key=lambda row: row[:3],
        )
        size = self.settings.report_page_size
        page = rows[offset : offset + size]
        items = [
            entry.to_api(merchant.currency, balance, f"api:{merchant.msn}")
            for __, __, __, entry, balance in page
        ]
        return {
            "items": items,
            "cursor": _encode_cursor({"t": topic, "f": offset + len(page)}),
            "tryLater": offset + len(page) >= len(rows),
        }

    def totals(self, merchant):
        """Sums over the whole funds ledger, per entry type (for tests)."""
        with self.store.lock:
            days, __ = self.ledger(merchant)
        sums = {}
        for __, visible in days.values():
            for entry, __ in visible[FUNDS]:
                sums[entry.entry_type] = sums.get(entry.entry_type, 0) + entry.amount
        return sums


def _closing(merchant, day, close_at, entry_type, amount):
    """An entry written when ``day`` closes; its made-up pspReference starts with
    the entry type's letter (``f<date><msn>``, ``p<date><msn>``)."""
    return Entry(
        psp_reference=f"{entry_type[0]}{day:%Y%m%d}{merchant.msn}",
        time=close_at,
        ledger_date=day,
        entry_type=entry_type,
        amount=amount,
        visible_at=close_at,
    )


def _midnight(day, zone):
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone).astimezone(
        dt.timezone.utc
    )


def _check_topic(topic):
    if topic not in TOPICS:
        raise ApiError(404, detail=f"Unknown topic {topic!r}: use funds or fees.")


def _encode_cursor(position):
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode_cursor(cursor):
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as err:
        raise invalid("cursor", "The cursor is not one this API gave.") from err
    if not isinstance(position, dict):
        raise invalid("cursor", "The cursor is not one this API gave.")
    return position
