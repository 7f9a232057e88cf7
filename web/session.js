// Who the dashboard acts as: the secret the person signed in with (kept in
// sessionStorage, so it dies with the tab) and, per tenant, the credential used for
// that tenant's events: its API key, or for the admin a short-lived JWT kept fresh.

const STORAGE_KEY = "ingest.secret";
const TENANT_STORAGE_KEY = "ingest.selectedTenant";
const API_KEY_PREFIX = "ik_"; // every tenant API key starts with it (ingest/auth.py)

// Renew a JWT when this fraction of its lifetime has passed, so calls never carry an
// expired one; and never wait less than this, so a tiny TTL cannot spin. The server
// counts expiry from a whole-second issue time, so a token may live up to 1 s less
// than `expires_in`: renew that much earlier too.
const RENEW_AT_FRACTION = 0.8;
const EXPIRY_ROUNDING_MS = 1_000;
const MIN_RENEW_DELAY_MS = 1_000;
const RETRY_RENEW_DELAY_MS = 10_000;

/**
 * The server prints `http://host:port/#admin_token=XYZ` at start. A fragment never
 * reaches the server, but it stays in the address bar and history: move the token
 * into sessionStorage and strip the fragment at once.
 */
export function takeTokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("admin_token");
  if (!token) return null;
  const { pathname, search } = window.location;
  window.history.replaceState(window.history.state, "", pathname + search);
  saveSecret(token);
  return token;
}

export function saveSecret(secret) {
  sessionStorage.setItem(STORAGE_KEY, secret);
}

export function loadSecret() {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function forgetSession() {
  sessionStorage.removeItem(STORAGE_KEY);
  sessionStorage.removeItem(TENANT_STORAGE_KEY);
}

export function saveSelectedTenant(id) {
  sessionStorage.setItem(TENANT_STORAGE_KEY, String(id));
}

export function loadSelectedTenant() {
  const value = Number(sessionStorage.getItem(TENANT_STORAGE_KEY));
  return Number.isInteger(value) && value > 0 ? value : null;
}

/**
 * A credential: `headers()` for REST calls, `socketAuth()` for the Socket.IO
 * handshake, `renew()` to replace an expired token (false if it cannot), `close()`.
 */
export function credentialFor(secret) {
  if (secret.startsWith(API_KEY_PREFIX)) {
    return {
      kind: "api_key",
      headers: async () => ({ "X-API-Key": secret }),
      socketAuth: async () => ({ api_key: secret }),
      renew: async () => false,
      close() {},
    };
  }
  return {
    kind: "bearer",
    headers: async () => ({ Authorization: `Bearer ${secret}` }),
    socketAuth: async () => ({ token: secret }), // the server refuses the admin token here
    renew: async () => false,
    close() {},
  };
}

/**
 * The admin's credential for one tenant: a JWT from POST /tenants/<id>/token, renewed
 * on a timer before `expires_in` runs out, and on demand after a 401.
 * `onRenewFailed(error)` is told when a renewal fails; it is retried shortly.
 */
export function tenantTokenCredential(issueToken, { onRenewFailed = () => {} } = {}) {
  let token = null;
  let pending = null;
  let timer = null;
  let closed = false;

  function schedule(delayMs) {
    clearTimeout(timer);
    if (!closed) timer = setTimeout(() => renew().catch(() => {}), delayMs);
  }

  async function fetchToken() {
    try {
      const issued = await issueToken();
      token = issued.token;
      const lifetimeMs = issued.expires_in * 1000;
      schedule(Math.max(MIN_RENEW_DELAY_MS, lifetimeMs * RENEW_AT_FRACTION - EXPIRY_ROUNDING_MS));
      return true;
    } catch (error) {
      schedule(RETRY_RENEW_DELAY_MS);
      onRenewFailed(error);
      throw error;
    }
  }

  // Concurrent callers share one request rather than each issuing a token.
  function renew() {
    if (!pending) pending = fetchToken().finally(() => (pending = null));
    return pending;
  }

  async function current() {
    if (pending) await pending;
    else if (!token) await renew();
    return token;
  }

  return {
    kind: "tenant_token",
    headers: async () => ({ Authorization: `Bearer ${await current()}` }),
    socketAuth: async () => ({ token: await current() }),
    renew: () => renew().catch(() => false),
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}
