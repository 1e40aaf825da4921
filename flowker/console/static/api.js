// The /v1 API with the signed-in credential: an API key from this tab's sessionStorage
// (never a URL, cookie or localStorage), or a provider's access token held in memory.
const KEY_ITEM = "flowker.apiKey";
let bearerToken = null;
let openapiPaths = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.title || "Error"}${body.code ? ` (${body.code})` : ""}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function hasCredential() {
  return Boolean(bearerToken || sessionStorage.getItem(KEY_ITEM));
}

export function useApiKey(key) {
  bearerToken = null;
  sessionStorage.setItem(KEY_ITEM, key);
}

export function useBearerToken(token) {
  sessionStorage.removeItem(KEY_ITEM);
  bearerToken = token;
}

export function signOut() {
  sessionStorage.removeItem(KEY_ITEM);
  bearerToken = null;
  openapiPaths = null;
}

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  const key = sessionStorage.getItem(KEY_ITEM);
  if (bearerToken) sent.Authorization = `Bearer ${bearerToken}`;
  else if (key) sent["X-API-Key"] = key;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Whether the server offers an operation (feature detection, e.g. the retry route).
export async function offers(method, path) {
  if (openapiPaths === null) {
    try {
      openapiPaths = (await api("/openapi.json")).paths || {};
    } catch {
      openapiPaths = {};
    }
  }
  return Boolean(openapiPaths[path] && openapiPaths[path][method.toLowerCase()]);
}
