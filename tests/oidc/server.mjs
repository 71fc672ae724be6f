// An independent OAuth 2.0 / OpenID Connect server for Tern's interop tests: panva's
// oidc-provider with PKCE required, rotating refresh tokens and 3-second access tokens.
// Usage: PORT=… REDIRECT_URI=… CLIENT_SECRET=… [ACCESS_TTL=seconds] node server.mjs
// (prints "READY <issuer>"). GET /__token_requests answers how many token requests it had.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'tern-interop',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  rotateRefreshToken: true,
  ttl: { AccessToken: Number(process.env.ACCESS_TTL || 3), AuthorizationCode: 60, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  features: { devInteractions: { enabled: true } },
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub', 'family_name'] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub, family_name: 'Bachman' }; } };
  },
  cookies: { keys: ['tern-interop-cookie-key'] },
});
provider.proxy = false;
let tokenRequests = 0;
provider.use(async (ctx, next) => {
  if (ctx.path === '/__token_requests') {
    ctx.body = { count: tokenRequests };
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') tokenRequests += 1;
  await next();
});
provider.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
