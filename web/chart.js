// Events per minute as an inline SVG bar chart. Geometry goes in SVG attributes and
// look in style.css: the page's CSP forbids inline styles.

import { formatCount, formatTime, svgElement } from "./dom.js";

const DEFAULT_WIDTH = 340;
const HEIGHT = 140;
const PAD = { top: 10, right: 6, bottom: 20, left: 30 };

/** A round-ish axis maximum at or above `n`, so gridlines land on readable numbers. */
function niceCeiling(n) {
  if (n <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= n) return step * magnitude;
  }
  return 10 * magnitude;
}

function minutesLabel(buckets, index) {
  const minutesAgo = buckets.length - 1 - index;
  return minutesAgo === 0 ? "now" : `−${minutesAgo} min`;
}

/** Draws `buckets` ([{start, count}], oldest first) into `container`. */
export function renderRateChart(container, buckets) {
  const total = buckets.reduce((sum, bucket) => sum + bucket.count, 0);
  const peak = buckets.reduce((best, bucket) => (bucket.count > best.count ? bucket : best), {
    count: 0,
  });
  // Drawn at the container's own width, so text in the SVG is not scaled.
  const width = Math.max(240, Math.round(container.clientWidth) || DEFAULT_WIDTH);
  const yMax = niceCeiling(peak.count);
  const plotWidth = width - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotWidth / Math.max(buckets.length, 1);
  const barWidth = Math.max(1, slot * 0.72);

  const summary = total
    ? `${formatCount(total)} events in the last hour; peak ${formatCount(peak.count)} per minute at ${formatTime(peak.start)}.`
    : "No events in the last hour.";
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${HEIGHT}`,
    class: "rate-chart",
    role: "img",
    "aria-label": `Events per minute. ${summary}`,
  });

  // Horizontal gridlines at 0, half and max, labelled on the left.
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotHeight * (1 - fraction);
    svg.append(
      svgElement("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y, y2: y }),
      svgElement(
        "text",
        { class: "axis-label", x: PAD.left - 6, y: y + 4, "text-anchor": "end" },
        formatCount(yMax * fraction),
      ),
    );
  }

  buckets.forEach((bucket, index) => {
    const height = (bucket.count / yMax) * plotHeight;
    const bar = svgElement("rect", {
      class: bucket.count ? "bar" : "bar bar-empty",
      x: PAD.left + index * slot + (slot - barWidth) / 2,
      y: PAD.top + plotHeight - Math.max(height, bucket.count ? 1.5 : 0),
      width: barWidth,
      height: Math.max(height, bucket.count ? 1.5 : 0),
      rx: Math.min(2, barWidth / 3),
    });
    bar.append(
      svgElement("title", {}, `${formatTime(bucket.start)}: ${formatCount(bucket.count)}`),
    );
    svg.append(bar);
  });

  // Time labels every 15 minutes, counted back from now.
  for (let index = buckets.length - 1; index >= 0; index -= 15) {
    svg.append(
      svgElement(
        "text",
        {
          class: "axis-label",
          x: PAD.left + index * slot + slot / 2,
          y: HEIGHT - 6,
          "text-anchor": index === buckets.length - 1 ? "end" : "middle",
        },
        minutesLabel(buckets, index),
      ),
    );
  }

  container.replaceChildren(svg);
  return { total, peak: peak.count };
}
