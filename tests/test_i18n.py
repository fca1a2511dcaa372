from pathlib import Path

import polib

from odoo.tests import tagged

from .. import compat, const
from .common import VippsHttpCommon

I18N = Path(__file__).resolve().parent.parent / "i18n"
# Odoo's language codes and the files that translate them.
LANGUAGES = {"nb_NO": "nb", "da_DK": "da", "fi_FI": "fi", "sv_SE": "sv"}
# Odoo's own Danish date format: 31-12-2026 on 18.0, 31.12.2026 on 19.0.
DANISH_DATE = "31.12.2026" if compat.ODOO_19 else "31-12-2026"


def shipped(code):
    """{English: translation} of one shipped .po file."""
    return {
        entry.msgid: entry.msgstr
        for entry in polib.pofile(str(I18N / f"{code}.po"))
        if entry.msgstr
    }


def plain(text):
    """Text as a reader sees it: no-break and narrow spaces as plain spaces."""
    text = str(text)
    return text.replace("\xa0", " ").replace("\u202f", " ").replace("&nbsp;", " ")


@tagged("post_install", "-at_install")
class TestVippsCustomerLanguage(VippsHttpCommon):
    """Customers read the pages, the e-mail, the app's texts and the QR caption in
    their own language, with their dates and amounts; the accountant keeps theirs."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for lang in LANGUAGES:
            cls.env["res.lang"]._activate_lang(lang)
        cls.env["ir.module.module"]._load_module_terms(
            ["payment_vipps"], list(LANGUAGES), overwrite=True
        )
        cls.po = {lang: shipped(code) for lang, code in LANGUAGES.items()}
        cls.customers = {
            lang: cls.env["res.partner"].create(
                {
                    "name": f"Customer {lang}",
                    "lang": lang,
                    "email": f"{lang}@example.com",
                    "country_id": cls.env.ref("base.no").id,
                }
            )
            for lang in LANGUAGES
        }

    def _invoice(self, lang):
        # 2,000 + 15 % tax: 2,300.00 due on 31 December 2026.
        invoice = self.create_invoice(partner=self.customers[lang], amount=2000.0)
        invoice._portal_ensure_token()
        return invoice

    def _t(self, lang, english):
        translation = self.po[lang].get(english)
        self.assertTrue(translation, msg=f"{english!r} is translated for {lang}")
        return translation

    def test_order_details_page_in_customer_language(self):
        """The page the app links to: labels, date and amount in the customer's
        language and format."""
        expected = {
            "nb_NO": ("31.12.2026", "2 300,00 kr"),
            "da_DK": (DANISH_DATE, "2.300,00 kr"),
            "fi_FI": ("31.12.2026", "2 300,00 kr"),
        }
        for lang, (date, amount) in expected.items():
            with self.subTest(lang=lang):
                invoice = self._invoice(lang)
                response = self._get(
                    f"{const.ORDER_DETAILS_ROUTE}/{invoice.id}"
                    f"?access_token={invoice.access_token}"
                )
                page = plain(response.text)
                self.assertIn(self._t(lang, "Download PDF"), page)
                self.assertIn(plain(self._t(lang, "<span>Amount due</span>")), page)
                self.assertNotIn("Amount due", page)
                self.assertIn(f'lang="{lang.replace("_", "-")}"', page)
                self.assertIn(date, page)
                self.assertIn(amount, page)
                self.assertNotIn("12/31/2026", page)
                self.assertIn("<span>2</span> ×", page, msg="the quantity, as written")

    def test_pay_page_in_customer_language(self):
        """The "Pay with Vipps" page: button, opt-in and date in the customer's
        language; Norwegian reads "Betal med Vipps"."""
        for lang in ("nb_NO", "da_DK", "fi_FI"):
            with self.subTest(lang=lang):
                invoice = self._invoice(lang)
                page = plain(self._get(invoice._vipps_pay_url()).text)
                self.assertIn(self._t(lang, "Pay with Vipps"), page)
                self.assertNotIn("Pay with Vipps", page)
                self.assertIn(
                    self._t(lang, "Send my next invoices to my %s app") % "Vipps", page
                )
                self.assertIn("31", page)
                self.assertNotIn("12/31/2026", page)
        norwegian = self._invoice("nb_NO")
        self.assertIn("Betal med Vipps", self._get(norwegian._vipps_pay_url()).text)

    def test_pay_link_email_in_customer_language(self):
        """The e-mail with the pay link: subject, text, amount and due date in the
        customer's language; the accountant's note stays in theirs."""
        for lang, date, amount in (
            ("nb_NO", "31.12.2026", "2 300,00 kr"),
            ("da_DK", DANISH_DATE, "2.300,00 kr"),
            ("fi_FI", "31.12.2026", "2 300,00 kr"),
        ):
            with self.subTest(lang=lang):
                invoice = self._invoice(lang)
                invoice._vipps_email_pay_link()
                mail = invoice.message_ids.filtered(
                    lambda message: message.partner_ids == self.customers[lang]  # noqa: B023 - used at once
                )
                self.assertEqual(len(mail), 1)
                body = plain(mail.body)
                self.assertIn(self._t(lang, "Pay with Vipps"), body)
                self.assertIn(date, body)
                self.assertIn(amount, body)
                subject = self._t(
                    lang, "Pay invoice {{ object.name }} with Vipps MobilePay"
                ).replace("{{ object.name }}", invoice.name)
                self.assertEqual(mail.subject, subject)

    def test_app_description_and_receipt_in_customer_language(self):
        """What the customer reads in the app: the payment description with the due
        date in the customer's format, and the receipt's adjustment line."""
        for lang, date in (("nb_NO", "31.12.2026"), ("fi_FI", "31.12.2026")):
            with self.subTest(lang=lang):
                invoice = self._invoice(lang)
                self.pay_otherwise_partly(invoice, 300.0)
                tx = invoice._vipps_link_payment()
                payment = self.emulator.payment(tx.reference)
                description = self._t(lang, "Invoice %(number)s, due %(date)s") % {
                    "number": invoice.name,
                    "date": date,
                }
                self.assertEqual(payment.description, description)
                names = [line["name"] for line in payment.receipt["orderLines"]]
                self.assertIn(
                    self._t(lang, "Paid earlier, or due in a later instalment"), names
                )

    def test_qr_caption_follows_the_invoice_language(self):
        """The caption of the QR code on the PDF is in the invoice's language."""
        invoice = self._invoice("nb_NO")
        html = (
            self.env["ir.actions.report"]
            ._render_qweb_html("account.account_invoices", invoice.ids)[0]
            .decode()
        )
        self.assertIn(self._t("nb_NO", "Scan to pay with Vipps"), html)
        self.assertNotIn("Scan to pay with Vipps", html)

    def test_language_fallbacks(self):
        """A customer in a language the addon does not ship reads the company's;
        without either, English."""
        self.env["res.lang"]._activate_lang("de_DE")
        german = self.env["res.partner"].create({"name": "Kunde", "lang": "de_DE"})
        company_partner = self.env.company.partner_id
        company_partner.lang = "nb_NO"
        invoice = self.create_invoice(partner=german)
        self.assertEqual(invoice._vipps_customer_lang(), "nb_NO")
        self.assertIn(
            self._t("nb_NO", "Pay with Vipps"),
            self._get(invoice._vipps_pay_url()).text,
        )
        company_partner.lang = "de_DE"
        self.assertEqual(invoice._vipps_customer_lang(), "en_US")
        self.assertIn("Pay with Vipps", self._get(invoice._vipps_pay_url()).text)
        swedish = self.create_invoice(partner=self.customers["sv_SE"])
        self.assertEqual(swedish._vipps_customer_lang(), "sv_SE")

    def test_back_office_stays_in_the_accountant_language(self):
        """An accountant working in English reads English about a Norwegian
        customer's invoice."""
        invoice = self._invoice("nb_NO")
        self.pay_otherwise(invoice)
        __, problem = invoice._vipps_payable()
        self.assertTrue(problem)
        self.assertNotIn(problem, self.po["nb_NO"].values())
        self.assertIn(problem, self.po["nb_NO"])

    def test_pay_page_tour_in_norwegian(self):
        """Real Chromium walks the pay page in Norwegian and opts in."""
        invoice = self._invoice("nb_NO")
        with self.server_turn():
            self.start_tour(invoice._vipps_pay_url(), "payment_vipps_pay_page_nb")

    # === HELPERS === #

    def _get(self, url):
        with self.server_turn():
            return self.url_open(url)

    def pay_otherwise_partly(self, invoice, amount):
        self.env["account.payment.register"].with_context(
            active_model="account.move", active_ids=invoice.ids
        ).create({"amount": amount})._create_payments()
