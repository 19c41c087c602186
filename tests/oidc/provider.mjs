/**
 * A real OpenID Connect provider for the end-to-end sign-in test (tests/test_oidc_e2e.py).
 * Test-only: never deploy it. It is the `oidc-provider` package (the certified Node OP) with one
 * confidential client and a minimal login form of its own.
 *
 *   npm --prefix tests/oidc ci          # once
 *   OIDC_CLIENT_ID=studio OIDC_CLIENT_SECRET=s3cret \
 *   OIDC_REDIRECT_URI=http://127.0.0.1:8501/oauth2callback node tests/oidc/provider.mjs 9000
 *
 * - Listens on 127.0.0.1:<port> (first argument, or OIDC_PORT); the issuer is http://127.0.0.1:<port>,
 *   discovery at <issuer>/.well-known/openid-configuration.
 * - One client: OIDC_CLIENT_ID / OIDC_CLIENT_SECRET (client_secret_basic or _post), redirect and
 *   post-logout URIs = OIDC_REDIRECT_URI (comma-separated for several), authorization code + PKCE.
 * - Login form: any login name made of [a-z0-9._-], password ignored. The account's claims are
 *   sub = the login name, email = <login>@<OIDC_EMAIL_DOMAIN, default alpha.test>,
 *   email_verified = true (or the JSON value of OIDC_EMAIL_VERIFIED, e.g. '"false"': some providers send
 *   a string), name = the login name. Then a consent page ("Continue").
 * - The claims are put into the ID token itself (Authlib/Streamlit read only the ID token), and
 *   `prompt=select_account` (Streamlit's default) is accepted: it shows the same login form.
 * - Prints "OIDC PROVIDER READY <issuer>" on stdout once it is listening.
 */

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const port = Number(process.argv[2] || process.env.OIDC_PORT);
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
const redirectUris = (process.env.OIDC_REDIRECT_URI || '').split(',').map((s) => s.trim()).filter(Boolean);
const emailDomain = process.env.OIDC_EMAIL_DOMAIN || 'alpha.test';
const emailVerified = JSON.parse(process.env.OIDC_EMAIL_VERIFIED || 'true');

if (!Number.isInteger(port) || port <= 0 || !clientId || !clientSecret || !redirectUris.length) {
  console.error('usage: OIDC_CLIENT_ID=.. OIDC_CLIENT_SECRET=.. OIDC_REDIRECT_URI=.. node provider.mjs PORT');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const LOGIN_NAME = /^[a-z0-9._-]{1,64}$/;

// A fresh signing key per run: nothing secret is stored in the repository.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'test-signing-key', use: 'sig', alg: 'RS256',
};

// Streamlit asks for prompt=select_account; the default policy only knows login and consent.
const policy = interactionPolicy.base();
policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    post_logout_redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false, // the scope's claims go into the ID token, which is all Streamlit reads
  features: { devInteractions: { enabled: false } },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    if (!LOGIN_NAME.test(sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: `${sub}@${emailDomain}`, email_verified: emailVerified, name: sub };
      },
    };
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
  provider.on(event, (ctx, error) => console.error(`[oidc] ${event}: ${error?.message} ${error?.error_description || ''}`));
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, title, body, status = 200) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;max-width:26rem;margin:4rem auto}input,button{display:block;margin:.5rem 0;padding:.4rem;width:100%}</style>
</head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16_384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'consent') {
      const client = await provider.Client.find(params.client_id);
      return page(res, 'Authorize access', `<p><b>${escape(client.clientName || client.clientId)}</b> asks for:
<b>${escape(params.scope)}</b> of <b>${escape(session?.accountId)}</b>.</p>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit" autofocus>Continue</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`);
    }
    return page(res, 'Test identity provider: sign in', `<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login name <input name="login" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form>`);
  }
  if (req.method !== 'POST') return page(res, 'Not found', '', 404);

  if (action === 'login') {
    const login = ((await readForm(req)).get('login') || '').trim().toLowerCase();
    if (!LOGIN_NAME.test(login)) return page(res, 'Sign-in failed', '<p>Login names use a-z, 0-9, ".", "_" and "-".</p>', 400);
    return provider.interactionFinished(req, res, { select_account: {}, login: { accountId: login } },
      { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    const { missingOIDCScope, missingOIDCClaims } = prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The user cancelled.' },
      { mergeWithLastSubmission: false });
  }
  return page(res, 'Not found', '', 404);
}

const oidc = provider.callback();
const server = http.createServer(async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?\/?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return oidc(req, res);
  try {
    await interaction(req, res, match[1], match[2]);
  } catch (error) {
    console.error(`[oidc] interaction failed: ${error?.message}`);
    if (!res.headersSent) page(res, 'Sign-in failed', `<p>${escape(error?.message)}</p>`, 400);
  }
});

server.listen(port, '127.0.0.1', () => console.log(`OIDC PROVIDER READY ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
