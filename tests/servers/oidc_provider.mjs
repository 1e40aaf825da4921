// A real OpenID provider (the OpenID-certified `oidc-provider` package) for Flowker's tests.
//
//   node oidc_provider.mjs CONFIG.json
//
// CONFIG: {"certFile", "keyFile", "clients": [{client_id, client_secret,
// token_endpoint_auth_method}], "ttlSeconds", "resources": {"<indicator>": "<scope list>"}}
// Listens on 127.0.0.1 on a free port over HTTPS, then prints one JSON line
// {"issuer": ..., "port": ...} on stdout. Test-only extras, outside the OIDC surface:
//   GET  /__stats  -> {"token": n, "byClient": {...}} token endpoint requests so far
//   POST /__reset  -> zeroes the counters
// It exits when stdin closes, so a killed test run never leaves it behind.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = '127.0.0.1';

function parseClientId(ctx) {
  const header = ctx.get('authorization');
  if (header && header.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    return decodeURIComponent(decoded.split(':')[0].replace(/\+/g, ' '));
  }
  return undefined;
}

const server = https.createServer({
  key: readFileSync(config.keyFile),
  cert: readFileSync(config.certFile),
});

server.listen(0, host, () => {
  const { port } = server.address();
  const issuer = `https://${host}:${port}`;
  const resources = config.resources || {};
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      ...client,
    })),
    scopes: ['openid', 'offline_access', 'read', 'write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          if (!(indicator in resources)) {
            throw new Provider.errors.InvalidTarget();
          }
          return { scope: resources[indicator], audience: indicator, accessTokenFormat: 'jwt' };
        },
      },
    },
    ttl: { ClientCredentials: () => config.ttlSeconds || 3600 },
    cookies: { keys: ['flowker-test-cookie-key'] },
  });

  const stats = { token: 0, byClient: {} };
  provider.use(async (ctx, next) => {
    if (ctx.path === '/__stats' && ctx.method === 'GET') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/__reset' && ctx.method === 'POST') {
      stats.token = 0;
      stats.byClient = {};
      ctx.status = 204;
      return;
    }
    if (ctx.path === '/token' && ctx.method === 'POST') {
      stats.token += 1;
      // The body is not parsed yet here; a Basic header names the client.
      const clientId = parseClientId(ctx) || 'body';
      stats.byClient[clientId] = (stats.byClient[clientId] || 0) + 1;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
