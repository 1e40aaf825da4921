// A real OpenID provider (`oidc-provider`) that signs people's JWT access tokens for one
// resource (Flowker's audience), with a roles claim: what Flowker's bearer sign-in checks.
//
//   node people_provider.mjs CONFIG.json
//
// CONFIG: {"certFile", "keyFile", "ttlSeconds", "audience": "<resource indicator>",
// "clientId", "clientSecret", "users": {"<username>": {"password", "roles": [...]}},
// "rolesClaim": "roles"}
// People get tokens with the resource-owner password grant (registered here: oidc-provider
// ships only the browser flows for people, which a test cannot drive); the token is the
// provider's own JWT access token (typ at+jwt, signed with its JWKS keys), sub = username,
// aud = the resource, and the user's roles under rolesClaim.
// Listens on 127.0.0.1 on a free port over HTTPS and prints {"issuer", "port"} on stdout.
// Test-only extras: GET /__stats -> {"token": n, "jwks": n}; POST /__reset.
// It exits when stdin closes, so a killed test run never leaves it behind.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = '127.0.0.1';
const users = config.users || {};
const rolesClaim = config.rolesClaim || 'roles';

const server = https.createServer({
  key: readFileSync(config.keyFile),
  cert: readFileSync(config.certFile),
});

server.listen(0, host, () => {
  const { port } = server.address();
  const issuer = `https://${host}:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.clientId,
      client_secret: config.clientSecret,
      grant_types: ['password'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    scopes: ['openid', 'read'],
    features: {
      devInteractions: { enabled: false },
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
      const user = token.accountId && users[token.accountId];
      return user ? { [rolesClaim]: user.roles } : undefined;
    },
    // Many providers (Azure AD, Keycloak) put nbf in access tokens; Flowker checks it.
    formats: { customizers: { jwt: (ctx, token, structured) => { structured.payload.nbf = structured.payload.iat; } } },
    ttl: { AccessToken: () => config.ttlSeconds || 3600 },
    cookies: { keys: ['flowker-test-cookie-key'] },
  });

  // The resource-owner password grant, for tests only: checks the user's password and
  // issues the same AccessToken model the browser flows issue.
  provider.registerGrantType('password', async (ctx, next) => {
    const { username, password } = ctx.oidc.params;
    const user = users[username];
    if (!user || user.password !== password) {
      throw new errors.InvalidGrant('invalid resource owner credentials');
    }
    const { AccessToken, ResourceServer } = ctx.oidc.provider;
    const indicator = ctx.oidc.params.resource || config.audience;
    if (indicator !== config.audience) {
      throw new errors.InvalidTarget();
    }
    // What the browser flows' resource check builds: Flowker's audience, a JWT token.
    const resourceServer = new ResourceServer(indicator, { scope: 'read', audience: indicator, accessTokenFormat: 'jwt' });
    const token = new AccessToken({
      accountId: username,
      client: ctx.oidc.client,
      grantId: `test-${username}`,
      gty: 'password',
      scope: 'read',
    });
    token.resourceServer = resourceServer;
    ctx.body = {
      access_token: await token.save(),
      expires_in: token.expiration,
      token_type: 'Bearer',
    };
    await next();
  }, ['username', 'password', 'scope', 'resource']);

  // Surprises show on stderr, which the fixture includes in its failure messages.
  provider.on('server_error', (ctx, error) => process.stderr.write(`${error.stack}\n`));

  const stats = { token: 0, jwks: 0 };
  provider.use(async (ctx, next) => {
    if (ctx.path === '/__stats' && ctx.method === 'GET') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/__reset' && ctx.method === 'POST') {
      stats.token = 0;
      stats.jwks = 0;
      ctx.status = 204;
      return;
    }
    if (ctx.path === '/token' && ctx.method === 'POST') {
      stats.token += 1;
    }
    if (ctx.path === '/jwks' && ctx.method === 'GET') {
      stats.jwks += 1;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
