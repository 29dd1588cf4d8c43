// Engine: the supervisor's state (GET /api/model-loading-status), health (GET /api/healthz)
// and the loaded models of the engine pool (GET /api/ps), each with an unload button. The
// app's one engine poller drives them all (app.js pollEngine); nothing here polls.
// The state card says what serves now; the last failure is a notice of its own, kept until
// dismissed (POST /api/engine/dismiss-failure), so a rolled-back switch never reads "failed".
import { get, request } from "./api.js";
import { $, badge, formatBytes, formatDuration, formatTime, h, modelName, replace, setText, toneFor } from "./dom.js";

/** When an idle model unloads, as a person reads it. */
export function unloadsIn(row, now = Date.now()) {
  if (row.pinned) return "never (default model)";
  if (row.in_flight) return "in use";
  if (!row.expires_at) return row.state === "ready" ? "never" : "—";
  return `in ${formatDuration(Math.max(0, (Date.parse(row.expires_at) - now) / 1000))}`;
}

/** What the engine does now, from the fields that say it (not the legacy `status`). */
export function engineState(status) {
  if (status.engine_state === "failed" && status.restart_pending) return "restarting";
  return status.engine_state || status.status;
}

const FAILED_HOW = {
  crash: "The engine serving {model} died",
  restart: "Restarting {model} failed",
  switch: "{model} failed to load",
  load: "{model} failed to load",
};

/** "Cause: …" first, the hint next, the engine's frames folded (rendered by the caller). */
export function failureSummary(failure) {
  const how = (FAILED_HOW[failure.kind] || FAILED_HOW.load).replace("{model}", failure.model);
  return { title: how, cause: `Cause: ${failure.cause || failure.message}`, hint: failure.hint || "" };
}

export function createEngine(ctx) {
  const facts = $("#engine-facts");
  const healthFacts = $("#health-facts");
  const failure = $("#engine-failure");
  const error = $("#engine-error");
  let lastLog = null;
  let dismissedAt = null; // a failure this browser dismissed (when the key may not)

  function fact(label, value) {
    const shown = value === null || value === undefined || value === "" ? "—" : value;
    return [h("dt", {}, label), h("dd", {}, shown)];
  }

  let lastRendered = null;

  function loadingText(loading) {
    const phase = loading.phase ? ` — ${loading.phase}` : "";
    return [modelName(loading.model), `${phase} (${formatDuration(loading.elapsed_seconds)})`];
  }

  function restartText(restart) {
    return [
      modelName(restart.model),
      ` in ${formatDuration(restart.seconds_left)} (attempt ${restart.attempt} of ${restart.limit})`,
    ];
  }

  function renderStatus(status) {
    setText(error, "");
    const key = JSON.stringify(status);
    if (key === lastRendered) return; // keep the DOM (and any text selection) as it is
    lastRendered = key;
    const state = engineState(status);
    replace($("#engine-badge"), badge(state, toneFor(state)));
    setText($("#engine-message"), status.message || "");
    const loading = status.loading;
    const restart = status.restart_pending;
    replace(
      facts,
      fact("Engine", status.engine),
      fact("Serving", status.serving_model ? h("code", {}, modelName(status.serving_model)) : "nothing"),
      fact("Active model", status.current_model ? h("code", {}, modelName(status.current_model)) : "none"),
      loading ? fact("Loading", loadingText(loading)) : null,
      restart ? fact("Next restart", restartText(restart)) : null,
      fact("Restarts", String(status.restarts ?? 0)),
    );
    renderFailure(status.last_failure);
  }

  function renderFailure(last) {
    const shown = Boolean(last) && last.at + last.model !== dismissedAt;
    failure.hidden = !shown;
    if (!shown) return;
    const summary = failureSummary(last);
    setText($("#engine-failure-text"), `${summary.title} (${formatTime(last.at)}).`);
    setText($("#engine-failure-cause"), summary.cause);
    const hint = $("#engine-failure-hint");
    setText(hint, summary.hint);
    hint.hidden = !summary.hint;
    const log = (last.log_tail || []).join("\n") || "(the engine wrote nothing)";
    if (log !== lastLog) {
      lastLog = log;
      setText($("#engine-log"), log);
    }
  }

  $("#engine-failure-dismiss").addEventListener("click", async () => {
    const last = ctx.lastEngineStatus()?.last_failure;
    if (last) dismissedAt = last.at + last.model;
    failure.hidden = true;
    try {
      await request("POST", "/api/engine/dismiss-failure");
    } catch (exc) {
      if (exc.status !== 403) setText(error, `Could not dismiss it on the server: ${exc.message}`);
    }
    ctx.refreshEngine();
  });

  function renderHealth(health) {
    replace($("#health-badge"), badge(health.status, toneFor(health.status)));
    const details = health.details || {};
    replace(
      healthFacts,
      fact("Model loaded", health.model_loaded ? "yes" : "no"),
      fact("Upstream healthy", health.upstream_healthy ? "yes" : "no"),
      Object.entries(details).map(([name, value]) => fact(name.replace(/_/g, " "), value)),
    );
  }

  async function refreshHealth() {
    try {
      // 503 (unhealthy) still carries the body: read it rather than treating it as an error.
      const { data } = await get("/api/healthz");
      renderHealth(data);
    } catch (exc) {
      if (exc.status === 503) renderHealth({ status: "unhealthy", details: {} });
      else replace($("#health-badge"), badge("unknown", "muted"));
    }
  }

  const loadedBody = $("#loaded-body");
  const loadedError = $("#loaded-error");
  let lastLoaded = null;

  function renderLoaded(models) {
    const key = JSON.stringify(models.map((m) => [m.model, m.state, m.memory_bytes, m.expires_at, m.in_flight]));
    if (key === lastLoaded) return;
    lastLoaded = key;
    if (!models.length) {
      replace(loadedBody, h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No model is loaded.")));
      return;
    }
    replace(
      loadedBody,
      models.map((row) =>
        h(
          "tr",
          { dataset: { model: row.model } },
          h("td", {}, h("code", {}, modelName(row.model))),
          h("td", {}, badge(row.state, toneFor(row.state))),
          h("td", { class: "num" }, row.memory_bytes ? formatBytes(row.memory_bytes) : "—"),
          h("td", {}, unloadsIn(row)),
          h(
            "td",
            {},
            h(
              "button",
              {
                class: "btn btn-ghost btn-sm",
                type: "button",
                "aria-label": `Unload ${row.model}`,
                onclick: (event) => unload(row.model, event.currentTarget),
              },
              "Unload",
            ),
          ),
        ),
      ),
    );
  }

  async function unload(model, button) {
    button.disabled = true;
    setText(loadedError, "");
    try {
      await request("POST", "/api/unload-model", { query: { model_id: model } });
      ctx.announce(`Unloading ${model}.`);
    } catch (exc) {
      setText(loadedError, `Could not unload ${model}: ${exc.message}`);
      button.disabled = false;
    }
    ctx.refreshEngine();
  }

  async function refreshLoaded() {
    try {
      const { data } = await get("/api/ps");
      setText(loadedError, "");
      renderLoaded(data.models || []);
    } catch (exc) {
      setText(loadedError, `Could not list the loaded models: ${exc.message}`);
    }
  }

  return {
    renderStatus,
    refreshHealth,
    refreshLoaded,
    showError(message) {
      setText(error, message);
    },
    reset() {
      lastLog = null;
      lastRendered = null;
      dismissedAt = null;
      lastLoaded = null;
      replace(loadedBody);
      replace(facts);
      replace(healthFacts);
      failure.hidden = true;
    },
  };
}
