// The dashboard shell: sign-in, tabs, the engine status loop, toasts.
import { ApiError, get, onUnauthorized, setKey } from "./api.js";
import { createChat } from "./chat.js";
import { $, h, setText } from "./dom.js";
import { createDownloads } from "./downloads.js";
import { createEngine, engineState } from "./engine.js";
import { createModels } from "./models.js";

const STORAGE_KEY = "talktuah.apiKey";
const TABS = ["models", "downloads", "engine", "chat"];
const ENGINE_POLL_MS = 3000;
const ENGINE_POLL_LOADING_MS = 1000;

let currentTab = "models";
let signedIn = false;
let engineTimer = null;
let polling = false; // one status request at a time
let pollAgain = false; // someone asked for fresh status while one was in flight
let lastStatus = null;
let engineSeq = 0; // status fetches begun
const engineListeners = new Set();

// -- feedback ---------------------------------------------------------------------------

function toast(message, tone = "info") {
  const box = $("#toasts");
  const item = h(
    "div",
    { class: `toast toast-${tone}` },
    h("span", { class: "toast-text" }, message),
    h(
      "button",
      { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => item.remove() },
      "×",
    ),
  );
  box.append(item);
  setTimeout(() => item.remove(), tone === "bad" ? 12000 : 6000);
}

function announce(message) {
  const region = $("#announcer");
  region.textContent = "";
  setTimeout(() => (region.textContent = message), 50);
}

// -- panels -----------------------------------------------------------------------------

const ctx = {
  toast,
  announce,
  lastEngineStatus: () => lastStatus,
  refreshEngine: () => pollEngine(),
  /** The one engine-status source: `listener(status, seq)` on every fetch; returns stop. */
  onEngineStatus(listener) {
    engineListeners.add(listener);
    return () => engineListeners.delete(listener);
  },
  /** How many status fetches have begun: a listener skips answers begun before its own. */
  engineSeq: () => engineSeq,
  downloadStarted(job) {
    downloads.added(job);
    goTo("downloads");
  },
  downloadEnded(job) {
    if (job.status === "complete") {
      toast(`Download of ${job.model_id} complete.`, "ok");
    } else if (job.status === "cancelled") {
      toast(`Download of ${job.model_id} cancelled.`, "info");
    } else {
      toast(`Download of ${job.model_id} failed: ${job.error || job.status}`, "bad");
    }
    models.refresh();
    if (job.activate) pollEngine();
  },
};

const models = createModels(ctx);
const downloads = createDownloads(ctx);
const engine = createEngine(ctx);
const chat = createChat(ctx);

// -- tabs -------------------------------------------------------------------------------

function goTo(tab, { focus = false } = {}) {
  if (!TABS.includes(tab)) tab = "models";
  currentTab = tab;
  for (const name of TABS) {
    const button = $(`#tab-${name}`);
    const selected = name === tab;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${name}`).hidden = !selected;
  }
  if (focus) $(`#tab-${tab}`).focus();
  if (location.hash !== `#${tab}`) history.replaceState(null, "", `#${tab}`);
  if (!signedIn) return;
  if (tab === "models") models.show();
  else if (tab === "downloads") downloads.show();
  else if (tab === "engine") {
    if (lastStatus) engine.renderStatus(lastStatus);
    engine.refreshHealth();
    engine.refreshLoaded();
  } else if (tab === "chat") chat.show();
}

for (const name of TABS) {
  $(`#tab-${name}`).addEventListener("click", () => goTo(name));
}
$(".tabs").addEventListener("keydown", (event) => {
  const index = TABS.indexOf(currentTab);
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  goTo(TABS[(moves[event.key] + TABS.length) % TABS.length], { focus: true });
});
window.addEventListener("hashchange", () => goTo(location.hash.slice(1)));
$("#engine-pill").addEventListener("click", () => goTo("engine", { focus: true }));
$("#engine-refresh").addEventListener("click", () => pollEngine());

// -- engine status loop -----------------------------------------------------------------

function applyEngineStatus(status, seq) {
  const changed =
    !lastStatus ||
    lastStatus.engine_state !== status.engine_state ||
    lastStatus.serving_model !== status.serving_model;
  lastStatus = status;
  const pill = $("#engine-pill");
  const state = engineState(status);
  pill.dataset.state = state;
  const label = pillLabel(state, status);
  setText($("#engine-pill-label"), label);
  pill.setAttribute("aria-label", `Engine ${label}. Show engine details.`);
  engine.renderStatus(status);
  if (changed) chat.engineChanged(status, currentTab === "chat");
  for (const listener of [...engineListeners]) listener(status, seq);
}

/** What serves now, never a model that was deleted or that failed while another serves. */
function pillLabel(state, status) {
  if (state === "ready") return `ready · ${status.serving_model}`;
  if (state === "loading") return `loading · ${status.loading_model}`;
  if (state === "restarting") return `restarting · ${status.restart_pending.model}`;
  const model = status.current_model || (status.last_failure && status.last_failure.model);
  if (state === "stopped" && !status.current_model) return "no model active";
  return model ? `${state} · ${model}` : state;
}

async function pollEngine() {
  if (!signedIn) return;
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  clearTimeout(engineTimer);
  try {
    if (!document.hidden) {
      const seq = ++engineSeq;
      const { data } = await get("/api/model-loading-status");
      if (signedIn) applyEngineStatus(data, seq);
      if (signedIn && currentTab === "engine") {
        engine.refreshHealth();
        engine.refreshLoaded();
      }
    }
  } catch (exc) {
    if (signedIn) {
      const pill = $("#engine-pill");
      pill.dataset.state = "unknown";
      setText($("#engine-pill-label"), exc.status === 403 ? "no access" : "unreachable");
      engine.showError(exc.message);
    }
  } finally {
    polling = false;
  }
  if (!signedIn) return;
  clearTimeout(engineTimer);
  const loading =
    (lastStatus && (lastStatus.engine_state === "loading" || lastStatus.restart_pending)) ||
    engineListeners.size > 0; // someone (a switch) waits for the next state
  const delay = pollAgain ? 0 : loading ? ENGINE_POLL_LOADING_MS : ENGINE_POLL_MS;
  pollAgain = false;
  engineTimer = setTimeout(pollEngine, delay);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && signedIn) pollEngine();
});

