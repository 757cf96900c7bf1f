// Folio's web page: streams answers (server-sent events over fetch), shows upload progress,
// and forgets documents without a page reload. Every value is put in the page as text
// (textContent), never as HTML: answers and quotes come from untrusted documents.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function citationLink(item) {
  return el("a", { class: "cite", href: item.url, target: "_blank", rel: "noopener" },
    `${item.document} p.${item.page}`);
}

function renderAnswer(box, data) {
  box.replaceChildren();
  const text = el("div", { class: "answer-text" }, data.answer);
  if (data.note) text.append(" ", el("em", {}, data.note));
  box.append(text);
  if (data.links && data.links.length) {
    const list = el("ol", { class: "citations" });
    for (const link of data.links) list.append(el("li", {}, citationLink(link), el("q", {}, link.quote)));
    box.append(list);
  }
  if (data.closest && data.closest.length) {
    box.append(el("p", { class: "closest-label" }, "Closest pages:"));
    const list = el("ul", { class: "closest" });
    for (const page of data.closest) list.append(el("li", {}, citationLink(page)));
    box.append(list);
  }
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

function newConversation() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setUpChat(form) {
  const conversation = document.getElementById("conversation");
  if (!conversation.value) conversation.value = newConversation();
  const turns = document.getElementById("turns");
  const question = document.getElementById("question");
  document.getElementById("new-conversation").addEventListener("click", () => {
    conversation.value = newConversation();
    turns.replaceChildren();
    question.focus();
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    const status = el("p", { class: "status", role: "status" }, "sending…");
    const answer = el("div", { class: "answer" });
    const turn = el("div", { class: "turn" }, el("p", { class: "question" }, text), status, answer);
    turns.append(turn);
    question.value = "";
    const button = document.getElementById("ask");
    button.disabled = true;
    try {
      const response = await fetch("/api/ask?stream=1", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({
          question: text, collection: form.elements.collection.value,
          conversation: conversation.value,
        }),
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => ({ error: response.statusText }));
        status.textContent = problem.error;
        status.className = "error";
        return;
      }
      await readEvents(response, (name, data) => {
        if (name === "queued") status.textContent = `queued: position ${data.position}, ${data.eta} (job ${data.job})`;
        else if (name === "status") status.textContent = data.text;
        else if (name === "partial") { answer.textContent = data.text; answer.classList.add("streaming"); }
        else if (name === "answer") { answer.classList.remove("streaming"); renderAnswer(answer, data); status.remove(); }
        else if (name === "error") { status.textContent = data.message; status.className = "error"; }
      });
    } catch (error) {
      status.textContent = `The connection broke (${error.message}); the answer will be in your history.`;
      status.className = "error";
    } finally {
      button.disabled = false;
      question.focus();
    }
  });
}

function outcomeTable(files) {
  const body = el("tbody");
  for (const f of files) {
    body.append(el("tr", { class: f.status }, el("td", {}, f.name), el("td", {}, f.status),
      el("td", {}, String(f.pages)), el("td", {}, String(f.chunks)), el("td", {}, f.reason || "")));
  }
  const head = el("tr", {}, ...["file", "result", "pages", "chunks", "reason"].map((h) => el("th", {}, h)));
  return el("table", { class: "outcomes" }, el("thead", {}, head), body);
}

function setUpUpload(form) {
  const progress = document.getElementById("upload-progress");
  const result = document.getElementById("upload-result");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/docs");
    request.setRequestHeader("X-CSRF-Token", csrf());
    progress.hidden = false;
    progress.value = 0;
    result.replaceChildren(el("p", { class: "status" }, "uploading…"));
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total);
      if (e.loaded === e.total) result.replaceChildren(el("p", { class: "status" }, "indexing…"));
    });
    request.addEventListener("load", () => {
      progress.hidden = true;
      let body;
      try { body = JSON.parse(request.responseText); } catch { body = { error: request.statusText }; }
      if (request.status !== 200) {
        result.replaceChildren(el("p", { class: "error" }, body.error));
        return;
      }
      result.replaceChildren(outcomeTable(body.files));
      refreshDocuments(body.collection);
      form.reset();
    });
    request.addEventListener("error", () => {
      progress.hidden = true;
      result.replaceChildren(el("p", { class: "error" }, "The upload failed (connection lost)."));
    });
    request.send(data);
  });
}

async function refreshDocuments(collection) {
  const response = await fetch(`/api/docs?collection=${encodeURIComponent(collection)}`);
  if (!response.ok) return;
  const docs = await response.json();
  const body = document.querySelector("#documents tbody");
  body.replaceChildren();
  if (!docs.length) {
    body.append(el("tr", {}, el("td", { colspan: "6", class: "empty" }, "Nothing indexed yet.")));
  }
  for (const d of docs) {
    const forget = el("button", { class: "danger", "data-name": d.name, "data-collection": collection }, "Forget");
    body.append(el("tr", {},
      el("td", {}, el("a", { href: d.url, target: "_blank", rel: "noopener" }, d.name)),
      el("td", {}, String(d.pages)), el("td", {}, String(d.chunks)),
      el("td", {}, d.pages_without_text ? String(d.pages_without_text) : ""),
      el("td", {}, d.added_at), el("td", {}, forget)));
  }
}

function setUpForget(table) {
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button.danger");
    if (!button) return;
    event.preventDefault();
    const form = button.closest("form");
    const name = button.dataset.name;
    const collection = button.dataset.collection || (form && form.elements.collection.value);
    button.disabled = true;
    const response = await fetch(
      `/api/docs/${encodeURIComponent(name)}?collection=${encodeURIComponent(collection)}`,
      { method: "DELETE", headers: { "X-CSRF-Token": csrf() } });
    const body = await response.json().catch(() => ({}));
    const result = document.getElementById("upload-result");
    result.replaceChildren(el("p", { class: response.ok ? "notice" : "error", role: "status" },
      response.ok ? body.message : body.error));
    if (response.ok) await refreshDocuments(collection);
    else button.disabled = false;
  });
}

// The queue page refreshes itself every few seconds (positions move as jobs finish).
function setUpQueue(table) {
  const render = (rows) => {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "empty" }, "Nothing waiting.")));
    for (const r of rows) {
      const cancel = el("td", {});
      if (r.can_cancel) cancel.append(el("button", { class: "danger", "data-job": String(r.job) }, "Cancel"));
      body.append(el("tr", { class: r.status },
        el("td", {}, r.position === 0 ? "running" : String(r.position)), el("td", {}, String(r.job)),
        el("td", {}, r.kind), el("td", {}, r.who), el("td", {}, r.text),
        el("td", {}, r.position === 0 ? "now" : `~${Math.round(r.eta_s)}s`), cancel));
    }
  };
  const refresh = async () => {
    const response = await fetch("/api/queue");
    if (response.ok) render(await response.json());
  };
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button.danger");
    if (!button) return;
    event.preventDefault();
    const job = button.dataset.job || button.closest("form").elements.job.value;
    button.disabled = true;
    await fetch(`/api/queue/${encodeURIComponent(job)}/cancel`,
      { method: "POST", headers: { "X-CSRF-Token": csrf() } });
    await refresh();
  });
  setInterval(refresh, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  const queue = document.getElementById("queue");
  if (queue) setUpQueue(queue);
  const ask = document.getElementById("ask-form");
  if (ask) setUpChat(ask);
  const upload = document.getElementById("upload");
  if (upload) setUpUpload(upload);
  const documents = document.getElementById("documents");
  if (documents) setUpForget(documents);
});
