// styleengine playground: builds the form from /ui/info.json, posts to /stylize.json, shows the result.
"use strict";

const base = location.pathname.replace(/\/[^/]*$/, "/");  // "/ui/"
const $ = (id) => document.getElementById(id);
let info = null;

function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) e.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  if (text) e.textContent = text;
  return e;
}

function resolveSchema(prop, defs) {
  if (prop.$ref) return resolveSchema(defs[prop.$ref.split("/").pop()] || {}, defs);
  if (prop.allOf && prop.allOf.length === 1) return { ...resolveSchema(prop.allOf[0], defs), ...prop, allOf: undefined };
  if (prop.anyOf) {
    const real = prop.anyOf.find((p) => p.type !== "null");
    return { ...resolveSchema(real || {}, defs), ...prop, anyOf: undefined, nullable: true };
  }
  return prop;
}

function paramInput(name, prop, required) {
  const label = el("label", { for: "p-" + name }, name);
  if (prop.description) label.append(" ", el("small", {}, "— " + prop.description));
  let input;
  if (prop.enum) {
    input = el("select", { id: "p-" + name, name });
    for (const v of prop.enum) input.append(el("option", { value: v, selected: v === prop.default }, String(v)));
  } else if (prop.type === "boolean") {
    input = el("input", { id: "p-" + name, name, type: "checkbox", checked: prop.default === true });
  } else if (prop.type === "number" || prop.type === "integer") {
    const min = prop.minimum ?? (prop.exclusiveMinimum !== undefined ? prop.exclusiveMinimum : null);
    const max = prop.maximum ?? (prop.exclusiveMaximum !== undefined ? prop.exclusiveMaximum : null);
    input = el("input", {
      id: "p-" + name, name, type: "number", min, max, required,
      step: prop.type === "integer" ? (prop.multipleOf || 1) : (prop.multipleOf || "any"),
      value: prop.default ?? "",
    });
    if (min !== null && max !== null) label.append(" ", el("small", {}, `[${min}, ${max}]`));
  } else {
    input = el("input", { id: "p-" + name, name, type: "text", value: prop.default ?? "", maxlength: prop.maxLength, required });
  }
  input.dataset.kind = prop.type || "string";
  return [label, input];
}

function buildForm() {
  $("style-name").textContent = info.style;
  $("style-description").textContent = info.description || "";
  $("runtime").textContent = "runtime: " + info.runtime;
  document.title = "styleengine: " + info.style;
  const images = $("images");
  for (const f of info.images) {
    const label = el("label", { for: "f-" + f.name }, f.name + (f.required ? "" : " (optional)"));
    label.append(" ", el("small", {}, "— " + f.description + (f.multiple ? ` (up to ${f.max_files})` : "")));
    const input = el("input", { id: "f-" + f.name, name: f.name, type: "file", accept: info.limits.formats.join(","),
                                multiple: f.multiple, required: f.required });
    input.addEventListener("change", showInputs);
    images.append(label, input);
  }
  if (info.texts.length) {
    $("texts").hidden = false;
    for (const t of info.texts) {
      const label = el("label", { for: "t-" + t.name }, t.name + (t.required ? "" : " (optional)"));
      if (t.description) label.append(" ", el("small", {}, "— " + t.description));
      const area = el("textarea", { id: "t-" + t.name, name: t.name, maxlength: t.max_length, required: t.required });
      $("texts").append(label);
      if (t.choices && t.choices.length) {  // known values (e.g. the LoRAs this server loaded): pick one into the field
        const pick = el("select", { id: "c-" + t.name, "aria-label": t.name + " choices" });
        pick.append(el("option", { value: "" }, "— none —"), ...t.choices.map((c) => el("option", { value: c }, c)));
        pick.addEventListener("change", () => { area.value = pick.value; });
        $("texts").append(pick);
      }
      $("texts").append(area);
    }
  }
  const schema = info.params || {};
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  if (!Object.keys(props).length) $("params").append(el("p", {}, "this style has no parameters"));
  for (const [name, raw] of Object.entries(props)) {
    $("params").append(...paramInput(name, resolveSchema(raw, schema.$defs || {}), required.has(name)));
  }
  if (!info.seeded) $("seed-box").querySelector("small").textContent = "(this style is deterministic)";
}

function showInputs() {
  const view = $("input-view");
  view.replaceChildren();
  for (const f of info.images) {
    for (const file of $("f-" + f.name).files) {
      const img = el("img", { alt: f.name + ": " + file.name, title: f.name });
      img.src = URL.createObjectURL(file);
      view.append(img);
    }
  }
}

function fmtMs(v) { return v === undefined || v === null ? "" : `${Number(v).toFixed(1)} ms`; }

