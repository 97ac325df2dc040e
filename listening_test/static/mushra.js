// codecbench MUSHRA page (ITU-R BS.1534-3). No framework, no external requests; all URLs are relative so the
// test also runs under a path prefix behind a reverse proxy.
//
// Audio: every signal of a page plays in sync (one AudioBufferSourceNode each, one GainNode each), only the
// selected one audible. Switching cross-fades with 5 ms raised-cosine ramps; each loop pass fades in and out with
// the same ramps on a master gain. Audio starts only after a click (autoplay policies).
"use strict";

const FADE_S = 0.005;
const MIN_LOOP_S = 0.5;
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "="];
const $ = (id) => document.getElementById(id);

function raisedCosine(from, to, n = 64) {
  const curve = new Float32Array(n);
  for (let i = 0; i < n; i++) curve[i] = from + (to - from) * (0.5 - 0.5 * Math.cos(Math.PI * i / (n - 1)));
  return curve;
}

// ---------------------------------------------------------------------------------------------------------------
// Player: synchronous looping playback with click-free switching
// ---------------------------------------------------------------------------------------------------------------
class Player {
  constructor(ctx) {
    this.ctx = ctx;
    this.master = ctx.createGain();
    this.master.gain.value = 0;
    this.master.connect(ctx.destination);
    this.buffers = {}; this.gains = {}; this.level = {}; this.busyUntil = {};
    this.sources = []; this.active = null; this.playing = false; this.timer = null;
    this.loopStart = 0; this.loopEnd = 0; this.duration = 0; this.iterStart = 0; this.nextStart = 0;
    this.events = [];  // inspected by the browser test
    this.heard = {}; this.plays = {}; this.since = 0;  // behaviour record: seconds heard and starts per signal
  }
  account() {  // add the time since the last change to the audible signal
    const now = this.ctx.currentTime;
    if (this.playing && this.active) this.heard[this.active] = (this.heard[this.active] || 0) + Math.max(0, now - this.since);
    this.since = now;
  }
  async load(signals) {  // signals: {key: url}
    this.stop();
    for (const g of Object.values(this.gains)) g.disconnect();
    this.buffers = {}; this.gains = {}; this.level = {}; this.busyUntil = {}; this.heard = {}; this.plays = {};
    const entries = await Promise.all(Object.entries(signals).map(async ([key, url]) => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`audio ${url}: HTTP ${response.status}`);
      return [key, await this.ctx.decodeAudioData(await response.arrayBuffer())];
    }));
    for (const [key, buffer] of entries) {
      this.buffers[key] = buffer;
      const g = this.ctx.createGain();
      g.gain.value = 0;
      g.connect(this.master);
      this.gains[key] = g; this.level[key] = 0; this.busyUntil[key] = 0;
    }
    this.duration = Math.min(...entries.map(([, b]) => b.duration));
    this.loopStart = 0; this.loopEnd = this.duration; this.active = null;
  }
  select(key) {  // make `key` the audible signal (cross-fade when playing)
    if (key === this.active) return;
    this.account();
    const previous = this.active;
    this.active = key;
    this.plays[key] = (this.plays[key] || 0) + 1;
    if (!this.playing) {
      for (const k of Object.keys(this.gains)) { this.gains[k].gain.value = k === key ? 1 : 0; this.level[k] = k === key ? 1 : 0; }
      return;
    }
    const now = this.ctx.currentTime;
    const at = Math.max(now + 0.001, previous ? this.busyUntil[previous] : 0, this.busyUntil[key]);
    if (previous) this.ramp(previous, 0, at);
    this.ramp(key, 1, at);
    this.events.push({ type: "switch", from: previous, to: key, at, fade_s: FADE_S });
  }
  ramp(key, target, at) {
    const param = this.gains[key].gain;
    param.setValueCurveAtTime(raisedCosine(this.level[key], target), at, FADE_S);
    this.level[key] = target;
    this.busyUntil[key] = at + FADE_S + 0.0005;
  }
  setLoop(start, end) {
    this.loopStart = Math.max(0, Math.min(start, this.duration - MIN_LOOP_S));
    this.loopEnd = Math.min(this.duration, Math.max(end, this.loopStart + MIN_LOOP_S));
    if (this.playing) this.restart();
  }
  restart() {  // loop changed while playing: 5 ms fade-out, then the new region starts right after it, faded in
    this.account();
    const now = this.ctx.currentTime, g = this.master.gain;
    try { g.cancelAndHoldAtTime(now); } catch (e) { g.cancelScheduledValues(now); }
    g.setValueCurveAtTime(raisedCosine(g.value, 0), now + 0.0005, FADE_S);
    for (const s of this.sources) { try { s.src.stop(now + FADE_S + 0.001); } catch (e) { /* already stopped */ } }
    this.sources = [];
    this.nextStart = now + FADE_S + 0.001;
    this.events.push({ type: "loop-change", at: now, fade_s: FADE_S, gap_s: this.nextStart - (now + 0.0005 + FADE_S),
      start_s: this.loopStart, end_s: this.loopEnd });
    this.schedule();
  }
  play() {
    if (this.playing || !this.active) return;
    this.playing = true;
    this.since = this.ctx.currentTime;
    for (const k of Object.keys(this.gains)) {
      this.gains[k].gain.cancelScheduledValues(0);
      this.gains[k].gain.value = k === this.active ? 1 : 0;
      this.level[k] = k === this.active ? 1 : 0; this.busyUntil[k] = 0;
    }
    this.master.gain.cancelScheduledValues(0);
    this.master.gain.value = 0;
    this.nextStart = this.ctx.currentTime + 0.03;
    this.schedule();
    this.timer = setInterval(() => this.schedule(), 50);
  }
  schedule() {  // look-ahead scheduler: queue the next loop pass ~0.3 s before it starts
    while (this.playing && this.nextStart - this.ctx.currentTime < 0.3) {
      const t = this.nextStart, length = this.loopEnd - this.loopStart;
      for (const [key, buffer] of Object.entries(this.buffers)) {
        const src = this.ctx.createBufferSource();
        src.buffer = buffer;
        src.connect(this.gains[key]);
        src.start(t, this.loopStart, length);
        this.sources.push({ src, end: t + length });
      }
      this.master.gain.setValueCurveAtTime(raisedCosine(0, 1), t, FADE_S);
      this.master.gain.setValueCurveAtTime(raisedCosine(1, 0), t + length - FADE_S - 0.0005, FADE_S);
      this.events.push({ type: "loop", at: t, length_s: length, fade_s: FADE_S });
      this.iterStart = t; this.nextStart = t + length;
      const now = this.ctx.currentTime;
      this.sources = this.sources.filter((s) => s.end > now);
    }
  }
  stop() {
    if (!this.playing) return;
    this.account();
    this.playing = false;
    clearInterval(this.timer);
    const now = this.ctx.currentTime;
    const g = this.master.gain;
    try {  // hold wherever the gain is (also inside a loop fade), then a raised-cosine fade to 0
      g.cancelAndHoldAtTime(now);
      g.setValueCurveAtTime(raisedCosine(g.value, 0), now + 0.0005, FADE_S);
    } catch (e) {  // browsers without cancelAndHoldAtTime: a 5 ms exponential fade instead
      g.cancelScheduledValues(now);
      g.setTargetAtTime(0, now, FADE_S / 3);
    }
    for (const s of this.sources) { try { s.src.stop(now + FADE_S + 0.002); } catch (e) { /* already stopped */ } }
    this.sources = [];
    this.events.push({ type: "stop", at: now, fade_s: FADE_S });
  }
  position() {  // playhead in seconds within the excerpt
    if (!this.playing) return this.loopStart;
    const t = this.ctx.currentTime;
    const start = t >= this.iterStart ? this.iterStart : this.iterStart - (this.loopEnd - this.loopStart);
    return Math.min(this.loopEnd, this.loopStart + Math.max(0, t - start));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Test flow
// ---------------------------------------------------------------------------------------------------------------
const state = { test: null, session: null, page: null, ratings: {}, ctx: null, player: null, pageStarted: 0,
  sliderMoves: {}, loopChanges: 0 };
window.mushra = state;  // read by the browser test

function show(id) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== id;
}
function fail(message) {
  $("error-text").textContent = message;
  show("screen-error");
}
async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
  for (let attempt = 0; ; attempt++) {
    let response;
    try { response = await fetch(path, options); } catch (e) { response = null; }
    if (response && response.status < 500) {
      const data = await response.json().catch(() => ({}));
      return { status: response.status, data };
    }
    if (attempt >= 4) throw new Error(`the server did not answer (${response ? "HTTP " + response.status : "network error"}); your grades up to the last page are stored`);
    await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
  }
}
const storageKey = () => `cbmushra:${state.test.bundle_id}`;
const draftKey = (page) => `${storageKey()}:${state.session.participant_id}:draft:${page}`;
// the grades as last stored by the server, so that Previous shows them again (the server never sends grades back)
const sentKey = (page) => `${storageKey()}:${state.session.participant_id}:sent:${page}`;

