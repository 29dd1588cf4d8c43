// Downloads: every job with a live progress bar fed by the SSE events endpoint, and cancel.
import { get, request, streamEvents } from "./api.js";
import {
  $, badge, formatBytes, formatDuration, formatSpeed, formatTime, h, modelName, replace, setText,
  toneFor,
} from "./dom.js";

const POLL_MS = 5000;
const MAX_STREAMS = 3; // browsers allow ~6 connections per host; leave room for the rest
const LIVE = new Set(["queued", "downloading"]);

export function createDownloads(ctx) {
  const list = $("#downloads-list");
  const empty = $("#downloads-empty");
  const error = $("#downloads-error");
  const count = $("#downloads-count");
  const cards = new Map(); // job_id -> {job, el, parts}
  const streams = new Map(); // job_id -> AbortController
  const seenLive = new Set(); // jobs we saw running: tell the user when they end
  let timer = null;
  let started = false;
  let generation = 0; // bumped on sign-out, so a refresh in flight cannot restart an old loop

  async function refresh() {
    try {
      const { data } = await get("/api/downloads", { limit: 50 });
      setText(error, "");
      reconcile(data.downloads || []);
    } catch (exc) {
      if (exc.name === "AbortError") return;
      setText(error, `Could not list downloads: ${exc.message}`);
    }
  }

  function reconcile(jobs) {
    const ids = new Set(jobs.map((j) => j.job_id));
    for (const [id, card] of cards) {
      if (!ids.has(id)) {
        card.el.remove();
        cards.delete(id);
      }
    }
    jobs.forEach((job, index) => {
      const card = cards.get(job.job_id);
      // A streamed card is fresher than the list: keep its numbers unless the job ended.
      if (card && streams.has(job.job_id) && LIVE.has(job.status)) return placeAt(card.el, index);
      update(job);
      placeAt(cards.get(job.job_id).el, index);
    });
    empty.hidden = jobs.length > 0;
    for (const job of jobs) if (LIVE.has(job.status)) follow(job.job_id);
    updateCount();
  }

  function placeAt(el, index) {
    if (list.children[index] !== el) list.insertBefore(el, list.children[index] || null);
  }

  function updateCount() {
    const live = [...cards.values()].filter((c) => LIVE.has(c.job.status)).length;
    count.hidden = live === 0;
    setText(count, live ? String(live) : "");
    $("#tab-downloads").setAttribute("aria-label", live ? `Downloads, ${live} running` : "Downloads");
  }

  function build(job) {
    const parts = {
      title: h("span", { class: "model-id" }),
      sub: h("span", { class: "muted small" }),
      badge: h("span", { class: "job-status" }),
      cancel: h("button", { type: "button", class: "btn btn-sm btn-danger-ghost" }, "Cancel"),
      bar: h("div", {
        class: "progress",
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
      }),
      fill: h("div", { class: "progress-fill" }),
      pct: h("span", { class: "job-pct" }),
      bytes: h("span"),
      speed: h("span"),
      eta: h("span"),
      files: h("span"),
      error: h("p", { class: "form-error job-error" }),
      meta: h("p", { class: "muted small job-meta" }),
    };
    parts.bar.append(parts.fill);
    parts.cancel.addEventListener("click", () => cancel(job.job_id));
    const stat = (label, value) =>
      h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), value);
    const el = h(
      "li",
      { class: "card job", dataset: { jobId: job.job_id } },
      h(
        "div",
        { class: "job-head" },
        h("div", { class: "job-title" }, parts.title, parts.sub),
        parts.badge,
        parts.cancel,
      ),
      h("div", { class: "progress-row" }, parts.bar, parts.pct),
      h(
        "div",
        { class: "job-stats" },
        stat("Downloaded", parts.bytes),
        stat("Speed", parts.speed),
        stat("Time left", parts.eta),
        stat("Files", parts.files),
      ),
      parts.error,
      parts.meta,
    );
    const card = { job, el, parts };
    cards.set(job.job_id, card);
    return card;
  }

  function update(job) {
    const card = cards.get(job.job_id) || build(job);
    const previous = card.job;
    card.job = job;
    const p = card.parts;
    const live = LIVE.has(job.status);
    const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
    if (p.title.textContent !== job.model_id) replace(p.title, modelName(job.model_id));
    setText(p.sub, ` @ ${job.revision || "main"} · job ${job.job_id}`);
    if (p.badge.dataset.status !== job.status) {
      p.badge.dataset.status = job.status;
      replace(p.badge, badge(job.status, toneFor(job.status)));
    }
    p.cancel.hidden = !live;
    p.cancel.setAttribute("aria-label", `Cancel the download of ${job.model_id}`);
    p.bar.setAttribute("aria-valuenow", String(pct));
    p.bar.setAttribute("aria-valuetext", `${pct} %`);
    p.bar.setAttribute("aria-label", `Download progress of ${job.model_id}`);
    p.bar.dataset.status = job.status;
    p.fill.style.width = `${pct}%`;
    setText(p.pct, `${pct} %`);
    setText(
      p.bytes,
      job.bytes_total != null
        ? `${formatBytes(job.bytes_done)} of ${formatBytes(job.bytes_total)}`
        : formatBytes(job.bytes_done),
    );
    setText(p.speed, live && job.speed_bps != null ? formatSpeed(job.speed_bps) : "—");
    let eta = "—";
    if (live && job.eta_seconds != null) eta = formatDuration(job.eta_seconds);
    else if (job.status === "complete") eta = "done";
    setText(p.eta, eta);
    const filesDone = job.files_done ?? 0;
    setText(p.files, job.files_total != null ? `${filesDone} / ${job.files_total}` : String(filesDone));
    setText(p.error, job.error || "");
    p.error.hidden = !job.error;
    const meta = [`Requested ${formatTime(job.created_at)}`];
    if (job.completed_at) meta.push(`ended ${formatTime(job.completed_at)}`);
    if (job.allow_patterns?.length) meta.push(`include ${job.allow_patterns.join(", ")}`);
    if (job.ignore_patterns?.length) meta.push(`exclude ${job.ignore_patterns.join(", ")}`);
    if (job.activate) meta.push("switches when complete");
    setText(p.meta, meta.join(" · "));
    card.el.classList.toggle("is-live", live);

    if (live) seenLive.add(job.job_id);
    else if (seenLive.has(job.job_id) && previous && previous !== job && LIVE.has(previous.status)) {
      seenLive.delete(job.job_id);
      ctx.downloadEnded(job);
    }
    return card;
  }

  function follow(jobId) {
    if (streams.has(jobId) || streams.size >= MAX_STREAMS) return;
    const controller = new AbortController();
    streams.set(jobId, controller);
    streamEvents("GET", `/api/downloads/${encodeURIComponent(jobId)}/events`, {
      signal: controller.signal,
      onEvent({ event, data }) {
        if (event !== "progress") return;
        let job;
        try {
          job = JSON.parse(data);
        } catch {
          return;
        }
        update(job);
        updateCount();
      },
    })
      .catch(() => {}) // the next list refresh reopens it if the job still runs
      .finally(() => {
        if (streams.get(jobId) === controller) streams.delete(jobId);
        if (!controller.signal.aborted) {
          const card = cards.get(jobId);
          if (card && LIVE.has(card.job.status)) setTimeout(refresh, 1000);
          else followNext();
        }
      });
  }

  function followNext() {
    for (const card of cards.values()) if (LIVE.has(card.job.status)) follow(card.job.job_id);
  }

  async function cancel(jobId) {
    const card = cards.get(jobId);
    if (card) card.parts.cancel.disabled = true;
    try {
      const { data } = await request("DELETE", `/api/downloads/${encodeURIComponent(jobId)}`);
      ctx.toast(data.message || `Cancelling job ${jobId}.`, "info");
    } catch (exc) {
      ctx.toast(`Could not cancel job ${jobId}: ${exc.message}`, "bad");
    } finally {
      if (card) card.parts.cancel.disabled = false;
    }
    refresh();
  }

  function tick(mine) {
    timer = setTimeout(async () => {
      if (!document.hidden) await refresh();
      if (started && mine === generation) tick(mine);
    }, POLL_MS);
  }

  $("#downloads-refresh").addEventListener("click", refresh);

  return {
    refresh,
    start() {
      if (started) return;
      started = true;
      generation += 1;
      refresh();
      tick(generation);
    },
    show() {
      refresh();
    },
    /** A job the pull form just created: show it at once and follow its events. */
    added(job) {
      update(job);
      const card = cards.get(job.job_id);
      placeAt(card.el, 0);
      empty.hidden = true;
      if (LIVE.has(job.status)) follow(job.job_id);
      updateCount();
    },
    reset() {
      started = false;
      generation += 1;
      clearTimeout(timer);
      for (const controller of streams.values()) controller.abort();
      streams.clear();
      cards.clear();
      seenLive.clear();
      replace(list);
      updateCount();
    },
  };
}
