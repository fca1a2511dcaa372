"""The Report API: ledgers, funds and fees per ledger date, the feed, the lag,
pagination, and sums that always match the captures and refunds."""

import datetime as dt
import random

from .. import report
from .common import MSN, PHONE, EmulatorCase

LEDGER = report.ledger_id(MSN)
OSLO = report.zoneinfo.ZoneInfo("Europe/Oslo")
# 10:00 in Oslo on a Tuesday in November 2026 (UTC+1).
MORNING = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.timezone.utc)


class ReportCase(EmulatorCase):
    # Days pass in these tests: a token that outlives them.
    options = {
        "report_lag": 2.0,
        "report_close_delay": 3 * 3600.0,
        "token_ttl": 400 * 86400,
    }

    def setUp(self):
        super().setUp()
        self.emu.set_time(MORNING)
        self.count = 0

    def pay(self, value, capture=None, refund=0):
        """A payment approved, captured (all by default) and maybe refunded."""
        self.count += 1
        reference = f"inv-report-{self.count}"
        self.new_payment(reference, amount={"currency": "NOK", "value": value})
        self.emu.approve(reference, phone=PHONE)
        answer = self.modify("capture", capture or value, reference=reference)
        self.assertEqual(answer.status, 200, answer)
        if refund:
            answer = self.modify("refund", refund, reference=reference)
            self.assertEqual(answer.status, 200, answer)
        return reference

    def report(self, day, topic="funds", expect=200, cursor=None):
        path = f"/report/v2/ledgers/{LEDGER}/{topic}/dates/{day}"
        if cursor:
            path += f"?cursor={cursor}"
        answer = self.call("GET", path, headers={"Merchant-Serial-Number": None})
        self.assertEqual(answer.status, expect, answer)
        return answer.json

    def whole(self, day, topic="funds"):
        """Every item of a date, following the cursor; and the last page."""
        page = self.report(day, topic)
        items = list(page["items"])
        while page["hasMore"]:
            page = self.report(day, topic, cursor=page["cursor"])
            items += page["items"]
        return items, page

    def next_morning(self):
        self.emu.advance(24 * 3600)


class TestLedgers(ReportCase):
    def test_ledger_of_the_sales_unit(self):
        """The caller's keys see the ledger of their MSN, in its currency."""
        answer = self.call("GET", "/settlement/v1/ledgers")
        self.assertEqual(answer.status, 200, answer)
        (ledger,) = answer.json["items"]
        self.assertEqual(ledger["ledgerId"], LEDGER)
        self.assertEqual(ledger["currency"], "NOK")
        self.assertEqual(ledger["settlesForRecipientHandles"], [f"api:{MSN}"])
        other = self.call(
            "GET", "/settlement/v1/ledgers?settlesForRecipientHandles=api:1"
        )
        self.assertEqual(other.json["items"], [])

    def test_other_ledger_and_no_token_refused(self):
        """Another sales unit's ledger is 403; without a token 401."""
        answer = self.call("GET", "/report/v2/ledgers/30999/funds/dates/2026-11-03")
        self.assertEqual(answer.status, 403, answer)
        answer = self.call(
            "GET",
            f"/report/v2/ledgers/{LEDGER}/funds/dates/2026-11-03",
            headers={"Authorization": None},
        )
        self.assertEqual(answer.status, 401, answer)

    def test_bad_date_and_topic(self):
        """A malformed date is a 400, an unknown topic a 404."""
        self.report("3-11-2026", expect=400)
        self.report("2026-11-03", topic="sales", expect=404)


