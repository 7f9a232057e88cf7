// The REST client: one `request` that every call goes through, and the sorting of
// failures into the few categories the UI reacts to differently.

const API_ROOT = "/api/v1";

/** What kind of failure this is, from the user's point of view. */
export const ErrorCategory = Object.freeze({
  VALIDATION: "validation", // the input was wrong: fix it and retry
  AUTH: "auth", // credentials missing, expired, or not allowed here
  RATE_LIMIT: "rate_limit", // too many requests: wait retryAfter seconds
  CONFLICT: "conflict", // e.g. a tenant name already taken
  NOT_FOUND: "not_found",
  NETWORK: "network", // the server could not be reached at all
  SERVER: "server", // the server failed or is unavailable
});

const CATEGORY_BY_CODE = {
  validation_error: ErrorCategory.VALIDATION,
  payload_too_large: ErrorCategory.VALIDATION,
  unsupported_media_type: ErrorCategory.VALIDATION,
  authentication_failed: ErrorCategory.AUTH,
  forbidden: ErrorCategory.AUTH,
  rate_limited: ErrorCategory.RATE_LIMIT,
  conflict: ErrorCategory.CONFLICT,
  not_found: ErrorCategory.NOT_FOUND,
};

function categoryFor(status, code) {
  if (CATEGORY_BY_CODE[code]) return CATEGORY_BY_CODE[code];
  if (status === 401 || status === 403) return ErrorCategory.AUTH;
  if (status === 429) return ErrorCategory.RATE_LIMIT;
  if (status === 409) return ErrorCategory.CONFLICT;
  if (status === 404) return ErrorCategory.NOT_FOUND;
  if (status >= 400 && status < 500) return ErrorCategory.VALIDATION;
  return ErrorCategory.SERVER;
}

export class ApiError extends Error {
  constructor({ category, status = 0, code = "", message, details, retryAfter = null }) {
    super(message);
    this.name = "ApiError";
    this.category = category;
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter; // seconds, on rate limits
  }
}

/** The rate-limit headers of a tenant call, when the server sent them. */
function rateLimitOf(headers) {
  const limit = headers.get("X-RateLimit-Limit");
  const remaining = headers.get("X-RateLimit-Remaining");
  if (limit === null || remaining === null) return null;
  return { limit: Number(limit), remaining: Number(remaining) };
}

function queryString(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(name, item);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function errorFrom(response) {
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch {
    // Not our JSON envelope (e.g. a proxy's HTML error page): fall back to the status.
  }
  const retryAfter = Number(response.headers.get("Retry-After"));
  return new ApiError({
    category: categoryFor(response.status, error.code),
    status: response.status,
    code: error.code || "",
    message: error.message || `${response.status} ${response.statusText}`.trim(),
    details: error.details,
    retryAfter: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
  });
}

/**
 * Calls the API with the headers of `credential` (see session.js). On a 401 it asks
 * the credential to renew itself once (a tenant JWT may just have expired) and retries.
 * Resolves to { data, rateLimit }; rejects with ApiError.
 */
export async function request(credential, path, { method = "GET", query, body, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json", ...(await credential.headers()) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API_ROOT + path + queryString(query), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
        // Credentials travel in headers only, never in the URL, which servers log.
        credentials: "omit",
      });
    } catch (cause) {
      if (cause.name === "AbortError") throw cause;
      throw new ApiError({
        category: ErrorCategory.NETWORK,
        message: "The server could not be reached. Check your connection.",
      });
    }
    if (response.status === 401 && attempt === 0 && (await credential.renew())) continue;
    if (!response.ok) throw await errorFrom(response);
    const data = response.status === 204 ? null : await response.json();
    return { data, rateLimit: rateLimitOf(response.headers) };
  }
}

/** `/webhooks/<id>/…`, each part URL-escaped. */
function webhookPath(...parts) {
  return ["/webhooks", ...parts.map(encodeURIComponent)].join("/");
}

/** `/tenants/<id>/…`, each part URL-escaped. */
function tenantPath(...parts) {
  return ["/tenants", ...parts.map((part) => encodeURIComponent(String(part)))].join("/");
}

/** The API calls the dashboard makes, bound to one credential. */
export function apiFor(credential) {
  const call = async (path, options) => (await request(credential, path, options)).data;
  return {
    whoami: () => call("/tenants/me"),
    listTenants: () => call("/tenants"),
    createTenant: (fields) => call("/tenants", { method: "POST", body: fields }),
    issueToken: (tenantId) => call(tenantPath(tenantId, "token"), { method: "POST" }),
    // The admin's settings of a tenant (tenant-settings.js).
    getTenant: (tenantId) => call(tenantPath(tenantId)),
    updateTenant: (tenantId, fields) =>
      call(tenantPath(tenantId), { method: "PATCH", body: fields }),
    deleteTenant: (tenantId) => call(tenantPath(tenantId), { method: "DELETE" }),
    listKeys: (tenantId) => call(tenantPath(tenantId, "keys")),
    createKey: (tenantId, graceSeconds) =>
      call(tenantPath(tenantId, "keys"), { method: "POST", body: { grace_seconds: graceSeconds } }),
    revokeKey: (tenantId, prefix) =>
      call(tenantPath(tenantId, "keys", prefix), { method: "DELETE" }),
    listEvents: ({ types, q, cursor, limit = 50 }, signal) =>
      call("/events", { query: { type: types, q, cursor, limit }, signal }),
    eventStats: () => call("/events/stats"),
    eventTimeseries: () => call("/events/timeseries", { query: { interval: "minute" } }),
    // Returns the rate-limit headers too, so the form can say how many sends are left.
    sendEvent: (event) => request(credential, "/events", { method: "POST", body: event }),
    listWebhooks: () => call("/webhooks"),
    createWebhook: (fields) => call("/webhooks", { method: "POST", body: fields }),
    updateWebhook: (id, fields) => call(webhookPath(id), { method: "PATCH", body: fields }),
    deleteWebhook: (id) => call(webhookPath(id), { method: "DELETE" }),
    rotateWebhookSecret: (id) => call(webhookPath(id, "rotate-secret"), { method: "POST" }),
    testWebhook: (id) => call(webhookPath(id, "test"), { method: "POST" }),
    listDeliveries: (id, { limit }) => call(webhookPath(id, "deliveries"), { query: { limit } }),
    retryDelivery: (id, deliveryId) =>
      call(webhookPath(id, "deliveries", deliveryId, "retry"), { method: "POST" }),
  };
}
