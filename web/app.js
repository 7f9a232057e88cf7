// The dashboard's entry point: sign-in and sign-out, and opening one tenant at a time
// (its credential, live connection, events, statistics, send form and webhooks).

import { apiFor, ErrorCategory } from "./api.js";
import { byId, setState } from "./dom.js";
import { createEventsView } from "./events.js";
import { LiveState, openLiveFeed } from "./live.js";
import { createSendForm } from "./send-form.js";
import {
  credentialFor,
  forgetSession,
  loadSecret,
  loadSelectedTenant,
  saveSecret,
  saveSelectedTenant,
  takeTokenFromFragment,
  tenantTokenCredential,
} from "./session.js";
import { createStatsPanel } from "./stats.js";
import { createTenantsPanel } from "./tenants.js";
import { dismissToasts, showToast, toastError, toastSuccess } from "./toasts.js";
import { createWebhooksPanel } from "./webhooks.js";

const signinView = byId("signin-view");
const signinForm = byId("signin-form");
const signinInput = byId("signin-secret");
const signinError = byId("signin-error");
const signinButton = byId("signin-button");
const dashboardView = byId("dashboard-view");
const sessionBar = byId("session-bar");
const roleBadge = byId("role-badge");
const connection = byId("connection-status");
const connectionText = byId("connection-text");
const reconnectButton = byId("reconnect-button");

let session = null; // { credential, api, role, tenant }
let opened = null; // the tenant on screen: { tenant, credential, live }

const events = createEventsView();
const stats = createStatsPanel({
  onTypes: (types) => events.setKnownTypes(types),
  onTypeChosen: (type) => events.filterByType(type),
});
const sendForm = createSendForm();
const tenants = createTenantsPanel({
  onSelect: (tenant) => (tenant ? openTenant(tenant) : closeTenantShowingNone()),
});
const webhooks = createWebhooksPanel();

// --- connection indicator ---------------------------------------------------------------

function showConnection({ state, attempt = 0 }) {
  const text = {
    idle: "No tenant selected",
    [LiveState.CONNECTING]: "Connecting…",
    [LiveState.CONNECTED]: "Live",
    [LiveState.RECONNECTING]: attempt ? `Reconnecting (attempt ${attempt})…` : "Reconnecting…",
    [LiveState.DISCONNECTED]: "Disconnected",
  }[state];
  connection.dataset.state = state;
  connectionText.textContent = text;
  connection.title = `Live connection: ${text}`;
  reconnectButton.hidden = state !== LiveState.RECONNECTING && state !== LiveState.DISCONNECTED;
  tenants.setLiveState(state);
}

reconnectButton.addEventListener("click", () => opened?.live.reconnectNow());

// --- one tenant at a time ---------------------------------------------------------------

function closeTenant() {
  if (!opened) return;
  const { live, credential } = opened;
  opened = null;
  live.close();
  if (credential !== session?.credential) credential.close();
  events.stop();
  stats.stop();
  sendForm.stop();
  webhooks.stop();
}

function tenantCredential(tenant) {
  if (session.role !== "admin") return session.credential;
  // The admin token has no event stream: act as the tenant through a short-lived JWT.
  return tenantTokenCredential(() => session.api.issueToken(tenant.id), {
    onRenewFailed: (error) => {
      if (error.category === ErrorCategory.AUTH) {
        signOut({ reason: "The admin token is no longer accepted. Sign in again." });
      }
      // Network failures are retried; the connection indicator already shows them.
    },
  });
}