async function init() {
  const info = await api("GET", "api/test");
  if (info.status !== 200) return fail("This test is not available.");
  state.test = info.data;
  document.title = $("title").textContent = state.test.title;
  const pages = state.test.pages || {};
  if (pages.instructions && pages.instructions.length) {  // configured text: always as text, never as HTML
    $("instructions").replaceChildren(...pages.instructions.map((t) => { const el = document.createElement("p"); el.textContent = t; return el; }));
  }
  if (pages.consent) $("consent-text").textContent = pages.consent;
  const pid = localStorage.getItem(storageKey());
  if (pid) {
    const found = await api("GET", `api/participants/${encodeURIComponent(pid)}`);
    if (found.status === 200) {
      state.session = found.data;
      if (state.session.completion_code) {  // finished earlier: show the code again, never "welcome back"
        updateProgress();
        $("completion-code").textContent = state.session.completion_code;
        return show("screen-done");
      }
      show("screen-resume"); return;
    }
    localStorage.removeItem(storageKey());
  }
  show("screen-welcome");
}

function audioContext() {  // created inside a click handler: autoplay policies allow audio after a gesture
  if (!state.ctx) {
    const rate = state.test.sample_rate_hz;
    try { state.ctx = new AudioContext(rate ? { sampleRate: rate } : {}); } catch (e) { state.ctx = new AudioContext(); }
    state.player = new Player(state.ctx);
    // sample-rate check: the browser would resample silently; say so on every page
    state.rateWarning = rate && state.ctx.sampleRate !== rate
      ? `Your browser plays audio at ${state.ctx.sampleRate} Hz; this test is at ${rate} Hz, so the browser resamples it. ` +
        "If you can, set your sound device to " + rate + " Hz and reload." : "";
  }
  return state.ctx.resume();
}

