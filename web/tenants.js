// The tenants panel: the selector (the admin sees every tenant, a tenant sees itself),
// the "new tenant" form, and the one-time display of a new tenant's API key.

import { ErrorCategory } from "./api.js";
import { byId, formatCount, fromTemplate, setFieldError, setHue, setState } from "./dom.js";
import { showToast, toastError, toastSuccess } from "./toasts.js";

const MAX_RATE_LIMIT = 10_000_000;

function initialsOf(name) {
  const words = name.split(/[\s_.:-]+/).filter(Boolean);
  const letters =
    words.length > 1 ? [words[0], words[1]].map((w) => [...w][0]) : [...name].slice(0, 2);
  return letters.join("").toUpperCase();
}

function rateLimitText(tenant) {
  return tenant.rate_limit ? `${formatCount(tenant.rate_limit)}/min` : "default";
}

/** A curl command that posts one event with this key, ready to paste. */
export function curlCommand(origin, apiKey) {
  return [
    `curl -X POST '${origin}/api/v1/events' \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -H 'X-API-Key: ${apiKey}' \\`,
    `  -d '{"type": "user.signup", "metadata": {"plan": "pro"}}'`,
  ].join("\n");
}

/** Copies to the clipboard, or selects the field for Ctrl+C where that is not allowed. */
export async function copyText(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    toastSuccess("Copied to the clipboard");
  } catch {
    // No clipboard permission (or not a secure context): select it for Ctrl+C.
    field.focus();
    field.select();
    showToast({ kind: "info", title: "Press Ctrl+C to copy", message: "The text is selected." });
  }
}

