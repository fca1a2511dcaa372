"""Order Management v2: categories, receipts and reading an order back."""

import base64
import uuid

from .common import EmulatorCase
from .test_create_validation import RECEIPT

REF = "inv-2026-00001-1"
CATEGORY = {
    "category": "GENERAL",
    "orderDetailsUrl": "https://shop.example.com/my/invoices/1?access_token=abc",
}


class TestOrderManagement(EmulatorCase):
    """Categories, receipts and images."""

    def test_category_is_stored_and_overwritten(self):
        """PUT stores a category (200); a second PUT replaces it (200 again)."""
        path = f"/order-management/v2/ecom/categories/{REF}"
        self.assertEqual(self.call("PUT", path, CATEGORY).status, 200)
        replaced = self.call("PUT", path, {**CATEGORY, "category": "RECEIPT"})
        self.assertEqual(replaced.status, 200)
        order = self.call("GET", f"/order-management/v2/ecom/{REF}").json
        self.assertEqual(order["category"]["category"], "RECEIPT")
        self.assertNotIn("receipt", order)

    def test_category_answer_is_a_json_string(self):
        """200Upserted: a JSON string body, the same id for a replaced category."""
        path = f"/order-management/v2/ecom/categories/{REF}"
        first = self.call("PUT", path, CATEGORY)
        self.assertEqual(
            first.headers["Content-Type"].split(";")[0], "application/json"
        )
        self.assertIsInstance(first.json, str)
        self.assertEqual(str(uuid.UUID(first.json)), first.json)
        second = self.call("PUT", path, {**CATEGORY, "category": "RECEIPT"})
        self.assertEqual(second.json, first.json)
        other = self.call("PUT", f"{path}-2", CATEGORY)
        self.assertNotEqual(other.json, first.json)

    def test_receipt_answer_is_a_json_string(self):
        """201Created: a JSON string body, the order's id."""
        self.call("PUT", f"/order-management/v2/ecom/categories/{REF}", CATEGORY)
        category_id = self.call(
            "PUT", f"/order-management/v2/ecom/categories/{REF}", CATEGORY
        ).json
        answer = self.call("POST", f"/order-management/v2/ecom/receipts/{REF}", RECEIPT)
        self.assertEqual(answer.status, 201)
        self.assertEqual(answer.json, category_id)

    def test_category_validation_uses_invalid_params(self):
        """A bad category is a 400 listing invalidParams."""
        answer = self.call(
            "PUT",
            f"/order-management/v2/ecom/categories/{REF}",
            {"category": "INVOICE", "orderDetailsUrl": "ftp://x"},
        )
        self.assertEqual(answer.status, 400)
        self.assertEqual(
            sorted(p["name"] for p in answer.json["invalidParams"]),
            ["category", "orderDetailsUrl"],
        )

    def test_receipt_can_be_sent_once(self):
        """POST receipt answers 201 the first time and 409 after."""
        path = f"/order-management/v2/ecom/receipts/{REF}"
        self.assertEqual(self.call("POST", path, RECEIPT).status, 201)
        self.assertEqual(self.call("POST", path, RECEIPT).status, 409)
        order = self.call("GET", f"/order-management/v2/ecom/{REF}").json
        self.assertEqual(order["receipt"], RECEIPT)

    def test_receipt_from_create_is_readable_and_final(self):
        """A receipt sent with Create payment is returned and cannot be re-sent."""
        self.new_payment(receipt=RECEIPT)
        order = self.call("GET", f"/order-management/v2/ecom/{REF}").json
        self.assertEqual(order["receipt"]["orderLines"][0]["taxRate"], 2500)
        path = f"/order-management/v2/ecom/receipts/{REF}"
        self.assertEqual(self.call("POST", path, RECEIPT).status, 409)

    def test_unknown_order_is_404(self):
        """Reading an order with nothing attached is a 404."""
        answer = self.call("GET", "/order-management/v2/ecom/nothing-here-1")
        self.assertEqual(answer.status, 404)

    def test_receipt_validation(self):
        """An order line without id is refused with invalidParams."""
        line = {k: v for k, v in RECEIPT["orderLines"][0].items() if k != "id"}
        answer = self.call(
            "POST",
            f"/order-management/v2/ecom/receipts/{REF}",
            {"orderLines": [line], "bottomLine": RECEIPT["bottomLine"]},
        )
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.fields, ["receipt.orderLines[0].id"])

    def test_images_cannot_be_overwritten(self):
        """An image id can be used once (409 after)."""
        body = {
            "imageId": "logo-1",
            "src": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 64).decode(),
            "type": "base64",
        }
        answer = self.call("POST", "/order-management/v1/images", body)
        self.assertEqual((answer.status, answer.json), (200, {"imageId": "logo-1"}))
        self.assertEqual(
            self.call("POST", "/order-management/v1/images", body).status, 409
        )
