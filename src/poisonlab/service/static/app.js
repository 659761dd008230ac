// ImRecS page: plain DOM, no framework. Every value from the API is written with textContent,
// never as HTML. The API key lives in sessionStorage only and travels in the X-API-Key header.
"use strict";

const KEY_NAME = "imrecs-api-key";
const $ = (id) => document.getElementById(id);

function apiKey() { return sessionStorage.getItem(KEY_NAME) || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, { "X-API-Key": apiKey() });
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showError(message) { $("error").textContent = message || ""; }

function fillTable(id, rows, columns) {
  const tbody = $(id).querySelector("tbody");
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const td = document.createElement("td");
      const value = column(row);
      td.textContent = value === null || value === undefined ? "-" : String(value);
      tr.appendChild(td);
    }
    if (row.status) tr.className = `status-${row.status}`;
    tbody.appendChild(tr);
  }
}

async function panel(tableId, noteId, path, columns, emptyText) {
  const note = $(noteId);
  try {
    const rows = await api(path);
    fillTable(tableId, rows, columns);
    note.textContent = rows.length ? "" : emptyText;
  } catch (error) {
    fillTable(tableId, [], columns);
    note.textContent = error.status === 403 ? "Needs a key with a higher role." : error.message;
  }
}

const short = (text, n = 12) => (text ? String(text).slice(0, n) : null);

async function refresh() {
  if (!apiKey()) return;
  await Promise.all([
    panel("models-table", "models-note", "/v1/models",
      [(m) => m.id, (m) => m.status, (m) => m.parent_id, (m) => m.metrics.test_accuracy,
        (m) => short(m.data_snapshot_hash), (m) => m.created_at], "No model versions."),
    panel("runs-table", "runs-note", "/v1/training-runs",
      [(r) => r.id, (r) => r.status, (r) => r.step, (r) => r.requested_by, (r) => r.candidate_model_id,
        (r) => r.report.decision || r.error], "No training runs."),
    panel("quarantine-table", "quarantine-note", "/v1/contributions?status=quarantined",
      [(c) => c.id, (c) => c.contributor, (c) => c.source, (c) => c.label_name, (c) => c.reason,
        (c) => short(c.sha256)], "Nothing in quarantine."),
    panel("alerts-table", "alerts-note", "/v1/alerts",
      [(a) => a.id, (a) => a.kind, (a) => a.severity, (a) => a.message, (a) => a.created_at,
        (a) => (a.resolved_at ? "resolved" : "open")], "No alerts."),
  ]);
}

async function useKey(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_NAME, $("api-key").value.trim());
  $("api-key").value = "";
  await whoami();
  await refresh();
}

async function whoami() {
  if (!apiKey()) { $("whoami").textContent = "No key yet."; return; }
  try {
    const me = await api("/v1/me");
    $("whoami").textContent = `Signed in as ${me.name} (${me.role}).`;
    showError("");
  } catch (error) {
    $("whoami").textContent = "Key not accepted.";
    showError(error.message);
  }
}

async function classify(event) {
  event.preventDefault();
  const file = $("predict-file").files[0];
  if (!file) return;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("prediction").textContent = "…";
  const form = new FormData();
  form.append("file", file);
  try {
    const result = await api("/v1/predict", { method: "POST", body: form });
    $("prediction").textContent = result.class_name;
    const top = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 3);
    const list = $("top-classes");
    list.replaceChildren();
    for (const [name, p] of top) {
      const li = document.createElement("li");
      li.textContent = `${name}: ${(100 * p).toFixed(1)}%`;
      list.appendChild(li);
    }
    $("prediction-model").textContent = `model ${result.model_version}`;
    $("prediction-note").textContent = result.input_note ? `Note: ${result.input_note}` : "";
    showError("");
  } catch (error) {
    $("prediction").textContent = "";
    $("prediction-note").textContent = "";
    showError(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", useKey);
  $("key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY_NAME); whoami(); });
  $("predict-form").addEventListener("submit", classify);
  $("refresh").addEventListener("click", refresh);
  whoami().then(refresh);
});
