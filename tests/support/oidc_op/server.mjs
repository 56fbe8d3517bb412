// A real OpenID provider for XenKeep's sign-in tests: panva/oidc-provider
// (certified by the OpenID Foundation), configured from a JSON file the
// fixture (tests/support/idp_oidc.py) writes, served over HTTPS on loopback.
//
// What is ours here, and only for the tests:
// - a minimal login page (user name and password, checked: the provider's
//   development pages accept any password) and consent given at once;
// - clients are registered per test through the provider's own dynamic
//   registration endpoint (RFC 7591), protected by an initial access token;
// - /__test/* (behind a control token): make the next token answers carry a
//   tampered ID token (a flipped signature byte, an edited payload, alg none,
//   HS256 with the wrong key, or claims re-signed with the provider's own key)
//   and expire the authorization codes issued so far. Everything else is the
//   provider as it ships.
//
// Usage: node server.mjs <config.json>; prints "listening <port>" when ready.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createPublicKey, createHmac } from 'node:crypto';

import Provider from 'oidc-provider';
import { SignJWT, importJWK } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// --- storage: the provider's models in memory, codes expirable on demand ---

const store = new Map(); // key -> { payload, expiresAt }
const now = () => Math.floor(Date.now() / 1000);

class MemoryAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  get(key) {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt <= now()) { store.delete(key); return undefined; }
    return entry.payload;
  }
  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? now() + expiresIn : 0;
    store.set(this.key(id), { payload, expiresAt });
    if (this.model === 'Session') store.set(`sessionUid:${payload.uid}`, { payload: id, expiresAt });
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const grant = store.get(grantKey) ?? { payload: [], expiresAt: 0 };
      grant.payload.push(this.key(id));
      store.set(grantKey, grant);
    }
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expiresAt });
  }
  async find(id) { return this.get(this.key(id)); }
  async findByUid(uid) { const id = this.get(`sessionUid:${uid}`); return id && this.find(id); }
  async findByUserCode(code) { const id = this.get(`userCode:${code}`); return id && this.find(id); }
  async consume(id) { const p = this.get(this.key(id)); if (p) p.consumed = now(); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    const grant = store.get(`grant:${grantId}`);
    if (grant) grant.payload.forEach((key) => store.delete(key));
    store.delete(`grant:${grantId}`);
  }
}

function expireCodes() {
  let count = 0;
  for (const [key, entry] of store) {
    if (key.startsWith('AuthorizationCode:')) {
      entry.payload.exp = now() - 1;
      count += 1;
    }
  }
  return count;
}

// --- accounts -------------------------------------------------------------

const accounts = config.accounts; // id (the subject) -> { login, password, disabled, claims }

async function findAccount(ctx, id) {
  const account = accounts[id];
  if (!account) return undefined;
  return { accountId: id, async claims() { return { sub: id, ...account.claims }; } };
}

// --- the provider -----------------------------------------------------------

