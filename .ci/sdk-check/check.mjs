// SDK conformance check: drive the local Vipps MobilePay emulator with the
// official Node SDK (@vippsmobilepay/sdk), unmodified, and assert the results.
//
//   node check.mjs http://127.0.0.1:8123
//
// How the SDK reaches the emulator: SDK 2.4.2 has no base-URL option; its
// buildRequest() (esm/base_client_helper.js) hard-codes https://apitest.vipps.no
// (useTestMode: true) or https://api.vipps.no and calls the global fetch().
// We change neither the SDK nor fetch(). Node's fetch sends every request
// through undici's global dispatcher, and undici's public setGlobalDispatcher()
// is the supported way to route it (the same hook HTTP proxies use). Our
// dispatcher sends requests for apitest.vipps.no to the emulator and refuses
// every other host, so the check can never reach the real Vipps.

import assert from "node:assert/strict";
import { Agent, setGlobalDispatcher } from "undici";
import { Client } from "@vippsmobilepay/sdk";

const SDK_TEST_HOST = "https://apitest.vipps.no";
const emulator = new URL(process.argv[2] || process.env.VIPPS_EMULATOR_URL || "");
const credentials = {
  msn: process.env.VIPPS_MSN || "123456",
  clientId: process.env.VIPPS_CLIENT_ID || "emulator-client-id",
  clientSecret: process.env.VIPPS_CLIENT_SECRET || "emulator-client-secret",
  subscriptionKey: process.env.VIPPS_SUBSCRIPTION_KEY || "emulator-subscription-key",
};
const PHONE = "4791234567";

setGlobalDispatcher(
  new Agent().compose((dispatch) => (options, handler) => {
    const origin = String(options.origin).replace(/\/$/, "");
    if (origin === emulator.origin) {
      return dispatch(options, handler); // control API calls of this script
    }
    if (origin !== SDK_TEST_HOST) {
      throw new Error(`refusing a request to ${origin}: only the emulator is allowed`);
    }
    return dispatch({ ...options, origin: emulator.origin }, handler);
  }),
);

const client = Client({
  merchantSerialNumber: credentials.msn,
  subscriptionKey: credentials.subscriptionKey,
  useTestMode: true,
  retryRequests: false,
  systemName: "sdk-check",
  systemVersion: "1.0.0",
  pluginName: "vipps-emulator",
  pluginVersion: "1.0.0",
});

let steps = 0;
async function step(name, body) {
  const started = performance.now();
  await body();
  steps += 1;
  const ms = (performance.now() - started).toFixed(0);
  process.stdout.write(`ok ${steps} - ${name} (${ms} ms)\n`);
}

function ok(result, what) {
  assert.equal(result.ok, true, `${what} failed: ${JSON.stringify(result.error)}`);
  return result.data;
}

function errorCode(result) {
  assert.equal(result.ok, false, "expected an error");
  const details = result.error?.extraDetails ?? [];
  return details.find((d) => d.name === "ErrorCode")?.reason;
}

