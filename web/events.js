// The events panel: the live feed plus the server-side filters (`type`, `q`) and
// paging back through history with the API's cursor.

import { byId, element, formatCount, setState } from "./dom.js";
import { createFeed } from "./feed.js";
import { toastError } from "./toasts.js";

const MAX_ROWS = 500;
const PAGE_SIZE = 50;
const SEARCH_DEBOUNCE_MS = 350;

export function createEventsView() {
  const form = byId("filter-form");
  const typeSelect = byId("filter-type");
  const searchInput = byId("filter-q");
  const clearButton = byId("filter-clear");
  const loadOlderButton = byId("load-older-button");
  const footerNote = byId("feed-footer-note");
  const stateLine = byId("feed-state");
  const summary = byId("feed-summary");
  const tenantLabel = byId("events-tenant");

  let api = null;
  let query = { types: [], q: "" };
  let cursor = null;
  let trimmed = false;
  let loading = false;
  let generation = 0; // bumps on every reload: late answers to old queries are dropped
  let inFlight = null;
  let searchTimer = null;

  const feed = createFeed({
    maxRows: MAX_ROWS,
    onChange: showStates,
    onTrim: () => {
      // Rows below were dropped, so the cursor would skip them: stop paging here.
      trimmed = true;
      cursor = null;
      showFooter();
    },
  });

  const isFiltered = () => query.types.length > 0 || query.q !== "";

  /** The server's filter, applied to a live event (type match, case-insensitive text). */
  function matches(event) {
    if (query.types.length && !query.types.includes(event.type)) return false;
    if (!query.q) return true;
    const needle = query.q.toLowerCase();
    return (
      event.type.toLowerCase().includes(needle) ||
      JSON.stringify(event.metadata).toLowerCase().includes(needle)
    );
  }

  function showStates() {
    const n = feed.size;
    summary.textContent = n
      ? `${formatCount(n)} ${n === 1 ? "event" : "events"} shown${isFiltered() ? " (filtered)" : ""}`
      : "";
    if (loading) return;
    if (n > 0) setState(stateLine, "");
    else if (isFiltered()) setState(stateLine, "No events match these filters.", "empty");
    else
      setState(
        stateLine,
        "No events yet. Send one with the form, or with curl and the tenant's API key.",
        "empty",
      );
  }

  function showFooter() {
    loadOlderButton.hidden = !cursor;
    footerNote.hidden = !trimmed;
    footerNote.textContent = trimmed
      ? `Only the newest ${MAX_ROWS} events stay in this view. Search or filter to find older ones.`
      : "";
  }

  async function fetchPage(pageCursor) {
    inFlight?.abort();
    inFlight = new AbortController();
    return api.listEvents(
      { types: query.types, q: query.q || undefined, cursor: pageCursor, limit: PAGE_SIZE },
      inFlight.signal,
    );
  }

  /**
   * Replaces the list with the first page for the current filters. Resolves to the
   * newest unfiltered event id (a resume point for the socket), or null.
   */
  async function reload() {
    if (!api) return null;
    const mine = ++generation;
    loading = true;
    cursor = null;
    trimmed = false;
    feed.clear();
    showFooter();
    setState(stateLine, "Loading events…", "loading");
    try {
      const page = await fetchPage(null);
      if (mine !== generation) return null;
      loading = false;
      // Live events that came in meanwhile are newer than this page: it goes below them.
      feed.addHistory(page.data);
      cursor = page.next_cursor;
      showFooter();
      return !isFiltered() && page.data.length ? page.data[0].id : null;
    } catch (error) {
      if (error.name === "AbortError" || mine !== generation) return null;
      loading = false;
      setState(stateLine, `Could not load events: ${error.message}`, "error");
      toastError(error, "Loading events");
      return null;
    }
  }

  async function loadOlder() {
    if (!cursor) return;
    const mine = generation;
    loadOlderButton.disabled = true;
    loadOlderButton.textContent = "Loading…";
    try {
      const page = await fetchPage(cursor);
      if (mine !== generation) return;
      feed.addHistory(page.data);
      cursor = page.next_cursor;
    } catch (error) {
      if (error.name !== "AbortError") toastError(error, "Loading older events");
    } finally {
      loadOlderButton.disabled = false;
      loadOlderButton.textContent = "Load older events";
      showFooter();
    }
  }

  function applyFilters() {
    clearTimeout(searchTimer);
    const types = typeSelect.value ? [typeSelect.value] : [];
    const q = searchInput.value.trim();
    if (q === query.q && types.join() === query.types.join()) return;
    query = { types, q };
    clearButton.disabled = !isFiltered();
    reload();
  }

  typeSelect.addEventListener("change", applyFilters);
  searchInput.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilters, SEARCH_DEBOUNCE_MS);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  clearButton.addEventListener("click", () => {
    typeSelect.value = "";
    searchInput.value = "";
    applyFilters();
    searchInput.focus();
  });
  loadOlderButton.addEventListener("click", loadOlder);

  return {
    reload,
    matches,

    /** Starts over for a tenant: empty list, no filters, waiting for the connection. */
    show(tenant, tenantApi) {
      api = tenantApi;
      generation += 1;
      inFlight?.abort();
      query = { types: [], q: "" };
      typeSelect.value = "";
      searchInput.value = "";
      clearButton.disabled = true;
      cursor = null;
      trimmed = false;
      loading = true;
      feed.reset();
      showFooter();
      tenantLabel.textContent = tenant.name;
      setState(stateLine, "Connecting…", "loading");
    },

    stop() {
      api = null;
      generation += 1;
      inFlight?.abort();
      clearTimeout(searchTimer);
      feed.reset();
      tenantLabel.textContent = "";
    },

    addLive(event) {
      if (matches(event)) feed.addLive(event);
    },

    /** Offers the tenant's known types in the filter, keeping the current choice. */
    setKnownTypes(types) {
      const chosen = typeSelect.value;
      const names = [...new Set([...types, ...query.types])].sort();
      const shown = [...typeSelect.options].slice(1).map((option) => option.value);
      // Rebuilding an unchanged list would close it under someone choosing from it.
      if (names.join("\n") === shown.join("\n")) return;
      typeSelect.replaceChildren(
        element("option", { text: "All types", attrs: { value: "" } }),
        ...names.map((name) => element("option", { text: name, attrs: { value: name } })),
      );
      typeSelect.value = chosen;
    },

    filterByType(type) {
      if (![...typeSelect.options].some((option) => option.value === type)) {
        typeSelect.append(element("option", { text: type, attrs: { value: type } }));
      }
      typeSelect.value = type;
      applyFilters();
    },
  };
}