async function start() {
  await audioContext();
  show("screen-loading");
  const created = await api("POST", "api/participants", { consent: true, sample_rate_hz: state.ctx.sampleRate });
  if (created.status !== 200) return fail(created.data.detail || "Could not start the test.");
  state.session = created.data;
  localStorage.setItem(storageKey(), state.session.participant_id);
  const pages = state.test.pages || {};
  if (pages.calibration) return calibration();
  if (pages.headphone_check) return headphoneCheck();
  await nextPage();
}

// Volume calibration: loop the training page's reference; the participant sets a comfortable level once.
async function calibration() {
  $("calibration-text").textContent = state.test.pages.calibration;
  show("screen-loading");
  const response = await fetch(state.session.pages[0].reference);
  if (!response.ok) return fail(`audio: HTTP ${response.status}`);
  state.calibrationBuffer = await state.ctx.decodeAudioData(await response.arrayBuffer());
  show("screen-calibration");
}
function toggleCalibration() {
  if (state.calibrationSource) { state.calibrationSource.stop(); state.calibrationSource = null; $("calibration-play").textContent = "Play"; return; }
  const src = state.ctx.createBufferSource();
  src.buffer = state.calibrationBuffer; src.loop = true; src.connect(state.ctx.destination); src.start();
  state.calibrationSource = src; $("calibration-play").textContent = "Stop";
}
async function calibrationDone() {
  if (state.calibrationSource) toggleCalibration();
  if (state.test.pages.headphone_check) return headphoneCheck();
  await nextPage();
}

