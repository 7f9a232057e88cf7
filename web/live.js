// The Socket.IO connection to one tenant's event stream.
//
// socket.io-client reconnects by itself with exponential backoff (with jitter) after
// the connection drops. Its `auth` option may be a function called on every
// (re)connect: we pass the id of the last event received, and the server first
// replays what was stored since, then goes live, so a reconnect loses no event.

// Backoff: 0.5 s, 1 s, 2 s, 4 s, then every 8 s (each ±50 %).
const RECONNECT_OPTIONS = {
  reconnectionDelay: 500,
  reconnectionDelayMax: 8000,
  randomizationFactor: 0.5,
};

export const LiveState = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  DISCONNECTED: "disconnected",
});

/**
 * Opens the stream. Callbacks:
 *   onEvent(event)                  every event, live or replayed, in order
 *   onStatus({state, attempt, reason})
 *   onConnect({resumed, hadBaseline}) after each successful (re)connect
 *   onReplayComplete({count, truncated})
 *   onRefused(error)                 the server refused the credentials for good
 * Returns { close(), reconnectNow(), noteSeen(id) }.
 */
export function openLiveFeed(credential, callbacks) {
  const { onEvent, onStatus, onConnect, onReplayComplete, onRefused } = callbacks;
  let lastSeenId = null;
  let everConnected = false;
  let renewedAfterRefusal = false;
  let closed = false;

  const socket = window.io({
    path: "/socket.io",
    forceNew: true, // one manager per feed: switching tenants must not reuse a socket
    ...RECONNECT_OPTIONS,
    auth: (send) => {
      credential
        .socketAuth()
        .then((auth) => send(lastSeenId ? { ...auth, last_event_id: lastSeenId } : auth))
        // Without credentials the server refuses the connection, which onRefused reports.
        .catch(() => send({}));
    },
  });

  const status = (state, extra = {}) => onStatus({ state, attempt: 0, reason: "", ...extra });
  status(LiveState.CONNECTING);

  socket.on("connect", () => {
    renewedAfterRefusal = false;
    status(LiveState.CONNECTED);
    onConnect({ resumed: everConnected, hadBaseline: lastSeenId !== null });
    everConnected = true;
  });

  socket.on("event", (event) => {
    lastSeenId = event.id;
    onEvent(event);
  });

  socket.on("replay_complete", (summary) => onReplayComplete(summary));

  socket.on("disconnect", (reason) => {
    if (closed) return;
    if (reason === "io server disconnect") {
      // The server closed this socket on purpose; the client does not retry by
      // itself then. Reconnect once: if the credentials are bad, connect_error says so.
      status(LiveState.RECONNECTING, { reason });
      socket.connect();
      return;
    }
    status(LiveState.RECONNECTING, { attempt: 0, reason });
  });

  socket.io.on("reconnect_attempt", (attempt) => {
    status(LiveState.RECONNECTING, { attempt });
  });

  socket.on("connect_error", async (error) => {
    if (closed) return;
    if (socket.active) {
      // A transport failure: socket.io-client is already backing off to retry.
      return;
    }
    // Refused by the server's connect handler ("authentication_failed: …" or
    // "forbidden: …"). A tenant JWT may have expired while we were away: renew once.
    if (!renewedAfterRefusal && (await credential.renew())) {
      renewedAfterRefusal = true;
      socket.connect();
      return;
    }
    status(LiveState.DISCONNECTED, { reason: error.message });
    onRefused(error);
  });

  return {
    /** Remember an event seen elsewhere (the history page) as the resume point. */
    noteSeen(id) {
      if (!lastSeenId && id) lastSeenId = id;
    },
    reconnectNow() {
      if (closed) return;
      renewedAfterRefusal = false;
      status(LiveState.CONNECTING);
      socket.disconnect().connect();
    },
    close() {
      closed = true;
      socket.removeAllListeners();
      socket.io.removeAllListeners();
      socket.disconnect();
      status(LiveState.DISCONNECTED, { reason: "closed" });
    },
  };
}
