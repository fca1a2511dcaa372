/** @odoo-module */

import {registry} from "@web/core/registry";

// A Norwegian customer opens the "Pay with Vipps" page of an invoice of 2 300,00 kr
// due on 31 December 2026, reads it in Norwegian and chooses to get the next
// invoices in the app.
registry.category("web_tour.tours").add("payment_vipps_pay_page_nb", {
  steps: () => [
    {
      content: "The page is in Norwegian",
      trigger: "html[lang='nb-NO']",
    },
    {
      content: "The amount due, in the Norwegian format",
      trigger: "#vipps_pay_page div.fs-3:contains('2 300,00 kr')",
    },
    {
      content: "The due date, in the Norwegian format",
      trigger: "#vipps_pay_page:contains('31.12.2026')",
    },
    {
      content: "The opt-in reads Norwegian",
      trigger: "label[for='vipps_share_phone']:contains('Vipps-appen')",
    },
    {
      content: "Choose to get the next invoices in the app",
      trigger: "#vipps_share_phone",
      run: "click",
    },
    {
      content: "The choice is ticked",
      trigger: "#vipps_share_phone:checked",
    },
    {
      content: "The button reads Betal med Vipps",
      trigger: "#vipps_pay_button:contains('Betal med Vipps')",
    },
  ],
});
