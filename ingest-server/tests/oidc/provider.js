// A real OpenID Connect provider for ingest-server's single sign-on tests
// (tests/sso.rs, tests/citizen_sso.rs) and for `make demo`:
// panva/oidc-provider (OpenID-certified), confidential clients, PKCE
// required, test accounts with a `roles` claim (console staff) or a
// `national_id` claim (citizens), and a login interaction that a test
// completes with plain HTTP requests, or a person in a browser through a
// small HTML form. NOT an identity provider for real use: no real people,
// passwords in plain text on the command line.
//
// Usage: node provider.js '<json>' with
//   port, clientId, clientSecret, redirectUris: [...],
//   authMethod: "client_secret_basic" | "client_secret_post",
//   clients: [{clientId, clientSecret, redirectUris, authMethod}, ...]
//     (instead of the four above: several clients, e.g. console and
//     citizen app),
//   accounts: {id: {name, national_id, roles, preferred_username,
//     password}, ...} added to (or replacing) the built-in test accounts;
//     an account with a password needs it at login,
//   accountsOnly: bool (true: only `accounts`, no built-in ones),
//   claimsInIdToken: bool (false: profile, roles and national_id come from
//     userinfo, the provider's default when an access token is issued),
//   tlsCert, tlsKey: PEM file paths (serve https:// instead of http://).
// Prints "ready <issuer>" once it listens.
//
// Test-only endpoints (never part of a real provider):
//   GET /__test/tamper?mode=M   how the next ID tokens are spoiled:
//     none | aud (re-signed with the provider's own key, aud another
//     application) | payload (sub changed, original signature kept) |
//     forged (signed by another key under the provider's kid) |
//     unknown_kid (another key with a kid the JWKS does not have)
//   GET /__test/stats            {"jwks": n, "token": n, "userinfo": n}
// Interaction (the login page a person would see):
//   GET  /interaction/:uid              JSON {uid, prompt}; an HTML form
//                                       when the request accepts text/html
//   POST /interaction/:uid/login        form login=<account id>[&password=]
//   POST /interaction/:uid/abort        the person cancels (access_denied)

import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';

const opts = JSON.parse(process.argv[2] ?? '{}');
const tls = Boolean(opts.tlsCert);
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${opts.port}`;

const BUILT_IN = {
  police1: { name: 'Trần Văn Cảnh', preferred_username: 'canh.tv', roles: ['ioc-police', 'staff'] },
  operator1: { name: 'Phạm Thị Vận', preferred_username: 'van.pt', roles: 'ioc-operator' },
  visitor1: { name: 'Lê Thị Khách', preferred_username: 'khach.lt', roles: ['staff'] },
  both1: { name: 'Đỗ Văn Hai', preferred_username: 'hai.dv', roles: ['ioc-police', 'ioc-operator'] },
};
const ACCOUNTS = { ...(opts.accountsOnly ? {} : BUILT_IN), ...(opts.accounts ?? {}) };

const CLIENTS = (opts.clients ?? [{
  clientId: opts.clientId,
  clientSecret: opts.clientSecret,
  redirectUris: opts.redirectUris,
  authMethod: opts.authMethod,
}]).map((c) => ({
  client_id: c.clientId,
  client_secret: c.clientSecret,
  redirect_uris: c.redirectUris,
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: c.authMethod ?? 'client_secret_basic',
}));

const signing = await generateKeyPair('RS256', { extractable: true });
const attacker = await generateKeyPair('RS256', { extractable: true });
const KID = 'test-key-1';
const privateJwk = { ...(await exportJWK(signing.privateKey)), kid: KID, alg: 'RS256', use: 'sig' };

let tamper = 'none';
const stats = { jwks: 0, token: 0, userinfo: 0 };

const provider = new Provider(issuer, {
  clients: CLIENTS,
  clientAuthMethods: [...new Set(CLIENTS.map((c) => c.token_endpoint_auth_method))],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  conformIdTokenClaims: !opts.claimsInIdToken,
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    roles: ['roles'],
    national_id: ['national_id'],
  },
  scopes: ['openid', 'profile', 'roles', 'national_id'],
  jwks: { keys: [privateJwk] },
  cookies: { keys: ['tv-test-cookie-key-0123456789abcdef'] },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const a = ACCOUNTS[id];
    if (!a) return undefined;
    const { password: _password, ...claims } = a;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  // The console and the citizen app are first-party applications: no
  // consent screen.
  async loadExistingGrant(ctx) {
    const id = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (id) return ctx.oidc.provider.Grant.find(id);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile roles national_id');
    await grant.save();
    return grant;
  },
});

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function spoil(idToken) {
  const header = decodeProtectedHeader(idToken);
  const claims = decodeJwt(idToken);
  const sign = (c, key, kid) => new SignJWT(c)
    .setProtectedHeader({ ...header, kid })
    .sign(key);
  switch (tamper) {
    case 'aud':
      return sign({ ...claims, aud: 'another-application' }, signing.privateKey, header.kid);
    case 'payload': {
      const [h, , s] = idToken.split('.');
      return `${h}.${b64({ ...claims, sub: 'police1-but-someone-else' })}.${s}`;
    }
    case 'forged':
      return sign(claims, attacker.privateKey, header.kid);
    case 'unknown_kid':
      return sign(claims, attacker.privateKey, 'rotated-elsewhere');
    default:
      return idToken;
  }
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (ctx.path === '/me') stats.userinfo += 1;
  if (ctx.path === '/token') {
    stats.token += 1;
    if (ctx.status === 200 && ctx.body?.id_token && tamper !== 'none') {
      ctx.body = { ...ctx.body, id_token: await spoil(ctx.body.id_token) };
    }
  }
});

const handle = provider.callback();

function readBody(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { s += d; });
    req.on('end', () => resolve(new URLSearchParams(s)));
    req.on('error', reject);
  });
}

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// The login page a person sees in the demo: clearly a test provider.
function loginPage(res, status, uid, client, error) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  const err = error ? `<p style="color:#b71c1c" id="error">${esc(error)}</p>` : '';
  res.end(`<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nhà cung cấp định danh THỬ NGHIỆM</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em">
