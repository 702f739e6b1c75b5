"""The search page at ``/``: plain HTML, CSS and JavaScript served by the app (no build step).

Kept in Python strings so that they install with the package like any module. The page talks to the
same API as apps do (``/v1/collections``, ``/v1/search``, ``/v1/media``); with ``--api-key`` it asks
for the key once and keeps it in a same-site cookie, so thumbnails and sounds load too.
"""

from __future__ import annotations

from html import escape

ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8"
fill="#4f46e5"/><circle cx="12" cy="13" r="6" fill="#fff" opacity=".9"/><circle cx="20" cy="13" r="6" fill="#a5b4fc"
opacity=".85"/><circle cx="16" cy="20" r="6" fill="#c7d2fe" opacity=".8"/></svg>"""

_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mmalign · {collection}</title>
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header class="top">
  <div class="brand"><img src="/static/icon.svg" alt="" width="28" height="28"><span>mmalign</span></div>
  <div class="collection" id="collection">
    <span class="pill" id="collection-name">{collection}</span>
    <span class="meta" id="collection-meta">loading…</span>
  </div>
  <nav><a href="/docs" target="_blank" rel="noopener">API</a>
    <a href="/metrics" target="_blank" rel="noopener">Metrics</a></nav>
</header>

<main>
  <div class="keybar" id="keybar" hidden>
    <span>This service needs an API key.</span>
    <input id="key-input" type="password" autocomplete="off" placeholder="API key">
    <button id="key-save" type="button" class="primary small">Use key</button>
  </div>

  <form id="search" class="panel" autocomplete="off">
    <div class="searchbar">
      <svg class="glass" viewBox="0 0 24 24" aria-hidden="true"><circle cx="11" cy="11" r="7"/>
        <path d="M20 20l-4-4"/></svg>
      <input id="q" name="text" type="search" placeholder="Describe what you are looking for…" aria-label="Text query">
      <button id="go" type="submit" class="primary">Search</button>
    </div>

    <div class="inputs">
      <label class="drop" id="drop" tabindex="0">
        <input id="image-input" type="file" accept="image/png,image/jpeg,image/webp,image/svg+xml" hidden>
        <img id="image-preview" alt="" hidden>
        <span class="drop-text" id="drop-text"><b>Drop an image</b>, paste one, or <u>browse</u></span>
        <button type="button" class="clear" id="image-clear" title="Remove the image" hidden>×</button>
      </label>

      <div class="sound" id="sound">
        <div class="sound-buttons">
          <button type="button" id="record" class="ghost" title="Record from the microphone">
            <span class="dot"></span><span id="record-label">Record</span></button>
          <label class="ghost button" title="Upload a WAV, Ogg, FLAC or MP3 file">Upload sound
            <input id="audio-input" type="file" accept="audio/*,.wav,.ogg,.flac,.mp3" hidden></label>
        </div>
        <div class="sound-current" id="sound-current" hidden>
          <audio id="audio-preview" controls></audio>
          <button type="button" class="clear" id="audio-clear" title="Remove the sound">×</button>
        </div>
        <div class="hint" id="sound-hint">Query by sound: record or upload a clip.</div>
      </div>
    </div>

    <div class="options">
      <div class="option">
        <span class="label">Search in</span>
        <div class="segmented" id="using" role="radiogroup" aria-label="Target vector">
          <button type="button" data-value="fused" class="on"
            title="The fused item vector (all modalities)">fused</button>
          <button type="button" data-value="image" title="Item images">image</button>
          <button type="button" data-value="text" title="Item texts">text</button>
          <button type="button" data-value="audio" title="Item sounds">audio</button>
        </div>
      </div>
      <div class="option">
        <span class="label">Filter</span>
        <select id="filter-key" aria-label="Filter key"><option value="">key…</option></select>
        <select id="filter-value" aria-label="Filter value" hidden></select>
        <input id="filter-text" placeholder="key=value" aria-label="Filter key=value">
        <button type="button" id="filter-add" class="ghost small">Add</button>
      </div>
      <div class="option">
        <span class="label">Results</span>
        <select id="k" aria-label="Number of results"><option>12</option><option selected>24</option>
          <option>48</option><option>96</option></select>
      </div>
      <div class="option">
        <span class="label">Combine</span>
        <select id="fusion" aria-label="How several inputs are combined">
          <option value="rrf">rank fusion</option><option value="mean">mean vector</option></select>
      </div>
    </div>
    <div class="chips" id="chips"></div>
  </form>

  <div class="status" id="status" role="status" aria-live="polite"></div>
  <section class="grid" id="results" aria-label="Results"></section>
  <div class="empty" id="empty">
    <p>Type a description, drop a picture or record a sound.</p>
    <p class="sub">Every result has <b>More like this</b>; sounds play in place.</p>
  </div>
</main>
</body>
</html>
"""


