// A real OpenID Provider for Gatehouse's end-to-end tests: panva's certified `oidc-provider`
// (pinned in package-lock.json) with a configuration the tests own. Started by
// tests/src/oidc.rs; installed by tests/peers/oidc.sh.
//
//   OIDC_CLIENTS='[{"client_id":"gw","client_secret":"s","redirect_uris":["http://127.0.0.1:8080/cb"],
//                   "post_logout_redirect_uris":["http://127.0.0.1:8080/"]}]' \
//   node server.mjs --port PORT --state-dir DIR [--groups-in-userinfo-only] [--rotate] [--owner-pid PID]
//
// Listens on 127.0.0.1:PORT only, issuer `http://127.0.0.1:PORT`, and prints `ready` on stdout
// once it accepts connections (everything else goes to stderr). Each OIDC_CLIENTS entry is client
// metadata: `client_id`, `client_secret`, `redirect_uris`, `post_logout_redirect_uris`, and any
// other registered metadata (e.g. `token_endpoint_auth_method`, default `client_secret_basic`).
// Every client may use the `authorization_code` and `refresh_token` grants.
//
// Endpoints (oidc-provider's defaults): /.well-known/openid-configuration, /jwks, /auth, /token,
// /me (userinfo), /session/end (end_session_endpoint), /token/revocation.
//
// What the relying party must send: response_type=code, scope containing `openid` (add `profile`
// for name/preferred_username/groups and `email` for email/email_verified; the scope `groups`
// alone also releases groups), state, nonce, code_challenge + code_challenge_method=S256 (PKCE
// is REQUIRED, `plain` is refused). `offline_access` is NOT needed: a refresh token comes with
// every code grant. Such a refresh token lives as long as the user's session at this OP (ended by
// RP-initiated logout), as oidc-provider does for refresh tokens without offline_access.
//
// Users (in memory, seeded at start; `sub` = login name; password `<name>-pw`):
//   alice  alice@example.org        groups finance, staff
//   bob    bob@example.org          groups staff
//   carol  carol@contractor.example groups contractors
//   many   many@example.org         groups bulk-0000 … bulk-1999, staff
// Claims: sub, preferred_username, name, email, email_verified (true), groups — all in the ID
// token (conformIdTokenClaims: false) and from userinfo; with --groups-in-userinfo-only the ID
// token has no `groups` and only userinfo releases them.
//
// Browser-less login (a client with a cookie jar that does NOT follow redirects):
//   1. GET  <authorization_endpoint>?response_type=code&client_id=…&redirect_uri=…&scope=openid…
//           &state=…&nonce=…&code_challenge=…&code_challenge_method=S256
//        → 303 Location: /interaction/<uid>   (relative; sets cookies _interaction, _interaction_resume)
//   2. (optional) GET /interaction/<uid> → 200 the login form (fields `login`, `password`)
//   3. POST /interaction/<uid>/login, application/x-www-form-urlencoded `login=alice&password=alice-pw`,
//        with the cookies of step 1
//        → 303 Location: http://127.0.0.1:PORT/auth/<uid>      (wrong password: 401 + the form again;
//                                                                 unknown user: same 401)
//   4. GET  /auth/<uid> with the cookies → 303 Location: <redirect_uri>?code=…&state=…&iss=…
//        (sets the OP session cookie _session; consent is granted automatically)
//   GET /interaction/<uid>/abort instead of step 3 ends in <redirect_uri>?error=access_denied&state=…&iss=…
//   A second login in the same cookie jar skips steps 1–3: GET /auth?… → 303 redirect_uri?code=….
//
// RP-initiated logout needs no confirmation here: GET (or POST) /session/end?id_token_hint=…
// &post_logout_redirect_uri=…&state=… → 303 Location: <post_logout_redirect_uri>?state=…, and the OP
// session (if the request carried its cookie) is ended. Without a post_logout_redirect_uri the 303
// goes to /session/end/success. A post_logout_redirect_uri that is not registered for the
// id_token_hint's client → 400 error page. (oidc-provider renders a confirmation form whose POST to
// /session/end/confirm carries an `xsrf` value; this server submits it itself, with logout=yes.)
//
// Test-control endpoints (loopback only, no auth; JSON in and out):
//   POST /test/users/<name>/groups   body ["g1","g2"]      replaces the user's groups (seen by the next
//                                                           ID token, refresh and userinfo)
//   POST /test/users/<name>/claims   body {"email": …}     merges claims (email, email_verified, name)
//   POST /test/rotate-keys                                 a new RS256 key signs from now on; the old
//        keys stay in the JWKS. Runtime: the oidc-provider instance is rebuilt with the new key first,
//        sessions, codes and tokens (shared store) survive. Answers {"kid": new, "kids": [all, newest first]}.
//   GET  /test/keys                                        {"kid": signing kid, "kids": [...]}
//   POST /test/misbehave  body {"mode": "…"}               the NEXT token-endpoint response carrying an
//        id_token gets a tampered one (then the server behaves again); "off" disarms. Modes:
//          wrong_nonce            nonce changed, re-signed with the real key (same kid)
//          wrong_audience         aud = "someone-else", re-signed
//          expired                exp = now-3600, iat = exp - original lifetime, re-signed
//          unknown_key            signed with a fresh RSA key not in the JWKS, kid of the real key
//          unknown_kid            signed with a fresh RSA key, a new kid not in the JWKS
//          alg_none               header alg "none", empty signature
//          hs256_with_public_key  HS256 with the signing key's public key (SPKI PEM text) as the secret
//          wrong_issuer           iss = "http://127.0.0.1:1/not-the-op", re-signed
//          wrong_azp              azp = "someone-else" (aud unchanged: this client), re-signed
//          times                  body {"mode": "times", "claims": {"iat": 45, "nbf": 45, "exp": -45}}:
//                                 each named time claim (iat, nbf, exp) = now + that many seconds
//                                 (others unchanged), re-signed with the real key
//   GET  /test/misbehave                                   {"pending": mode|null, "applied": [{mode, original, tampered}]}
//   POST /test/pkce       body {"required": bool}           whether PKCE is required (default true; S256
//        is checked whenever a code_challenge was sent, required or not)
//   GET  /test/requests                                    {"jwks": n, "discovery": n}: GETs of /jwks and
//        /.well-known/openid-configuration since the start
//   GET  /test/pkce                                        {"required", "authorize": [{code_challenge,
//        code_challenge_method}], "token": [{code_verifier, status}]} for every request so far
//   GET  /test/last-end-session                            the last /session/end request or null:
//        {"count", "method", "params": {…}, "id_token_hint_present", "id_token_hint",
//         "post_logout_redirect_uri", "state", "client_id", "status" (the OP's answer before the
//         automatic confirmation: 200 accepted, 4xx refused), "error", "location" (final redirect)}
//
// State dir: keys.json (private JWKs, newest = signing key first) and cookie-keys.json, so a
// restart with the same --state-dir keeps the keys; --rotate at start adds a new signing key
// first (like POST /test/rotate-keys). Sessions and tokens live in memory and die with the process.
// --owner-pid PID: exit when that process is gone (no orphans if the test process dies).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'state-dir': { type: 'string' },
    'groups-in-userinfo-only': { type: 'boolean', default: false },
    rotate: { type: 'boolean', default: false },
    'owner-pid': { type: 'string' },
  },
});