<h1>Nhà cung cấp định danh THỬ NGHIỆM</h1>
<p><strong>Không phải VNeID.</strong> Máy chủ thử nghiệm chạy trên máy này, chỉ có tài khoản
giả lập (dữ liệu thử). / A local TEST identity provider with fictitious accounts only.</p>
<p>Ứng dụng yêu cầu đăng nhập: <code>${esc(client)}</code></p>${err}
<form method="post" action="/interaction/${esc(uid)}/login">
<p><label>Tên đăng nhập<br><input name="login" autocomplete="username" required autofocus></label></p>
<p><label>Mật khẩu<br><input name="password" type="password" autocomplete="current-password"></label></p>
<p><button>Đăng nhập</button></p></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button>Huỷ</button></form>
</body></html>`);
}

async function route(req, res) {
  const u = new URL(req.url, issuer);
  if (u.pathname === '/__test/tamper') {
    tamper = u.searchParams.get('mode') ?? 'none';
    return json(res, 200, { tamper });
  }
  if (u.pathname === '/__test/stats') return json(res, 200, stats);
  const m = u.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (!m) return handle(req, res);
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== m[1]) return json(res, 400, { error: 'interaction mismatch' });
  const html = (req.headers.accept ?? '').includes('text/html');
  const client = details.params.client_id;
  if (req.method === 'GET' && !m[2]) {
    if (html) return loginPage(res, 200, details.uid, client);
    return json(res, 200, { uid: details.uid, prompt: details.prompt.name });
  }
  if (req.method === 'POST' && m[2] === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the person cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && m[2] === 'login') {
    const form = await readBody(req);
    const login = form.get('login');
    const a = Object.hasOwn(ACCOUNTS, login ?? '') ? ACCOUNTS[login] : undefined;
    if (!a || (a.password !== undefined && form.get('password') !== a.password)) {
      if (html) return loginPage(res, 401, details.uid, client, 'Sai tên đăng nhập hoặc mật khẩu.');
      return json(res, 400, { error: `no account ${login}, or a wrong password` });
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
  }
  return json(res, 405, { error: 'method' });
}

const server = tls
  ? https.createServer({ cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) })
  : http.createServer();
server.on('request', (req, res) => {
  route(req, res).catch((e) => {
    if (!res.headersSent) json(res, 500, { error: String(e?.message ?? e) });
    else res.end();
  });
});
server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
