// Chat: streams /v1/chat/completions and keeps the conversation in the page.
import { get, streamEvents } from "./api.js";
import { $, h, replace, setText } from "./dom.js";

export function createChat(ctx) {
  const select = $("#chat-model");
  const log = $("#chat-log");
  const emptyNote = $("#chat-empty");
  const note = $("#chat-note");
  const error = $("#chat-error");
  const input = $("#chat-input");
  const send = $("#chat-send");
  const stop = $("#chat-stop");
  const maxTokens = $("#chat-max-tokens");
  let history = []; // [{role, content}]
  let controller = null;
  let loadedFor = undefined; // the serving model the picker was loaded for

  async function loadModels() {
    const status = ctx.lastEngineStatus();
    if (status && status.engine_state !== "ready") {
      if (status.engine_state === "loading") {
        fillPicker([], `Loading ${status.loading_model}…`);
        setText(note, `Loading ${status.loading_model}… The chat opens as soon as it serves.`);
      } else {
        fillPicker([], "No model is serving.");
        setText(note, "Switch to a model in the Models tab, then chat here.");
      }
      loadedFor = null;
      return;
    }
    try {
      const { data } = await get("/v1/models");
      const ids = (data.data || []).map((m) => m.id).filter(Boolean);
      fillPicker(ids, "No model is serving.");
      loadedFor = status ? status.serving_model : ids[0];
      setText(note, ids.length ? "" : "Switch to a model in the Models tab, then chat here.");
    } catch (exc) {
      fillPicker([], "Models unavailable");
      setText(note, exc.message);
    }
  }

  function fillPicker(ids, emptyLabel) {
    const previous = select.value;
    const options = ids.map((id) => h("option", { value: id }, id));
    replace(select, ids.length ? options : h("option", { value: "" }, emptyLabel));
    if (ids.includes(previous)) select.value = previous;
    select.disabled = ids.length === 0;
    updateSend();
  }

  function updateSend() {
    send.disabled = controller !== null || !select.value;
  }

  function bubble(role, text = "") {
    emptyNote.hidden = true;
    const content = h("div", { class: "msg-text" }, text);
    const el = h(
      "div",
      { class: `msg msg-${role}` },
      h("div", { class: "msg-role" }, role === "user" ? "You" : "Assistant"),
      content,
    );
    log.append(el);
    return { el, content };
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  async function submit() {
    const text = input.value.trim();
    const model = select.value;
    if (!text || !model || controller) return;
    setText(error, "");
    history.push({ role: "user", content: text });
    const userBubble = bubble("user", text);
    input.value = "";
    const answer = bubble("assistant");
    answer.el.classList.add("is-streaming");
    answer.el.setAttribute("aria-busy", "true");
    log.scrollTop = log.scrollHeight;
    controller = new AbortController();
    stop.hidden = false;
    updateSend();
    let reply = "";
    const body = { model, messages: history.slice(), stream: true };
    const limit = parseInt(maxTokens.value, 10);
    if (Number.isFinite(limit) && limit > 0) body.max_tokens = limit;
    try {
      await streamEvents("POST", "/v1/chat/completions", {
        body,
        signal: controller.signal,
        onEvent({ data }) {
          if (data === "[DONE]") return;
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch {
            return;
          }
          if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          const piece = delta && typeof delta.content === "string" ? delta.content : "";
          if (!piece) return;
          const stick = nearBottom();
          reply += piece;
          answer.content.textContent = reply;
          if (stick) log.scrollTop = log.scrollHeight;
        },
      });
      finish(answer, reply);
    } catch (exc) {
      if (exc.name === "AbortError") {
        finish(answer, reply, "stopped");
      } else if (reply) {
        finish(answer, reply, "interrupted");
        setText(error, exc.message);
      } else {
        // Nothing came back: take the question back so it can be sent again.
        answer.el.remove();
        userBubble.el.remove();
        history.pop();
        input.value = text;
        emptyNote.hidden = history.length > 0;
        setText(error, exc.message);
      }
    } finally {
      controller = null;
      stop.hidden = true;
      updateSend();
      input.focus();
    }
  }

  function finish(answer, reply, how = null) {
    answer.el.classList.remove("is-streaming");
    answer.el.removeAttribute("aria-busy");
    if (!reply) answer.content.textContent = "(empty answer)";
    if (how) answer.el.append(h("div", { class: "msg-flag" }, how === "stopped" ? "Stopped" : "Interrupted"));
    history.push({ role: "assistant", content: reply });
  }

  $("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  select.addEventListener("change", updateSend);
  $("#chat-models-refresh").addEventListener("click", loadModels);
  $("#chat-new").addEventListener("click", () => {
    if (controller) controller.abort();
    history = [];
    replace(log, emptyNote);
    emptyNote.hidden = false;
    setText(error, "");
    input.focus();
  });

  return {
    show() {
      loadModels();
    },
    /** The engine's state changed: reload the picker if what it serves changed. */
    engineChanged(status, visible) {
      const serving = status.engine_state === "ready" ? status.serving_model : null;
      if (visible && (serving !== loadedFor || status.engine_state === "loading")) loadModels();
    },
    reset() {
      if (controller) controller.abort();
      history = [];
      loadedFor = undefined;
      replace(log, emptyNote);
      emptyNote.hidden = false;
      replace(select);
      setText(error, "");
      setText(note, "");
    },
  };
}
