// ImRecS API page: lists the routes of /openapi.json. Plain DOM, no framework and no other origin
// (Swagger UI would load from a CDN onto the origin that holds the API key); every value from the
// schema is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const METHODS = ["get", "post", "put", "patch", "delete"];

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.appendChild(td);
}

function bodyTypes(operation) {
  const content = (operation.requestBody && operation.requestBody.content) || {};
  return Object.keys(content).join(", ") || "-";
}

function errorCodes(operation) {
  return Object.keys(operation.responses || {}).filter((code) => Number(code) >= 400).join(" ") || "-";
}

function listRoutes(schema) {
  const tbody = $("routes-table").querySelector("tbody");
  tbody.replaceChildren();
  let count = 0;
  for (const [path, item] of Object.entries(schema.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const tr = document.createElement("tr");
      cell(tr, method.toUpperCase(), "method");
      cell(tr, path, "path");
      cell(tr, operation.summary || operation.description || "");
      cell(tr, bodyTypes(operation));
      cell(tr, errorCodes(operation));
      tbody.appendChild(tr);
      count += 1;
    }
  }
  return count;
}

function listSchemas(schema) {
  const list = $("schemas");
  list.replaceChildren();
  const schemas = (schema.components && schema.components.schemas) || {};
  for (const [name, body] of Object.entries(schemas)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    const required = new Set(body.required || []);
    const fields = Object.keys(body.properties || {}).map((f) => (required.has(f) ? `${f}*` : f));
    dd.textContent = fields.length ? fields.join(", ") : (body.enum || []).join(", ");
    list.append(dt, dd);
  }
}

async function load() {
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error(`/openapi.json: HTTP ${response.status}`);
    const schema = await response.json();
    $("api-title").textContent = `${schema.info.title} API`;
    const count = listRoutes(schema);
    listSchemas(schema);
    $("routes-note").textContent = `${count} routes; * marks a required field.`;
  } catch (error) {
    $("routes-note").textContent = "";
    $("error").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", load);
