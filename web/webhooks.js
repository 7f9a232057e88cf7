// The webhooks of the tenant on screen: its endpoints (create, enable or disable, rotate
// the secret, delete after a confirmation, send a test), a signing secret shown once, and
// one endpoint's recent deliveries, each of which can be retried.

import { copyText } from "./api-key-dialog.js";
import { ErrorCategory } from "./api.js";
import {
  byId,
  formatDateTime,
  formatTimeOrDate,
  fromTemplate,
  setFieldError,
  setHue,
  setState,
} from "./dom.js";
import { TYPE_PATTERN } from "./send-form.js";
import { toastError, toastSuccess } from "./toasts.js";

const DELIVERIES_SHOWN = 25;
const MAX_TYPES = 100; // WebhookInSchema in ingest/schemas.py
// The list follows deliveries about to be sent (never tried yet, or just retried: the
// worker sends within a second or so), reading them again this often, for at most
// FOLLOW_FOR_MS after it was opened, refreshed, or a test or retry was sent.
const FOLLOW_EVERY_MS = 1000;
const FOLLOW_FOR_MS = 30_000;
const RESPONSE_SHOWN_CHARS = 200;

const STATUS_TEXT = { pending: "Pending", succeeded: "Succeeded", failed: "Failed" };

/** What a receiver runs to check a delivery, ready to paste (standardwebhooks on PyPI). */
export function verifySnippet(secret) {
  return [
    "# pip install standardwebhooks",
    "from standardwebhooks import Webhook",
    "",
    `webhook = Webhook("${secret}")`,
    "# body: the request's raw bytes (not parsed); headers: its headers.",
    "# Raises WebhookVerificationError if ingest did not sign it.",
    "message = webhook.verify(body, headers)  # type, timestamp, data",
  ].join("\n");
}

/** "a, b,,c " → ["a", "b", "c"]. */
export function parseTypes(text) {
  return text
    .split(",")
    .map((type) => type.trim())
    .filter(Boolean);
}

function urlProblem(text) {
  if (!text) return "Enter the URL that receives the webhooks.";
  let url;
  try {
    url = new URL(text);
  } catch {
    return "Enter a whole URL, like https://example.com/webhooks.";
  }
  return url.protocol === "http:" || url.protocol === "https:"
    ? ""
    : "Only http and https URLs can receive webhooks.";
}

function typesProblem(types) {
  const bad = types.find((type) => !TYPE_PATTERN.test(type));
  if (bad !== undefined) {
    return `“${bad}” is not an event type: use 1 to 100 characters from A-Z, a-z, 0-9 and _ . : -`;
  }
  return types.length > MAX_TYPES ? `At most ${MAX_TYPES} types.` : "";
}

/** A field's errors from the server as one line (those of a list are keyed by index). */
function detailText(detail, values = []) {
  if (Array.isArray(detail)) return detail.join(" ");
  if (detail && typeof detail === "object") {
    return Object.entries(detail)
      .map(([index, messages]) => `“${values[index] ?? index}”: ${[].concat(messages).join(" ")}`)
      .join(" ");
  }
  return String(detail);
}

/**
 * Replaces the children of `container`. Lists here are redrawn whole (the deliveries every
 * second while they are followed), so the control that had keyboard focus gets it back:
 * `keyOf(element)` names it, `selectorFor(key)` finds it among the new children.
 */
function replaceKeepingFocus(container, children, keyOf, selectorFor) {
  const focused = container.contains(document.activeElement) ? document.activeElement : null;
  const key = focused && keyOf(focused);
  container.replaceChildren(...children);
  if (key) container.querySelector(selectorFor(key))?.focus();
}