// Headphone screening: Huggins pitch (Milne et al. 2021). Three noise intervals; in one, a narrow band around
// 600 Hz is phase-inverted in the right ear (right = noise - 2 * bandpass(noise)), which is heard as a faint tone
// over headphones only. The participant says which interval had the tone.
const HUGGINS_HZ = 600;
function hugginsInterval(t0, withPitch) {
  const ctx = state.ctx, seconds = 1.0, n = Math.round(ctx.sampleRate * seconds);
  const buffer = ctx.createBuffer(1, n, ctx.sampleRate), x = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) x[i] = (Math.random() * 2 - 1) * 0.15;
  const src = ctx.createBufferSource(); src.buffer = buffer;
  const merger = ctx.createChannelMerger(2), env = ctx.createGain();
  src.connect(merger, 0, 0); src.connect(merger, 0, 1);
  if (withPitch) {
    const band = ctx.createBiquadFilter(); band.type = "bandpass"; band.frequency.value = HUGGINS_HZ; band.Q.value = 16;
    const minus2 = ctx.createGain(); minus2.gain.value = -2;
    src.connect(band); band.connect(minus2); minus2.connect(merger, 0, 1);
  }
  merger.connect(env); env.connect(ctx.destination);
  env.gain.setValueAtTime(0, t0);
  env.gain.linearRampToValueAtTime(1, t0 + 0.02);
  env.gain.setValueAtTime(1, t0 + seconds - 0.02);
  env.gain.linearRampToValueAtTime(0, t0 + seconds);
  src.start(t0); src.stop(t0 + seconds);
}
function headphoneCheck() {
  const cfg = state.test.pages.headphone_check;
  state.huggins = { trial: 0, correct: 0, trials: cfg.trials, pass: cfg.pass, answers: [] };
  nextHugginsTrial();
  show("screen-headphones");
}
function nextHugginsTrial() {
  const h = state.huggins;
  h.target = 1 + Math.floor(Math.random() * 3);
  $("huggins-progress").textContent = `Trial ${h.trial + 1} of ${h.trials}`;
  for (const b of document.querySelectorAll(".huggins-answer")) b.disabled = true;
}
function playHuggins() {
  const h = state.huggins, t = state.ctx.currentTime + 0.1;
  for (let k = 1; k <= 3; k++) hugginsInterval(t + (k - 1) * 1.4, k === h.target);
  setTimeout(() => { for (const b of document.querySelectorAll(".huggins-answer")) b.disabled = false; }, 4000);
}
async function answerHuggins(k) {
  const h = state.huggins;
  h.answers.push({ target: h.target, answer: k });
  if (k === h.target) h.correct += 1;
  h.trial += 1;
  if (h.trial < h.trials) return nextHugginsTrial();
  const passed = h.correct >= h.pass;
  await api("POST", `api/participants/${state.session.participant_id}/screening`,
    { name: "huggins_pitch", correct: h.correct, trials: h.trials, passed });
  if (!passed && state.test.pages.headphone_check.required)
    return fail(`This test needs headphones: ${h.correct} of ${h.trials} headphone checks were right (${h.pass} needed).`);
  await nextPage();
}

async function resume() {
  await audioContext();
  await nextPage();
}

async function nextPage() {  // the first page not submitted yet, or the end
  const done = new Set(state.session.done_pages);
  const page = state.session.pages.find((p) => !done.has(p.index));
  if (!page) { updateProgress(); return finish(); }
  await openPage(page.index);
}

async function openPage(index) {  // any page of the plan: a new one, or a submitted one again (Previous)
  const page = state.session.pages[index];
  state.player.stop();
  updateProgress(index);
  show("screen-loading");
  try {
    const signals = { ref: page.reference };
    for (const s of page.stimuli) signals[s.id] = s.url;
    await state.player.load(signals);
  } catch (e) { return fail(`Could not load the audio: ${e.message}`); }
  state.page = page;
  state.sent = JSON.parse(localStorage.getItem(sentKey(page.index)) || "null");
  state.ratings = JSON.parse(localStorage.getItem(draftKey(page.index)) || "null") || { ...(state.sent || {}) };
  state.pageStarted = performance.now();
  state.sliderMoves = {}; state.loopChanges = 0;
  renderPage();
  $("previous").disabled = index === 0;
  $("rate-warning").hidden = !state.rateWarning;
  $("rate-warning").textContent = state.rateWarning || "";
  show("screen-trial");
}

function updateProgress(index) {
  const total = state.session.pages.length, done = state.session.done_pages.length;
  $("progress").hidden = false;
  $("progress-text").textContent = index === undefined ? (done >= total ? "Finished" : `Page ${done + 1} of ${total}`)
    : `Page ${index + 1} of ${total}`;
  $("progress-bar").style.width = `${(100 * done) / total}%`;
}

