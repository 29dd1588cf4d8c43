// Small DOM and formatting helpers. Every piece of text goes in through textContent, so
// nothing the API returns is ever parsed as HTML.

/**
 * Build an element: h("button", {class: "btn", onclick: fn, "aria-label": "x"}, "text", child).
 * Attributes named on* become listeners; `true`/`false` toggle boolean attributes; strings
 * and numbers among the children become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function setText(el, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 -> "1.5 KiB": the same rules and labels as talktuah/sizes.py (CLI, API messages). */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "—";
  let value = Number(bytes);
  let unit = 0;
  // The rounded value decides, so 1023.97 KiB reads "1.0 MiB" rather than "1024.0 KiB".
  while (unit < UNITS.length - 1 && Number(Math.abs(value).toFixed(unit ? 1 : 0)) >= 1024) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatSpeed(bps) {
  if (bps === null || bps === undefined) return "—";
  return `${formatBytes(bps)}/s`;
}

/** 83 -> "1 min 23 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** An ISO time as "14:03:12" today, or a short date otherwise. */
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export const shortSha = (sha) => (sha ? String(sha).slice(0, 8) : "—");

/**
 * A model id that may wrap only after its "/": "org/" and "name" each stay on one line (a
 * name wider than a phone is cut with "…"; the title has it whole). `overflow-wrap: anywhere`
 * would otherwise break "Qwen2.5-0.5B-Instruct" wherever the line ends.
 */
export function modelName(id, attrs = {}) {
  const text = String(id ?? "");
  const slash = text.indexOf("/");
  const parts = slash < 0 ? [text] : [text.slice(0, slash + 1), text.slice(slash + 1)];
  return h(
    "span",
    { ...attrs, class: ["mid", attrs.class].filter(Boolean).join(" "), title: text },
    parts.map((part) => h("span", { class: "mid-part" }, part)),
  );
}

/** A coloured status label; `tone` picks the colour (ok, warn, bad, info, muted). */
export function badge(text, tone = "muted", attrs = {}) {
  return h("span", { class: `badge badge-${tone}`, ...attrs }, text);
}

export const TONES = {
  ready: "ok",
  healthy: "ok",
  complete: "ok",
  ok: "ok",
  loading: "info",
  restarting: "warn",
  downloading: "info",
  queued: "info",
  switching: "info",
  degraded: "warn",
  stopped: "muted",
  idle: "muted",
  cancelled: "muted",
  failed: "bad",
  error: "bad",
  unhealthy: "bad",
};

export const toneFor = (status) => TONES[String(status)] || "muted";