class TestDay(ReportCase):
    def test_open_day_then_closed_with_fees_and_payout(self):
        """Captures and refunds show after the lag; the date says tryLater until it
        closes, then holds the fees retained and one payout of the balance."""
        self.report("2026-11-04", expect=404)  # tomorrow
        self.pay(100000)
        self.pay(50000, refund=20000)
        items, page = self.whole("2026-11-03")
        self.assertEqual(items, [])  # the lag: nothing shows yet
        self.assertTrue(page["tryLater"])
        self.emu.advance(3)
        items, page = self.whole("2026-11-03")
        self.assertEqual(
            [(i["entryType"], i["amount"]) for i in items],
            [("capture", 100000), ("capture", 50000), ("refund", -20000)],
        )
        self.assertTrue(page["tryLater"])
        # Midnight plus less than the close delay: still open.
        self.emu.set_time(dt.datetime(2026, 11, 4, 1, 0, tzinfo=OSLO))
        self.assertTrue(self.report("2026-11-03")["tryLater"])
        self.emu.set_time(dt.datetime(2026, 11, 4, 3, 0, 1, tzinfo=OSLO))
        items, page = self.whole("2026-11-03")
        self.assertFalse(page["tryLater"])
        fees = report.fee(100000, (175, 100)) + report.fee(50000, (175, 100))
        self.assertEqual(fees, 1850 + 975)
        self.assertEqual(
            [(i["entryType"], i["amount"]) for i in items[3:]],
            [("fees-retained", -fees), ("payout-scheduled", -(130000 - fees))],
        )
        self.assertEqual(items[-1]["balanceAfter"], 0)
        for before, after in zip(items, items[1:], strict=False):
            self.assertEqual(before["balanceAfter"], after["balanceBefore"])
        fee_items, __ = self.whole("2026-11-03", "fees")
        self.assertEqual(
            [(i["entryType"], i["amount"]) for i in fee_items],
            [("capture-fee", 1850), ("capture-fee", 975), ("fees-retained", -fees)],
        )
        self.assertEqual(fee_items[0]["pspReference"], items[0]["pspReference"])

    def test_refunds_beyond_the_day_carry_over(self):
        """A day with more refunded than captured pays nothing out; its negative
        balance is taken from the next payout."""
        first = self.pay(100000)
        self.next_morning()
        self.next_morning()  # the 3rd paid out on the 4th, now the 5th
        self.modify("refund", 60000, reference=first)
        self.pay(20000)
        self.next_morning()
        self.pay(70000)
        self.next_morning()
        day5, __ = self.whole("2026-11-05")
        self.assertNotIn("payout-scheduled", [i["entryType"] for i in day5])
        self.assertLess(day5[-1]["balanceAfter"], 0)
        day6, __ = self.whole("2026-11-06")
        payout = day6[-1]
        self.assertEqual(payout["entryType"], "payout-scheduled")
        self.assertEqual(payout["balanceAfter"], 0)
        self.assertEqual(day6[0]["balanceBefore"], day5[-1]["balanceAfter"])

    def test_pages_follow_the_cursor(self):
        """More entries than a page: hasMore and a cursor until the last page."""
        with self.settings_changed(report_page_size=2):
            for value in (1000, 2000, 3000, 4000, 5000):
                self.pay(value)
            self.emu.advance(3)
            first = self.report("2026-11-03")
            self.assertEqual(len(first["items"]), 2)
            self.assertTrue(first["hasMore"])
            items, last = self.whole("2026-11-03")
            self.assertEqual(
                [i["amount"] for i in items], [1000, 2000, 3000, 4000, 5000]
            )
            self.assertNotIn("cursor", last)
            self.report("2026-11-02", cursor=first["cursor"], expect=400)

    def test_correction_changes_a_closed_day(self):
        """An entry added to a day already paid out changes that day's payout (as
        when Vipps corrects a report); it shows only after the lag."""
        self.pay(100000)
        self.next_morning()
        before, __ = self.whole("2026-11-03")
        self.emu.add_ledger_entry(MSN, "correction", -500, ledger_date="2026-11-03")
        self.assertEqual(self.whole("2026-11-03")[0], before)
        self.emu.advance(3)
        after, __ = self.whole("2026-11-03")
        self.assertEqual(after[-1]["amount"], before[-1]["amount"] + 500)
        self.assertIn("correction", [i["entryType"] for i in after])


class TestFeed(ReportCase):
    def test_feed_in_order_with_a_cursor_that_waits(self):
        """The feed gives every entry once, in order; at its end it says tryLater
        and the same cursor later brings the new entries."""
        self.pay(10000)
        self.emu.advance(3)
        path = f"/report/v2/ledgers/{LEDGER}/funds/feed"
        first = self.call("GET", path).json
        self.assertEqual([i["amount"] for i in first["items"]], [10000])
        self.assertTrue(first["tryLater"])
        again = self.call("GET", f"{path}?cursor={first['cursor']}").json
        self.assertEqual(again["items"], [])
        self.pay(20000)
        self.emu.advance(3)
        later = self.call("GET", f"{path}?cursor={first['cursor']}").json
        self.assertEqual([i["amount"] for i in later["items"]], [20000])


class TestSums(ReportCase):
    def test_a_month_adds_up_to_the_payments(self):
        """Over a month of random payments, partial captures and refunds, each
        day's funds are its captures minus refunds minus fees minus the payout, and
        the ledger's totals are the aggregates Get payment shows."""
        rng = random.Random(2026)
        references = []
        for __ in range(30):
            for __ in range(rng.randint(0, 4)):
                value = rng.randint(100, 500000)
                capture = rng.choice([value, rng.randint(100, value)])
                refund = rng.choice([0, 0, rng.randint(1, capture)])
                references.append(self.pay(value, capture, refund))
            self.emu.advance(rng.randint(20, 28) * 3600)
        self.emu.advance(2 * 86400)
        captured = refunded = 0
        for reference in references:
            aggregate = self.get(reference)["aggregate"]
            captured += aggregate["capturedAmount"]["value"]
            refunded += aggregate["refundedAmount"]["value"]
        totals = self.emu.ledger_totals()
        self.assertEqual(totals["capture"], captured)
        self.assertEqual(totals["refund"], -refunded)
        # Day by day: the balance runs on, each day's fees ledger holds the fees
        # of its captures, and what is left is what the ledger still owes.
        day = dt.date(2026, 11, 3)
        last_day = self.emu.now().astimezone(OSLO).date() - dt.timedelta(days=1)
        fees = retained = balance = 0
        while day <= last_day:
            funds, page = self.whole(day.isoformat())
            self.assertFalse(page["tryLater"], day)
            for item in funds:
                self.assertEqual(item["balanceBefore"], balance)
                balance = item["balanceAfter"]
            items, __ = self.whole(day.isoformat(), "fees")
            day_fees = sum(
                i["amount"] for i in items if i["entryType"] == "capture-fee"
            )
            self.assertEqual(
                sum(i["amount"] for i in items if i["entryType"] == "fees-retained"),
                -day_fees,
            )
            fees += day_fees
            retained += sum(
                i["amount"] for i in funds if i["entryType"] == "fees-retained"
            )
            day += dt.timedelta(days=1)
        self.assertEqual(fees, -retained)
        self.assertEqual(totals["fees-retained"], retained)
        self.assertEqual(sum(totals.values()), balance)
