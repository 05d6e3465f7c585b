// The npm side of tests/interop/interop.py: one call per process, a JSON request on stdin, a
// JSON answer on stdout. Every signature check here is done by the provider's own published
// package (pinned in package.json); where a provider's package only verifies (Discord,
// SendGrid), the signing side is Node's own crypto, as the provider's servers would do it.
//
//   {"action": "keygen", "kind": "ed25519" | "p256"}
//       -> {"private_hex": "<32-byte seed/scalar>", "public_hex"?, "public_b64der"?}
//   {"action": "sign", "provider": P, "secret"|"private_hex"|"private_pem", "body", "timestamp"?}
//       -> {"headers": {name: value, ...}}
//   {"action": "sign", "provider": "adyen", "secret", "items": [NotificationRequestItem, ...]}
//       -> {"signatures": ["<base64>", ...]}   (one per item, for additionalData.hmacSignature)
//   {"action": "sign", "provider": "contentful", "secret", "body", "path", "timestamp"?, "sign_headers"?}
//       -> {"headers": {name: value, ...}}   (signRequest's answer as it is: lower-case names)
//   {"action": "verify", "provider": P, "secret"|"public_key", "body", "headers", "url"?, "path"?}
//       -> {"ok": true|false, "detail": "..."}
//   {"action": "verify", "provider": "aws-sns", "body", "host_pattern"}
//       -> {"ok": true|false, "detail": "..."}   (the SNS message is the body; host_pattern a RegExp source)
//   {"action": "verify", "provider": "ebay", "body", "headers", "keys": {kid: key API answer}}
//       -> {"ok": true|false, "status": 204|412|500, "detail": "..."}   (status: the SDK's process())
//   {"action": "challenge", "provider": "ebay", "challenge_code", "verification_token", "endpoint"}
//       -> {"challengeResponse": "<hex>"}   (the SDK's validateEndpoint())
//   [request, request, ...] -> [answer, answer, ...]
//
// `body` is the exact request body as a string (UTF-8). `headers` are as the app would see them.
// Anything the SDKs print goes to stderr, so stdout carries only the answer.

import crypto from "node:crypto";
import { createRequire } from "node:module";

for (const level of ["log", "info", "debug", "warn"]) {
  console[level] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

// Header lookup by name, case-insensitive, as every HTTP framework offers it.
function header(headers, name) {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
}

function lowerCased(headers) {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

// PKCS#8 / SPKI wrappers, to hand raw key bytes to node:crypto.
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
function ed25519PrivateKey(seedHex) {
  return crypto.createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.from(seedHex, "hex")]),
    format: "der",
    type: "pkcs8",
  });
}
// A PEM private key (e.g. from `hookgate keygen`), as a sender's test harness would load it.
function pemPrivateKey(pem) {
  try {
    return crypto.createPrivateKey(pem);
  } catch (e) {
    throw new Error(`Node ${process.version} (OpenSSL ${process.versions.openssl}) cannot load the PEM private key: ${e.message}`);
  }
}
function p256PrivateKey(scalarHex, publicB64Der) {
  const pub = crypto.createPublicKey({ key: Buffer.from(publicB64Der, "base64"), format: "der", type: "spki" });
  const jwk = pub.export({ format: "jwk" });
  return crypto.createPrivateKey({
    key: { ...jwk, d: Buffer.from(scalarHex, "hex").toString("base64url") },
    format: "jwk",
  });
}

async function keygen(req) {
  if (req.kind === "ed25519") {
    const { privateKey } = crypto.generateKeyPairSync("ed25519");
    const jwk = privateKey.export({ format: "jwk" });
    return {
      private_hex: Buffer.from(jwk.d, "base64url").toString("hex"),
      public_hex: Buffer.from(jwk.x, "base64url").toString("hex"),
    };
  }
  if (req.kind === "p256") {
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = privateKey.export({ format: "jwk" });
    return {
      private_hex: Buffer.from(jwk.d, "base64url").toString("hex"),
      public_b64der: publicKey.export({ format: "der", type: "spki" }).toString("base64"),
    };
  }
  throw new Error(`keygen: unknown kind ${req.kind}`);
}

