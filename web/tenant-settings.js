// The admin's settings of one tenant, in a dialog opened from the tenants list: its API
// keys (rotate with a grace period, revoke after a confirmation), its rate limit and
// retention, disabling it, and deleting it once its name is typed.

import { ErrorCategory } from "./api.js";
import {
  byId,
  formatDateTime,
  formatTimeOrDate,
  fromTemplate,
  setFieldError,
  setState,
} from "./dom.js";
import { toastError, toastSuccess } from "./toasts.js";

const HOUR_S = 3600;
const MAX_GRACE_HOURS = 365 * 24; // KeyInSchema in ingest/schemas.py

export const TENANT_STATUS_TEXT = { active: "Active", disabled: "Disabled", deleting: "Deleting" };
const KEY_STATE_TEXT = {
  active: "Active",
  expiring: "Expiring",
  expired: "Expired",
  revoked: "Revoked",
};

/** A key's state as the server judged it (its clock, not the browser's): active,
 * expiring (a rotation's grace period), expired or revoked. */
export function keyState(key) {
  return key.status;
}

/** A number field's value: a whole number, null when empty, NaN for anything else. */
function wholeNumberOrNull(input) {
  const text = input.value.trim();
  if (text === "" && !input.validity.badInput) return null;
  const value = Number(text);
  return text !== "" && Number.isInteger(value) ? value : Number.NaN;
}

function durationText(hours) {
  if (hours % 24 === 0 && hours >= 48) return `${hours / 24} days`;
  return hours === 1 ? "1 hour" : `${hours} hours`;
}

/**
 * `keyDialog` shows a new key once (api-key-dialog.js). `onChanged(tenant)` runs with the
 * tenant as the server now describes it (after a change, or "deleting" after deletion),
 * `onRemoved(tenantId)` once it is found gone, `onClosed(tenantId)` once the dialog closes.
 */
