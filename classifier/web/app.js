// The web page: send the chosen X-ray to /<model>/predict?attention=true and show the answer.
// When the server needs an API key (a 401), ask for it once and keep it for this browser session.
"use strict";

const $ = (id) => document.getElementById(id);
const percent = (p) => `${(100 * p).toFixed(1)}\u00a0%`;
const display = (name) => name.replaceAll("_", " "); // other_pneumonia -> other pneumonia
const width = (p) => `${(100 * p).toFixed(2)}%`;
const KEY_STORE = "classifier-api-key"; // sessionStorage: forgotten when the tab closes
const MAIN_MODEL = "pneumonia"; // the model the page opens on, when served
let models = [];
let latestRequest = 0;
let currentFile = null;
let shownImage = null;
let keyWanted = null; // while the key form is shown: a promise resolved when a key is entered
let keyEntered = null;

// fetch, with the API key when there is one; on a 401 ask for a (new) key and send the request again
async function api(url, options = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORE);
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401) return response;
    sessionStorage.removeItem(KEY_STORE);
    await askForKey(key ? "That key was not accepted: enter another." : "This server needs an API key.");
  }
}

function askForKey(message) {
  $("status").textContent = "";
  $("key-note").textContent = `${message} It is kept until this tab is closed.`;
  $("key-form").hidden = false;
  $("api-key").focus();
  keyWanted ??= new Promise((resolve) => {
    keyEntered = resolve;
  });
  return keyWanted;
}

function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("api-key").value = "";
  $("key-form").hidden = true;
  keyWanted = null;
  keyEntered();
}

async function loadModels() {
  try {
    const response = await api("/models");
    models = await response.json();
  } catch {
    models = [];
  }
  const select = $("model");
  for (const model of models) {
    select.append(new Option(`${model.name} (${model.version})`, model.name));
  }
  if (models.some((m) => m.name === MAIN_MODEL)) select.value = MAIN_MODEL;
  describeModel();
  $("model-picker").hidden = models.length < 2;
  if (!models.length) showError("No model is served: train one and restart the server.");
  classify(currentFile);
}

function describeModel() {
  const model = models.find((m) => m.name === $("model").value);
  $("model-classes").textContent = model ? model.classes.map(display).join(" · ") : "";
  $("model").title = model ? model.description : "";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

async function classify(file) {
  currentFile = file; // chosen before the models are known (waiting for a key): classified once they are
  const model = models.find((m) => m.name === $("model").value);
  if (!file || !model) return;
  const request = ++latestRequest; // an answer to an earlier choice that arrives late is not shown
  $("error").hidden = true;
  $("result").hidden = true;
  $("refusal").hidden = true;
  $("status").textContent = `Classifying ${file.name}…`;
  const form = new FormData();
  form.append("image_file", file);
  let response;
  let body;
  try {
    response = await api(`${model.predict_url}?attention=true`, { method: "POST", body: form });
    body = await response.json();
  } catch (error) {
    if (request !== latestRequest) return;
    $("status").textContent = "";
    showError(`The server could not be reached: ${error.message}`);
    return;
  }
  if (request !== latestRequest) return;
  $("status").textContent = "";
  if (body.kind === "not_a_chest_xray") {
    showRefusal(body, file);
    return;
  }
  if (!response.ok) {
    showError(`${file.name}: ${body.detail || response.statusText}`);
    return;
  }
  render(model, body, file);
}

function showRefusal(refusal, file) {
  // a refusal, not a result: no class, no bars, no heat map
  $("refusal-reason").textContent = `${file.name}: ${refusal.detail}`;
  $("refusal-score").textContent =
    `Input check score ${refusal.score.toFixed(3)} (0: unlike any training radiograph, 1: typical of them).`;
  $("refusal").hidden = false;
}

function render(model, answer, file) {
  $("predicted-class").textContent = display(answer.predicted_class);
  $("predicted-class").dataset.class = answer.predicted_class;
  const image = answer.image;
  $("summary").textContent =
    `${answer.model.name} model ${answer.model.version} · ${image.format} ${image.width}×${image.height}` +
    (answer.threshold == null ? "" : ` · threshold ${answer.threshold.toFixed(2)} on ${display(model.positive_class)}`);
  const check = answer.input_check;
  $("check-warning").hidden = !check || check.chest_xray;
  if (check && !check.chest_xray) {
    $("check-warning").textContent = `This may not be a frontal chest X-ray (${check.reason}): read the result with care.`;
  }
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(answer.probabilities)) {
    const row = document.createElement("div");
    row.className = name === answer.predicted_class ? "bar chosen" : "bar";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = display(name);
    const track = document.createElement("div");
    track.className = "track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-label", `${display(name)} probability`);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "1");
    track.setAttribute("aria-valuenow", p.toFixed(4));
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = width(p);
    track.append(fill);
    if (name === model.positive_class && answer.threshold != null) {
      const mark = document.createElement("div");
      mark.className = "threshold";
      mark.title = `threshold ${answer.threshold.toFixed(2)}`;
      mark.style.left = width(answer.threshold);
      track.append(mark);
    }
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(p);
    row.append(label, track, value);
    bars.append(row);
  }
  if (shownImage) URL.revokeObjectURL(shownImage);
  shownImage = URL.createObjectURL(file);
  $("original").src = shownImage;
  $("overlay").src = `data:image/png;base64,${answer.attention_map.overlay_png}`;
  $("result").hidden = false;
}

function setUp() {
  const drop = $("drop");
  $("key-form").addEventListener("submit", useKey);
  $("file").addEventListener("change", (event) => classify(event.target.files[0]));
  $("model").addEventListener("change", () => {
    describeModel();
    classify(currentFile);
  });
  $("original").addEventListener("error", () => $("original").closest("figure").setAttribute("hidden", ""));
  $("original").addEventListener("load", () => $("original").closest("figure").removeAttribute("hidden"));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) classify(file);
  });
  loadModels();
}

setUp();