async function sign(req) {
  switch (req.provider) {
    case "github": {
      // @octokit/webhooks-methods: sign(secret, payload) -> "sha256=<hex>"
      const { sign } = await import("@octokit/webhooks-methods");
      return { headers: { "X-Hub-Signature-256": await sign(req.secret, req.body) } };
    }
    case "shopify": {
      // @shopify/shopify-api's own test helper (what its tests use to fake a webhook).
      const { getHmac } = await import("@shopify/shopify-api/test-helpers");
      return { hmac: getHmac(req.body, req.secret) };
    }
    case "discord": {
      // discord-interactions only verifies: sign as Discord does, Ed25519 over timestamp + body.
      const message = Buffer.concat([Buffer.from(req.timestamp), Buffer.from(req.body)]);
      const key = req.private_pem ? pemPrivateKey(req.private_pem) : ed25519PrivateKey(req.private_hex);
      const sig = crypto.sign(null, message, key);
      return {
        headers: { "X-Signature-Ed25519": sig.toString("hex"), "X-Signature-Timestamp": req.timestamp },
      };
    }
    case "sendgrid": {
      // @sendgrid/eventwebhook only verifies: sign as SendGrid does, ECDSA P-256 SHA-256 (DER,
      // base64) over timestamp + body.
      const message = Buffer.concat([Buffer.from(req.timestamp), Buffer.from(req.body)]);
      const key = req.private_pem ? pemPrivateKey(req.private_pem) : p256PrivateKey(req.private_hex, req.public_key);
      const sig = crypto.sign("sha256", message, key);
      return {
        headers: {
          "X-Twilio-Email-Event-Webhook-Signature": sig.toString("base64"),
          "X-Twilio-Email-Event-Webhook-Timestamp": req.timestamp,
        },
      };
    }
    case "adyen": {
      // @adyen/api-library: hmacValidator.calculateHmac(NotificationRequestItem, hexKey) for
      // each item of the notification, as Adyen puts it in additionalData.hmacSignature.
      // `items` are the NotificationRequestItem objects; the answer lists their signatures.
      const { hmacValidator } = await import("@adyen/api-library");
      const validator = new hmacValidator();
      return { signatures: req.items.map((item) => validator.calculateHmac(item, req.secret)) };
    }
    case "contentful": {
      // @contentful/node-apps-toolkit: signRequest(secret, canonicalRequest, timestamp?, context?).
      // It signs every header of canonicalRequest.headers plus x-contentful-signed-headers and
      // x-contentful-timestamp (Contentful's default list when none is given: `sign_headers`
      // adds some, as a webhook configured to sign more headers does), and answers the
      // x-contentful-signature / -signed-headers / -timestamp headers to send.
      const { signRequest } = await import("@contentful/node-apps-toolkit");
      const canonical = { method: "POST", path: req.path, headers: req.sign_headers || {}, body: req.body };
      const signed = signRequest(req.secret, canonical, req.timestamp);
      return { headers: { ...(req.sign_headers || {}), ...signed } };
    }
    default:
      throw new Error(`sign: no signer for ${req.provider}`);
  }
}

