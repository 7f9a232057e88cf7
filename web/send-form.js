// "Send a test event": checks the type and the JSON metadata the way the server does
// before sending, and shows what the server said.

import { ErrorCategory } from "./api.js";
import { byId, setFieldError } from "./dom.js";
import { toastError, toastSuccess } from "./toasts.js";

export const TYPE_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/; // NAME_PATTERN in ingest/schemas.py

/** Parses the metadata box: a JSON object, or an error message. */
export function parseMetadata(text) {
  const trimmed = text.trim();
  if (trimmed === "") return { value: {} };
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (error) {
    return { error: `Not valid JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: 'Metadata must be a JSON object, like {"plan": "pro"}.' };
  }
  return { value };
}

export function createSendForm() {
  const form = byId("send-form");
  const typeInput = byId("send-type");
  const typeError = byId("send-type-error");
  const metadataInput = byId("send-metadata");
  const metadataError = byId("send-metadata-error");
  const button = byId("send-button");
  const quota = byId("send-quota");

  let api = null;
  let sending = false;
  let blockedUntil = 0; // while rate limited, the button counts down instead
  let countdown = null;

  function updateButton() {
    const wait = Math.ceil((blockedUntil - Date.now()) / 1000);
    if (wait > 0) {
      button.disabled = true;
      button.textContent = `Retry in ${wait} s`;
      return;
    }
    clearInterval(countdown);
    countdown = null;
    button.disabled = sending || !api;
    button.textContent = sending ? "Sending…" : "Send event";
  }

  function blockFor(seconds) {
    blockedUntil = Date.now() + seconds * 1000;
    clearInterval(countdown);
    countdown = setInterval(updateButton, 1000);
    updateButton();
  }

  function validate() {
    const type = typeInput.value.trim();
    const typeMessage = !type
      ? "Enter an event type."
      : TYPE_PATTERN.test(type)
        ? ""
        : "Use 1 to 100 characters from A-Z, a-z, 0-9 and _ . : -";
    setFieldError(typeInput, typeError, typeMessage);
    const metadata = parseMetadata(metadataInput.value);
    setFieldError(metadataInput, metadataError, metadata.error);
    if (typeMessage) return { error: typeMessage, focus: typeInput };
    if (metadata.error) return { error: metadata.error, focus: metadataInput };
    return { event: { type, metadata: metadata.value } };
  }

  function showServerDetails(details) {
    // Field errors from the server's validation envelope, next to their fields.
    if (!details || typeof details !== "object") return;
    if (details.type) setFieldError(typeInput, typeError, [].concat(details.type).join(" "));
    if (details.metadata) {
      setFieldError(metadataInput, metadataError, [].concat(details.metadata).join(" "));
    }
  }

  form.addEventListener("submit", async (submitEvent) => {
    submitEvent.preventDefault();
    if (!api || sending || Date.now() < blockedUntil) return;
    const checked = validate();
    if (checked.error) {
      checked.focus.focus();
      toastError({ category: ErrorCategory.VALIDATION, message: checked.error });
      return;
    }
    sending = true;
    updateButton();
    try {
      const { data, rateLimit } = await api.sendEvent(checked.event);
      toastSuccess("Event sent", `${data.type} · ${data.id}`);
      if (rateLimit) {
        quota.textContent = `${rateLimit.remaining} of ${rateLimit.limit} left this minute`;
      }
    } catch (error) {
      if (error.category === ErrorCategory.VALIDATION) showServerDetails(error.details);
      if (error.category === ErrorCategory.RATE_LIMIT) {
        quota.textContent = "Rate limit reached";
        blockFor(error.retryAfter || 5);
      }
      toastError(error, "Sending the event");
    } finally {
      sending = false;
      updateButton();
    }
  });

  // Clear a field's error as soon as it is edited.
  typeInput.addEventListener("input", () => setFieldError(typeInput, typeError, ""));
  metadataInput.addEventListener("input", () => setFieldError(metadataInput, metadataError, ""));

  return {
    show(tenantApi) {
      api = tenantApi;
      blockedUntil = 0;
      quota.textContent = "";
      updateButton();
    },
    stop() {
      api = null;
      updateButton();
    },
  };
}
