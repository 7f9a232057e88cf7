// The tenants panel: the selector (the admin sees every tenant, a tenant sees itself),
// the "new tenant" form and the one-time display of a new tenant's API key, and for the
// admin each tenant's settings (tenant-settings.js).

import { createApiKeyDialog } from "./api-key-dialog.js";
import { ErrorCategory } from "./api.js";
import { byId, formatCount, fromTemplate, setFieldError, setHue, setState } from "./dom.js";
import { createTenantSettings, TENANT_STATUS_TEXT } from "./tenant-settings.js";
import { toastError, toastSuccess } from "./toasts.js";

const MAX_RATE_LIMIT = 10_000_000;
// A tenant being deleted is read again this often until it is gone from the server.
const DELETION_CHECK_MS = 3000;

function initialsOf(name) {
  const words = name.split(/[\s_.:-]+/).filter(Boolean);
  const letters =
    words.length > 1 ? [words[0], words[1]].map((w) => [...w][0]) : [...name].slice(0, 2);
  return letters.join("").toUpperCase();
}

function rateLimitText(tenant) {
  return tenant.rate_limit ? `${formatCount(tenant.rate_limit)}/min` : "default";
}

/**
 * `onSelect(tenant)` runs when a tenant is chosen (by a click, after creating it, or when
 * the one on screen is deleted: then the next one, or null when none is left).
 */
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
  const keyDialog = createApiKeyDialog();
  const settings = createTenantSettings({
    keyDialog,
    onChanged: changed,
    onRemoved: removed,
    onClosed: (id) => {
      const button = list.querySelector(`[data-tenant-id="${id}"] .tenant-settings-button`);
      (button && !button.disabled ? button : byId("tenants-heading")).focus();
    },
  });

  let tenants = [];
  let selectedId = null;
  let adminApi = null;
  let liveState = "idle";
  const deletionChecks = new Map(); // tenant id → timer, while it is being deleted

  function render() {
    // The list is redrawn whole: the control that had focus gets it back.
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    const focusedId = focused?.closest("[data-tenant-id]")?.dataset.tenantId;
    const focusedClass = focused?.classList.contains("tenant-settings-button")
      ? ".tenant-settings-button"
      : ".tenant-item";
    count.textContent = tenants.length ? formatCount(tenants.length) : "";
    const items = tenants.map((tenant) => {
      const item = fromTemplate("tenant-item-template");
      const button = item.querySelector(".tenant-item");
      const selected = tenant.id === selectedId;
      const deleting = tenant.status === "deleting";
      item.dataset.tenantId = String(tenant.id);
      button.dataset.tenantId = String(tenant.id);
      button.setAttribute("aria-pressed", String(selected));
      if (selected) button.dataset.live = liveState;
      button.disabled = deleting;
      const avatar = item.querySelector(".tenant-avatar");
      avatar.textContent = initialsOf(tenant.name);
      setHue(avatar, tenant.name);
      const name = item.querySelector(".tenant-name");
      name.textContent = tenant.name;
      name.id = `tenant-name-${tenant.id}`;
      const status = item.querySelector(".tenant-status");
      status.textContent = TENANT_STATUS_TEXT[tenant.status] || tenant.status;
      status.dataset.status = tenant.status;
      const limit = item.querySelector(".tenant-limit");
      limit.textContent = rateLimitText(tenant);
      limit.title = tenant.rate_limit
        ? `Rate limit: ${formatCount(tenant.rate_limit)} events per minute`
        : "Rate limit: the server's default";
      button.title = deleting ? `${tenant.name} is being deleted` : `Show events of ${tenant.name}`;
      button.addEventListener("click", () => select(tenant.id));
      const settingsButton = item.querySelector(".tenant-settings-button");
      settingsButton.hidden = !adminApi;
      settingsButton.disabled = deleting;
      settingsButton.title = `Settings of ${tenant.name}`;
      settingsButton.setAttribute("aria-describedby", name.id); // which tenant
      settingsButton.addEventListener("click", () => settings.open(tenant, adminApi));
      return item;
    });
    list.replaceChildren(...items);
    if (focusedId) {
      list.querySelector(`[data-tenant-id="${focusedId}"] ${focusedClass}`)?.focus();
    }
  }

  function select(id, { again = false } = {}) {
    const tenant = tenants.find((t) => t.id === id);
    if (!tenant || tenant.status === "deleting" || (id === selectedId && !again)) return;
    selectedId = id;
    liveState = "connecting";
    render();
    onSelect(tenant);
  }

  /** The first tenant not being deleted, or null. */
  function firstLive(preferredId = null) {
    const live = tenants.filter((t) => t.status !== "deleting");
    return live.find((t) => t.id === preferredId) || live[0] || null;
  }

  /** The settings changed a tenant (or learnt it changed): the list and the screen follow. */
  function changed(updated) {
    const before = tenants.find((t) => t.id === updated.id);
    if (!before) return;
    tenants = tenants.map((t) => (t.id === updated.id ? { ...t, ...updated } : t));
    if (updated.status === "deleting") followDeletion(updated.id);
    if (updated.id !== selectedId) {
      render();
    } else if (updated.status === "deleting") {
      leaveSelected();
    } else if (before.status === "disabled" && updated.status === "active") {
      select(updated.id, { again: true }); // reconnects the feed its disabling closed
    } else {
      render();
    }
  }

  function removed(id) {
    clearTimeout(deletionChecks.get(id));
    deletionChecks.delete(id);
    tenants = tenants.filter((t) => t.id !== id);
    if (id === selectedId) leaveSelected();
    else render();
  }

  /** The tenant on screen is going: show the next one, or none. */
  function leaveSelected() {
    const next = firstLive();
    if (next) {
      select(next.id);
      return;
    }
    selectedId = null;
    render();
    onSelect(null);
  }

  /** Reads a tenant being deleted again every few seconds, and drops it once it is gone. */
  function followDeletion(id) {
    if (deletionChecks.has(id) || !adminApi) return;
    const api = adminApi;
    const check = async () => {
      try {
        await api.getTenant(id);
      } catch (error) {
        if (!deletionChecks.has(id)) return; // signed out meanwhile
        if (error.category === ErrorCategory.NOT_FOUND) {
          removed(id);
          return;
        }
      }
      if (deletionChecks.has(id)) deletionChecks.set(id, setTimeout(check, DELETION_CHECK_MS));
    };
    deletionChecks.set(id, setTimeout(check, DELETION_CHECK_MS));
  }

  function stopDeletionChecks() {
    for (const timer of deletionChecks.values()) clearTimeout(timer);
    deletionChecks.clear();
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
      keyDialog.reveal({ tenant: created.name, apiKey: created.api_key });
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

  return {
    /** The admin's view: every tenant, and the form to create one. */
    async showAdmin(api, preferredId) {
      adminApi = api;
      createSection.hidden = false;
      tenants = [];
      selectedId = null;
      stopDeletionChecks();
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
      for (const tenant of tenants) if (tenant.status === "deleting") followDeletion(tenant.id);
      const preferred = firstLive(preferredId);
      if (preferred) select(preferred.id);
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
      stopDeletionChecks();
      settings.close();
      keyDialog.close();
      createSection.open = false;
      form.reset();
      setFieldError(nameInput, nameError, "");
      setFieldError(limitInput, limitError, "");
      render();
      setState(stateLine, "");
    },
  };
}
