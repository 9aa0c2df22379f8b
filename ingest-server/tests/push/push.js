// An independent Web Push receiver for ingest-server's notice tests
// (tests/notices.rs): what a browser's push service and the browser do
// with a message, written against Node's own crypto and the http_ece
// package rather than the server's code (ring), so a mistake in the
// server's encryption or signing is not mirrored here.
//
//   node push.js keys    -> {"private","p256dh","auth"} (base64url): a
//                           browser subscription's key pair and secret
//   node push.js check   <- stdin JSON {body (base64), private, auth,
//                           authorization, encoding, vapid_key, audience}
//                        -> {"plaintext","claims"}; exit 1 with a message
//                           on any failure
//
// check verifies the VAPID JWT (RFC 8292): `vapid t=<jwt>, k=<key>` with
// k the key the server advertises, ES256 over header.claims with that
// key, aud the push service's origin, exp in the future and at most 24 h
// away, sub a mailto: or https: URI; then decrypts the aes128gcm body
// (RFC 8188 / RFC 8291) with the subscription's private key and secret.
'use strict';
const crypto = require('crypto');
const ece = require('http_ece');

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const unb64u = (s) => Buffer.from(s, 'base64url');

function fail(message) {
  process.stderr.write(message + '\n');
  process.exit(1);
}

function keys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  return {
    private: b64u(ecdh.getPrivateKey()),
    p256dh: b64u(ecdh.getPublicKey()),
    auth: b64u(crypto.randomBytes(16)),
  };
}

function check(input) {
  if (input.encoding !== 'aes128gcm') fail(`Content-Encoding is ${input.encoding}, not aes128gcm`);
  const m = /^vapid t=([A-Za-z0-9_\-.]+), ?k=([A-Za-z0-9_-]+)$/.exec(input.authorization || '');
  if (!m) fail(`Authorization is not "vapid t=..., k=...": ${input.authorization}`);
  const [, jwt, k] = m;
  if (k !== input.vapid_key) fail(`k=${k} is not the advertised key ${input.vapid_key}`);
  const raw = unb64u(k);
  if (raw.length !== 65 || raw[0] !== 4) fail('k is not an uncompressed P-256 point');
  const publicKey = crypto.createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33)) },
    format: 'jwk',
  });
  const parts = jwt.split('.');
  if (parts.length !== 3) fail('the JWT does not have three parts');
  const header = JSON.parse(unb64u(parts[0]).toString('utf8'));
  if (header.alg !== 'ES256') fail(`JWT alg is ${header.alg}`);
  const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii'),
    { key: publicKey, dsaEncoding: 'ieee-p1363' }, unb64u(parts[2]));
  if (!ok) fail('the JWT signature does not verify with the advertised key');
  const claims = JSON.parse(unb64u(parts[1]).toString('utf8'));
  const now = Math.floor(Date.now() / 1000);
  if (claims.aud !== input.audience) fail(`aud is ${claims.aud}, expected ${input.audience}`);
  if (!(claims.exp > now && claims.exp <= now + 24 * 3600)) fail(`exp ${claims.exp} is not within 24 h`);
  if (!/^(mailto:|https:)/.test(claims.sub || '')) fail(`sub ${claims.sub} is not mailto: or https:`);

  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(unb64u(input.private));
  const plaintext = ece.decrypt(Buffer.from(input.body, 'base64'), {
    version: 'aes128gcm',
    privateKey: ecdh,
    authSecret: input.auth,
  });
  return { plaintext: plaintext.toString('utf8'), claims };
}

const mode = process.argv[2];
if (mode === 'keys') {
  process.stdout.write(JSON.stringify(keys()) + '\n');
} else if (mode === 'check') {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { text += c; });
  process.stdin.on('end', () => {
    try {
      process.stdout.write(JSON.stringify(check(JSON.parse(text))) + '\n');
    } catch (e) {
      fail(`check failed: ${e.message}`);
    }
  });
} else {
  fail('usage: node push.js keys | check < input.json');
}
