// Engine: the supervisor's state (GET /api/model-loading-status) and health (GET /api/healthz).
import { get } from "./api.js";
import { $, badge, formatDuration, h, replace, setText, toneFor } from "./dom.js";

export function createEngine() {
  const facts = $("#engine-facts");
  const healthFacts = $("#health-facts");
  const failure = $("#engine-failure");
  const error = $("#engine-error");
  let lastLog = null;

  function fact(label, value) {
    const shown = value === null || value === undefined || value === "" ? "—" : value;
    return [h("dt", {}, label), h("dd", {}, shown)];
  }

  let lastRendered = null;

  function loadingText(loading) {
    const phase = loading.phase ? ` — ${loading.phase}` : "";
    return `${loading.model}${phase} (${formatDuration(loading.elapsed_seconds)})`;
  }

  function renderStatus(status) {
    setText(error, "");
    const key = JSON.stringify(status);
    if (key === lastRendered) return; // keep the DOM (and any text selection) as it is
    lastRendered = key;
    replace($("#engine-badge"), badge(status.status, toneFor(status.status)));
    setText($("#engine-message"), status.message || "");
    const loading = status.loading;
    replace(
      facts,
      fact("Engine", status.engine),
      fact("Engine state", status.engine_state),
      fact("Active model", status.current_model ? h("code", {}, status.current_model) : null),
      fact("Serving", status.serving_model ? h("code", {}, status.serving_model) : null),
      loading ? fact("Loading", loadingText(loading)) : null,
      fact("Restarts", String(status.restarts ?? 0)),
    );
    const failed = Boolean(status.error || (status.log_tail && status.log_tail.length));
    failure.hidden = !failed;
    if (failed) {
      const who = status.failed_model ? `${status.failed_model}: ` : "";
      setText($("#engine-failure-text"), `${who}${status.error || "failed"}`);
      const log = (status.log_tail || []).join("\n") || "(the engine wrote nothing)";
      if (log !== lastLog) {
        lastLog = log;
        setText($("#engine-log"), log);
      }
    }
  }

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

  return {
    renderStatus,
    refreshHealth,
    showError(message) {
      setText(error, message);
    },
    reset() {
      lastLog = null;
      lastRendered = null;
      replace(facts);
      replace(healthFacts);
      failure.hidden = true;
    },
  };
}