async function verify(req) {
  const h = req.headers || {};
  switch (req.provider) {
    case "github": {
      const { verify } = await import("@octokit/webhooks-methods");
      const sig = header(h, "X-Hub-Signature-256");
      if (!sig) return { ok: false, detail: "no X-Hub-Signature-256" };
      return { ok: await verify(req.secret, req.body, sig), detail: "@octokit/webhooks-methods verify()" };
    }
    case "shopify": {
      await import("@shopify/shopify-api/adapters/web-api");
      const { shopifyApi, ApiVersion } = await import("@shopify/shopify-api");
      const shopify = shopifyApi({
        apiKey: "interop-key",
        apiSecretKey: req.secret,
        apiVersion: ApiVersion.October24 ?? Object.values(ApiVersion)[0],
        hostName: "hooks.example.com",
        isEmbeddedApp: false,
        logger: { log: () => {}, level: 0 },
      });
      const rawRequest = new Request(req.url || "https://hooks.example.com/webhooks/shopify", {
        method: "POST",
        headers: h,
        body: req.body,
      });
      const result = await shopify.webhooks.validate({ rawBody: req.body, rawRequest });
      return { ok: result.valid === true, detail: `shopify.webhooks.validate(): ${JSON.stringify(result)}` };
    }
    case "discord": {
      const { verifyKey } = await import("discord-interactions");
      const sig = header(h, "X-Signature-Ed25519");
      const ts = header(h, "X-Signature-Timestamp");
      if (!sig || !ts) return { ok: false, detail: "missing X-Signature-Ed25519 / X-Signature-Timestamp" };
      const ok = await verifyKey(Buffer.from(req.body), sig, ts, req.public_key);
      return { ok, detail: "discord-interactions verifyKey()" };
    }
    case "sendgrid": {
      const { EventWebhook, EventWebhookHeader } = (await import("@sendgrid/eventwebhook")).default;
      const ew = new EventWebhook();
      const key = ew.convertPublicKeyToECDSA(req.public_key);
      const sig = header(h, EventWebhookHeader.SIGNATURE());
      const ts = header(h, EventWebhookHeader.TIMESTAMP());
      if (!sig || !ts) return { ok: false, detail: "missing SendGrid signature / timestamp header" };
      return { ok: ew.verifySignature(key, req.body, sig, ts), detail: "EventWebhook.verifySignature()" };
    }
    case "linear": {
      const { LinearWebhookClient, LINEAR_WEBHOOK_SIGNATURE_HEADER } = await import("@linear/sdk/webhooks");
      const client = new LinearWebhookClient(req.secret);
      const sig = header(h, LINEAR_WEBHOOK_SIGNATURE_HEADER);
      if (!sig) return { ok: false, detail: "no linear-signature" };
      try {
        client.parseData(Buffer.from(req.body), sig);
        return { ok: true, detail: "LinearWebhookClient.parseData()" };
      } catch (e) {
        return { ok: false, detail: `LinearWebhookClient.parseData(): ${e.message}` };
      }
    }
    case "webflow": {
      const { WebflowClient } = await import("webflow-api");
      const client = new WebflowClient({ accessToken: "interop-unused" });
      // verifySignature reads headers["x-webflow-timestamp"] / ["x-webflow-signature"]: the
      // lower-cased names Node's http module gives.
      const ok = await client.webhooks.verifySignature({ headers: lowerCased(h), body: req.body, secret: req.secret });
      return { ok, detail: "WebflowClient.webhooks.verifySignature()" };
    }
    case "zoom": {
      // @zoom/rivet's receivers verify inside their request handling; the Lambda receiver takes
      // a plain {body, headers} event and answers 200 (verified) or 400.
      const { AwsLambdaReceiver } = await import("@zoom/rivet/users");
      const receiver = new AwsLambdaReceiver({ webhooksSecretToken: req.secret });
      receiver.init({ eventEmitter: { emit: async () => {} } });
      const answer = await receiver.start()({ body: req.body, headers: h, isBase64Encoded: false }, {});
      return { ok: answer.statusCode === 200, detail: `AwsLambdaReceiver: ${answer.statusCode} ${answer.body}` };
    }
    case "adyen": {
      // An app verifies each item of notificationItems: hmacValidator.validateHMAC(item, key).
      const { hmacValidator } = await import("@adyen/api-library");
      const validator = new hmacValidator();
      const items = JSON.parse(req.body).notificationItems.map((i) => i.NotificationRequestItem);
      const each = items.map((item) => validator.validateHMAC(item, req.secret));
      return { ok: each.length > 0 && each.every(Boolean), each, detail: `hmacValidator.validateHMAC() per item: [${each}]` };
    }
    case "contentful": {
      // verifyRequest(secret, canonicalRequest, ttl seconds): true/false, or it throws
      // (ExpiredRequestException, or a malformed signature / signed-headers / timestamp).
      const { verifyRequest } = await import("@contentful/node-apps-toolkit");
      const canonical = { method: "POST", path: req.path, headers: h, body: req.body };
      try {
        const ok = verifyRequest(req.secret, canonical, 30);
        return { ok, detail: `verifyRequest(ttl 30) -> ${ok}` };
      } catch (e) {
        return { ok: false, detail: `verifyRequest(ttl 30) threw ${e && e.message ? e.message : e}` };
      }
    }
    case "aws-sns": {
      // sns-validator: new MessageValidator(hostPattern).validate(message, callback). It checks
      // the SigningCertURL against hostPattern (tested on the URL's host:port), fetches the
      // certificate itself (Node's https; the suite's test CA comes in NODE_EXTRA_CA_CERTS),
      // and verifies the signature over SNS's string to sign.
      const { default: MessageValidator } = await import("sns-validator");
      const validator = new MessageValidator(new RegExp(req.host_pattern));
      return await new Promise((resolve) =>
        validator.validate(req.body, (err) =>
          resolve(
            err
              ? { ok: false, detail: `MessageValidator.validate(): ${err.message}` }
              : { ok: true, detail: "MessageValidator.validate() accepted it" },
          ),
        ),
      );
    }
    case "ebay": {
      // event-notification-nodejs-sdk: validateSignature(message, signatureHeader, config)
      // decodes X-EBAY-SIGNATURE, asks getPublicKey(kid) for the key and verifies
      // JSON.stringify(message) with it; process(message, signature, config, environment),
      // which its express example calls with express.json()'s parse of the body, answers 204
      // when that holds, else 412 (500 when it throws). Both on JSON.parse of the body.
      const { validator, sdk } = ebaySdk(req.keys);
      const signature = header(h, "X-EBAY-SIGNATURE");
      if (!signature) return { ok: false, status: null, detail: "no X-EBAY-SIGNATURE" };
      const keyset = { clientId: "interop-client-id", clientSecret: "interop-client-secret" };
      let valid;
      try {
        valid = await validator.validateSignature(JSON.parse(req.body), signature, { ...keyset, environment: "PRODUCTION" });
      } catch (e) {
        valid = `threw ${e && e.message ? e.message : e}`;
      }
      const status = await sdk.process(JSON.parse(req.body), signature, { PRODUCTION: { ...keyset }, SANDBOX: {} }, "PRODUCTION");
      return { ok: valid === true, status, detail: `validateSignature() -> ${valid}, process() -> ${status}` };
    }
    default:
      throw new Error(`verify: no verifier for ${req.provider}`);
  }
}

