// The genzoo gallery: one card per served model, a form built from its options schema,
// samples with their provenance. Plain JavaScript, no build step.
"use strict";

const tokenInput = document.getElementById("token");

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = tokenInput.value || sessionStorage.getItem("genzoo-token") || "";
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: headers() });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v) {
  if (typeof v === "number" && !Number.isInteger(v)) return String(Math.round(v * 1000) / 1000);
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

// A label and an input for one option of the schema (see genzoo/options.py: Option.to_dict).
function optionField(fields, opt) {
  const id = "f-" + Math.random().toString(36).slice(2);
  const label = el("label", { for: id, title: opt.help || "" }, opt.name);
  let input;
  if (opt.choices) {
    input = el("select");
    for (const c of opt.choices) {
      const o = el("option", { value: JSON.stringify(c) }, String(c));
      if (c === opt.default) o.selected = true;
      input.appendChild(o);
    }
  } else if (opt.type === "bool") {
    input = el("input", { type: "checkbox" });
    input.checked = !!opt.default;
  } else if (opt.type === "image") {
    input = el("input", { type: "file", accept: "image/*" });
  } else if ((opt.type === "int" || opt.type === "float") && !opt.per_sample) {
    input = el("input", { type: "number", step: opt.type === "int" ? "1" : "any" });
    if (opt.min !== null) input.min = opt.min;
    if (opt.max !== null) input.max = opt.max;
    if (opt.default !== null) input.value = opt.default;
  } else if (opt.type === "str") {
    // a text box that grows (a prompt): text keeps its commas, so one text serves all samples
    input = el("textarea", { rows: "2", placeholder: opt.help || "" });
    if (opt.default !== null && opt.default !== undefined) input.value = opt.default;
  } else {
    input = el("input", { type: "text", placeholder: opt.per_sample ? "one, or a,b,c per sample" : "" });
    if (opt.default !== null && opt.default !== undefined) input.value = fmt(opt.default);
  }
  input.id = id;
  input.dataset.option = opt.name;
  input.dataset.type = opt.type;
  input.dataset.default = JSON.stringify(opt.default);
  fields.append(label, input);
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The form's values as the request's "options" (only what differs from the defaults).
async function formOptions(form) {
  const options = {};
  for (const input of form.querySelectorAll("[data-option]")) {
    const name = input.dataset.option, type = input.dataset.type;
    let value;
    if (type === "image") {
      if (!input.files.length) continue;
      value = await readFile(input.files[0]);
    } else if (input.type === "checkbox") {
      value = input.checked;
    } else if (input.tagName === "SELECT") {
      value = JSON.parse(input.value);
    } else if (input.value === "") {
      continue;
    } else if (type === "int" || type === "float") {
      value = input.value.includes(",") ? input.value.split(",").map(Number) : Number(input.value);
    } else if (type === "any") {
      try { value = JSON.parse(input.value); } catch (e) { value = input.value; }
    } else {
      value = input.value;
    }
    if (JSON.stringify(value) !== input.dataset.default) options[name] = value;
  }
  return options;
}

function showProvenance(table, provenance) {
  table.replaceChildren();
  for (const [k, v] of Object.entries(provenance)) {
    const row = el("tr", { "data-key": k });
    row.append(el("th", {}, k), el("td", {}, v));
    table.appendChild(row);
  }
  table.hidden = false;
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHTML(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// One sample as its modality's gallery_html (serving.sample): {src} a data: URL of its file,
// {name} a name to download it as (NNNNN.suffix, as `genzoo sample -o dir/` names it), {text}
// its JSON value; every substituted value is escaped, the template itself is the plugin's.
function sampleHTML(sample, value, index) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const type = sample.content_type.replace(/\s+/g, "");
  const src = sample.json === "file" ? "data:" + type + ";base64," + value
    : "data:" + type + "," + encodeURIComponent(text);  // a value that is the file's text
  const vars = { src, text, name: String(index).padStart(5, "0") + sample.suffix };
  return sample.html.replace(/\{(src|name|text)\}/g, (_, key) => escapeHTML(vars[key]));
}

function showSamples(grid, sample, values) {
  grid.replaceChildren();
  for (const [i, value] of values.entries()) {
    const item = el("div", { class: "sample", title: "sample " + i, "data-index": String(i) });
    item.innerHTML = sampleHTML(sample, value, i);
    grid.appendChild(item);
  }
}

// Text models with n = 1 stream: server-sent events read from the POST response.
async function streamText(url, body, out) {
  const r = await fetch(url, { method: "POST", body: JSON.stringify(body),
                               headers: headers({ "Content-Type": "application/json" }) });
  if (!r.ok) throw new Error((await r.json()).error || r.statusText);
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let buffer = "", done = null;
  for (;;) {
    const { value, done: finished } = await reader.read();
    if (finished) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (kind === "piece") out.textContent += data.text;
      else if (kind === "error") throw new Error(data.error);
      else if (kind === "done") done = data;
    }
  }
  return done;
}

async function generate(info, card) {
  const form = card.querySelector("form"), error = card.querySelector(".error");
  const grid = card.querySelector(".grid"), text = card.querySelector(".text");
  const busy = card.querySelector(".busy");
  error.hidden = true; busy.hidden = false;
  form.querySelector("button").disabled = true;
  try {
    const body = { n: Number(form.elements.n.value), seed: Number(form.elements.seed.value),
                   options: await formOptions(form), format: "json" };
    const url = "/v1/models/" + encodeURIComponent(info.name) + "/samples";
    let result;
    if (info.serving.stream && body.n === 1) {
      text.textContent = ""; text.hidden = false; grid.replaceChildren();
      result = await streamText(url, Object.assign(body, { stream: true }), text);
    } else {
      const r = await fetch(url, { method: "POST", body: JSON.stringify(body),
                                   headers: headers({ "Content-Type": "application/json" }) });
      result = await r.json();
      if (!r.ok) throw new Error(result.error || r.statusText);
    }
    showSamples(grid, info.serving.sample, result[info.serving.sample.key] || []);
    text.hidden = true;  // the streamed view gives way to the samples themselves
    showProvenance(card.querySelector(".provenance"), result.provenance);
  } catch (e) {
    error.textContent = e.message; error.hidden = false;
  } finally {
    busy.hidden = true;
    form.querySelector("button").disabled = false;
  }
}

function metricsTable(table, metrics) {
  // Two figures a row (name, value, name, value): cards stay narrow.
  const shown = Object.entries(metrics || {}).filter(([, v]) => typeof v === "number");
  if (!shown.length) { table.hidden = true; return; }
  for (let i = 0; i < shown.length; i += 2) {
    const row = el("tr");
    for (const [k, v] of shown.slice(i, i + 2)) {
      // a zero-width space after each underscore: long names wrap at their words
      row.append(el("th", { "data-metric": k }, k.replace(/_/g, "_\u200b")), el("td", {}, fmt(v)));
    }
    table.appendChild(row);
  }
}

function modelCard(info) {
  const card = document.getElementById("model-template").content.firstElementChild.cloneNode(true);
  card.id = "model-" + info.name;
  card.dataset.model = info.name;
  card.querySelector(".name").textContent = info.name;
  card.querySelector(".summary").textContent = info.summary || "";
  card.querySelector(".facts").textContent = [info.family, info.params ? (info.params / 1e6).toFixed(2) + "M params" : null,
    info.license, info.status].filter(Boolean).join(" · ");
  metricsTable(card.querySelector(".metrics"), info.metrics);
  const fields = card.querySelector(".fields");
  optionField(fields, { name: "seed", type: "int", default: 0, min: 0, max: null, help: "sample i depends only on (seed, i)" });
  optionField(fields, { name: "n", type: "int", default: info.serving.default_n, min: 1, max: null, help: "how many samples" });
  for (const input of fields.querySelectorAll("[data-option]")) input.name = input.dataset.option, delete input.dataset.option;
  for (const opt of info.options || []) if (opt.name !== "batch_size") optionField(fields, opt);
  const form = card.querySelector("form");
  if (!String(info.status || "").startsWith("ready")) {
    form.querySelector("button").disabled = true;
    card.querySelector(".error").textContent = "not available: " + info.status;
    card.querySelector(".error").hidden = false;
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); generate(info, card); });
  return card;
}

async function main() {
  const status = document.getElementById("status");
  const health = await (await fetch("/healthz")).json();
  if (health.auth) {
    document.getElementById("auth").hidden = false;
    tokenInput.value = sessionStorage.getItem("genzoo-token") || "";
    tokenInput.addEventListener("change", () => { sessionStorage.setItem("genzoo-token", tokenInput.value); load(); });
  }
  async function load() {
    const root = document.getElementById("models");
    root.replaceChildren();
    try {
      // GET /v1/models answers in OpenAI's list shape: {"object": "list", "data": [{"id", ...}]}
      const models = (await getJSON("/v1/models")).data;
      for (const m of models) {
        root.appendChild(modelCard(await getJSON("/v1/models/" + encodeURIComponent(m.id))));
      }
      status.textContent = models.length + " models";
    } catch (e) {
      status.textContent = "could not list the models: " + e.message;
    }
  }
  await load();
}

main();