/** `onSelect(tenant)` runs when a tenant is chosen (by a click, or after creating it). */
export function createTenantsPanel({ onSelect }) {
  const list = byId("tenant-list");
  const stateLine = byId("tenants-state");
  const count = byId("tenant-count");
  const createSection = byId("tenant-create");
  const form = byId("tenant-create-form");
  const nameInput = byId("tenant-name");
  const nameError = byId("tenant-name-error");
  const limitInput = byId("tenant-rate-limit");
  const limitError = byId("tenant-rate-limit-error");
  const dialog = byId("api-key-dialog");
  const keyField = byId("api-key-value");
  const curlField = byId("api-key-curl");

  let tenants = [];
  let selectedId = null;
  let adminApi = null;
  let liveState = "idle";

  function render() {
    count.textContent = tenants.length ? formatCount(tenants.length) : "";
    const items = tenants.map((tenant) => {
      const item = fromTemplate("tenant-item-template");
      const button = item.querySelector(".tenant-item");
      const selected = tenant.id === selectedId;
      button.dataset.tenantId = String(tenant.id);
      button.setAttribute("aria-pressed", String(selected));
      if (selected) button.dataset.live = liveState;
      const avatar = item.querySelector(".tenant-avatar");
      avatar.textContent = initialsOf(tenant.name);
      setHue(avatar, tenant.name);
      item.querySelector(".tenant-name").textContent = tenant.name;
      const key = item.querySelector(".tenant-key");
      key.textContent = `${tenant.api_key_prefix}…`;
      key.title = "API key prefix";
      const limit = item.querySelector(".tenant-limit");
      limit.textContent = rateLimitText(tenant);
      limit.title = tenant.rate_limit
        ? `Rate limit: ${formatCount(tenant.rate_limit)} events per minute`
        : "Rate limit: the server's default";
      button.title = `Show events of ${tenant.name}`;
      button.addEventListener("click", () => select(tenant.id));
      return item;
    });
    list.replaceChildren(...items);
  }

  function select(id) {
    const tenant = tenants.find((t) => t.id === id);
    if (!tenant || id === selectedId) return;
    selectedId = id;
    liveState = "connecting";
    render();
    onSelect(tenant);
  }

  function readForm() {
    const name = nameInput.value.trim();
    const limitText = limitInput.value.trim();
    const limit = limitText === "" ? null : Number(limitText);
    const nameMessage = name ? "" : "Enter a name.";
    const limitMessage =
      limit === null || (Number.isInteger(limit) && limit >= 1 && limit <= MAX_RATE_LIMIT)
        ? ""
        : `A whole number from 1 to ${formatCount(MAX_RATE_LIMIT)}, or empty for the default.`;
    setFieldError(nameInput, nameError, nameMessage);
    setFieldError(limitInput, limitError, limitMessage);
    if (nameMessage || limitMessage) return null;
    return limit === null ? { name } : { name, rate_limit: limit };
  }

  function revealKey(created) {
    byId("api-key-tenant").textContent = created.name;
    keyField.value = created.api_key;
    curlField.value = curlCommand(window.location.origin, created.api_key);
    dialog.showModal();
    keyField.focus();
    keyField.select();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = readForm();
    if (!fields) {
      (nameInput.hasAttribute("aria-invalid") ? nameInput : limitInput).focus();
      toastError({ category: ErrorCategory.VALIDATION, message: "Check the highlighted fields." });
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const created = await adminApi.createTenant(fields);
      const { api_key: _shownOnce, ...tenant } = created;
      tenants.push(tenant);
      form.reset();
      setState(stateLine, "");
      toastSuccess("Tenant created", tenant.name);
      select(tenant.id);
      revealKey(created);
    } catch (error) {
      if (error.category === ErrorCategory.CONFLICT) {
        setFieldError(nameInput, nameError, "A tenant with this name already exists.");
        nameInput.focus();
      } else if (error.category === ErrorCategory.VALIDATION && error.details) {
        if (error.details.name) {
          setFieldError(nameInput, nameError, [].concat(error.details.name).join(" "));
        }
        if (error.details.rate_limit) {
          setFieldError(limitInput, limitError, [].concat(error.details.rate_limit).join(" "));
        }
      }
      toastError(error, "Creating the tenant");
    } finally {
      submit.disabled = false;
      submit.textContent = "Create tenant";
    }
  });
  nameInput.addEventListener("input", () => setFieldError(nameInput, nameError, ""));
  limitInput.addEventListener("input", () => setFieldError(limitInput, limitError, ""));

  byId("api-key-copy").addEventListener("click", () => copyText(keyField.value, keyField));
  byId("api-key-curl-copy").addEventListener("click", () => copyText(curlField.value, curlField));
  // The key is shown once: once the dialog closes, it is gone from the page.
  dialog.addEventListener("close", () => {
    keyField.value = "";
    curlField.value = "";
    byId("events-heading").focus();
  });

  return {
    /** The admin's view: every tenant, and the form to create one. */
    async showAdmin(api, preferredId) {
      adminApi = api;
      createSection.hidden = false;
      tenants = [];
      selectedId = null;
      render();
      setState(stateLine, "Loading tenants…", "loading");
      try {
        tenants = (await api.listTenants()).data;
      } catch (error) {
        setState(stateLine, `Could not load tenants: ${error.message}`, "error");
        toastError(error, "Loading tenants");
        return;
      }
      if (tenants.length === 0) {
        setState(stateLine, "No tenants yet. Create the first one below.", "empty");
        render();
        createSection.open = true;
        nameInput.focus();
        return;
      }
      setState(stateLine, "");
      render();
      const preferred = tenants.find((t) => t.id === preferredId) || tenants[0];
      select(preferred.id);
    },

    /** A tenant's own view: itself only, no creation. */
    showOwn(tenant) {
      adminApi = null;
      createSection.hidden = true;
      tenants = [tenant];
      selectedId = null;
      setState(stateLine, "");
      select(tenant.id);
    },

    /** The live connection's state, shown on the selected tenant. */
    setLiveState(state) {
      liveState = state;
      const button = list.querySelector(`.tenant-item[aria-pressed="true"]`);
      if (button) button.dataset.live = state;
    },

    stop() {
      tenants = [];
      selectedId = null;
      adminApi = null;
      if (dialog.open) dialog.close();
      createSection.open = false;
      form.reset();
      setFieldError(nameInput, nameError, "");
      setFieldError(limitInput, limitError, "");
      render();
      setState(stateLine, "");
    },
  };
}