function fail(message) {
  process.stderr.write(`oidc server: ${message}\n`);
  process.exit(2);
}

const port = Number(args.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port PORT is required');
const stateDir = args['state-dir'];
if (!stateDir) fail('--state-dir DIR is required');
fs.mkdirSync(stateDir, { recursive: true });
const groupsInUserinfoOnly = args['groups-in-userinfo-only'];
const issuer = `http://127.0.0.1:${port}`;

let clientsFromEnv;
try {
  clientsFromEnv = JSON.parse(process.env.OIDC_CLIENTS || '[]');
} catch (err) {
  fail(`OIDC_CLIENTS is not JSON: ${err.message}`);
}
if (!Array.isArray(clientsFromEnv)) fail('OIDC_CLIENTS must be a JSON array');
const clients = clientsFromEnv.map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

if (args['owner-pid']) {
  const owner = Number(args['owner-pid']);
  setInterval(() => {
    try {
      process.kill(owner, 0);
    } catch {
      process.exit(0);
    }
  }, 1000).unref();
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

// ---------------------------------------------------------------- users

const users = new Map();
function addUser(name, email, groups) {
  users.set(name, {
    password: `${name}-pw`,
    claims: {
      name: `${name[0].toUpperCase()}${name.slice(1)} Example`,
      email,
      email_verified: true,
    },
    groups,
  });
}
addUser('alice', 'alice@example.org', ['finance', 'staff']);
addUser('bob', 'bob@example.org', ['staff']);
addUser('carol', 'carol@contractor.example', ['contractors']);
addUser('many', 'many@example.org', [
  ...Array.from({ length: 2000 }, (_, i) => `bulk-${String(i).padStart(4, '0')}`),
  'staff',
]);

async function findAccount(ctx, id) {
  if (!users.has(id)) return undefined;
  return {
    accountId: id,
    async claims(use) {
      const user = users.get(id);
      const claims = { sub: id, preferred_username: id, ...user.claims };
      if (!(groupsInUserinfoOnly && use === 'id_token')) claims.groups = [...user.groups];
      return claims;
    },
  };
}

// ---------------------------------------------------------------- keys (persisted)

const keysFile = path.join(stateDir, 'keys.json');
const cookieKeysFile = path.join(stateDir, 'cookie-keys.json');

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

function writeJson(file, value) {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

let keys = readJson(keysFile)?.keys ?? [];
if (keys.length === 0 || args.rotate) keys.unshift(newSigningKey());
writeJson(keysFile, { keys });

let cookieKeys = readJson(cookieKeysFile);
if (!Array.isArray(cookieKeys) || cookieKeys.length === 0) {
  cookieKeys = [crypto.randomBytes(32).toString('hex')];
  writeJson(cookieKeysFile, cookieKeys);
}

// ---------------------------------------------------------------- store (shared by every provider instance)

const store = new Map(); // key → { value, exp (ms epoch or Infinity) }
function storeGet(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e.value;
}
function storeSet(key, value, expiresIn) {
  store.set(key, { value, exp: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
}
setInterval(() => {
  const now = Date.now();
  for (const [k, e] of store) if (e.exp <= now) store.delete(k);
}, 60_000).unref();

const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    if (this.model === 'Session') storeSet(`sessionUid:${payload.uid}`, id, expiresIn);
    if (grantable.has(this.model) && payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const list = storeGet(gk);
      if (list) list.push(this.key(id));
      else storeSet(gk, [this.key(id)], 14 * 24 * 3600);
    }
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
    storeSet(this.key(id), payload, expiresIn);
  }

  async find(id) {
    return storeGet(this.key(id));
  }

  async findByUid(uid) {
    const id = storeGet(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const v = storeGet(this.key(id));
    if (v) v.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const k of storeGet(gk) ?? []) store.delete(k);
    store.delete(gk);
  }
}

// ---------------------------------------------------------------- ID token tampering

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const b64json = (obj) => b64url(JSON.stringify(obj));

function signRs256(header, payload, privateJwk) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const key = crypto.createPrivateKey({ key: privateJwk, format: 'jwk' });
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}

const MODES = ['wrong_nonce', 'wrong_audience', 'expired', 'unknown_key', 'unknown_kid', 'alg_none', 'hs256_with_public_key', 'wrong_issuer', 'wrong_azp', 'times'];
const TIME_CLAIMS = ['iat', 'nbf', 'exp'];

function tamper(idToken, mode, claims) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  const signer = keys.find((k) => k.kid === header.kid) ?? keys[0];
  switch (mode) {
    case 'wrong_nonce':
      return signRs256(header, { ...payload, nonce: `tampered-${payload.nonce ?? ''}` }, signer);
    case 'wrong_audience':
      return signRs256(header, { ...payload, aud: 'someone-else' }, signer);
    case 'expired': {
      const exp = Math.floor(Date.now() / 1000) - 3600;
      const lifetime = (payload.exp ?? 0) - (payload.iat ?? 0);
      return signRs256(header, { ...payload, exp, iat: exp - lifetime }, signer);
    }
    case 'unknown_key':
      return signRs256(header, payload, newSigningKey());
    case 'unknown_kid': {
      const stranger = newSigningKey();
      return signRs256({ ...header, kid: stranger.kid }, payload, stranger);
    }
    case 'wrong_issuer':
      return signRs256(header, { ...payload, iss: 'http://127.0.0.1:1/not-the-op' }, signer);
    case 'wrong_azp':
      return signRs256(header, { ...payload, azp: 'someone-else' }, signer);
    case 'times': {
      const now = Math.floor(Date.now() / 1000);
      const times = Object.fromEntries(Object.entries(claims).map(([k, offset]) => [k, now + offset]));
      return signRs256(header, { ...payload, ...times }, signer);
    }
    case 'alg_none':
      return `${b64json({ ...header, alg: 'none' })}.${b64json(payload)}.`;
    case 'hs256_with_public_key': {
      const { d, p: _p, q, dp, dq, qi, ...pub } = signer; // eslint-disable-line no-unused-vars
      const secret = crypto.createPublicKey({ key: pub, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      const hs = { ...header, alg: 'HS256' };
      const input = `${b64json(hs)}.${b64json(payload)}`;
      return `${input}.${b64url(crypto.createHmac('sha256', secret).update(input).digest())}`;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

let misbehave = null;
let misbehaveClaims = {};
const misbehaved = [];
const requestCounts = { jwks: 0, discovery: 0 };
// PKCE: required unless a test turns it off (POST /test/pkce); what the clients sent either way.
let pkceRequired = true;
const pkceSeen = { authorize: [], token: [] };
let lastEndSession = null;
let endSessionCount = 0;

// ---------------------------------------------------------------- the provider

function cookiesWith(cookieHeader, setCookies) {
  const jar = new Map();
  for (const part of (cookieHeader || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) jar.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  for (const sc of setCookies || []) {
    const pair = sc.split(';')[0];
    const i = pair.indexOf('=');
    if (i > 0) jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${body}</body></html>`;
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function buildProvider() {
  const provider = new Provider(issuer, {
    adapter: MapAdapter,
    clients,
    findAccount,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
    },
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => pkceRequired },
    issueRefreshToken: async () => true,
    // Consent is implied: every requested OIDC scope/claim is granted when the user is known.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant || grant.accountId !== oidc.account.accountId) {
        grant = new oidc.provider.Grant({ accountId: oidc.account.accountId, clientId: oidc.client.clientId });
      }
      const scopes = [...oidc.requestParamOIDCScopes];
      if (scopes.length) grant.addOIDCScope(scopes.join(' '));
      if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `${form}<button form="op.logoutForm" name="logout" value="yes">Sign out</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p>You are signed out.</p>');
        },
      },
    },
    async renderError(ctx, out) {
      ctx.state.opError = out;
      ctx.type = 'html';
      ctx.body = page('Error', `<pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
    },
  });

  // Counts JWKS and discovery fetches (GET /test/requests).
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/jwks') requestCounts.jwks += 1;
    if (ctx.method === 'GET' && ctx.path === '/.well-known/openid-configuration') requestCounts.discovery += 1;
    await next();
  });

  // Records the PKCE parameters of authorization and token requests (GET /test/pkce).
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/auth') {
      pkceSeen.authorize.push({
        code_challenge: typeof ctx.query.code_challenge === 'string' && ctx.query.code_challenge.length > 0,
        code_challenge_method: ctx.query.code_challenge_method ?? null,
      });
    }
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.oidc?.params?.grant_type === 'authorization_code') {
      pkceSeen.token.push({ code_verifier: Boolean(ctx.oidc.params.code_verifier), status: ctx.status });
    }
  });

  // The ID token of the next token response, tampered when a misbehave mode is armed.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200
        && misbehave && typeof ctx.body?.id_token === 'string') {
      const mode = misbehave;
      misbehave = null;
      const original = ctx.body.id_token;
      const tampered = tamper(original, mode, misbehaveClaims);
      misbehaved.push({ mode, original, tampered });
      ctx.body = { ...ctx.body, id_token: tampered };
      ctx.status = 200;
    }
  });

  // end_session: record it, then submit the confirmation form ourselves.
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/session/end') return next();
    await next();
    const params = {};
    for (const [k, v] of Object.entries(ctx.query)) params[k] = v;
    for (const [k, v] of Object.entries(ctx.oidc?.params ?? {})) if (v !== undefined) params[k] = v;
    endSessionCount += 1;
    const record = {
      count: endSessionCount,
      method: ctx.method,
      params,
      id_token_hint_present: typeof params.id_token_hint === 'string' && params.id_token_hint !== '',
      id_token_hint: params.id_token_hint ?? null,
      post_logout_redirect_uri: params.post_logout_redirect_uri ?? null,
      state: params.state ?? null,
      client_id: params.client_id ?? null,
      status: ctx.status,
      error: null,
      location: null,
    };
    lastEndSession = record;
    const m = ctx.status === 200 && typeof ctx.body === 'string' && /name="xsrf" value="([^"]+)"/.exec(ctx.body);
    if (!m) {
      const err = ctx.state.opError ?? (ctx.body && typeof ctx.body === 'object' ? ctx.body : null);
      record.error = err ? `${err.error}: ${err.error_description}` : `status ${ctx.status}`;
      return;
    }
    const res = await fetch(`${issuer}/session/end/confirm`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: cookiesWith(ctx.get('cookie'), ctx.response.headers['set-cookie']),
      },
      body: new URLSearchParams({ xsrf: m[1], logout: 'yes' }).toString(),
    });
    const location = res.headers.get('location');
    ctx.remove('set-cookie');
    for (const sc of res.headers.getSetCookie()) ctx.append('set-cookie', sc);
    if (location) {
      ctx.redirect(location);
      record.location = location;
    } else {
      ctx.type = 'html';
      ctx.body = await res.text();
      record.error = `confirmation answered ${res.status}`;
    }
    ctx.status = res.status;
  });

  return provider;
}

let provider = buildProvider();
let handler = provider.callback();

function rotateKeys() {
  keys.unshift(newSigningKey());
  writeJson(keysFile, { keys });
  provider = buildProvider();
  handler = provider.callback();
}

// ---------------------------------------------------------------- interactions (our login form)

function loginForm(uid, { error, login } = {}) {
  return page('Sign in', `${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login" autocomplete="off">
  <label>User name <input name="login" value="${escapeHtml(login ?? '')}" autofocus required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${uid}/abort">Cancel</a></p>`);
}

async function readBody(req, limit = 10 * 1024 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(body);
}
const sendJson = (res, status, value) => send(res, status, 'application/json', JSON.stringify(value));
const sendHtml = (res, status, html) => send(res, status, 'text/html; charset=utf-8', html);

async function interaction(req, res, uid, action) {
  const p = provider;
  let details;
  try {
    details = await p.interactionDetails(req, res);
  } catch (err) {
    return sendHtml(res, 400, page('Sign-in expired', `<p>${escapeHtml(err.message)}</p>`));
  }
  if (details.uid !== uid) return sendHtml(res, 400, page('Sign-in expired', '<p>interaction mismatch</p>'));
  const { prompt } = details;

  if (action === 'abort') {
    return p.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  if (prompt.name === 'consent') {
    // Not reached with loadExistingGrant above; kept so a consent prompt can never stall a test.
    const grant = details.grantId ? await p.Grant.find(details.grantId)
      : new p.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return p.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  if (action === 'show') return sendHtml(res, 200, loginForm(uid));

  // action === 'login'
  const form = new URLSearchParams(await readBody(req));
  const login = form.get('login') ?? '';
  const user = users.get(login);
  if (!user || form.get('password') !== user.password) {
    return sendHtml(res, 401, loginForm(uid, { error: 'Invalid user name or password.', login }));
  }
  return p.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
}

// ---------------------------------------------------------------- test control

async function testControl(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  let m;
  if ((m = /^POST \/test\/users\/([^/]+)\/(groups|claims)$/.exec(route))) {
    const name = decodeURIComponent(m[1]);
    const user = users.get(name);
    if (!user) return sendJson(res, 404, { error: `no user ${name}` });
    let body;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      return sendJson(res, 400, { error: `not JSON: ${err.message}` });
    }
    if (m[2] === 'groups') {
      if (!Array.isArray(body) || !body.every((g) => typeof g === 'string')) {
        return sendJson(res, 400, { error: 'expected a JSON array of strings' });
      }
      user.groups = body;
      return sendJson(res, 200, { user: name, groups: user.groups });
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return sendJson(res, 400, { error: 'expected a JSON object' });
    }
    Object.assign(user.claims, body);
    return sendJson(res, 200, { user: name, claims: user.claims });
  }
  if (route === 'POST /test/rotate-keys') {
    rotateKeys();
    return sendJson(res, 200, { kid: keys[0].kid, kids: keys.map((k) => k.kid) });
  }
  if (route === 'GET /test/keys') return sendJson(res, 200, { kid: keys[0].kid, kids: keys.map((k) => k.kid) });
  if (route === 'POST /test/misbehave') {
    let mode;
    let claims;
    try {
      ({ mode, claims } = JSON.parse(await readBody(req)));
    } catch (err) {
      return sendJson(res, 400, { error: `not JSON: ${err.message}` });
    }
    if (mode === 'off' || mode === null) {
      misbehave = null;
      return sendJson(res, 200, { pending: null });
    }
    if (!MODES.includes(mode)) return sendJson(res, 400, { error: `unknown mode ${mode}; one of ${MODES.join(', ')}, off` });
    if (mode === 'times') {
      const ok = claims !== null && typeof claims === 'object' && !Array.isArray(claims)
        && Object.keys(claims).length > 0
        && Object.entries(claims).every(([k, v]) => TIME_CLAIMS.includes(k) && Number.isInteger(v));
      if (!ok) return sendJson(res, 400, { error: `times needs claims {${TIME_CLAIMS.join('|')}: integer seconds from now}` });
    }
    misbehaveClaims = mode === 'times' ? claims : {};
    misbehave = mode;
    return sendJson(res, 200, { pending: mode });
  }
  if (route === 'POST /test/pkce') {
    let required;
    try {
      ({ required } = JSON.parse(await readBody(req)));
    } catch {
      return sendJson(res, 400, { error: 'body must be {"required": true|false}' });
    }
    if (typeof required !== 'boolean') return sendJson(res, 400, { error: 'required must be a boolean' });
    pkceRequired = required;
    return sendJson(res, 200, { required });
  }
  if (route === 'GET /test/pkce') return sendJson(res, 200, { required: pkceRequired, ...pkceSeen });
  if (route === 'GET /test/requests') return sendJson(res, 200, requestCounts);
  if (route === 'GET /test/misbehave') return sendJson(res, 200, { pending: misbehave, applied: misbehaved });
  if (route === 'GET /test/last-end-session') return sendJson(res, 200, lastEndSession);
  return sendJson(res, 404, { error: `no test endpoint ${route}` });
}

// ---------------------------------------------------------------- server

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/test/')) {
      const peer = req.socket.remoteAddress;
      if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(peer)) return sendJson(res, 403, { error: 'loopback only' });
      return await testControl(req, res, url);
    }
    const m = /^\/interaction\/([^/]+)(\/login|\/abort)?$/.exec(url.pathname);
    if (m) {
      const action = m[2] === '/login' ? 'login' : m[2] === '/abort' ? 'abort' : 'show';
      if ((action === 'login') !== (req.method === 'POST') || !['GET', 'POST'].includes(req.method)) {
        return send(res, 405, 'text/plain', 'method not allowed');
      }
      return await interaction(req, res, m[1], action);
    }
    return handler(req, res);
  } catch (err) {
    process.stderr.write(`oidc server: ${req.method} ${req.url}: ${err.stack}\n`);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error (see the OP log)');
    else res.end();
  }
});

server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.code || err.message}`));
server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`oidc server: issuer ${issuer}, signing kid ${keys[0].kid}, ${keys.length} key(s), `
    + `${clients.length} client(s)${groupsInUserinfoOnly ? ', groups in userinfo only' : ''}\n`);
  process.stdout.write('ready\n');
});
