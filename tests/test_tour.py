from odoo.tests import tagged

from .common import VippsHttpCommon

# Runs in the emulator's "app" page: approve the push request with a real click on
# the page's Approve button; the form is then posted by fetch so that the result can
# be reported to the test before the page would navigate away.
APPROVE_IN_APP = """
const form = document.querySelector("li.request[data-state='CREATED'] form");
if (!form) { console.error("no payment request in the app inbox"); }
form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new URLSearchParams(new FormData(form, event.submitter));
    const response = await fetch(form.action, {method: "POST", body: data});
    const page = await response.text();
    if (page.includes("data-state='AUTHORIZED'")) {
        console.log("test successful");
    } else {
        console.error("the app did not accept the approval");
    }
});
form.querySelector("button[name='approve']").click();
"""


@tagged("post_install", "-at_install")
class TestVippsTour(VippsHttpCommon):
    vipps_merchant = "approved"

    def test_accountant_requests_customer_approves_invoice_paid(self):
        """Request in Odoo, approve in the app page, see the invoice paid."""
        self.env.ref("base.user_admin").company_ids |= self.env.company
        self.env.ref("base.user_admin").company_id = self.env.company
        invoice = self.create_invoice()
        with self.server_turn():
            self.start_tour(
                f"/odoo/action-account.action_move_out_invoice_type/{invoice.id}",
                "payment_vipps_request_payment",
                login="admin",
            )
        self.assertEqual(invoice.vipps_state, "pending")
        inbox = f"{self.emulator.url}/app/inbox?phone={self.PHONE}"
        with self.server_turn():
            self.browser_js(inbox, APPROVE_IN_APP)
            self.assertTrue(self.emulator.wait_for_webhooks(timeout=20))
        # The webhook was followed by the server.
        self.assertEqual(invoice.vipps_state, "paid")
        with self.server_turn():
            self.start_tour(
                f"/odoo/action-account.action_move_out_invoice_type/{invoice.id}",
                "payment_vipps_invoice_paid",
                login="admin",
            )