export function createTenantSettings({ keyDialog, onChanged, onRemoved, onClosed }) {
  const dialog = byId("tenant-settings-dialog");
  const heading = byId("tenant-settings-heading");
  const nameLabel = byId("tenant-settings-name");
  const statusChip = byId("tenant-settings-status");
  const stateLine = byId("tenant-settings-state");
  const keysState = byId("tenant-keys-state");
  const keysTable = byId("tenant-keys-table");
  const keyRows = byId("tenant-key-rows");
  const rotateForm = byId("tenant-rotate-form");
  const rotateButton = byId("tenant-rotate-button");
  const graceInput = byId("tenant-rotate-grace");
  const graceError = byId("tenant-rotate-grace-error");
  const limitsForm = byId("tenant-limits-form");
  const saveButton = byId("tenant-limits-save");
  const limitFields = {
    rate_limit: [byId("tenant-settings-rate"), byId("tenant-settings-rate-error")],
    retention_days: [byId("tenant-settings-retention"), byId("tenant-settings-retention-error")],
  };
  const accessText = byId("tenant-access-text");
  const toggleButton = byId("tenant-toggle-button");
  const deleteForm = byId("tenant-delete-form");
  const deleteExpected = byId("tenant-delete-expected");
  const deleteInput = byId("tenant-delete-confirm");
  const deleteButton = byId("tenant-delete-button");
  const revokeDialog = byId("tenant-key-revoke-dialog");

  let api = null;
  let tenant = null; // the tenant on show, as last described by the server
  let keys = [];
  let revoking = null; // the key the confirmation asks about
  // Bumped whenever the dialog opens or closes, and for each read of the keys: an answer
  // about a tenant no longer on show (or an older read) is dropped, never drawn.
  let generation = 0;
  let keysAsked = 0;

  /**
   * Runs `work` with `button` marked busy, once at a time. aria-disabled rather than
   * disabled: a disabled button would drop keyboard focus. `work` gets `stale()`, true
   * once the dialog has closed or shows another tenant.
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

  /**
   * Toasts a failure. A 404 or 409 means the tenant changed elsewhere (deleted, or being
   * deleted): read it again and show what it is now.
   */
  function failed(error, context) {
    const changed = [ErrorCategory.CONFLICT, ErrorCategory.NOT_FOUND].includes(error.category);
    toastError(error, context, changed ? "Tenant changed" : "");
    if (changed) refreshTenant();
  }

  async function refreshTenant() {
    const mine = generation;
    const id = tenant.id;
    let updated;
    try {
      updated = await api.getTenant(id);
    } catch (error) {
      if (mine !== generation) return;
      if (error.category === ErrorCategory.NOT_FOUND) {
        onRemoved(id);
        showGone("This tenant no longer exists.");
      }
      return;
    }
    if (mine !== generation) return;
    described(updated);
    if (updated.status === "deleting") showGone("This tenant is being deleted.");
  }

  /** The tenant is going or gone: nothing here applies any more. */
  function showGone(message) {
    setState(stateLine, message, "error");
    for (const section of dialog.querySelectorAll(".settings-section")) section.hidden = true;
  }

  // --- the tenant ------------------------------------------------------------------------

  function renderTenant() {
    nameLabel.textContent = tenant.name;
    statusChip.textContent = TENANT_STATUS_TEXT[tenant.status] || tenant.status;
    statusChip.dataset.status = tenant.status;
    accessText.textContent = tenant.disabled
      ? "Disabled: its keys and tokens are refused (403 tenant_disabled), its live " +
        "connections are closed and its webhooks wait. Its data stays."
      : "Active: its keys and tokens are accepted.";
    toggleButton.textContent = tenant.disabled ? "Enable tenant" : "Disable tenant";
    toggleButton.classList.toggle("button-danger-ghost", !tenant.disabled);
    deleteExpected.textContent = tenant.name;
    deleteButton.disabled = deleteInput.value !== tenant.name;
  }

  function fillLimits() {
    for (const [name, [input, error]] of Object.entries(limitFields)) {
      input.value = tenant[name] ?? "";
      setFieldError(input, error, "");
    }
  }

  /**
   * Takes the server's description of the tenant and tells the tenants list, which follows
   * it even when the answer comes after the dialog has closed or moved on (`stale`).
   */
  function described(updated, stale = () => false) {
    onChanged(updated);
    if (stale()) return;
    tenant = updated;
    renderTenant();
  }

  // --- keys --------------------------------------------------------------------------------

  function keyRow(key, now) {
    const row = fromTemplate("tenant-key-row-template");
    row.dataset.prefix = key.prefix;
    const state = keyState(key);
    row.querySelector(".key-prefix").textContent = `${key.prefix}…`;
    const status = row.querySelector(".key-status");
    status.textContent = KEY_STATE_TEXT[state];
    status.dataset.status = state;

    const created = row.querySelector(".key-created");
    created.dateTime = key.created_at;
    created.textContent = formatTimeOrDate(key.created_at);
    created.title = formatDateTime(key.created_at);
    const lastUsed = row.querySelector(".key-last-used");
    lastUsed.textContent = key.last_used_at ? formatTimeOrDate(key.last_used_at) : "Never";
    if (key.last_used_at) lastUsed.title = formatDateTime(key.last_used_at);
    const expires = row.querySelector(".key-expires");
    expires.textContent = key.expires_at ? formatTimeOrDate(key.expires_at) : "–";
    if (key.expires_at) expires.title = formatDateTime(key.expires_at);

    const revoke = row.querySelector(".key-revoke");
    revoke.setAttribute("aria-label", `Revoke ${key.prefix}`);
    revoke.hidden = state === "revoked" || state === "expired";
    return row;
  }

  function renderKeys() {
    const now = Date.now();
    // Rows are redrawn whole: the Revoke button that had focus gets it back.
    const focused = keyRows.contains(document.activeElement)
      ? document.activeElement.closest("tr").dataset.prefix
      : null;
    keyRows.replaceChildren(...keys.map((key) => keyRow(key, now)));
    if (focused) {
      keyRows.querySelector(`[data-prefix="${CSS.escape(focused)}"] .key-revoke`)?.focus();
    }
    keysTable.hidden = keys.length === 0;
  }

  async function loadKeys() {
    const asked = ++keysAsked;
    const mine = generation;
    const id = tenant.id;
    if (!keys.length) setState(keysState, "Loading keys…", "loading");
    let page;
    try {
      page = await api.listKeys(id);
    } catch (error) {
      if (asked !== keysAsked || mine !== generation) return;
      setState(keysState, `Could not load the keys: ${error.message}`, "error");
      failed(error, "Loading the keys");
      return;
    }
    if (asked !== keysAsked || mine !== generation) return;
    keys = page.data;
    renderKeys();
    setState(keysState, keys.length ? "" : "This tenant has no keys.", "empty");
  }

  const usable = (key) => {
    const state = keyState(key);
    return state === "active" || state === "expiring";
  };

  function readGrace() {
    const hours = wholeNumberOrNull(graceInput);
    const valid = Number.isInteger(hours) && hours >= 0 && hours <= MAX_GRACE_HOURS;
    const message = valid ? "" : `A whole number of hours from 0 to ${MAX_GRACE_HOURS}.`;
    setFieldError(graceInput, graceError, message);
    return valid ? hours : null;
  }

  async function rotate(hours, stale) {
    const shown = tenant;
    const others = keys.filter(usable).length;
    let created;
    try {
      created = await api.createKey(shown.id, hours * HOUR_S);
    } catch (error) {
      if (stale()) return;
      if (error.category === ErrorCategory.VALIDATION && error.details?.grace_seconds) {
        setFieldError(graceInput, graceError, [].concat(error.details.grace_seconds).join(" "));
      }
      failed(error, "Rotating the key");
      return;
    }
    // The key exists now and is never shown again: show it even if the settings closed (or
    // moved to another tenant) meanwhile; the dialog names its tenant.
    if (!stale()) loadKeys();
    let message = "";
    if (others) {
      message =
        hours === 0
          ? "The tenant's other keys are refused from now on."
          : `The tenant's other keys keep working for ${durationText(hours)}, until ` +
            `${formatDateTime(new Date(Date.now() + hours * HOUR_S * 1000))}.`;
    }
    toastSuccess("Key rotated", shown.name);
    keyDialog.reveal({
      tenant: shown.name,
      apiKey: created.api_key,
      heading: "New API key",
      message,
      focusAfter: stale() ? null : rotateButton,
    });
  }

  rotateForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!tenant) return;
    const hours = readGrace();
    if (hours === null) {
      graceInput.focus();
      return;
    }
    busyWhile(rotateButton, (stale) => rotate(hours, stale));
  });
  graceInput.addEventListener("input", () => setFieldError(graceInput, graceError, ""));

  keyRows.addEventListener("click", (event) => {
    const button = event.target.closest(".key-revoke");
    if (!button) return;
    revoking = keys.find((key) => key.prefix === button.closest("tr").dataset.prefix) || null;
    if (!revoking) return;
    byId("tenant-key-revoke-prefix").textContent = `${revoking.prefix}…`;
    byId("tenant-key-revoke-last").hidden = keys.some(
      (key) => key.prefix !== revoking.prefix && usable(key),
    );
    revokeDialog.returnValue = "";
    revokeDialog.showModal();
  });

  revokeDialog.addEventListener("close", async () => {
    const key = revoking;
    revoking = null;
    if (revokeDialog.returnValue !== "revoke" || !key || !tenant) return;
    const mine = generation;
    const shown = tenant;
    try {
      await api.revokeKey(shown.id, key.prefix);
    } catch (error) {
      if (mine !== generation) return;
      failed(error, "Revoking the key");
      return;
    }
    if (mine !== generation) return;
    toastSuccess("Key revoked", `${key.prefix}… of ${shown.name}`);
    heading.focus(); // its Revoke button goes with the redraw
    loadKeys();
  });

  // --- limits ------------------------------------------------------------------------------

  function readLimits() {
    const wanted = {};
    for (const [name, [input, error]] of Object.entries(limitFields)) {
      const value = wholeNumberOrNull(input);
      // Ranges are the server's to say (its message comes back beside the field).
      setFieldError(input, error, Number.isNaN(value) ? "A whole number, or empty." : "");
      wanted[name] = value;
    }
    const invalid = Object.values(limitFields).find(([input]) =>
      input.hasAttribute("aria-invalid"),
    );
    return invalid ? { invalid: invalid[0] } : wanted;
  }

  async function saveLimits(wanted, stale) {
    try {
      const updated = await api.updateTenant(tenant.id, wanted);
      described(updated, stale);
      if (stale()) return;
      fillLimits();
      toastSuccess("Limits saved", updated.name);
    } catch (error) {
      if (stale()) return;
      if (error.category === ErrorCategory.VALIDATION && error.details) {
        for (const [name, [input, errorNode]] of Object.entries(limitFields)) {
          const detail = error.details[name];
          if (detail) setFieldError(input, errorNode, [].concat(detail).join(" "));
        }
        dialog.querySelector("#tenant-limits-form [aria-invalid=true]")?.focus();
      }
      failed(error, "Saving the limits");
    }
  }

  limitsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!tenant) return;
    const wanted = readLimits();
    if (wanted.invalid) {
      wanted.invalid.focus();
      return;
    }
    busyWhile(saveButton, (stale) => saveLimits(wanted, stale));
  });
  for (const [input, error] of Object.values(limitFields)) {
    input.addEventListener("input", () => setFieldError(input, error, ""));
  }

  // --- disabling ---------------------------------------------------------------------------

  toggleButton.addEventListener("click", () => {
    if (!tenant) return;
    const disable = !tenant.disabled;
    busyWhile(toggleButton, async (stale) => {
      try {
        const updated = await api.updateTenant(tenant.id, { disabled: disable });
        described(updated, stale);
        if (stale()) return;
        toastSuccess(updated.disabled ? "Tenant disabled" : "Tenant enabled", updated.name);
      } catch (error) {
        if (!stale()) failed(error, disable ? "Disabling the tenant" : "Enabling the tenant");
      }
    });
  });

  // --- deleting ----------------------------------------------------------------------------

  deleteInput.addEventListener("input", () => {
    deleteButton.disabled = !tenant || deleteInput.value !== tenant.name;
  });

  deleteForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!tenant || deleteInput.value !== tenant.name) return;
    const shown = tenant;
    busyWhile(deleteButton, async (stale) => {
      try {
        await api.deleteTenant(shown.id);
      } catch (error) {
        if (!stale()) failed(error, "Deleting the tenant");
        return;
      }
      // Said even if the dialog has closed meanwhile: the list must show it going.
      onChanged({ ...shown, status: "deleting" });
      toastSuccess("Tenant being deleted", `${shown.name}: its data is removed in the background.`);
      if (!stale()) dialog.close();
    });
  });

  // --- opening and closing -----------------------------------------------------------------

  dialog.addEventListener("close", () => {
    if (dialog.open) return; // closed, then opened again for another tenant before this ran
    const closedId = tenant?.id;
    generation++;
    keysAsked++;
    api = null;
    tenant = null;
    keys = [];
    revoking = null;
    keyDialog.close();
    if (revokeDialog.open) revokeDialog.close();
    nameLabel.textContent = "";
    deleteExpected.textContent = "";
    rotateForm.reset();
    limitsForm.reset();
    deleteForm.reset();
    setFieldError(graceInput, graceError, "");
    for (const [input, error] of Object.values(limitFields)) setFieldError(input, error, "");
    keyRows.replaceChildren();
    if (closedId !== undefined) onClosed(closedId);
  });

  return {
    /** Shows the settings of `shown` (a tenant as listed), acting with the admin's `adminApi`. */
    open(shown, adminApi) {
      if (dialog.open) dialog.close();
      generation++;
      api = adminApi;
      tenant = shown;
      keys = [];
      deleteForm.reset();
      rotateForm.reset();
      for (const section of dialog.querySelectorAll(".settings-section")) section.hidden = false;
      setState(stateLine, "");
      renderTenant();
      fillLimits();
      renderKeys();
      dialog.showModal();
      heading.focus();
      loadKeys();
    },

    close() {
      if (dialog.open) dialog.close();
    },
  };
}
