/** @odoo-module */

import {registry} from "@web/core/registry";

// An accounting manager opens a payout held for review, sees the entry Odoo does
// not know, books the payout with it, and reads the journal items it booked.
registry.category("web_tour.tours").add("payment_vipps_payout_review", {
  steps: () => [
    {
      content: "The payout waits for review",
      trigger:
        ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('To Review')",
    },
    {
      content: "The entry of another system's payment is marked",
      trigger:
        ".o_form_view .o_field_widget[name='line_ids'] tr:contains('shop-991'):contains('Payment unknown to Odoo')",
    },
    {
      content: "Book with exceptions",
      trigger: ".o_form_view button[name='action_book']",
      run: "click",
    },
    {
      content: "Confirm that the exceptions go to the suspense account",
      trigger: ".modal-footer button.btn-primary",
      run: "click",
    },
    {
      content: "The payout is booked",
      trigger:
        ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('Booked')",
    },
    {
      content: "Open its journal items",
      trigger: ".o_form_view a.nav-link:contains('Journal Items')",
      run: "click",
    },
    {
      content: "The unknown payment is on the suspense account, to be cleared",
      trigger:
        ".o_form_view .o_field_widget[name='move_line_ids'] tr:contains('(to review)')",
    },
    {
      content: "The net waits on the payout account",
      trigger:
        ".o_form_view .o_field_widget[name='move_line_ids'] tr:contains('Vipps payout')",
    },
  ],
});
