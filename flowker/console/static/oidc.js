// Sign-in with the OpenID provider: authorization code + PKCE (S256). Only the PKCE
// verifier and state wait in sessionStorage across the provider's redirect; the access
// token is kept in memory (a reload asks the provider again).
import { useBearerToken } from "./api.js";

const PENDING_ITEM = "flowker.oidcPending";

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

function randomText(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function discovery(issuer) {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`, {
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) throw new Error(`the provider's discovery document answered HTTP ${response.status}`);
  return response.json();
}

function redirectUri() {
  return `${location.origin}/ui/signin-callback`;
}

export async function startSignIn(issuer, clientId, returnTo) {
  const config = await discovery(issuer);
  const verifier = randomText(48);
  const state = randomText(24);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING_ITEM, JSON.stringify({ verifier, state, returnTo }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri(),
    scope: "openid",
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

// On /ui/signin-callback: trade the code for a token; answers the path to go back to.
export async function finishSignIn(issuer, clientId) {
  const params = new URLSearchParams(location.search);
  history.replaceState(null, "", "/ui/signin-callback"); // the code leaves the address bar
  const pending = JSON.parse(sessionStorage.getItem(PENDING_ITEM) || "null");
  sessionStorage.removeItem(PENDING_ITEM);
  if (params.get("error")) throw new Error(`the provider refused: ${params.get("error")}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("sign-in state does not match: start again");
  const config = await discovery(issuer);
  const response = await fetch(config.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code") || "",
      redirect_uri: redirectUri(),
      client_id: clientId,
      code_verifier: pending.verifier,
    }),
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) throw new Error(`the token request failed (HTTP ${response.status})`);
  useBearerToken(answer.access_token);
  return pending.returnTo && pending.returnTo.startsWith("/ui") ? pending.returnTo : "/ui/";
}