// eBay's public keys by kid, as its key API answers for them (GET
// /commerce/notification/v1/public_key/{kid}: {key: PEM on one line, algorithm, digest}).
const ebayKeys = new Map();

// event-notification-nodejs-sdk, offline: its client.getPublicKey(kid, config) would get an
// OAuth token and ask eBay's key API with axios; the validator calls it through the client
// module's exports, so it is replaced there with the answers the request gives.
function ebaySdk(keys) {
  for (const [kid, answer] of Object.entries(keys || {})) ebayKeys.set(kid, answer);
  const require = createRequire(import.meta.url);
  const client = require("event-notification-nodejs-sdk/lib/client.js");
  client.getPublicKey = async (kid) => {
    if (!ebayKeys.has(kid)) throw new Error(`eBay's key API: no key ${kid}`);
    return ebayKeys.get(kid);
  };
  return { validator: require("event-notification-nodejs-sdk/lib/validator.js"), sdk: require("event-notification-nodejs-sdk") };
}

// A sender's endpoint check, answered as its SDK computes the answer.
async function challenge(req) {
  if (req.provider !== "ebay") throw new Error(`challenge: no handshake for ${req.provider}`);
  // validateEndpoint(challengeCode, config): hex SHA-256 of the code, config.verificationToken
  // and config.endpoint; its express example answers GET ?challenge_code= with
  // {challengeResponse: ...}.
  const { sdk } = ebaySdk();
  const config = { verificationToken: req.verification_token, endpoint: req.endpoint };
  return { challengeResponse: sdk.validateEndpoint(req.challenge_code, config) };
}

async function handle(req) {
  try {
    if (req.action === "keygen") return await keygen(req);
    if (req.action === "sign") return await sign(req);
    if (req.action === "verify") return await verify(req);
    if (req.action === "challenge") return await challenge(req);
    throw new Error(`unknown action ${req.action}`);
  } catch (e) {
    return { error: `${e && e.message ? e.message : e}`, stack: `${e && e.stack}` };
  }
}

// One request, or a list of them (answered in order, to spare a Node start per check).
async function main() {
  const input = await readStdin();
  const answer = Array.isArray(input) ? await Promise.all(input.map(handle)) : await handle(input);
  process.stdout.write(JSON.stringify(answer) + "\n");
}

await main();