async function control(path, body) {
  const response = await fetch(new URL(`/_emulator${path}`, emulator), {
    method: body === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(response.ok, `control ${path}: ${response.status}`);
  return response.json();
}

async function main() {
  assert.ok(emulator.origin !== "null", "give the emulator URL as the first argument");
  const run = Date.now().toString(36);
  const reference = `sdk-check-${run}-1`;
  const pushReference = `sdk-check-${run}-2`;
  let token;
  let sub;

  await step("reset the emulator (control API)", async () => {
    await control("/reset", {});
  });

  await step("a wrong client secret is refused", async () => {
    const result = await client.auth.getToken(credentials.clientId, "wrong-secret");
    assert.equal(result.ok, false);
  });

  await step("fetch an access token", async () => {
    const data = ok(
      await client.auth.getToken(credentials.clientId, credentials.clientSecret),
      "getToken",
    );
    assert.equal(data.token_type, "Bearer");
    assert.equal(typeof data.expires_in, "string");
    assert.ok(Number(data.expires_on) > Date.now() / 1000);
    token = data.access_token;
  });

  await step("create a WEB_REDIRECT payment", async () => {
    const data = ok(
      await client.payment.create(token, {
        amount: { currency: "NOK", value: 49900 },
        paymentMethod: { type: "WALLET" },
        customer: { phoneNumber: PHONE },
        reference,
        userFlow: "WEB_REDIRECT",
        returnUrl: `https://shop.example.com/payment/vipps/return?ref=${reference}`,
        paymentDescription: "SDK check invoice",
        profile: { scope: "phoneNumber" },
        metadata: { source: "sdk-check" },
      }),
      "create",
    );
    assert.equal(data.reference, reference);
    // The landing host of the market (pay.vipps.no for NOK) is a path segment.
    assert.ok(
      data.redirectUrl.startsWith(`${emulator.origin}/app/landing/pay.vipps.no?token=`),
      data.redirectUrl,
    );
  });

  await step("read the payment: CREATED", async () => {
    const data = ok(await client.payment.info(token, reference), "info");
    assert.equal(data.state, "CREATED");
    assert.deepEqual(data.amount, { currency: "NOK", value: 49900 });
    assert.equal(data.aggregate.authorizedAmount.value, 0);
    assert.deepEqual(data.metadata, { source: "sdk-check" });
  });

  await step("capture before approval fails with 6080", async () => {
    const result = await client.payment.capture(token, reference, {
      modificationAmount: { currency: "NOK", value: 49900 },
    });
    assert.equal(errorCode(result), "6080");
  });

  await step("approve with the test endpoint", async () => {
    ok(
      await client.payment.forceApprove(token, reference, {
        customer: { phoneNumber: PHONE },
      }),
      "forceApprove",
    );
    const data = ok(await client.payment.info(token, reference), "info");
    assert.equal(data.state, "AUTHORIZED");
    assert.equal(data.aggregate.authorizedAmount.value, 49900);
  });

  await step("profile.sub is written a little after approval", async () => {
    // Vipps writes the sub asynchronously; the emulator does it sub_delay
    // seconds (its own clock) after approval, so move its clock that far.
    const first = ok(await client.payment.info(token, reference), "info");
    assert.equal(first.profile?.sub, undefined, "no sub right after approval");
    const { settings } = await control("/health");
    await control("/clock/advance", { seconds: settings.sub_delay });
    const data = ok(await client.payment.info(token, reference), "info");
    assert.ok(data.profile.sub, "profile.sub is set once written");
    assert.equal(data.userDetails.mobileNumber, PHONE);
    sub = data.profile.sub;
  });

  await step("capture the full amount", async () => {
    const data = ok(
      await client.payment.capture(token, reference, {
        modificationAmount: { currency: "NOK", value: 49900 },
      }),
      "capture",
    );
    assert.equal(data.state, "AUTHORIZED");
    assert.equal(data.aggregate.capturedAmount.value, 49900);
  });

  await step("refund part of it", async () => {
    const data = ok(
      await client.payment.refund(token, reference, {
        modificationAmount: { currency: "NOK", value: 10000 },
      }),
      "refund",
    );
    assert.equal(data.aggregate.refundedAmount.value, 10000);
  });

  await step("refunding more than captured fails with 6150", async () => {
    const result = await client.payment.refund(token, reference, {
      modificationAmount: { currency: "NOK", value: 40000 },
    });
    assert.equal(errorCode(result), "6150");
  });

  await step("read the event log", async () => {
    const events = ok(await client.payment.history(token, reference), "history");
    assert.deepEqual(
      events.map((event) => event.name),
      ["CREATED", "AUTHORIZED", "CAPTURED", "REFUNDED"],
    );
    assert.ok(events.every((event) => event.success === true));
    assert.equal(new Set(events.map((event) => event.pspReference)).size, 4);
    assert.ok(events[2].idempotencyKey, "the SDK's Idempotency-Key is echoed");
  });

  await step("create a PUSH_MESSAGE payment and cancel it", async () => {
    const created = ok(
      await client.payment.create(token, {
        amount: { currency: "NOK", value: 12500 },
        paymentMethod: { type: "WALLET" },
        customer: { phoneNumber: PHONE },
        reference: pushReference,
        userFlow: "PUSH_MESSAGE",
        paymentDescription: "SDK check push",
      }),
      "create push",
    );
    assert.equal(created.redirectUrl, undefined);
    const inbox = await control(`/inbox?phone=${PHONE}`);
    assert.deepEqual(
      inbox.payments.map((payment) => payment.reference),
      [pushReference],
    );
    const cancelled = ok(await client.payment.cancel(token, pushReference), "cancel");
    assert.equal(cancelled.state, "TERMINATED");
  });

  await step("register, list and delete a webhook", async () => {
    const registered = ok(
      await client.webhook.register(token, {
        url: "https://shop.example.com/payment/vipps/webhook",
        events: ["epayments.payment.authorized.v1", "epayments.payment.aborted.v1"],
      }),
      "register",
    );
    assert.ok(registered.id && registered.secret);
    const listed = ok(await client.webhook.list(token), "list");
    assert.equal(listed.webhooks.length, 1);
    assert.equal(listed.webhooks[0].id, registered.id);
    assert.equal(listed.webhooks[0].secret, undefined);
    ok(await client.webhook.delete(token, registered.id), "delete");
    assert.equal(ok(await client.webhook.list(token), "list").webhooks.length, 0);
  });

  await step("userinfo for the shared phone number (plain fetch)", async () => {
    // The SDK has no Userinfo call; use the same token over plain fetch.
    const response = await fetch(
      new URL(`/vipps-userinfo-api/userinfo/${sub}`, SDK_TEST_HOST),
      { headers: { Authorization: `Bearer ${token}` } },
    );
    assert.equal(response.status, 200);
    const claims = await response.json();
    assert.equal(claims.phone_number, PHONE);
  });

  await step("every SDK call reached the emulator as logged", async () => {
    const { entries } = await control("/requests");
    const sdkCalls = entries.filter((entry) => entry.operation !== null);
    assert.ok(sdkCalls.length >= 15, `only ${sdkCalls.length} calls logged`);
    for (const entry of sdkCalls) {
      if (["createPayment", "capturePayment", "refundPayment", "cancelPayment"].includes(entry.operation)) {
        assert.ok(entry.idempotencyKey, `${entry.operation} without Idempotency-Key`);
      }
    }
  });

  process.stdout.write(`SDK check passed: ${steps} steps against ${emulator.origin}\n`);
}

main().catch((error) => {
  process.stderr.write(`SDK check FAILED: ${error.stack || error}\n`);
  process.exit(1);
});