export function createWebhooksPanel() {
  const heading = byId("webhooks-heading");
  const tenantName = byId("webhooks-tenant");
  const stateLine = byId("webhooks-state");
  const body = byId("webhooks-body");
  const list = byId("webhook-list");
  const form = byId("webhook-create-form");
  const createButton = byId("webhook-create-button");
  const fields = {
    url: [byId("webhook-url"), byId("webhook-url-error")],
    types: [byId("webhook-types"), byId("webhook-types-error")],
    description: [byId("webhook-description"), byId("webhook-description-error")],
  };
  const deliveriesSection = byId("deliveries-heading").closest("section");
  const deliveriesEndpoint = byId("deliveries-endpoint");
  const deliveriesState = byId("deliveries-state");
  const table = byId("deliveries-table");
  const rows = byId("delivery-rows");
  const refreshButton = byId("deliveries-refresh");
  const secretDialog = byId("webhook-secret-dialog");
  const secretField = byId("webhook-secret-value");
  const snippetField = byId("webhook-secret-snippet");
  const deleteDialog = byId("webhook-delete-dialog");

  let api = null;
  let endpoints = [];
  let selectedId = null; // the endpoint whose deliveries are shown
  let deliveries = [];
  let retried = null; // { id, attempts }: a delivery sent again, awaiting that attempt
  let followUntil = 0;
  let followTimer = null;
  let deleting = null; // the endpoint the confirmation asks about
  // Bumped for each tenant, and for each read of deliveries: a late answer is dropped.
  let generation = 0;
  let deliveriesAsked = 0;

  const selected = () => endpoints.find((endpoint) => endpoint.id === selectedId) || null;

  /** Toasts a failure; a 404 or 409 means the endpoint changed elsewhere: show it as it is. */
  function failed(error, context, conflictTitle) {
    const conflict = error.category === ErrorCategory.CONFLICT;
    toastError(error, context, conflict ? conflictTitle : "");
    if (conflict || error.category === ErrorCategory.NOT_FOUND) loadEndpoints();
  }

  /**
   * Runs `work` with `button` marked busy, once at a time. aria-disabled rather than
   * disabled: a disabled button would drop keyboard focus. `work` gets `stale()`, true once
   * another tenant is on screen.
   */
  async function busyWhile(button, work) {
    if (button.getAttribute("aria-disabled") === "true") return;
    const mine = generation;
    button.setAttribute("aria-disabled", "true");
    try {
      await work(() => mine !== generation);
    } finally {
      button.removeAttribute("aria-disabled");
    }
  }

  // --- endpoints -------------------------------------------------------------------------

  function endpointItem(endpoint) {
    const item = fromTemplate("webhook-item-template");
    item.dataset.webhookId = endpoint.id;
    item.classList.toggle("is-selected", endpoint.id === selectedId);
    const url = item.querySelector(".webhook-url");
    url.textContent = endpoint.url;
    url.id = `webhook-url-${endpoint.id}`;
    const status = item.querySelector(".webhook-status");
    status.textContent = endpoint.enabled ? "Enabled" : "Disabled";
    status.dataset.status = endpoint.enabled ? "enabled" : "disabled";
    const description = item.querySelector(".webhook-description");
    description.textContent = endpoint.description;
    description.hidden = !endpoint.description;
    const reason = item.querySelector(".webhook-reason");
    reason.textContent = endpoint.disabled_reason || "";
    reason.hidden = endpoint.enabled || !endpoint.disabled_reason;

    const types = item.querySelector(".webhook-types");
    if (endpoint.types.length) {
      for (const type of endpoint.types) {
        const chip = document.createElement("li");
        chip.className = "type-chip";
        chip.textContent = type;
        setHue(chip, type);
        types.append(chip);
      }
    } else {
      const all = document.createElement("li");
      all.className = "muted small";
      all.textContent = "All event types";
      types.append(all);
    }

    for (const button of item.querySelectorAll("button[data-action]")) {
      button.setAttribute("aria-describedby", url.id); // which endpoint, for screen readers
    }
    const show = item.querySelector("[data-action=deliveries]");
    show.setAttribute("aria-pressed", String(endpoint.id === selectedId));
    const toggle = item.querySelector("[data-action=toggle]");
    toggle.textContent = endpoint.enabled ? "Disable" : "Enable";
    const test = item.querySelector("[data-action=test]");
    test.disabled = !endpoint.enabled;
    test.title = endpoint.enabled ? "" : "Enable the endpoint to send a test.";
    return item;
  }

  function renderEndpoints() {
    replaceKeepingFocus(
      list,
      endpoints.map(endpointItem),
      (focused) => [focused.closest(".webhook-item").dataset.webhookId, focused.dataset.action],
      ([id, action]) => `[data-webhook-id="${CSS.escape(id)}"] [data-action="${action}"]`,
    );
    if (endpoints.length) setState(stateLine, "");
    else setState(stateLine, "No endpoints yet: add one to receive this tenant's events.", "empty");
    const endpoint = selected();
    deliveriesSection.hidden = !endpoint;
    deliveriesEndpoint.textContent = endpoint ? endpoint.url : "";
  }

  async function loadEndpoints() {
    const mine = generation;
    let data;
    try {
      ({ data } = await api.listWebhooks());
    } catch (error) {
      if (mine !== generation) return;
      setState(stateLine, `Could not load webhooks: ${error.message}`, "error");
      toastError(error, "Loading webhooks");
      return;
    }
    if (mine !== generation) return;
    endpoints = data;
    body.hidden = false;
    if (selected()) {
      renderEndpoints();
      renderDeliveries(); // retrying depends on the endpoint being enabled
    } else {
      select(endpoints[0]?.id ?? null);
    }
  }

  /** Shows this endpoint's deliveries; `retry` names one just sent again. */
  function select(id, retry = null) {
    // Whatever was following or loading the endpoint shown until now stops here: a
    // follow-up timer left running asked for /webhooks/null/deliveries once the last
    // endpoint was deleted, and a late answer would show another endpoint's deliveries.
    clearTimeout(followTimer);
    deliveriesAsked++;
    if (id !== selectedId) deliveries = [];
    selectedId = id;
    retried = retry;
    followUntil = Date.now() + FOLLOW_FOR_MS;
    renderEndpoints();
    renderDeliveries();
    if (id) loadDeliveries();
  }

  function revealSecret(endpoint, secret, { rotated }) {
    byId("webhook-secret-title").textContent = rotated ? "New signing secret" : "Signing secret";
    byId("webhook-secret-url").textContent = endpoint.url;
    byId("webhook-secret-rotated").hidden = !rotated;
    secretField.value = secret;
    snippetField.value = verifySnippet(secret);
    secretDialog.showModal();
    secretField.focus();
    secretField.select();
  }

  const actions = {
    deliveries: async (endpoint) => select(endpoint.id),

    test: async (endpoint, stale) => {
      try {
        await api.testWebhook(endpoint.id);
        if (stale()) return;
        toastSuccess("Test queued", endpoint.url);
        select(endpoint.id);
      } catch (error) {
        if (!stale()) failed(error, "Sending a test", "Enable the endpoint first");
      }
    },

    toggle: async (endpoint, stale) => {
      try {
        const updated = await api.updateWebhook(endpoint.id, { enabled: !endpoint.enabled });
        if (stale()) return;
        endpoints = endpoints.map((e) => (e.id === updated.id ? updated : e));
        renderEndpoints();
        renderDeliveries();
        toastSuccess(updated.enabled ? "Endpoint enabled" : "Endpoint disabled", updated.url);
      } catch (error) {
        const doing = endpoint.enabled ? "Disabling the endpoint" : "Enabling the endpoint";
        if (!stale()) failed(error, doing);
      }
    },

    rotate: async (endpoint, stale) => {
      try {
        const { secret } = await api.rotateWebhookSecret(endpoint.id);
        if (stale()) return;
        toastSuccess("Secret rotated", endpoint.url);
        revealSecret(endpoint, secret, { rotated: true });
      } catch (error) {
        if (!stale()) failed(error, "Rotating the secret");
      }
    },

    delete: async (endpoint) => {
      deleting = endpoint;
      byId("webhook-delete-url").textContent = endpoint.url;
      deleteDialog.returnValue = "";
      deleteDialog.showModal();
    },
  };

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const id = button?.closest(".webhook-item").dataset.webhookId;
    const endpoint = endpoints.find((e) => e.id === id);
    if (endpoint) busyWhile(button, (stale) => actions[button.dataset.action](endpoint, stale));
  });

  deleteDialog.addEventListener("close", async () => {
    const endpoint = deleting;
    deleting = null;
    if (deleteDialog.returnValue !== "delete" || !endpoint) return;
    const mine = generation;
    try {
      await api.deleteWebhook(endpoint.id);
    } catch (error) {
      if (mine === generation) failed(error, "Deleting the endpoint");
      return;
    }
    if (mine !== generation) return;
    endpoints = endpoints.filter((e) => e.id !== endpoint.id);
    toastSuccess("Endpoint deleted", endpoint.url);
    if (selectedId === endpoint.id) select(endpoints[0]?.id ?? null);
    else renderEndpoints();
    heading.focus(); // the button that had focus is gone with its endpoint
  });

  // The secret is shown once: once the dialog closes, it is gone from the page.
  secretDialog.addEventListener("close", () => {
    secretField.value = "";
    snippetField.value = "";
    if (document.activeElement === document.body) heading.focus();
  });
  byId("webhook-secret-copy").addEventListener("click", () =>
    copyText(secretField.value, secretField),
  );
  byId("webhook-secret-snippet-copy").addEventListener("click", () =>
    copyText(snippetField.value, snippetField),
  );

  // --- creating one ----------------------------------------------------------------------

  function readForm() {
    const [urlInput, urlError] = fields.url;
    const [typesInput, typesError] = fields.types;
    const [descriptionInput, descriptionError] = fields.description;
    const url = urlInput.value.trim();
    const types = parseTypes(typesInput.value);
    setFieldError(urlInput, urlError, urlProblem(url));
    setFieldError(typesInput, typesError, typesProblem(types));
    setFieldError(descriptionInput, descriptionError, "");
    const invalid = Object.values(fields).find(([input]) => input.hasAttribute("aria-invalid"));
    if (invalid) return { invalid: invalid[0] };
    return { url, types, description: descriptionInput.value.trim() };
  }

  function clearForm() {
    form.reset();
    for (const [input, error] of Object.values(fields)) setFieldError(input, error, "");
  }

  async function create(wanted, stale) {
    try {
      const { secret, ...endpoint } = await api.createWebhook(wanted);
      if (stale()) return;
      endpoints.push(endpoint);
      clearForm();
      toastSuccess("Endpoint created", endpoint.url);
      select(endpoint.id);
      revealSecret(endpoint, secret, { rotated: false });
    } catch (error) {
      if (stale()) return;
      if (error.category === ErrorCategory.VALIDATION && error.details) {
        for (const [name, [input, errorNode]] of Object.entries(fields)) {
          const detail = error.details[name];
          if (detail) setFieldError(input, errorNode, detailText(detail, wanted[name]));
        }
      }
      failed(error, "Creating the endpoint", "Limit reached");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!api) return;
    const wanted = readForm();
    if (wanted.invalid) {
      wanted.invalid.focus();
      toastError({ category: ErrorCategory.VALIDATION, message: "Check the highlighted fields." });
      return;
    }
    createButton.textContent = "Creating…";
    busyWhile(createButton, (stale) => create(wanted, stale)).finally(() => {
      createButton.textContent = "Create endpoint";
    });
  });
  for (const [input, error] of Object.values(fields)) {
    input.addEventListener("input", () => setFieldError(input, error, ""));
  }

  // --- deliveries --------------------------------------------------------------------------

  function deliveryRow(delivery, endpoint) {
    const row = fromTemplate("delivery-row-template");
    row.dataset.deliveryId = delivery.id;
    const status = row.querySelector(".delivery-status");
    status.textContent = STATUS_TEXT[delivery.status] || delivery.status;
    status.dataset.status = delivery.status;
    row.querySelector(".delivery-attempts").textContent = String(delivery.attempts);
    row.querySelector(".delivery-code").textContent = delivery.last_status_code ?? "–";
    // No error but a refusal (a non-2xx answer): what the receiver said is the reason.
    const refused = delivery.status !== "succeeded" && delivery.last_response;
    const error = row.querySelector(".delivery-error");
    error.textContent =
      delivery.last_error || (refused ? delivery.last_response.slice(0, RESPONSE_SHOWN_CHARS) : "");
    if (delivery.last_response) error.title = delivery.last_response;

    const created = row.querySelector(".delivery-created");
    created.dateTime = delivery.created_at;
    created.textContent = formatTimeOrDate(delivery.created_at);
    created.title = `Queued ${formatDateTime(delivery.created_at)}`;
    if (delivery.status === "pending" && delivery.attempts > 0 && delivery.next_attempt_at) {
      row.querySelector(".delivery-next").textContent =
        `next try ${formatTimeOrDate(delivery.next_attempt_at)}`;
    }
    row.querySelector(".delivery-message").textContent = delivery.event_id;

    const retry = row.querySelector(".delivery-retry");
    retry.setAttribute("aria-label", `Retry ${delivery.event_id}`);
    retry.disabled = !endpoint?.enabled;
    retry.title = endpoint?.enabled ? "Send it again now" : "Enable the endpoint to retry.";
    return row;
  }

  function renderDeliveries() {
    const endpoint = selected();
    replaceKeepingFocus(
      rows,
      deliveries.map((delivery) => deliveryRow(delivery, endpoint)),
      (focused) => focused.closest("tr").dataset.deliveryId,
      (id) => `[data-delivery-id="${CSS.escape(id)}"] .delivery-retry`,
    );
    table.hidden = deliveries.length === 0;
    refreshButton.disabled = !endpoint;
  }

  async function loadDeliveries() {
    clearTimeout(followTimer);
    const asked = ++deliveriesAsked;
    const id = selectedId;
    if (!id) return;
    if (!deliveries.length) setState(deliveriesState, "Loading deliveries…", "loading");
    let page;
    try {
      page = await api.listDeliveries(id, { limit: DELIVERIES_SHOWN });
    } catch (error) {
      if (asked !== deliveriesAsked) return;
      followUntil = 0;
      setState(deliveriesState, `Could not load deliveries: ${error.message}`, "error");
      failed(error, "Loading deliveries");
      return;
    }
    if (asked !== deliveriesAsked) return;
    deliveries = page.data;
    renderDeliveries();
    setState(
      deliveriesState,
      deliveries.length ? "" : "No deliveries yet. Send a test, or post an event it receives.",
      "empty",
    );
    follow();
  }

  const aboutToBeSent = (delivery) =>
    delivery.status === "pending" &&
    (delivery.attempts === 0 ||
      (delivery.id === retried?.id && delivery.attempts <= retried.attempts));

  function follow() {
    if (Date.now() < followUntil && selected()?.enabled && deliveries.some(aboutToBeSent)) {
      followTimer = setTimeout(loadDeliveries, FOLLOW_EVERY_MS);
    }
  }

  refreshButton.addEventListener("click", () => {
    if (!selectedId) return;
    followUntil = Date.now() + FOLLOW_FOR_MS;
    loadDeliveries();
  });

  rows.addEventListener("click", (event) => {
    const button = event.target.closest(".delivery-retry");
    if (!button) return;
    const delivery = deliveries.find((d) => d.id === button.closest("tr").dataset.deliveryId);
    const endpointId = selectedId;
    busyWhile(button, async (stale) => {
      try {
        await api.retryDelivery(endpointId, delivery.id);
      } catch (error) {
        if (!stale()) failed(error, "Retrying the delivery", "Enable the endpoint first");
        return;
      }
      if (stale() || endpointId !== selectedId) return;
      toastSuccess("Retry queued", delivery.event_id);
      select(endpointId, { id: delivery.id, attempts: delivery.attempts });
    });
  });

  // --- one tenant at a time ---------------------------------------------------------------

  function reset() {
    generation++;
    deliveriesAsked++;
    clearTimeout(followTimer);
    api = null;
    endpoints = [];
    selectedId = null;
    deliveries = [];
    retried = null;
    followUntil = 0;
    deleting = null;
    if (secretDialog.open) secretDialog.close();
    if (deleteDialog.open) deleteDialog.close();
    clearForm();
    tenantName.textContent = "";
    body.hidden = true;
    list.replaceChildren();
    renderDeliveries();
    setState(deliveriesState, "");
    createButton.disabled = true;
  }

  return {
    show(tenant, tenantApi) {
      reset();
      api = tenantApi;
      tenantName.textContent = tenant.name;
      createButton.disabled = false;
      setState(stateLine, "Loading webhooks…", "loading");
      loadEndpoints();
    },

    stop() {
      reset();
      setState(stateLine, "No tenant selected.", "empty");
    },
  };
}