function showImage(src) {
  const img = el("img", { id: "result-image", alt: "result" });
  img.src = src;
  $("result").replaceChildren(img);
}

function describeProgress(p) {
  if (!p || p.step === undefined) return "";
  const losses = Object.entries(p.losses || {}).map(([k, v]) => `${k} ${Number(v).toPrecision(4)}`).join(", ");
  return `step ${p.step}${p.total ? " / " + p.total : ""}${p.stage ? " (" + p.stage + ")" : ""}${losses ? ": " + losses : ""}`;
}

// Long jobs (styles whose inference is long work, e.g. Gatys optimisation): submit a task, poll its status
// with the intermediate image, offer Cancel, fetch the result when it completes.
async function runTask(data, t0) {
  const task = info.endpoints.task;
  const sub = await fetch(task + "/submit", { method: "POST", body: data });
  const subBody = await sub.json().catch(() => ({ error: "bad_response", detail: `HTTP ${sub.status}` }));
  if (!sub.ok) throw Object.assign(new Error(subBody.detail || subBody.error), { status: sub.status, body: subBody });
  const id = encodeURIComponent(subBody.task_id);
  const cancelButton = $("cancel");
  cancelButton.hidden = false;
  cancelButton.onclick = () => fetch(`${task}/cancel?task_id=${id}`, { method: "PUT" });
  try {
    for (;;) {
      await new Promise((r) => setTimeout(r, 700));
      const st = await (await fetch(`${task}/status?task_id=${id}&preview=1`)).json();
      $("status").textContent = `${st.state} ${describeProgress(st.progress)}`;
      if (st.preview) showImage(`data:image/png;base64,${st.preview}`);
      if (st.state === "completed") break;
      if (st.state === "failed" || st.state === "canceled") {
        throw Object.assign(new Error(st.error || st.state), { status: st.state, body: { error: st.state, detail: st.error || "the job stopped" } });
      }
    }
    const got = await fetch(`${task}/get?task_id=${id}`);
    if (!got.ok) throw new Error(`HTTP ${got.status}`);
    showImage(URL.createObjectURL(await got.blob()));
    $("status").textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  } finally {
    cancelButton.hidden = true;
  }
}

async function submit(ev) {
  ev.preventDefault();
  $("error").hidden = true;
  const data = new FormData();
  for (const f of info.images) {
    for (const file of $("f-" + f.name).files) data.append(f.name, file, file.name);
  }
  for (const t of info.texts) {
    const v = $("t-" + t.name).value;
    if (v) data.append(t.name, v);
  }
  for (const input of $("params").querySelectorAll("input, select")) {
    if (input.type === "checkbox") data.append(input.name, input.checked ? "true" : "false");
    else if (input.value !== "") data.append(input.name, input.dataset.kind === "string" ? JSON.stringify(input.value) : input.value);
  }
  if ($("seed").value !== "") data.append("seed", $("seed").value);
  $("submit").disabled = true;
  $("status").textContent = "running…";
  const t0 = performance.now();
  try {
    if (info.endpoints.task) {
      await runTask(data, t0);
      return;
    }
    const resp = await fetch("/stylize.json", { method: "POST", body: data, headers: { Accept: "application/json" } });
    const body = await resp.json().catch(() => ({ error: "bad_response", detail: `HTTP ${resp.status}` }));
    const browserMs = performance.now() - t0;
    if (!resp.ok) throw Object.assign(new Error(body.detail || body.error || resp.statusText), { status: resp.status, body });
    showImage(`data:image/${body.format};base64,${body.image}`);
    const t = body.timings || {};
    $("t-total").textContent = fmtMs(t.total_ms);
    $("t-queue").textContent = fmtMs(t.queue_ms);
    $("t-inference").textContent = fmtMs(t.inference_ms);
    $("t-browser").textContent = fmtMs(browserMs);
    $("batch-size").textContent = String(body.batch_size);
    $("seed-used").textContent = body.seed === null ? "—" : String(body.seed);
    $("latency").hidden = false;
    $("status").textContent = `done in ${browserMs.toFixed(0)} ms`;
  } catch (err) {
    $("error").textContent = err.status ? `${err.status} ${err.body.error}: ${err.body.detail}` : String(err);
    $("error").hidden = false;
    $("status").textContent = "failed";
  } finally {
    $("submit").disabled = false;
  }
}

async function main() {
  const resp = await fetch(base + "info.json");
  info = await resp.json();
  buildForm();
  $("form").addEventListener("submit", submit);
  document.body.dataset.ready = "true";
}

main().catch((err) => { $("error").textContent = String(err); $("error").hidden = false; });
