// An OAuth 2.0 / OIDC provider with the password and refresh_token grants
// (`oauth2-mock-server`), made strict enough for Flowker's oidc_user tests.
//
//   node user_provider.mjs CONFIG.json
//
// CONFIG: {"certFile", "keyFile", "ttlSeconds", "clients": {"<id>": "<secret>"},
// "users": {"<username>": "<password>"}}
// oauth2-mock-server accepts anything; the beforeResponse hook below checks the client
// secret, the user's password and that a refresh token was issued (and not yet used).
// Listens on 127.0.0.1 on a free port over HTTPS and prints {"issuer", "port"} on stdout.
// Test-only extras: GET /__stats -> {"token": n, "byGrant": {...}}; POST /__reset;
// POST /__forget_refresh_tokens (every refresh token issued so far stops working).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = '127.0.0.1';
const ttl = config.ttlSeconds || 3600;
const clients = config.clients || {};
const users = config.users || {};

const issuer = new OAuth2Issuer();
await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);
const liveRefreshTokens = new Map(); // refresh token -> username
const stats = { token: 0, byGrant: {} };

function clientOf(req) {
  const header = req.headers.authorization || '';
  if (header.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const index = decoded.indexOf(':');
    const unform = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: unform(decoded.slice(0, index)), secret: unform(decoded.slice(index + 1)) };
  }
  return { id: req.body.client_id, secret: req.body.client_secret };
}

function fail(response, status, error, description) {
  response.statusCode = status;
  response.body = { error, error_description: description };
}

service.on('beforeTokenSigning', (token, req) => {
  token.payload.exp = Math.floor(Date.now() / 1000) + ttl;
  // The mock names every refreshed token's subject "johndoe": use the real user instead.
  const username = req.body.grant_type === 'password'
    ? req.body.username : liveRefreshTokens.get(req.body.refresh_token);
  if (username !== undefined) {
    token.payload.sub = username;
  }
});

service.on('beforeResponse', (response, req) => {
  const grant = req.body.grant_type;
  stats.byGrant[grant] = (stats.byGrant[grant] || 0) + 1;
  const client = clientOf(req);
  if (!(client.id in clients) || (clients[client.id] && clients[client.id] !== client.secret)) {
    fail(response, 401, 'invalid_client', 'client authentication failed');
    return;
  }
  let username;
  if (grant === 'password') {
    if (users[req.body.username] === undefined || users[req.body.username] !== req.body.password) {
      fail(response, 400, 'invalid_grant', 'invalid resource owner credentials');
      return;
    }
    username = req.body.username;
  } else if (grant === 'refresh_token') {
    username = liveRefreshTokens.get(req.body.refresh_token);
    if (username === undefined) {
      fail(response, 400, 'invalid_grant', 'unknown or used refresh token');
      return;
    }
    liveRefreshTokens.delete(req.body.refresh_token); // rotation: each refresh token works once
  } else {
    fail(response, 400, 'unsupported_grant_type', 'only password and refresh_token');
    return;
  }
  response.body.expires_in = ttl;
  if (response.body.refresh_token) {
    liveRefreshTokens.set(response.body.refresh_token, username);
  }
});

const handler = service.requestHandler;
const server = https.createServer(
  { key: readFileSync(config.keyFile), cert: readFileSync(config.certFile) },
  (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/__stats' && req.method === 'GET') {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(stats));
      return;
    }
    if (path === '/__reset' && req.method === 'POST') {
      stats.token = 0;
      stats.byGrant = {};
      res.statusCode = 204;
      res.end();
      return;
    }
    if (path === '/__forget_refresh_tokens' && req.method === 'POST') {
      liveRefreshTokens.clear(); // as if every refresh token had expired
      res.statusCode = 204;
      res.end();
      return;
    }
    if (path === '/token' && req.method === 'POST') {
      stats.token += 1;
    }
    handler(req, res);
  },
);

server.listen(0, host, () => {
  const { port } = server.address();
  issuer.url = `https://${host}:${port}`;
  process.stdout.write(`${JSON.stringify({ issuer: issuer.url, port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