def html(collection: str) -> str:
    return _HTML.replace("{collection}", escape(collection))


STYLE = """
:root {
  --bg: #f6f7fb; --panel: #ffffff; --ink: #1f2430; --muted: #687086; --line: #e3e6ef;
  --accent: #4f46e5; --accent-ink: #ffffff; --accent-soft: #eef0ff; --bad: #b42318; --bad-soft: #fef3f2;
  --radius: 14px; --shadow: 0 1px 2px rgba(16,24,40,.06), 0 4px 16px rgba(16,24,40,.06);
  font-family: ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font-size: 15px; line-height: 1.45; }
.top { display: flex; align-items: center; gap: 18px; padding: 12px 28px; background: var(--panel);
  border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 5; }
.brand { display: flex; align-items: center; gap: 10px; font-weight: 700; font-size: 18px; letter-spacing: -.01em; }
.collection { display: flex; align-items: center; gap: 10px; flex: 1; min-width: 0; }
.pill { background: var(--accent-soft); color: var(--accent); padding: 3px 10px; border-radius: 999px;
  font-weight: 600; font-size: 13px; }
.meta { color: var(--muted); font-size: 13px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
nav a { color: var(--muted); text-decoration: none; margin-left: 16px; font-size: 14px; }
nav a:hover { color: var(--accent); }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 60px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius);
  box-shadow: var(--shadow); padding: 18px; }
.searchbar { display: flex; align-items: center; gap: 10px; border: 1.5px solid var(--line); border-radius: 12px;
  padding: 4px 4px 4px 14px; transition: border-color .15s, box-shadow .15s; }
.searchbar:focus-within { border-color: var(--accent); box-shadow: 0 0 0 4px var(--accent-soft); }
.glass { width: 20px; height: 20px; fill: none; stroke: var(--muted); stroke-width: 2; flex: none; }
#q { flex: 1; border: 0; outline: 0; font-size: 17px; padding: 10px 4px; background: transparent; color: var(--ink); }
button, .button { font: inherit; cursor: pointer; border-radius: 10px; border: 1px solid transparent; }
.primary { background: var(--accent); color: var(--accent-ink); padding: 10px 22px; font-weight: 600; }
.primary:hover { filter: brightness(1.08); }
.primary:disabled { opacity: .6; cursor: progress; }
.ghost { background: var(--panel); border-color: var(--line); color: var(--ink); padding: 8px 14px;
  display: inline-flex; align-items: center; gap: 8px; font-size: 14px; }
.ghost:hover { border-color: var(--accent); color: var(--accent); }
.small { padding: 6px 12px; font-size: 13px; }
.inputs { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-top: 14px; }
.drop { position: relative; display: flex; align-items: center; justify-content: center; gap: 14px; min-height: 92px;
  border: 1.5px dashed #c9cede; border-radius: 12px; color: var(--muted); cursor: pointer; padding: 10px 14px;
  transition: background .15s, border-color .15s; font-size: 14px; }
.drop:hover, .drop.over { border-color: var(--accent); background: var(--accent-soft); color: var(--accent); }
.drop img { max-height: 72px; max-width: 120px; border-radius: 8px; background: #fff; }
.drop-text u { color: var(--accent); }
.clear { position: absolute; top: 6px; right: 8px; background: #fff; border: 1px solid var(--line); width: 26px;
  height: 26px; border-radius: 50%; line-height: 1; color: var(--muted); font-size: 16px; }
.clear:hover { color: var(--bad); border-color: var(--bad); }
.sound { position: relative; border: 1.5px dashed #c9cede; border-radius: 12px; padding: 12px 14px;
  display: flex; flex-direction: column; justify-content: center; gap: 8px; min-height: 92px; }
.sound-buttons { display: flex; gap: 8px; flex-wrap: wrap; }
.sound-current { display: flex; align-items: center; gap: 8px; }
.sound-current audio { height: 34px; flex: 1; }
.sound-current .clear { position: static; flex: none; }
.hint { color: var(--muted); font-size: 13px; }
.dot { width: 10px; height: 10px; border-radius: 50%; background: #e5484d; display: inline-block; }
#record.recording { border-color: #e5484d; color: #e5484d; }
#record.recording .dot { animation: pulse 1s infinite; }
@keyframes pulse { 50% { opacity: .25; } }
.options { display: flex; flex-wrap: wrap; gap: 14px 26px; margin-top: 14px; align-items: center; }
.option { display: flex; align-items: center; gap: 8px; }
.label { color: var(--muted); font-size: 13px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
.segmented { display: inline-flex; background: var(--bg); border: 1px solid var(--line); border-radius: 10px;
  padding: 3px; }
.segmented button { background: transparent; padding: 6px 12px; font-size: 14px; color: var(--muted);
  border-radius: 8px; }
.segmented button.on { background: var(--panel); color: var(--accent); font-weight: 600; box-shadow: var(--shadow); }
.segmented button:disabled { opacity: .4; cursor: not-allowed; }
select, #filter-text, .keybar input { font: inherit; font-size: 14px; padding: 7px 10px; border: 1px solid var(--line);
  border-radius: 9px; background: var(--panel); color: var(--ink); }
#filter-text { width: 150px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 12px; }
.chips:empty { display: none; }
.chip { display: inline-flex; align-items: center; gap: 6px; background: var(--accent-soft); color: var(--accent);
  border-radius: 999px; padding: 4px 6px 4px 12px; font-size: 13px; font-weight: 600; max-width: 100%; }
.chip span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.chip button { background: transparent; color: inherit; width: 22px; height: 22px; border-radius: 50%; padding: 0; }
.chip button:hover { background: rgba(79,70,229,.15); }
.chip.like { background: #ecfdf3; color: #067647; }
.status { margin: 20px 2px 12px; color: var(--muted); font-size: 14px; min-height: 20px; }
.status.error { color: var(--bad); background: var(--bad-soft); border: 1px solid #fecdca; padding: 10px 14px;
  border-radius: 10px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); overflow: hidden;
  display: flex; flex-direction: column; box-shadow: var(--shadow); transition: transform .12s, box-shadow .12s; }
.card:hover { transform: translateY(-2px); box-shadow: 0 2px 4px rgba(16,24,40,.06), 0 12px 28px rgba(16,24,40,.10); }
.thumb { aspect-ratio: 4 / 3; background: linear-gradient(180deg, #fafbff, #f1f3fa); display: flex;
  align-items: center; justify-content: center; position: relative; border-bottom: 1px solid var(--line); }
.thumb img { position: absolute; inset: 0; margin: auto; width: 86%; height: 86%; object-fit: contain; }
.thumb .placeholder { font-size: 40px; font-weight: 700; color: #c7cbe0; }
.rank { position: absolute; top: 8px; left: 8px; background: rgba(31,36,48,.72); color: #fff; font-size: 12px;
  font-weight: 600; border-radius: 999px; padding: 1px 8px; }
.card .body { padding: 10px 12px 12px; display: flex; flex-direction: column; gap: 6px; flex: 1; }
.text { margin: 0; font-weight: 600; font-size: 14px; display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; overflow: hidden; }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11.5px; color: var(--muted);
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.scoreline { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted);
  font-variant-numeric: tabular-nums; }
.bar { flex: 1; height: 5px; background: var(--bg); border-radius: 999px; overflow: hidden; }
.bar i { display: block; height: 100%; background: linear-gradient(90deg, #818cf8, var(--accent));
  border-radius: 999px; }
.tags { display: flex; flex-wrap: wrap; gap: 4px; }
.tag { font-size: 11px; background: var(--bg); color: var(--muted); border-radius: 6px; padding: 1px 7px; }
.tag.modality { background: transparent; border: 1px solid var(--line); }
.card audio { width: 100%; height: 32px; }
.card .more { margin-top: auto; align-self: flex-start; background: transparent; color: var(--accent); padding: 4px 0;
  font-size: 13px; font-weight: 600; }
.card .more:hover { text-decoration: underline; }
.empty { text-align: center; color: var(--muted); padding: 48px 0; }
.empty .sub { font-size: 13px; }
.keybar { display: flex; align-items: center; gap: 10px; margin-bottom: 14px; padding: 10px 14px; border-radius: 12px;
  background: #fffaeb; border: 1px solid #fedf89; }
.skeleton { height: 260px; border-radius: var(--radius);
  background: linear-gradient(90deg, #eef0f6 25%, #f6f7fb 50%, #eef0f6 75%); background-size: 400% 100%;
  animation: shimmer 1.2s infinite; }
@keyframes shimmer { to { background-position: -100% 0; } }
[hidden] { display: none !important; }
@media (max-width: 760px) {
  .inputs { grid-template-columns: 1fr; } .top { padding: 10px 14px; } main { padding: 16px; }
}
"""