const provider = new Provider(config.issuer, {
  adapter: MemoryAdapter,
  findAccount,
  jwks: config.jwks,
  cookies: { keys: [config.cookie_key] },
  claims: config.claims,
  conformIdTokenClaims: config.conform_id_token_claims,
  clients: [],
  pkce: { required: () => true, methods: ['S256'] },
  enabledJWA: { idTokenSigningAlgValues: config.id_token_algs },
  clientDefaults: { id_token_signed_response_alg: 'RS256', grant_types: ['authorization_code'], response_types: ['code'] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true, initialAccessToken: config.registration_token },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AuthorizationCode: 600, IdToken: 3600, AccessToken: 3600, Interaction: 3600, Session: 3600, Grant: 3600 },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Error</title><h1 id="op-error">${escape(out.error)}</h1><p>${escape(out.error_description ?? '')}</p>`;
  },
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const readForm = async (req) => new URLSearchParams(await readBody(req));

function loginPage(uid, clientId, error, login) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in at the test provider</title></head>
<body><main><h1>Test OpenID provider</h1>
<p>Sign in to continue to <code>${escape(clientId)}</code>.</p>
${error ? `<p id="op-login-error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" id="op-login">
<label>User name <input name="login" id="op-username" value="${escape(login ?? '')}" autofocus></label>
<label>Password <input name="password" id="op-password" type="password"></label>
<button type="submit" id="op-submit">Sign in</button>
<button type="submit" name="cancel" value="1" id="op-cancel">Cancel</button>
</form></main></body></html>`;
}

// --- tampering with the next token answers (only when a test asks) ----------

let tamper = null; // { kind, claims, header, remaining }

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
const unb64 = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

async function resign(idToken, claims, header) {
  const [h, p] = idToken.split('.');
  const oldHeader = unb64(h);
  const payload = { ...unb64(p), ...claims };
  for (const [name, value] of Object.entries(payload)) if (value === null) delete payload[name];
  const jwk = config.jwks.keys.find((k) => k.kid === oldHeader.kid) ?? config.jwks.keys[0];
  const key = await importJWK(jwk, jwk.kty === 'EC' ? 'ES256' : 'RS256');
  return new SignJWT(payload)
    .setProtectedHeader({ alg: jwk.kty === 'EC' ? 'ES256' : 'RS256', kid: jwk.kid, typ: oldHeader.typ, ...header })
    .sign(key);
}

function hs256(payloadB64, secret, kid) {
  const head = b64({ alg: 'HS256', typ: 'JWT', ...(kid ? { kid } : {}) });
  const mac = createHmac('sha256', secret).update(`${head}.${payloadB64}`).digest('base64url');
  return `${head}.${payloadB64}.${mac}`;
}

async function tampered(idToken, clientSecret) {
  const [h, p, s] = idToken.split('.');
  switch (tamper.kind) {
    case 'signature': {
      const sig = Buffer.from(s, 'base64url');
      sig[sig.length >> 1] ^= 0x01;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    case 'payload':
      return `${h}.${b64({ ...unb64(p), ...tamper.claims })}.${s}`;
    case 'alg-none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`;
    case 'hs256-client-secret':
      return hs256(p, clientSecret, unb64(h).kid);
    case 'hs256-public-key': {
      // The classic confusion: the RSA public key (as PEM) used as an HMAC secret.
      const jwk = config.jwks.keys.find((k) => k.kty === 'RSA');
      const { d, p: _p, q, dp, dq, qi, ...pub } = jwk;
      const pem = createPublicKey({ key: pub, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      return hs256(p, pem, jwk.kid);
    }
    case 'resign':
      return resign(idToken, tamper.claims ?? {}, tamper.header ?? {});
    default:
      throw new Error(`unknown tamper kind ${tamper.kind}`);
  }
}

provider.use(async (ctx, next) => {
  await next();
  if (tamper && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token, ctx.oidc?.client?.clientSecret ?? '') };
    tamper.remaining -= 1;
    if (tamper.remaining <= 0) tamper = null;
  }
});

// --- our routes: the login page and the test controls -----------------------

provider.use(async (ctx, next) => {
  const interaction = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (interaction) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const clientId = details.params.client_id;
    if (ctx.method === 'GET' && details.prompt.name === 'login') {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, clientId, '', '');
      return;
    }
    if (ctx.method === 'POST' && interaction[2] && details.prompt.name === 'login') {
      const form = await readForm(ctx.req);
      if (form.get('cancel')) {
        await provider.interactionFinished(ctx.req, ctx.res,
          { error: 'access_denied', error_description: 'End-User aborted interaction' },
          { mergeWithLastSubmission: false });
        ctx.respond = false;
        return;
      }
      const login = form.get('login') ?? '';
      const [accountId, account] = Object.entries(accounts).find(([, a]) => a.login === login) ?? [];
      if (!account || account.password !== form.get('password')) {
        ctx.type = 'html';
        ctx.body = loginPage(details.uid, clientId, 'Wrong user name or password.', login);
        return;
      }
      if (account.disabled) {
        ctx.type = 'html';
        ctx.body = loginPage(details.uid, clientId, 'This account is disabled.', login);
        return;
      }
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId } },
        { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    if (ctx.method === 'GET' && details.prompt.name === 'consent') {
      // Consent is given at once: the tests are about the relying party.
      const { accountId } = details.session;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();
      await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } },
        { mergeWithLastSubmission: true });
      ctx.respond = false;
      return;
    }
    ctx.status = 400;
    ctx.body = 'unexpected interaction';
    return;
  }
  if (ctx.path.startsWith('/__test/')) {
    if (ctx.get('x-test-control') !== config.control_token) {
      ctx.status = 403;
      return;
    }
    const body = ctx.method === 'POST' ? JSON.parse((await readBody(ctx.req)) || '{}') : {};
    if (ctx.path === '/__test/tamper') {
      tamper = body.kind ? { remaining: 1, ...body } : null;
      ctx.body = { ok: true };
    } else if (ctx.path === '/__test/expire-codes') {
      ctx.body = { expired: expireCodes() };
    } else if (ctx.path === '/__test/accounts') {
      Object.assign(accounts, body);
      ctx.body = { ok: true };
    } else {
      ctx.status = 404;
    }
    return;
  }
  await next();
});

const server = createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  provider.callback(),
);
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