function renderPage() {
  const page = state.page, player = state.player;
  $("training-banner").hidden = !page.training;
  const box = $("conditions");
  box.replaceChildren();
  page.stimuli.forEach((s, i) => {
    const col = document.createElement("div");
    col.className = "condition";
    col.dataset.stimulus = s.id;
    const button = document.createElement("button");
    button.className = "signal";
    button.textContent = String(i + 1);
    button.title = `Version ${i + 1} (key ${KEYS[i]})`;
    button.addEventListener("click", () => choose(s.id));
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: 100, step: 1, value: 50 });
    slider.setAttribute("aria-label", `Grade of version ${i + 1}`);
    slider.addEventListener("input", () => rate(s.id, Number(slider.value)));
    slider.addEventListener("pointerdown", (event) => {  // a click anywhere registers, also where the value is already
      if (state.player.active !== s.id) choose(s.id);
      const r = slider.getBoundingClientRect(), vertical = r.height > r.width;
      const f = vertical ? 1 - (event.clientY - r.top) / r.height : (event.clientX - r.left) / r.width;
      const score = Math.round(100 * Math.max(0, Math.min(1, f)));
      slider.value = score;
      rate(s.id, score);
    });
    const value = document.createElement("div");
    value.className = "value";
    col.append(button, slider, value);
    box.append(col);
    const saved = state.ratings[s.id];
    if (saved !== undefined) slider.value = saved.score;
  });
  for (const id of ["loop-start", "loop-end"]) { $(id).max = player.duration.toFixed(2); }
  $("loop-start").value = 0; $("loop-end").value = player.duration.toFixed(2);
  drawWaveform();
  refresh();
}

function drawWaveform() {  // min/max per pixel column of the reference (channel 0)
  const canvas = $("waveform"), buffer = state.player.buffers.ref;
  canvas.width = Math.max(200, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1)));
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  if (!buffer) return;
  const x = buffer.getChannelData(0), step = Math.max(1, Math.floor(x.length / w));
  let peak = 1e-9;
  for (let i = 0; i < x.length; i++) peak = Math.max(peak, Math.abs(x[i]));
  g.fillStyle = "#7f97bd";
  for (let c = 0; c < w; c++) {
    let lo = 0, hi = 0;
    for (let i = c * step; i < Math.min(x.length, (c + 1) * step); i++) { lo = Math.min(lo, x[i]); hi = Math.max(hi, x[i]); }
    const top = h / 2 - (hi / peak) * (h / 2 - 2), bottom = h / 2 - (lo / peak) * (h / 2 - 2);
    g.fillRect(c, top, 1, Math.max(1, bottom - top));
  }
}

function applyLoop(start, end) {
  state.player.setLoop(start, end);
  state.loopChanges += 1;
  $("loop-start").value = state.player.loopStart.toFixed(2);
  $("loop-end").value = state.player.loopEnd.toFixed(2);
  refresh();
}

function waveformDrag() {  // drag on the waveform: loop the dragged region
  const track = document.querySelector(".timeline .track");
  let from = null;
  const at = (event) => {
    const r = track.getBoundingClientRect();
    return Math.max(0, Math.min(1, (event.clientX - r.left) / r.width)) * (state.player.duration || 0);
  };
  track.addEventListener("pointerdown", (event) => { from = at(event); track.setPointerCapture(event.pointerId); });
  track.addEventListener("pointermove", (event) => {
    if (from === null) return;
    const to = at(event);
    $("loop-shade").style.left = `${(100 * Math.min(from, to)) / state.player.duration}%`;
    $("loop-shade").style.width = `${(100 * Math.abs(to - from)) / state.player.duration}%`;
  });
  track.addEventListener("pointerup", (event) => {
    if (from === null) return;
    const to = at(event), a = Math.min(from, to), b = Math.max(from, to);
    from = null;
    if (b - a >= 0.05) applyLoop(a, b); else refresh();
  });
}

function choose(key) {  // select a signal and play it
  state.player.select(key);
  state.player.play();
  refresh();
}

function rate(id, score) {
  state.ratings[id] = { score, moved: true };
  state.sliderMoves[id] = (state.sliderMoves[id] || 0) + 1;
  localStorage.setItem(draftKey(state.page.index), JSON.stringify(state.ratings));
  refresh();
}

