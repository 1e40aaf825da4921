// A real OpenID provider (`oidc-provider`) for the web console's browser sign-in:
// authorization code + PKCE for one public client, its development login and consent
// pages (any password; the login names the person), JWT access tokens for Flowker's
// audience carrying the person's roles.
//
//   node console_provider.mjs CONFIG.json
//
// CONFIG: {"audience", "clientId", "redirectUri", "users": {"<login>": ["role-claim-value", ...]},
// "rolesClaim": "roles"}
// Listens on 127.0.0.1 on a free port over plain HTTP (development: Flowker admits a
// loopback http issuer) and prints {"issuer", "port"} on stdout. It exits when stdin
// closes, so a killed test run never leaves it behind.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = '127.0.0.1';
const rolesClaim = config.rolesClaim || 'roles';
const server = http.createServer();

server.listen(0, host, () => {
  const { port } = server.address();
  const issuer = `http://${host}:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.clientId,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [config.redirectUri],
    }],
    scopes: ['openid', 'read'],
    // The console's page calls the token endpoint from its own origin (a real provider is
    // configured the same way: the console's origin allowed for its client).
    clientBasedCORS: (ctx, origin) => origin === new URL(config.redirectUri).origin,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          if (indicator !== config.audience) {
            throw new errors.InvalidTarget();
          }
          return { scope: 'read', audience: indicator, accessTokenFormat: 'jwt' };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const roles = token.accountId && config.users[token.accountId];
      return roles ? { [rolesClaim]: roles } : undefined;
    },
    formats: { customizers: { jwt: (ctx, token, structured) => { structured.payload.nbf = structured.payload.iat; } } },
    cookies: { keys: ['flowker-console-test-cookie-key'] },
  });
  provider.on('server_error', (ctx, error) => process.stderr.write(`${error.stack}\n`));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