// -- sign in / out ----------------------------------------------------------------------

function showLogin(message = "") {
  signedIn = false;
  clearTimeout(engineTimer);
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
  setText($("#login-error"), message);
  $("#login-key").setAttribute("aria-invalid", message ? "true" : "false");
  $("#login-key").focus();
}

function enterApp() {
  signedIn = true;
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  lastStatus = null;
  pollEngine();
  downloads.start();
  goTo(location.hash.slice(1) || currentTab, { focus: true });
}

/** Check a key against the API: {ok}, or {message, rejected} when it cannot be used. */
async function checkKey(key) {
  setKey(key);
  try {
    await get("/api/model-loading-status");
    return { ok: true };
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 403) return { ok: true }; // valid, fewer scopes
    if (exc instanceof ApiError && exc.status === 401) {
      return { ok: false, rejected: true, message: `That key was not accepted. ${exc.message}` };
    }
    return { ok: false, rejected: false, message: exc.message };
  }
}

function signOut(message = "") {
  localStorage.removeItem(STORAGE_KEY);
  setKey(null);
  models.reset();
  downloads.reset();
  engine.reset();
  chat.reset();
  lastStatus = null;
  $("#login-key").value = "";
  showLogin(message);
}

onUnauthorized((detail) => {
  if (signedIn) signOut(`Signed out: the server no longer accepts this key. ${detail}`);
});

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("#login-key");
  const key = input.value.trim();
  if (!key) {
    setText($("#login-error"), "Enter your API key.");
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  const submit = $("#login-submit");
  submit.disabled = true;
  setText(submit, "Checking…");
  const check = await checkKey(key);
  submit.disabled = false;
  setText(submit, "Sign in");
  if (!check.ok) {
    setKey(null);
    showLogin(check.message);
    input.select();
    return;
  }
  localStorage.setItem(STORAGE_KEY, key);
  input.value = "";
  enterApp();
});

$("#login-reveal").addEventListener("click", (event) => {
  const input = $("#login-key");
  const show = input.type === "password";
  input.type = show ? "text" : "password";
  event.currentTarget.setAttribute("aria-pressed", String(show));
  setText(event.currentTarget, show ? "Hide" : "Show");
});

$("#sign-out").addEventListener("click", () => signOut());

async function boot() {
  currentTab = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "models";
  const saved = localStorage.getItem(STORAGE_KEY);
  if (!saved) return showLogin();
  const check = await checkKey(saved);
  if (!check.ok) {
    setKey(null);
    if (!check.rejected) return showLogin(check.message);
    localStorage.removeItem(STORAGE_KEY);
    return showLogin(`Your saved key no longer works. ${check.message}`);
  }
  enterApp();
}

boot();