function refresh() {
  const player = state.player, page = state.page;
  $("ref-button").classList.toggle("active", player.active === "ref");
  $("play-button").textContent = player.playing ? "Stop" : "Play";
  for (const col of document.querySelectorAll(".condition")) {
    const id = col.dataset.stimulus, rated = state.ratings[id];
    const slider = col.querySelector("input"), button = col.querySelector("button");
    button.classList.toggle("active", player.active === id);
    col.classList.toggle("active-col", player.active === id);
    slider.classList.toggle("unrated", rated === undefined);
    col.classList.toggle("unrated-col", rated === undefined);
    col.querySelector(".value").textContent = rated === undefined ? "\u2013" : String(rated.score);
  }
  const start = Number($("loop-start").value), end = Number($("loop-end").value), d = player.duration || 1;
  $("loop-text").textContent = `${start.toFixed(2)}\u2013${end.toFixed(2)} s of ${d.toFixed(2)} s`;
  $("loop-shade").style.left = `${(100 * start) / d}%`;
  $("loop-shade").style.width = `${(100 * (end - start)) / d}%`;
  const missing = page ? page.stimuli.filter((s) => state.ratings[s.id] === undefined).length : 0;
  const has100 = page && page.stimuli.some((s) => state.ratings[s.id] && state.ratings[s.id].score === 100);
  $("next").disabled = missing > 0 || !has100;
  $("hint").textContent = missing > 0 ? `${missing} version(s) still to grade (listen to a version to grade it)`
    : !has100 ? "At least one version must be graded 100 (the hidden reference)." : "Ready: press Next.";
}

function scoresOf(ratings) {
  return JSON.stringify(state.page.stimuli.map((s) => ratings && ratings[s.id] ? ratings[s.id].score : null));
}

async function afterSubmit(index) {  // back on an earlier page: on to the following one; else the first new one
  const following = state.session.pages[index + 1];
  if (following && state.session.done_pages.includes(following.index)) return openPage(following.index);
  await nextPage();
}

async function previous() {  // the earlier page's grades (kept on this device) can be changed and resubmitted
  if (!state.page || state.page.index === 0) return;
  await openPage(state.page.index - 1);
}

async function submit() {
  if ($("next").disabled) return;
  $("next").disabled = true;
  const page = state.page;
  state.player.stop();
  const revision = state.session.revisions ? state.session.revisions[page.index] || 0 : 0;
  if (revision > 0 && state.sent && scoresOf(state.ratings) === scoresOf(state.sent)) {  // revisited, unchanged
    localStorage.removeItem(draftKey(page.index));
    state.page = null;
    return afterSubmit(page.index);
  }
  const heard = state.player.heard, plays = state.player.plays;
  const body = {
    ratings: page.stimuli.map((s) => ({
      stimulus_id: s.id, score: state.ratings[s.id].score, moved: state.ratings[s.id].moved,
      played_s: heard[s.id] || 0, n_plays: plays[s.id] || 0, slider_moves: state.sliderMoves[s.id] || 0,
    })),
    page_duration_s: (performance.now() - state.pageStarted) / 1000,
    reference_played_s: heard.ref || 0,
    loop_changes: state.loopChanges,
  };
  if (revision > 0) body.replaces_revision = revision;  // a change made after going back: a new revision
  let result;
  try { result = await api("POST", `api/participants/${state.session.participant_id}/pages/${page.index}`, body); }
  catch (e) { $("next").disabled = false; $("hint").textContent = e.message; return; }
  if (result.status === 409) {  // stored earlier with OTHER grades (another tab?): an error, never a success
    localStorage.removeItem(draftKey(page.index));
    return fail(`${result.data.detail || "This page was already submitted with different grades."} These grades ` +
      "were NOT stored (for example another window changed this page). Reload to continue.");
  }
  if (result.status === 200) {
    localStorage.removeItem(draftKey(page.index));
    localStorage.setItem(sentKey(page.index), JSON.stringify(state.ratings));
    if (!state.session.done_pages.includes(page.index)) state.session.done_pages.push(page.index);
    if (state.session.revisions) state.session.revisions[page.index] = result.data.revision;
    state.page = null;
    await afterSubmit(page.index);
  } else {
    $("next").disabled = false;
    $("hint").textContent = `Not accepted: ${JSON.stringify(result.data.detail)}`;
  }
}

function renderQuestions() {
  const form = $("questions");
  form.replaceChildren();
  for (const q of (state.test.pages || {}).questionnaire || []) {
    const label = document.createElement("label");
    label.textContent = q.label;  // escaped: textContent
    label.htmlFor = `q-${q.id}`;
    let field;
    if (q.type === "choice") {
      field = document.createElement("select");
      for (const option of ["", ...q.options]) {
        const o = document.createElement("option");
        o.value = option; o.textContent = option || "\u2013";
        field.append(o);
      }
    } else {
      field = document.createElement("textarea");
      field.rows = 3; field.maxLength = 2000;
    }
    field.id = `q-${q.id}`; field.dataset.question = q.id;
    form.append(label, field);
  }
}

