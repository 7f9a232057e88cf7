// Small DOM and formatting helpers. Everything that shows server data goes through
// textContent or attributes, never innerHTML: event types and metadata are
// attacker-controlled.

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element;
}

/** A new element with a class and text; children are appended in order. */
export function element(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svgElement(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A deep copy of a <template>'s single root element. */
export function fromTemplate(id) {
  return byId(id).content.firstElementChild.cloneNode(true);
}

/** Shows a message in a state line (loading, empty, error), or hides it when empty. */
export function setState(node, message, kind = "info") {
  node.textContent = message || "";
  node.hidden = !message;
  node.dataset.kind = kind;
}

/** Shows a field's error under it (or clears it) and marks the field invalid for assistive tech. */
export function setFieldError(input, errorNode, message) {
  errorNode.textContent = message || "";
  errorNode.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** A stable hue for a string, so one event type or tenant always gets one colour. */
export function hueFor(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

// CSSOM property writes are allowed under `style-src 'self'`; style attributes are not.
export function setHue(node, text) {
  node.style.setProperty("--hue", String(hueFor(text)));
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});
const numberFormat = new Intl.NumberFormat();

export function formatTime(iso) {
  return timeFormat.format(new Date(iso));
}

/** The local calendar date as YYYY-MM-DD: unambiguous in every locale, and fixed width. */
function formatDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The time alone for a moment of today (local time); the date and time for any other day. */
export function formatTimeOrDate(iso, now = new Date()) {
  const date = new Date(iso);
  const time = timeFormat.format(date);
  return formatDate(date) === formatDate(now) ? time : `${formatDate(date)} ${time}`;
}

/** Milliseconds until the next local midnight, when "today" moves on. */
export function msUntilMidnight(now = new Date()) {
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  return midnight.getTime() - now.getTime();
}

export function formatDateTime(iso) {
  return dateTimeFormat.format(new Date(iso));
}

export function formatCount(n) {
  return numberFormat.format(n);
}

export function formatRelative(iso, now = Date.now()) {
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return formatDateTime(iso);
}