function openTenant(tenant) {
  closeTenant();
  if (session.role === "admin") saveSelectedTenant(tenant.id);
  const credential = tenantCredential(tenant);
  const api = apiFor(credential);
  const mine = { tenant, credential, live: null };
  opened = mine;
  const current = () => opened === mine;

  events.show(tenant, api);
  stats.show(api);
  sendForm.show(api);
  webhooks.show(tenant, api);

  let historyLoaded = false;
  let wasConnected = false;
  const loadHistory = () =>
    events.reload().then((newestId) => {
      if (current()) mine.live.noteSeen(newestId);
    });

  mine.live = openLiveFeed(credential, {
    onEvent(event) {
      if (!current()) return;
      events.addLive(event);
      stats.refreshSoon();
    },
    onStatus(status) {
      if (!current()) return;
      showConnection(status);
      // History loads once the socket is in the tenant's room (or has failed to get
      // there), so no event falls between the page and the live stream.
      if (!historyLoaded && status.state !== LiveState.CONNECTING) {
        historyLoaded = true;
        loadHistory();
      }
      if (wasConnected && status.state === LiveState.RECONNECTING && status.attempt === 0) {
        showToast({
          kind: "warning",
          title: "Connection lost",
          message: "Reconnecting; missed events will be replayed.",
          category: ErrorCategory.NETWORK,
        });
      }
      wasConnected = status.state === LiveState.CONNECTED;
    },
    onConnect({ resumed, hadBaseline }) {
      if (!current() || !resumed) return;
      stats.refreshSoon();
      // Nothing to resume from (no event seen yet): reload instead of replaying.
      if (!hadBaseline) {
        toastSuccess("Reconnected");
        loadHistory();
      }
    },
    onReplayComplete({ count, truncated }) {
      if (!current()) return;
      if (truncated) {
        showToast({
          kind: "warning",
          title: "Some events were not replayed",
          message: "More events arrived while offline than the server replays; reloading.",
        });
        loadHistory();
      } else {
        toastSuccess(
          "Reconnected",
          count
            ? `${count} missed ${count === 1 ? "event" : "events"} caught up.`
            : "No events missed.",
        );
      }
    },
    onRefused(error) {
      if (!current()) return;
      toastError(
        { category: ErrorCategory.AUTH, message: error.message.replace(/^[a-z_]+:\s*/, "") },
        "Live feed",
      );
    },
  });
}

function closeTenantShowingNone() {
  closeTenant();
  showNoTenant();
}

function showNoTenant() {
  showConnection({ state: "idle" });
  setState(byId("feed-state"), "Create a tenant to see its events here.", "empty");
  setState(byId("stats-state"), "No tenant selected.", "empty");
  byId("stat-tiles").hidden = true;
  sendForm.stop();
  webhooks.stop();
}

// --- signing in and out -----------------------------------------------------------------

function setSignInError(message) {
  signinError.textContent = message;
  signinError.hidden = !message;
  if (message) signinInput.setAttribute("aria-invalid", "true");
  else signinInput.removeAttribute("aria-invalid");
}

function showSignIn(message = "") {
  dashboardView.hidden = true;
  sessionBar.hidden = true;
  signinView.hidden = false;
  setSignInError(message);
  signinInput.focus();
}

async function signIn(secret) {
  const credential = credentialFor(secret);
  const api = apiFor(credential);
  let me;
  try {
    me = await api.whoami();
  } catch (error) {
    if (error.category === ErrorCategory.AUTH) forgetSession();
    showSignIn(
      error.category === ErrorCategory.AUTH
        ? "That token or key was not accepted."
        : `Could not sign in: ${error.message}`,
    );
    toastError(error, "Signing in");
    return false;
  }
  saveSecret(secret);
  session = { credential, api, role: me.role, tenant: me.tenant };
  // Earlier failed attempts (and anything left from a previous session) no longer hold.
  setSignInError("");
  dismissToasts("error", "warning");

  signinView.hidden = true;
  signinInput.value = "";
  dashboardView.hidden = false;
  sessionBar.hidden = false;
  roleBadge.textContent = me.role === "admin" ? "Admin" : `Tenant · ${me.tenant.name}`;
  roleBadge.dataset.role = me.role;
  showNoTenant();
  if (me.role === "admin") await tenants.showAdmin(api, loadSelectedTenant());
  else tenants.showOwn(me.tenant);
  return true;
}

function signOut({ reason = "" } = {}) {
  closeTenant();
  tenants.stop();
  forgetSession();
  session = null;
  showSignIn(reason);
  if (!reason) showToast({ kind: "info", title: "Signed out" });
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const secret = signinInput.value.trim();
  if (!secret) {
    showSignIn("Paste the admin token or a tenant API key.");
    return;
  }
  signinButton.disabled = true;
  signinButton.textContent = "Signing in…";
  try {
    await signIn(secret);
  } finally {
    signinButton.disabled = false;
    signinButton.textContent = "Sign in";
  }
});
byId("sign-out-button").addEventListener("click", () => signOut());

// --- start ------------------------------------------------------------------------------

const secret = takeTokenFromFragment() || loadSecret();
if (secret) signIn(secret);
else showSignIn();

// Pasting the sign-in link into a tab already on this page changes only the fragment:
// no reload happens, so take the token from here too.
window.addEventListener("hashchange", () => {
  const token = takeTokenFromFragment();
  if (!token) return;
  if (session) {
    closeTenant();
    tenants.stop();
    session = null;
  }
  signIn(token);
});
