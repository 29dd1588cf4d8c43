// Models: the local list (size, revision, active, complete), switch, delete, and the pull form.
import { ApiError, get, request } from "./api.js";
import { $, badge, formatBytes, formatDuration, h, modelName, replace, setText, shortSha } from "./dom.js";
import { failureSummary } from "./engine.js";


export function createModels(ctx) {
  const body = $("#models-body");
  const table = $("#models-table");
  const empty = $("#models-empty");
  const summary = $("#models-summary");
  const error = $("#models-error");
  const switchBox = $("#switch-status");
  const form = $("#pull-form");
  const result = $("#pull-result");
  const dialog = $("#delete-dialog");
  let models = [];
  let loaded = false;
  let switching = null; // {model, stop}: follows the app's one engine-status poller

  async function refresh() {
    try {
      const { data } = await get("/api/models/local");
      models = data.models || [];
      loaded = true;
      setText(error, "");
      render(data);
    } catch (exc) {
      if (exc.name === "AbortError") return;
      setText(error, `Could not list models: ${exc.message}`);
    }
  }

  function render(data) {
    const count = models.length;
    empty.hidden = count > 0;
    table.hidden = count === 0;
    setText(
      summary,
      count ? `${count} model${count === 1 ? "" : "s"} · ${formatBytes(data.total_size_bytes)}` : "",
    );
    replace(body, models.map(row));
  }

  function row(model) {
    const revisions = model.revisions || [];
    const latest = revisions[0];
    const refs = latest && latest.refs && latest.refs.length ? latest.refs.join(", ") : null;
    const status = [];
    if (model.active) status.push(badge("Active", "ok"));
    if (!model.complete) status.push(badge("Incomplete", "warn", { title: "Some files are missing" }));
    else if (!model.active) status.push(badge("Downloaded", "muted"));
    const busy = switching !== null;
    const useButton = h(
      "button",
      {
        type: "button",
        class: "btn btn-sm",
        disabled: model.active || !model.complete || busy,
        "aria-label": `Switch to ${model.model_id}`,
        title: !model.complete ? "Not completely downloaded" : model.active ? "Already active" : null,
        onclick: () => switchTo(model.model_id),
      },
      model.active ? "In use" : "Use",
    );
    const deleteButton = h(
      "button",
      {
        type: "button",
        class: "btn btn-sm btn-danger-ghost",
        "aria-label": `Delete ${model.model_id}`,
        onclick: () => confirmDelete(model),
      },
      "Delete",
    );
    return h(
      "tr",
      { dataset: { modelId: model.model_id }, class: model.active ? "is-active" : null },
      h("th", { scope: "row", class: "model-id", "data-label": "Model" }, modelName(model.model_id)),
      h("td", { class: "num", "data-label": "Size" }, h("span", {}, formatBytes(model.size_bytes))),
      h(
        "td",
        { "data-label": "Revision" },
        h(
          "span",
          { class: "revision" },
          h("code", { title: latest?.commit_hash }, latest ? shortSha(latest.commit_hash) : "—"),
          refs ? h("span", { class: "muted small" }, ` ${refs}`) : null,
          revisions.length > 1 ? h("span", { class: "muted small" }, ` +${revisions.length - 1} more`) : null,
        ),
      ),
      h("td", { "data-label": "Status" }, h("span", { class: "badges" }, status)),
      h("td", { class: "actions" }, useButton, deleteButton),
    );
  }

  // -- switch ---------------------------------------------------------------------------

  async function switchTo(modelId) {
    try {
      const { data } = await request("POST", "/api/switch-model", { query: { model_id: modelId } });
      showSwitch("info", data.message || `Loading ${modelId}…`, true);
      ctx.announce(`Switching to ${modelId}.`);
      switching = { model: modelId, stop: null };
      render({ total_size_bytes: models.reduce((n, m) => n + m.size_bytes, 0) });
      pollSwitch();
    } catch (exc) {
      showSwitch("bad", `Could not switch to ${modelId}: ${exc.message}`);
    }
  }

  /** Follow the switch through the app's engine status (no poller of its own). */
  function pollSwitch() {
    if (!switching) return;
    const since = ctx.engineSeq(); // answers to fetches begun before the switch say nothing
    const target = switching.model;
    switching.stop = ctx.onEngineStatus((status, seq) => {
      if (seq > since) switchStatus(target, status);
    });
    ctx.refreshEngine();
  }

  function switchStatus(target, status) {
    if (!switching || switching.model !== target) return;
    if (status.engine_state === "loading") {
      const loading = status.loading || {};
      const phase = loading.phase ? ` — ${loading.phase}` : "";
      const elapsed = loading.elapsed_seconds != null ? ` (${formatDuration(loading.elapsed_seconds)})` : "";
      showSwitch("info", `Loading ${loading.model || target}${phase}${elapsed}`, true);
      return;
    }
    switching.stop();
    switching = null;
    if (status.status === "ready" && status.serving_model === target) {
      showSwitch("ok", `${target} is ready and serving.`);
    } else {
      const failure = status.last_failure && status.last_failure.model === target ? status.last_failure : null;
      const still = status.serving_model ? ` ${status.serving_model} still serves.` : "";
      const reason = failure ? "" : `: ${(status.message || `the engine is ${status.engine_state}`).replace(/\.$/, "")}`;
      showSwitch("bad", `${target} failed to load${reason}.${still}`, false, failure);
    }
    refresh();
  }

  function showSwitch(tone, text, spinning = false, failure = null) {
    if (!spinning) ctx.announce(text); // the box itself is not live: loading ticks would chatter
    switchBox.hidden = false;
    switchBox.className = `notice notice-${tone}`;
    const parts = [
      spinning ? h("span", { class: "spinner", "aria-hidden": "true" }) : null,
      h("span", { class: "notice-text" }, text),
    ];
    if (!spinning) {
      parts.push(
        h(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-sm notice-close",
            onclick: () => (switchBox.hidden = true),
          },
          "Dismiss",
        ),
      );
    }
    const nodes = [h("div", { class: "notice-row" }, parts)];
    if (failure) {
      // The cause first; the engine's frames folded away until asked for.
      const summary = failureSummary(failure);
      nodes.push(h("p", { class: "failure-cause" }, summary.cause));
      if (summary.hint) nodes.push(h("p", { class: "failure-hint" }, summary.hint));
      if (failure.log_tail && failure.log_tail.length) {
        nodes.push(
          h(
            "details",
            { class: "log-details" },
            h("summary", {}, "Engine log"),
            h("pre", { class: "log", tabindex: "0" }, failure.log_tail.join("\n")),
          ),
        );
      }
    }
    replace(switchBox, nodes);
  }

  // -- delete ---------------------------------------------------------------------------

  function confirmDelete(model) {
    setText($("#delete-title"), `Delete ${model.model_id}?`);
    setText(
      $("#delete-text"),
      `This removes every revision of ${model.model_id} from the cache ` +
        `and frees ${formatBytes(model.size_bytes)}.`,
    );
    $("#delete-force-row").hidden = !model.active;
    $("#delete-force").checked = false;
    $("#delete-confirm").disabled = model.active;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "delete") remove(model.model_id, model.active);
    };
    dialog.showModal();
  }

  $("#delete-force").addEventListener("change", (event) => {
    $("#delete-confirm").disabled = !event.target.checked;
  });

  async function remove(modelId, force) {
    try {
      const { data } = await request("DELETE", "/api/delete-model", {
        query: { model_id: modelId, force: force ? "true" : "false" },
      });
      ctx.toast(data.message || `Deleted ${modelId}.`, "ok");
    } catch (exc) {
      ctx.toast(`Could not delete ${modelId}: ${exc.message}`, "bad");
    }
    refresh();
    ctx.refreshEngine();
  }

  // -- pull -----------------------------------------------------------------------------

  // A GGUF repo's quants, listed with sizes as soon as its id is typed (GET /api/hub/quants):
  // the pull then fetches the one chosen, not the whole repo.
  const QUANTS_DEBOUNCE_MS = 400;
  const quantField = $("#pull-quants");
  const quantSelect = $("#pull-quant");
  let quantsFor = null; // the repo id the list shows
  let quantsTimer = null;
  let quantsSeq = 0;

  function hideQuants() {
    quantsFor = null;
    quantField.hidden = true;
    replace(quantSelect);
  }

  async function lookUpQuants() {
    const typed = $("#pull-model").value.trim();
    const [repoId, tag] = typed.split(":", 2);
    if (!/^[\w.-]+\/[\w.-]+$/.test(repoId || "")) {
      hideQuants();
      return;
    }
    if (repoId === quantsFor) {
      if (tag) quantSelect.value = tag.toUpperCase();
      return;
    }
    const seq = ++quantsSeq;
    let data;
    try {
      ({ data } = await get("/api/hub/quants", {
        model_id: repoId,
        revision: $("#pull-revision").value.trim() || null,
      }));
    } catch {
      if (seq === quantsSeq) hideQuants(); // the pull itself will say what is wrong
      return;
    }
    if (seq !== quantsSeq) return; // a newer id was typed meanwhile
    if (data.format !== "gguf" || !data.quants.length) {
      hideQuants();
      return;
    }
    quantsFor = repoId;
    replace(
      quantSelect,
      ...data.quants.map((q) => {
        const notes = [formatBytes(q.size_bytes)];
        if (q.default) notes.push("default");
        if (q.downloaded) notes.push("downloaded");
        return h("option", { value: q.tag }, `${q.tag} (${notes.join(", ")})`);
      }),
    );
    quantSelect.value = tag ? tag.toUpperCase() : data.default;
    quantField.hidden = false;
  }

  $("#pull-model").addEventListener("input", () => {
    clearTimeout(quantsTimer);
    quantsTimer = setTimeout(lookUpQuants, QUANTS_DEBOUNCE_MS);
  });
  $("#pull-model").addEventListener("change", () => {
    clearTimeout(quantsTimer);
    lookUpQuants();
  });

  /** The id to pull: the repo with the quant chosen in the list, if it lists any. */
  function pullId(typed) {
    const repoId = typed.split(":", 1)[0];
    return !quantField.hidden && repoId === quantsFor && quantSelect.value
      ? `${repoId}:${quantSelect.value}`
      : typed;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const modelInput = $("#pull-model");
    const modelId = pullId(modelInput.value.trim());
    result.className = "result";
    if (!modelId) {
      modelInput.setAttribute("aria-invalid", "true");
      setText(result, "Enter a model id such as org/name.");
      result.classList.add("result-bad");
      modelInput.focus();
      return;
    }
    modelInput.removeAttribute("aria-invalid");
    const submit = $("#pull-submit");
    submit.disabled = true;
    setText(result, `Requesting ${modelId}…`);
    try {
      const { status, data } = await request("POST", "/api/download-model", {
        query: {
          model_id: modelId,
          auto: "true",
          revision: $("#pull-revision").value.trim() || null,
          allow_patterns: patterns($("#pull-allow").value),
          ignore_patterns: patterns($("#pull-ignore").value),
          activate: $("#pull-activate").checked ? "true" : null,
          force: $("#pull-force").checked ? "true" : null,
        },
      });
      form.reset();
      hideQuants();
      if (data.status === "complete") {
        setText(result, data.message || `${modelId} is already downloaded.`);
        result.classList.add("result-ok");
        refresh();
      } else {
        const verb = status === 202 ? "Download started" : "Already downloading";
        setText(result, `${verb}: ${data.model_id || modelId} (job ${data.job_id}).`);
        result.classList.add("result-ok");
        ctx.downloadStarted(data);
      }
    } catch (exc) {
      setText(result, exc instanceof ApiError ? exc.message : String(exc));
      result.classList.add("result-bad");
    } finally {
      submit.disabled = false;
    }
  });

  function patterns(text) {
    const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
    return parts.length ? parts.join(",") : null;
  }

  $("#models-refresh").addEventListener("click", refresh);

  return {
    refresh,
    show() {
      refresh();
    },
    get loaded() {
      return loaded;
    },
    reset() {
      if (switching && switching.stop) switching.stop();
      switching = null;
      models = [];
      loaded = false;
      replace(body);
      switchBox.hidden = true;
      setText(result, "");
      form.reset();
      hideQuants();
    },
  };
}