SCRIPT = r"""
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { image: null, audio: null, audioName: "", like: [], filters: [], using: "fused", info: null };
  const COOKIE = "mmalign_api_key";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (response.status === 401) {
      $("keybar").hidden = false;
      $("key-input").focus();
      throw new Error("This service needs an API key: enter it above.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.status + " " + response.statusText;
      throw new Error(detail);
    }
    return body;
  }

  // -- collection info ----------------------------------------------------------------------------------
  async function loadInfo() {
    try {
      const [info] = await api("/v1/collections");
      state.info = info;
      const version = info.alias_of ? info.alias_of.split("__").pop() : "";
      $("collection-meta").textContent = [
        info.points.toLocaleString() + " items",
        version ? "version " + version : "",
        "bundle " + (info.served_bundle_id || "?"),
        info.modalities.join(" · "),
      ].filter(Boolean).join("   ·   ");
      if (!info.modalities.includes("audio")) {
        $("sound").classList.add("off");
        $("record").disabled = true;
        $("audio-input").disabled = true;
        $("sound-hint").textContent = "This bundle has no audio encoder.";
      }
      if (!info.modalities.includes("image")) { $("image-input").disabled = true; }
      const keySelect = $("filter-key");
      for (const key of Object.keys(info.filters || {})) {
        const option = el("option", "", key);
        option.value = key;
        keySelect.appendChild(option);
      }
      if (!Object.keys(info.filters || {}).length) keySelect.hidden = true;
    } catch (error) {
      $("collection-meta").textContent = "";
      showError(error);
    }
  }

  // -- inputs -------------------------------------------------------------------------------------------
  function setImage(file) {
    if (!file) return;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.image = file;
    state.imageUrl = URL.createObjectURL(file);
    $("image-preview").src = state.imageUrl;
    $("image-preview").hidden = false;
    $("image-clear").hidden = false;
    $("drop-text").textContent = file.name || "pasted image";
  }
  function clearImage() {
    state.image = null;
    $("image-input").value = "";
    $("image-preview").hidden = true;
    $("image-clear").hidden = true;
    $("drop-text").innerHTML = "<b>Drop an image</b>, paste one, or <u>browse</u>";
  }
  function setAudio(blob, name) {
    state.audio = blob;
    state.audioName = name;
    if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
    state.audioUrl = URL.createObjectURL(blob);
    $("audio-preview").src = state.audioUrl;
    $("sound-current").hidden = false;
    $("sound-hint").textContent = name;
  }
  function clearAudio() {
    state.audio = null;
    $("audio-input").value = "";
    $("sound-current").hidden = true;
    $("audio-preview").removeAttribute("src");
    $("sound-hint").textContent = "Query by sound: record or upload a clip.";
  }

  $("image-input").addEventListener("change", (e) => {
    if (e.target.files[0]) { setImage(e.target.files[0]); search(); }
  });
  $("image-clear").addEventListener("click", (e) => { e.preventDefault(); e.stopPropagation(); clearImage(); });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = [...(e.dataTransfer.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { setImage(file); search(); }
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image-input").click(); }
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { setImage(file); search(); }
  });
  $("audio-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) { setAudio(file, file.name); search(); }
  });
  $("audio-clear").addEventListener("click", clearAudio);

  // -- microphone: recorded, decoded by the browser, sent as 16 kHz mono WAV -----------------------------
  let recorder = null, recordTimer = null;
  const canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  if (!canRecord) {
    $("record").disabled = true;
    $("record").title = "Recording needs a browser with microphone access (https or localhost)";
  }
  function wavFromSamples(samples, rate) {
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const view = new DataView(buffer);
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
    view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([view], { type: "audio/wav" });
  }
  async function toWav(blob) {
    const data = await blob.arrayBuffer();
    const context = new (window.AudioContext || window.webkitAudioContext)();
    const decoded = await context.decodeAudioData(data);
    context.close();
    const rate = 16000;
    const offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * rate)), rate);
    const source = offline.createBufferSource();
    source.buffer = decoded;
    source.connect(offline.destination);
    source.start();
    const rendered = await offline.startRendering();
    return wavFromSamples(rendered.getChannelData(0), rate);
  }
  $("record").addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
      recorder.addEventListener("stop", async () => {
        clearTimeout(recordTimer);
        stream.getTracks().forEach((t) => t.stop());
        $("record").classList.remove("recording");
        $("record-label").textContent = "Record";
        try {
          setAudio(await toWav(new Blob(chunks, { type: recorder.mimeType })), "microphone recording");
          search();
        } catch (error) { showError(new Error("The recording could not be decoded: " + error.message)); }
      });
      recorder.start();
      $("record").classList.add("recording");
      $("record-label").textContent = "Stop (max 10 s)";
      recordTimer = setTimeout(() => recorder.state === "recording" && recorder.stop(), 10000);
    } catch (error) {
      showError(new Error("No microphone: " + error.message));
    }
  });

  // -- options, filters, chips ----------------------------------------------------------------------------
  $("using").addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (!button || button.disabled) return;
    for (const b of $("using").querySelectorAll("button")) b.classList.toggle("on", b === button);
    state.using = button.dataset.value;
    if (hasQuery()) search();
  });
  $("filter-key").addEventListener("change", () => {
    const key = $("filter-key").value, values = $("filter-value");
    values.innerHTML = "";
    values.hidden = !key;
    $("filter-text").hidden = !!key;
    if (!key) return;
    for (const value of state.info.filters[key]) {
      const option = el("option", "", String(value));
      option.value = String(value);
      values.appendChild(option);
    }
  });
  $("filter-add").addEventListener("click", addFilter);
  $("filter-text").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addFilter(); } });
  function addFilter() {
    let key = $("filter-key").value, value = $("filter-value").value;
    if (!key) {
      const text = $("filter-text").value.trim();
      const at = text.indexOf("=");
      if (at < 1) { showError(new Error("A filter is KEY=VALUE, e.g. category=animals")); return; }
      key = text.slice(0, at).trim(); value = text.slice(at + 1).trim();
      $("filter-text").value = "";
    }
    if (!state.filters.some((f) => f.key === key && f.value === value)) state.filters.push({ key, value });
    renderChips();
    if (hasQuery()) search();
  }
  function renderChips() {
    const chips = $("chips");
    chips.innerHTML = "";
    const rerun = () => { renderChips(); if (hasQuery()) search(); };
    state.filters.forEach((f, i) => chips.appendChild(
      chip(f.key + " = " + f.value, "", () => { state.filters.splice(i, 1); rerun(); })));
    state.like.forEach((item, i) => chips.appendChild(
      chip("More like: " + item.label, "like", () => { state.like.splice(i, 1); rerun(); })));
  }
  function chip(label, cls, onRemove) {
    const node = el("span", "chip " + cls);
    node.appendChild(el("span", "", label));
    const x = el("button", "", "×");
    x.type = "button";
    x.title = "Remove";
    x.addEventListener("click", onRemove);
    node.appendChild(x);
    return node;
  }

  // -- search ---------------------------------------------------------------------------------------------
  function hasQuery() { return !!($("q").value.trim() || state.image || state.audio || state.like.length); }
  function showError(error) {
    const status = $("status");
    status.className = "status error";
    status.textContent = error.message;
  }
  let generation = 0;
  async function search() {
    if (!hasQuery()) {
      showError(new Error("Type something, add an image or a sound, or pick “More like this”."));
      return;
    }
    const mine = ++generation;
    const form = new FormData();
    const text = $("q").value.trim();
    if (text) form.append("text", text);
    if (state.image) form.append("image", state.image, state.image.name || "image");
    if (state.audio) form.append("audio", state.audio, state.audio.name || "recording.wav");
    state.like.forEach((item) => form.append("like", item.id));
    state.filters.forEach((f) => form.append("filter", f.key + "=" + f.value));
    form.append("using", state.using);
    form.append("k", $("k").value);
    form.append("fusion", $("fusion").value);
    $("go").disabled = true;
    $("empty").hidden = true;
    const status = $("status");
    status.className = "status";
    status.textContent = "Searching…";
    if (!$("results").children.length) skeleton();
    const started = performance.now();
    try {
      const hits = await api("/v1/search", { method: "POST", body: form });
      if (mine !== generation) return;
      render(hits);
      const inputs = [text && "text", state.image && "image", state.audio && "sound", state.like.length && "item"]
        .filter(Boolean);
      status.textContent = hits.length + " result" + (hits.length === 1 ? "" : "s") + " · " +
        Math.round(performance.now() - started) + " ms · " + inputs.join(" + ") + " → " + state.using;
    } catch (error) {
      if (mine !== generation) return;
      $("results").innerHTML = "";
      showError(error);
    } finally {
      if (mine === generation) $("go").disabled = false;
    }
  }
  function skeleton() {
    const grid = $("results");
    grid.innerHTML = "";
    for (let i = 0; i < 8; i++) grid.appendChild(el("div", "skeleton"));
  }
  function render(hits) {
    const grid = $("results");
    grid.innerHTML = "";
    if (!hits.length) { $("status").textContent = "No results."; return; }
    const top = Math.max(...hits.map((h) => h.score), 1e-9);
    const media = !state.info || state.info.media;
    hits.forEach((hit, index) => grid.appendChild(card(hit, index, top, media)));
  }
  function placeholder(thumb, payload) {
    thumb.querySelector("img") && thumb.querySelector("img").remove();
    const letter = ((payload.text || "?").trim()[0] || "?").toUpperCase();
    thumb.appendChild(el("span", "placeholder", letter));
  }
  function card(hit, index, top, media) {
    const payload = hit.payload || {};
    const node = el("article", "card");
    node.dataset.id = hit.id;
    const thumb = el("div", "thumb");
    thumb.appendChild(el("span", "rank", String(index + 1)));
    if (payload.image && media) {
      const img = el("img");
      img.loading = "lazy";
      img.alt = payload.text || hit.id;
      img.src = "/v1/media/image/" + encodeURIComponent(hit.id);
      img.addEventListener("error", () => placeholder(thumb, payload));
      thumb.appendChild(img);
    } else {
      placeholder(thumb, payload);
    }
    node.appendChild(thumb);
    const body = el("div", "body");
    const scoreline = el("div", "scoreline");
    const bar = el("div", "bar");
    const fill = el("i");
    fill.style.width = Math.max(4, Math.min(100, (hit.score / top) * 100)) + "%";
    bar.appendChild(fill);
    scoreline.appendChild(el("span", "score", hit.score.toFixed(3)));
    scoreline.appendChild(bar);
    body.appendChild(scoreline);
    body.appendChild(el("p", "text", payload.text || "(no text)"));
    const id = el("div", "id", hit.id);
    id.title = hit.id;
    body.appendChild(id);
    const tags = el("div", "tags");
    const metadata = payload.metadata || {};
    const shown = new Set();
    for (const key of Object.keys(metadata).slice(0, 6)) {
      const value = metadata[key];
      if (value === null || typeof value === "object" || String(value).length > 28 || key === "name") continue;
      if (shown.has(String(value)) || shown.size >= 2) continue;
      shown.add(String(value));
      const tag = el("span", "tag", String(value));
      tag.title = key;
      tags.appendChild(tag);
    }
    (payload.modalities || []).forEach((m) => tags.appendChild(el("span", "tag modality", m)));
    body.appendChild(tags);
    if (payload.audio && media) {
      const audio = el("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = "/v1/media/audio/" + encodeURIComponent(hit.id);
      body.appendChild(audio);
    }
    const more = el("button", "more", "More like this →");
    more.type = "button";
    more.addEventListener("click", () => {
      $("q").value = "";
      clearImage();
      clearAudio();
      state.like = [{ id: hit.id, label: payload.text || hit.id }];
      renderChips();
      window.scrollTo({ top: 0, behavior: "smooth" });
      search();
    });
    body.appendChild(more);
    node.appendChild(body);
    return node;
  }

  $("search").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("key-save").addEventListener("click", () => {
    const key = $("key-input").value.trim();
    if (!key) return;
    document.cookie = COOKIE + "=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
    $("keybar").hidden = true;
    $("status").textContent = "";
    loadInfo();
  });
  loadInfo();
})();
"""
