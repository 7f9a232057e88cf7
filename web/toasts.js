// Toasts: short notices in a live region. Errors say which category they are, so a
// person knows whether to fix the input, sign in again, wait, or check the network.

import { ErrorCategory } from "./api.js";
import { byId, element } from "./dom.js";

const MAX_VISIBLE = 5;
const DISMISS_AFTER_MS = { success: 4000, info: 5000, warning: 8000, error: 8000 };

const ERROR_TITLES = {
  [ErrorCategory.VALIDATION]: "Invalid input",
  [ErrorCategory.AUTH]: "Not authorised",
  [ErrorCategory.RATE_LIMIT]: "Rate limit reached",
  [ErrorCategory.CONFLICT]: "Already exists",
  [ErrorCategory.NOT_FOUND]: "Not found",
  [ErrorCategory.NETWORK]: "Network problem",
  [ErrorCategory.SERVER]: "Server error",
};

// A modal dialog's backdrop covers the page, toasts included. While dialogs are open the
// toasts become a popover, shown again above each new one: the top layer stacks in the
// order things are shown there.
let raisedAbove = [];

function placeAboveDialogs(container) {
  const modals = [...document.querySelectorAll("dialog:modal")];
  const raised = container.matches(":popover-open");
  const same = modals.length === raisedAbove.length && modals.every((m) => raisedAbove.includes(m));
  // Already above each of them: showing it again would replay the toasts' entrance.
  if (raised && same) return;
  if (raised) container.hidePopover();
  raisedAbove = modals;
  if (modals.length) {
    container.popover = "manual";
    container.showPopover();
  } else {
    container.removeAttribute("popover");
  }
}

// "close" does not bubble: listen on the way down, for every dialog.
document.addEventListener("close", () => placeAboveDialogs(byId("toasts")), true);

/** Shows a toast; `kind` is success, info, warning or error. Returns the node. */
export function showToast({ kind = "info", title, message = "", category = "" }) {
  const container = byId("toasts");
  const close = element("button", {
    className: "toast-close",
    text: "×",
    attrs: { type: "button", "aria-label": "Dismiss notification" },
  });
  const toast = element("div", { className: `toast toast-${kind}` }, [
    element("div", { className: "toast-body" }, [
      element("p", { className: "toast-title", text: title }),
      ...(message ? [element("p", { className: "toast-message", text: message })] : []),
    ]),
    close,
  ]);
  // Errors interrupt (role=alert); other notices wait their turn in the polite region.
  toast.setAttribute("role", kind === "error" || kind === "warning" ? "alert" : "status");
  if (category) toast.dataset.category = category;

  const dismiss = () => toast.remove();
  close.addEventListener("click", dismiss);
  let timer = setTimeout(dismiss, DISMISS_AFTER_MS[kind] ?? 5000);
  // Hovering or focusing a toast keeps it, so it can be read.
  const hold = () => clearTimeout(timer);
  const release = () => (timer = setTimeout(dismiss, 3000));
  toast.addEventListener("mouseenter", hold);
  toast.addEventListener("mouseleave", release);
  toast.addEventListener("focusin", hold);
  toast.addEventListener("focusout", release);

  placeAboveDialogs(container);
  container.append(toast);
  while (container.children.length > MAX_VISIBLE) container.firstElementChild.remove();
  return toast;
}

/** Removes the toasts of these kinds, once what they reported no longer holds. */
export function dismissToasts(...kinds) {
  for (const kind of kinds) {
    for (const toast of byId("toasts").querySelectorAll(`.toast-${kind}`)) toast.remove();
  }
}

export function toastSuccess(title, message) {
  return showToast({ kind: "success", title, message });
}

/**
 * A toast for any failure: an ApiError's category picks the title unless `heading` says
 * better what it means here (a 409 is not always "Already exists"), or a plain Error.
 */
export function toastError(error, context = "", heading = "") {
  const category = error.category || ErrorCategory.SERVER;
  let title = heading || ERROR_TITLES[category] || "Something went wrong";
  if (category === ErrorCategory.RATE_LIMIT && error.retryAfter) {
    title = `${title}: retry in ${error.retryAfter} s`;
  }
  const message = context ? `${context}: ${error.message}` : error.message;
  const kind = category === ErrorCategory.RATE_LIMIT ? "warning" : "error";
  return showToast({ kind, title, message, category });
}
