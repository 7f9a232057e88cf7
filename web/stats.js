// The statistics panel: totals, per-type bars and the per-minute chart, fetched from
// /events/stats and /events/timeseries. Live events ask for a refresh; refreshes are
// coalesced so a burst of events costs one pair of requests.

import { renderRateChart } from "./chart.js";
import {
  byId,
  element,
  formatCount,
  formatDateTime,
  formatRelative,
  setHue,
  setState,
} from "./dom.js";
import { toastError } from "./toasts.js";

const REFRESH_AFTER_EVENT_MS = 800;
const PERIODIC_REFRESH_MS = 30_000; // the chart's hour slides even without events
const MAX_TYPE_BARS = 12;

/** `onTypes(names)` gets the tenant's event types; `onTypeChosen(name)` a clicked bar. */
export function createStatsPanel({ onTypes = () => {}, onTypeChosen = () => {} } = {}) {
  const panel = byId("stats-panel");
  const stateLine = byId("stats-state");
  const updated = byId("stats-updated");
  const tiles = byId("stat-tiles");
  const total = byId("stat-total");
  const lastHour = byId("stat-last-hour");
  const lastEvent = byId("stat-last-event");
  const chart = byId("rate-chart");
  const typeBars = byId("type-bars");

  let api = null;
  let generation = 0;
  let soonTimer = null;
  let periodicTimer = null;
  let running = false; // a refresh is in flight
  let again = false; // another was asked for meanwhile
  let lastEventAt = null;
  let series = null; // the last timeseries drawn, to redraw at a new width

  // Redraw the chart when its width changes, so its text stays at its real size.
  // In the next frame: redrawing inside the observer callback would re-trigger it.
  let drawnWidth = 0;
  new ResizeObserver(() => {
    requestAnimationFrame(() => {
      const width = Math.round(chart.clientWidth);
      if (series && width && width !== drawnWidth) {
        drawnWidth = width;
        renderRateChart(chart, series);
      }
    });
  }).observe(chart);

  function renderTypes(byType) {
    if (byType.length === 0) {
      typeBars.replaceChildren(element("li", { className: "muted small", text: "No types yet." }));
      return;
    }
    const max = byType[0].count; // the API sorts by count, highest first
    const shown = byType.slice(0, MAX_TYPE_BARS);
    const rows = shown.map(({ type, count }) => {
      const fill = element("span", { className: "type-bar-fill" });
      // Proportional width through CSSOM (allowed by the CSP, unlike style="").
      fill.style.width = `${Math.max(1, (count / max) * 100)}%`;
      setHue(fill, type);
      const button = element(
        "button",
        {
          className: "type-bar",
          attrs: { type: "button", title: `Show only ${type} events` },
        },
        [
          element("span", { className: "type-bar-label", text: type }),
          element("span", { className: "type-bar-track" }, [fill]),
          element("span", { className: "type-bar-count", text: formatCount(count) }),
        ],
      );
      button.setAttribute(
        "aria-label",
        `${type}: ${formatCount(count)} events. Filter by this type.`,
      );
      button.addEventListener("click", () => onTypeChosen(type));
      return element("li", {}, [button]);
    });
    if (byType.length > shown.length) {
      const rest = byType.length - shown.length;
      rows.push(element("li", { className: "muted small", text: `and ${rest} more types` }));
    }
    typeBars.replaceChildren(...rows);
  }

  function showLastEvent() {
    lastEvent.textContent = lastEventAt ? formatRelative(lastEventAt) : "–";
    lastEvent.title = lastEventAt ? formatDateTime(lastEventAt) : "";
  }

  async function refresh({ quiet = true } = {}) {
    if (!api) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    const mine = generation;
    panel.setAttribute("aria-busy", "true");
    try {
      const [stats, timeseries] = await Promise.all([api.eventStats(), api.eventTimeseries()]);
      if (mine !== generation) return;
      setState(stateLine, "");
      tiles.hidden = false;
      total.textContent = formatCount(stats.total);
      lastEventAt = stats.last_event_at;
      showLastEvent();
      series = timeseries.data;
      drawnWidth = Math.round(chart.clientWidth);
      const { total: hourTotal } = renderRateChart(chart, series);
      lastHour.textContent = formatCount(hourTotal);
      renderTypes(stats.by_type);
      onTypes(stats.by_type.map((entry) => entry.type));
      updated.textContent = `Updated ${formatDateTime(new Date().toISOString())}`;
      updated.dataset.kind = "";
    } catch (error) {
      if (mine !== generation) return;
      updated.textContent = "Update failed; retrying";
      updated.dataset.kind = "error";
      // The first load tells the person; background refreshes stay quiet (the
      // connection indicator already says when the server is away).
      if (!quiet) {
        setState(stateLine, `Could not load statistics: ${error.message}`, "error");
        toastError(error, "Loading statistics");
      }
    } finally {
      if (mine === generation) {
        running = false;
        panel.setAttribute("aria-busy", "false");
        if (again) {
          again = false;
          refreshSoon();
        }
      }
    }
  }

  function refreshSoon() {
    if (soonTimer || !api) return;
    soonTimer = setTimeout(() => {
      soonTimer = null;
      refresh();
    }, REFRESH_AFTER_EVENT_MS);
  }

  function stop() {
    api = null;
    generation += 1;
    running = false;
    again = false;
    clearTimeout(soonTimer);
    clearInterval(periodicTimer);
    soonTimer = periodicTimer = null;
  }

  return {
    refreshSoon,
    stop,

    show(tenantApi) {
      stop();
      api = tenantApi;
      lastEventAt = null;
      series = null;
      tiles.hidden = true;
      chart.replaceChildren();
      typeBars.replaceChildren();
      updated.textContent = "";
      setState(stateLine, "Loading statistics…", "loading");
      refresh({ quiet: false });
      periodicTimer = setInterval(() => {
        showLastEvent();
        refresh();
      }, PERIODIC_REFRESH_MS);
    },
  };
}
