// An independent OAuth 2.0 / OpenID Connect server for Tern's interop tests: panva's
// oidc-provider with PKCE required, rotating refresh tokens and 3-second access tokens.
// Usage: PORT=… REDIRECT_URI=… CLIENT_SECRET=… node server.mjs  (prints "READY <issuer>")
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
  ttl: { AccessToken: 3, AuthorizationCode: 60, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  features: { devInteractions: { enabled: true } },
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub', 'family_name'] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub, family_name: 'Bachman' }; } };
  },
  cookies: { keys: ['tern-interop-cookie-key'] },
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
