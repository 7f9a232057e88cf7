// The event list: newest on top, each row expandable to its metadata. It keeps at
// most `maxRows` rows (dropping the oldest) so hours of traffic don't eat memory,
// and handles pause/resume and auto-scroll. It knows nothing of sockets or filters.

import {
  byId,
  formatCount,
  formatDateTime,
  formatTimeOrDate,
  fromTemplate,
  msUntilMidnight,
  setHue,
} from "./dom.js";

const PREVIEW_CHARS = 140;
const HIGHLIGHT_MS = 2500;

function previewOf(metadata) {
  const keys = metadata && typeof metadata === "object" ? Object.keys(metadata) : [];
  if (keys.length === 0) return "";
  const text = JSON.stringify(metadata);
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
}

function buildRow(event) {
  const row = fromTemplate("event-row-template");
  row.dataset.eventId = event.id;
  row.dataset.type = event.type;

  const time = row.querySelector(".event-time");
  time.dateTime = event.timestamp;
  time.textContent = formatTimeOrDate(event.timestamp);
  time.title = formatDateTime(event.timestamp);

  const chip = row.querySelector(".event-type");
  chip.textContent = event.type;
  setHue(chip, event.type);

  const preview = previewOf(event.metadata);
  const previewNode = row.querySelector(".event-preview");
  previewNode.textContent = preview || "no metadata";
  previewNode.classList.toggle("is-empty", !preview);

  row.querySelector(".event-id").textContent = event.id;
  row.querySelector(".event-timestamp").textContent = formatDateTime(event.timestamp);
  row.querySelector(".event-received").textContent = formatDateTime(event.received_at);
  row.querySelector(".event-metadata").textContent = JSON.stringify(event.metadata, null, 2);
  return row;
}

/**
 * The feed in #feed-list. `onChange()` runs after rows are added or removed;
 * `onTrim()` when old rows were dropped to stay under `maxRows`.
 */
export function createFeed({ maxRows = 500, onChange = () => {}, onTrim = () => {} } = {}) {
  const scroller = byId("feed-scroll");
  const list = byId("feed-list");
  const pauseButton = byId("pause-button");
  const followToggle = byId("follow-toggle");
  const pendingButton = byId("pending-button");

  const rowsById = new Map();
  let pending = []; // live events held while paused, oldest first
  let paused = false;

  function trim() {
    let dropped = 0;
    while (rowsById.size > maxRows) {
      const last = list.lastElementChild;
      rowsById.delete(last.dataset.eventId);
      last.remove();
      dropped += 1;
    }
    if (dropped) onTrim(dropped);
  }

  /** Inserts rows at the top, keeping the reader's place unless auto-scroll is on. */
  function prepend(events) {
    const fresh = events.filter((event) => !rowsById.has(event.id));
    if (fresh.length === 0) return;
    const heightBefore = list.scrollHeight;
    const fragment = document.createDocumentFragment();
    // `events` are oldest first; the newest must end up on top.
    for (const event of fresh.reverse()) {
      const row = buildRow(event);
      row.classList.add("is-new");
      setTimeout(() => row.classList.remove("is-new"), HIGHLIGHT_MS);
      rowsById.set(event.id, row);
      fragment.append(row);
    }
    list.prepend(fragment);
    trim();
    if (followToggle.checked) scroller.scrollTop = 0;
    else scroller.scrollTop += list.scrollHeight - heightBefore;
    onChange();
  }

  function showPending() {
    pendingButton.hidden = pending.length === 0;
    const n = pending.length;
    pendingButton.textContent = `${formatCount(n)} new ${n === 1 ? "event" : "events"} · show`;
  }

  function setPaused(value) {
    paused = value;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    scroller.classList.toggle("is-paused", paused);
    if (!paused && pending.length) {
      const held = pending;
      pending = [];
      prepend(held);
    }
    showPending();
  }

  // A row of today shows the time alone; once midnight passes it needs its date.
  function relabelAtMidnight() {
    setTimeout(() => {
      for (const time of list.querySelectorAll(".event-time")) {
        time.textContent = formatTimeOrDate(time.dateTime);
      }
      relabelAtMidnight();
    }, msUntilMidnight() + 1000);
  }
  relabelAtMidnight();

  pauseButton.addEventListener("click", () => setPaused(!paused));
  pendingButton.addEventListener("click", () => setPaused(false));
  followToggle.addEventListener("change", () => {
    if (followToggle.checked) scroller.scrollTop = 0;
  });

  return {
    get size() {
      return rowsById.size;
    },
    has: (id) => rowsById.has(id),

    /** A live event: shown at once, or held while paused. */
    addLive(event) {
      if (!paused) return prepend([event]);
      if (rowsById.has(event.id) || pending.some((held) => held.id === event.id)) return;
      pending.push(event);
      // Held events are bounded too; the oldest go first.
      if (pending.length > maxRows) pending.splice(0, pending.length - maxRows);
      showPending();
    },

    /** A page of history (newest first), older than every row shown: goes below. */
    addHistory(events) {
      const fragment = document.createDocumentFragment();
      for (const event of events) {
        if (rowsById.has(event.id)) continue;
        const row = buildRow(event);
        rowsById.set(event.id, row);
        fragment.append(row);
      }
      list.append(fragment);
      onChange();
    },

    clear() {
      rowsById.clear();
      pending = [];
      list.replaceChildren();
      scroller.scrollTop = 0;
      showPending();
      onChange();
    },

    reset() {
      this.clear();
      setPaused(false);
    },
  };
}
