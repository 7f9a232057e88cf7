// The one-time display of a new API key with a curl line that uses it: for a new tenant
// (tenants.js) and for a rotated key (tenant-settings.js). Also the copy buttons' helper.

import { byId } from "./dom.js";
import { showToast, toastSuccess } from "./toasts.js";

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

export function createApiKeyDialog() {
  const dialog = byId("api-key-dialog");
  const title = byId("api-key-title");
  const tenantName = byId("api-key-tenant");
  const note = byId("api-key-note");
  const keyField = byId("api-key-value");
  const curlField = byId("api-key-curl");
  let returnFocus = null;

  byId("api-key-copy").addEventListener("click", () => copyText(keyField.value, keyField));
  byId("api-key-curl-copy").addEventListener("click", () => copyText(curlField.value, curlField));
  // The key is shown once: once the dialog closes, it is gone from the page.
  dialog.addEventListener("close", () => {
    keyField.value = "";
    curlField.value = "";
    const target = returnFocus?.isConnected ? returnFocus : byId("events-heading");
    returnFocus = null;
    target.focus();
  });

  return {
    /**
     * Shows `apiKey` of the tenant named `tenant`; `heading` says which key it is, `message`
     * (optional) what became of the others. Focus goes back to `focusAfter` once it closes.
     */
    reveal({ tenant, apiKey, heading = "API key", message = "", focusAfter = null }) {
      title.textContent = heading;
      tenantName.textContent = tenant;
      note.textContent = message;
      note.hidden = !message;
      keyField.value = apiKey;
      curlField.value = curlCommand(window.location.origin, apiKey);
      returnFocus = focusAfter;
      dialog.showModal();
      keyField.focus();
      keyField.select();
    },

    close() {
      if (dialog.open) dialog.close();
    },
  };
}