async function sendQuestions() {
  const answers = {};
  for (const field of document.querySelectorAll("#questions [data-question]")) answers[field.dataset.question] = field.value;
  const result = await api("POST", `api/participants/${state.session.participant_id}/questionnaire`, { answers });
  if (result.status !== 200 && result.status !== 409) return fail(JSON.stringify(result.data.detail) || "Could not send the answers.");
  state.questionsDone = true;
  await finish();
}

async function finish() {
  const questions = (state.test.pages || {}).questionnaire || [];
  if (questions.length && !state.questionsDone && !state.session.questionnaire_done) {
    renderQuestions();
    $("progress-text").textContent = "Last step: a few questions";
    return show("screen-questions");
  }
  const result = await api("POST", `api/participants/${state.session.participant_id}/finish`);
  if (result.status !== 200) return fail(result.data.detail || "Could not finish.");
  $("completion-code").textContent = result.data.completion_code;
  show("screen-done");
}

function tick() {
  if (state.player && state.page) {
    const d = state.player.duration || 1;
    $("playhead").style.left = `${(100 * state.player.position()) / d}%`;
  }
  requestAnimationFrame(tick);
}

function onKey(event) {
  if (!state.page || $("screen-trial").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const player = state.player;
  const index = KEYS.indexOf(event.key);
  if (event.key === "r" || event.key === "R") choose("ref");
  else if (index >= 0 && index < state.page.stimuli.length) choose(state.page.stimuli[index].id);
  else if (event.key === "a" || event.key === "A") applyLoop(player.position(), player.loopEnd);
  else if (event.key === "b" || event.key === "B") applyLoop(player.loopStart, player.position());
  else if (event.key === " ") { player.playing ? player.stop() : (player.active || player.select("ref"), player.play()); refresh(); }
  else if ((event.key === "ArrowUp" || event.key === "ArrowDown") && player.active && player.active !== "ref") {
    const step = (event.shiftKey ? 10 : 1) * (event.key === "ArrowUp" ? 1 : -1);
    const current = state.ratings[player.active];
    const base = current ? current.score : 50;
    const score = Math.max(0, Math.min(100, base + step));
    document.querySelector(`.condition[data-stimulus="${player.active}"] input`).value = score;
    rate(player.active, score);
  } else if (event.key === "Enter") submit();
  else return;
  event.preventDefault();
}

$("consent").addEventListener("change", () => { $("start").disabled = !$("consent").checked; });
$("start").addEventListener("click", () => start().catch((e) => fail(e.message)));
$("send-questions").addEventListener("click", (event) => { event.preventDefault(); sendQuestions().catch((e) => fail(e.message)); });
waveformDrag();
$("calibration-play").addEventListener("click", toggleCalibration);
$("calibration-done").addEventListener("click", () => calibrationDone().catch((e) => fail(e.message)));
$("huggins-play").addEventListener("click", playHuggins);
for (const b of document.querySelectorAll(".huggins-answer")) b.addEventListener("click", () => answerHuggins(Number(b.dataset.answer)).catch((e) => fail(e.message)));
$("resume").addEventListener("click", () => resume().catch((e) => fail(e.message)));
$("retry").addEventListener("click", () => location.reload());
$("ref-button").addEventListener("click", () => choose("ref"));
$("play-button").addEventListener("click", () => {
  const player = state.player;
  if (player.playing) player.stop(); else { if (!player.active) player.select("ref"); player.play(); }
  refresh();
});
$("next").addEventListener("click", () => submit());
$("previous").addEventListener("click", () => previous().catch((e) => fail(e.message)));
$("questions-back").addEventListener("click", (event) => {  // from the questionnaire back to the last page
  event.preventDefault();
  openPage(state.session.pages.length - 1).catch((e) => fail(e.message));
});
for (const id of ["loop-start", "loop-end"]) {
  $(id).addEventListener("change", () => {
    applyLoop(Number($("loop-start").value), Number($("loop-end").value));
  });
  $(id).addEventListener("input", refresh);
}
document.addEventListener("keydown", onKey);
requestAnimationFrame(tick);
init().catch((e) => fail(e.message));
