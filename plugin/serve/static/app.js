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
    setUsing(button.dataset.value);
    if (hasQuery()) search();
  });
  function setUsing(value) {
    for (const b of $("using").querySelectorAll("button")) b.classList.toggle("on", b.dataset.value === value);
    state.using = value;
  }
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
    toUrl(text);
    if (text) form.append("text", text);
    if (state.image) form.append("image", state.image, state.image.name || "image");
    if (state.audio) form.append("audio", state.audio, state.audio.name || "recording.wav");
    state.like.forEach((item) => form.append("like", item.id));
    state.filters.forEach((f) => form.append("filter", f.key + "=" + f.value));
    form.append("using", state.using);
    form.append("k", $("k").value);
    form.append("fusion", $("fusion").value);
    if ($("mode").value) form.append("mode", $("mode").value);
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
    loadInfo().then(() => { if (hasQuery()) search(); });
  });

  // -- the URL: /?q=TEXT&using=V&k=N&fusion=F&mode=M&filter=KEY=VALUE&like=ID opens with that search -------
  // (filter and like repeat, as in the API's form). An image or a sound cannot travel in a URL.
  const USING = ["fused", "image", "text", "audio"], FUSION = ["rrf", "mean"], MODE = ["dense", "lexical", "hybrid"];
  function fromUrl() {
    const params = new URLSearchParams(window.location.search);
    const problems = [];
    if (params.get("q")) $("q").value = params.get("q");
    const using = params.get("using");
    if (using !== null) {
      if (USING.includes(using)) setUsing(using);
      else problems.push("using=" + using + " (valid: " + USING.join(", ") + ")");
    }
    const k = params.get("k");
    if (k !== null) {
      if (/^[1-9][0-9]{0,5}$/.test(k)) {
        if (![...$("k").options].some((o) => o.value === k)) $("k").appendChild(el("option", "", k));
        $("k").value = k;
      } else problems.push("k=" + k + " (valid: a whole number from 1)");
    }
    const fusion = params.get("fusion");
    if (fusion !== null) {
      if (FUSION.includes(fusion)) $("fusion").value = fusion;
      else problems.push("fusion=" + fusion + " (valid: " + FUSION.join(", ") + ")");
    }
    const mode = params.get("mode");
    if (mode !== null) {
      if (MODE.includes(mode)) $("mode").value = mode;
      else problems.push("mode=" + mode + " (valid: " + MODE.join(", ") + ")");
    }
    for (const text of params.getAll("filter")) {
      const at = text.indexOf("=");
      if (at < 1) { problems.push("filter=" + text + " (valid: KEY=VALUE, e.g. category=animals)"); continue; }
      state.filters.push({ key: text.slice(0, at).trim(), value: text.slice(at + 1).trim() });
    }
    for (const id of params.getAll("like")) if (id) state.like.push({ id, label: id });
    renderChips();
    if (problems.length) showError(new Error("Not searched: the URL has " + problems.join("; ") + "."));
    else if (hasQuery()) search();
  }
  function toUrl(text) {
    const params = new URLSearchParams();
    if (text) params.set("q", text);
    state.like.forEach((item) => params.append("like", item.id));
    state.filters.forEach((f) => params.append("filter", f.key + "=" + f.value));
    params.set("using", state.using);
    params.set("k", $("k").value);
    if ($("fusion").value !== "rrf") params.set("fusion", $("fusion").value);
    if ($("mode").value) params.set("mode", $("mode").value);
    history.replaceState(null, "", window.location.pathname + "?" + params.toString());
  }
  loadInfo().then(fromUrl);
})();

// -- write jobs (plugin/serve/jobs.py): a read-only panel, shown while the service has jobs to show --------------
(() => {
  const panel = document.getElementById("jobs");
  const list = document.getElementById("jobs-list");
  if (!panel || !list) return;
  function row(job) {
    const item = document.createElement("li");
    const progress = job.progress || {};
    let text = job.kind.replace("_", " ") + " " + job.collection + ": " + job.state;
    if (job.state === "running") text += ", " + progress.stage;
    if (job.error) text += ": " + job.error;
    item.className = "job " + job.state;
    item.title = "job " + job.id + ", sent " + job.created_at;
    item.append(document.createTextNode(text + " "));
    if (job.state === "running" && progress.total) {
      const bar = document.createElement("progress");
      bar.max = progress.total;
      bar.value = progress.done;
      bar.textContent = progress.done + "/" + progress.total;
      item.append(bar, document.createTextNode(" " + progress.done + "/" + progress.total));
    }
    return item;
  }
  async function refresh() {
    let jobs = null;
    try {
      const response = await fetch("/v1/jobs?limit=5", { credentials: "same-origin" });
      if (response.ok) jobs = await response.json();
    } catch (e) {
      jobs = null;
    }
    panel.hidden = !jobs || !jobs.length;
    if (jobs) list.replaceChildren(...jobs.map(row));
    const busy = jobs && jobs.some((job) => job.state === "running" || job.state === "queued");
    setTimeout(refresh, busy ? 1000 : 5000);
  }
  refresh();
})();
