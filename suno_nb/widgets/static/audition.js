// suno_nb audition: an A/B player for replace-section takes (anywidget front end).
//
// The vendored wavesurfer.js ESM builds (static/wavesurfer*.js) are not part of this module:
// the kernel sends them once per page as message buffers, imported here through blob URLs,
// so the widget's synced state (which a notebook may save) stays small and nothing is loaded
// from a CDN.  Audio arrives the same way (custom message "audio" + a buffer) or, for public
// URLs, is streamed.  Nothing here writes audio into the model.

// loadLibs(model): static/libs.js, prepended by the kernel.

const PLAY_EVENT = "suno-nb-audition-play"; // exclusive playback across every audition

function clock(t) {
  t = Math.max(0, t || 0);
  const m = Math.floor(t / 60);
  return `${m}:${(t - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

const METRIC_TIPS = {
  offset_ms: "How much later (+) or earlier the take starts than the original; undone before the other measures.",
  outside_gain_db: "How much louder (+) or quieter the rest of the song came back; 0 = same level.",
  outside_diff_db: "How loud the change outside the section is; below -40 dB the rest is untouched.",
  seam_start_db: "How much more abrupt the entry into the section is than the original at that moment (~0 = smooth).",
  seam_end_db: "How much more abrupt the exit from the section is than the original at that moment (~0 = smooth).",
  section_lufs: "Loudness of the new section (LUFS, ITU-R BS.1770); the original's in brackets.",
};

function fmtNum(v, digits, unit, signed = true) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v < 0 ? `−∞ ${unit}` : `∞ ${unit}`;
  const r = Math.abs(v) < 0.5 * Math.pow(10, -digits) ? 0 : v; // no "+0.0" or "−0.0"
  return `${signed && r > 0 ? "+" : ""}${r.toFixed(digits).replace("-", "−")} ${unit}`;
}

function metricRows(m) {
  if (!m) return [];
  const warn = {
    offset_ms: Math.abs(m.offset_ms) > 2,
    outside_gain_db: Math.abs(m.outside_gain_db) > 0.5,
    outside_diff_db: m.outside_diff_db > -40,
    seam_start_db: m.seam_start_db > 3,
    seam_end_db: m.seam_end_db > 3,
  };
  return [
    ["offset_ms", "offset", fmtNum(m.offset_ms, 1, "ms")],
    ["outside_gain_db", "rest level", fmtNum(m.outside_gain_db, 1, "dB")],
    ["outside_diff_db", "rest changed", fmtNum(m.outside_diff_db, 0, "dB")],
    ["seam_start_db", "seam in", fmtNum(m.seam_start_db, 1, "dB")],
    ["seam_end_db", "seam out", fmtNum(m.seam_end_db, 1, "dB")],
    [
      "section_lufs",
      "loudness",
      `${fmtNum(m.section_lufs, 1, "LUFS", false)} (${fmtNum(m.original_section_lufs, 1, "", false).trim()})`,
    ],
  ].map(([key, label, value]) =>
    h(
      "div",
      { class: `snb-metric${warn[key] ? " snb-warn" : ""}`, title: METRIC_TIPS[key], "data-metric": key },
      h("span", { text: label }),
      h("b", { text: value }),
    ),
  );
}

async function render({ model, el }) {
  let WaveSurfer, Regions;
  try {
    ({ WaveSurfer, Regions } = await loadLibs(model));
  } catch (err) {
    el.append(h("div", { class: "snb-audition snb-message", text: `The audition cannot start: ${err.message || err}` }));
    return;
  }
  const id = Math.random().toString(36).slice(2);
  const root = h("div", { class: "snb-audition", tabindex: "0" });
  el.append(root);

  const st = { lanes: [], active: 0, playing: false, position: 0, urls: [], raf: 0 };
  const header = h("div", { class: "snb-header" });
  const transport = h("div", { class: "snb-transport" });
  const body = h("div", { class: "snb-lanes" });
  const footer = h("div", { class: "snb-footer" });
  root.append(header, transport, body, footer);

  // --- transport ---------------------------------------------------------------------------
  const playBtn = h("button", { class: "snb-play", title: "Play / pause (space)", onclick: () => toggle() }, "▶");
  const timeLabel = h("span", { class: "snb-time", text: "0:00.0" });
  const loopBox = h("input", { type: "checkbox", class: "snb-loop" });
  const preroll = h("input", { type: "number", class: "snb-preroll", min: "0", max: "30", step: "0.5" });
  const levelBox = h("input", { type: "checkbox", class: "snb-level" });
  loopBox.addEventListener("change", () => {
    model.set("loop", loopBox.checked);
    model.save_changes();
    if (loopBox.checked) seek(loopRange()[0]);
  });
  preroll.addEventListener("change", () => {
    const v = Math.max(0, Math.min(30, parseFloat(preroll.value) || 0));
    model.set("preroll", v);
    model.save_changes();
  });
  levelBox.addEventListener("change", () => {
    model.set("level_match", levelBox.checked);
    model.save_changes();
    applyVolumes();
  });
  const switches = h("span", { class: "snb-switches" });
  transport.append(
    playBtn,
    timeLabel,
    switches,
    h("label", { title: "Loop the section with pre-roll before and after it (L)" }, loopBox, " loop section ±"),
    preroll,
    h("span", { text: " s" }),
    h("label", { title: "Play every track at the same loudness in the section (from section LUFS)" }, levelBox, " level-matched"),
  );

  // --- helpers -------------------------------------------------------------------------------
  const section = () => model.get("section") || [];
  const maxDuration = () => Math.max(1e-3, ...st.lanes.map((l) => l.info.duration || 0));
  function loopRange() {
    const [a, b] = section();
    const pre = model.get("preroll") || 0;
    return [Math.max(0, (a || 0) - pre), Math.min(maxDuration(), (b || 0) + pre)];
  }
  const laneTime = (lane, t) => t + (lane.info.offset_s || 0);
  const transportTime = (lane, t) => t - (lane.info.offset_s || 0);
  const activeLane = () => st.lanes[st.active];

  function setPosition(t) {
    st.position = t;
    root.dataset.position = t.toFixed(3);
    timeLabel.textContent = `${clock(t)} / ${clock(maxDuration())}`;
    const pct = (100 * t) / maxDuration();
    for (const lane of st.lanes) lane.head.style.left = `${pct}%`;
  }

  function applyVolumes() {
    const on = model.get("level_match");
    const louds = st.lanes.map((l) => l.info.lufs).filter((v) => Number.isFinite(v));
    const target = louds.length ? Math.min(...louds) : 0;
    for (const lane of st.lanes) {
      const v = on && Number.isFinite(lane.info.lufs) ? Math.pow(10, (target - lane.info.lufs) / 20) : 1;
      lane.volume = Math.max(0, Math.min(1, v));
      if (lane.ws) lane.ws.setVolume(lane.volume);
    }
  }

  function markActive() {
    root.dataset.active = String(st.active);
    st.lanes.forEach((lane, i) => {
      lane.row.classList.toggle("snb-active", i === st.active);
      lane.switchBtn.classList.toggle("snb-active", i === st.active);
    });
  }

  function seek(t) {
    const lane = activeLane();
    if (!lane) return;
    t = Math.max(0, Math.min(t, maxDuration()));
    if (lane.ready) lane.ws.setTime(laneTime(lane, t));
    else lane.pending = t;
    setPosition(t);
  }

  function play() {
    const lane = activeLane();
    if (!lane || !lane.ready) return;
    if (model.get("loop")) {
      const [a, b] = loopRange();
      if (st.position < a || st.position >= b) seek(a);
    }
    document.dispatchEvent(new CustomEvent(PLAY_EVENT, { detail: id }));
    lane.ws.play().catch((err) => showLaneError(lane, `Playback failed: ${err.message || err}`));
    st.playing = true;
    root.dataset.playing = "true";
    playBtn.textContent = "❚❚";
    tick();
  }

  function pause() {
    for (const lane of st.lanes) if (lane.ws) lane.ws.pause();
    st.playing = false;
    root.dataset.playing = "false";
    playBtn.textContent = "▶";
    cancelAnimationFrame(st.raf);
  }

  const toggle = () => (st.playing ? pause() : play());

  function activate(i) {
    if (i < 0 || i >= st.lanes.length || i === st.active) return;
    const cur = activeLane();
    const t = cur && cur.ready ? transportTime(cur, cur.ws.getCurrentTime()) : st.position;
    const was = st.playing;
    if (cur && cur.ws) cur.ws.pause();
    st.active = i;
    markActive();
    seek(t);
    if (was) play();
  }

  function tick() {
    cancelAnimationFrame(st.raf);
    const lane = activeLane();
    if (!st.playing || !lane || !lane.ready) return;
    const t = transportTime(lane, lane.ws.getCurrentTime());
    if (model.get("loop")) {
      const [a, b] = loopRange();
      if (t >= b) {
        seek(a);
        st.raf = requestAnimationFrame(tick);
        return;
      }
    }
    setPosition(t);
    st.raf = requestAnimationFrame(tick);
  }

  function showLaneError(lane, text) {
    lane.status.textContent = text;
    lane.status.classList.add("snb-error");
    lane.row.dataset.error = "true";
  }

  // --- lanes ---------------------------------------------------------------------------------
  function destroyLanes() {
    pause();
    for (const lane of st.lanes) if (lane.ws) lane.ws.destroy();
    for (const url of st.urls) URL.revokeObjectURL(url);
    st.lanes = [];
    st.urls = [];
    body.replaceChildren();
    switches.replaceChildren();
  }

  function ratingControls(lane) {
    const box = h("div", { class: "snb-rating" });
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", {
        class: "snb-star",
        "data-stars": String(n),
        title: `${n} star${n > 1 ? "s" : ""}`,
        onclick: () => model.send({ type: "rate", track_id: lane.info.track_id, stars: n }),
      }, "★"),
    );
    const pick = h("button", {
      class: "snb-pick",
      title: "Keep this take (one per task)",
      onclick: () => model.send({ type: "pick", track_id: lane.info.track_id, picked: !lane.picked }),
    }, "keep");
    const note = h("input", { class: "snb-note", type: "text", placeholder: "note…", maxlength: "500" });
    note.addEventListener("change", () =>
      model.send({ type: "note", track_id: lane.info.track_id, note: note.value }),
    );
    note.addEventListener("keydown", (e) => e.stopPropagation()); // typing is not a shortcut
    box.append(...stars, pick, note);
    lane.stars = stars;
    lane.pickBtn = pick;
    lane.note = note;
    return box;
  }

  function showRatings() {
    const ratings = model.get("ratings") || {};
    for (const lane of st.lanes) {
      if (!lane.stars) continue;
      const r = ratings[lane.info.track_id] || {};
      lane.stars.forEach((b, i) => b.classList.toggle("snb-on", (r.stars || 0) > i));
      lane.picked = !!r.picked;
      lane.pickBtn.classList.toggle("snb-on", lane.picked);
      lane.pickBtn.textContent = lane.picked ? "✓ kept" : "keep";
      if (document.activeElement !== lane.note) lane.note.value = r.note || "";
      lane.row.dataset.stars = String(r.stars || 0);
    }
  }

  function build() {
    destroyLanes();
    const infos = model.get("lanes") || [];
    const [a, b] = section();
    const regionColor = "rgba(253, 216, 53, 0.28)";
    const waveColor = cssVar(root, "--jp-ui-font-color3", "#9e9e9e");
    infos.forEach((info, i) => {
      const head = h("div", { class: "snb-playhead" });
      const wave = h("div", { class: "snb-wave" });
      const waveBox = h("div", { class: "snb-wavebox", style: `width: ${(100 * (info.duration || 0)) / maxDurationOf(infos)}%` }, wave);
      const status = h("div", { class: "snb-status" });
      const label = h("div", { class: "snb-label" },
        h("span", { class: "snb-key", text: String(i + 1) }),
        h("b", { text: info.label }),
        h("div", { class: "snb-sub", text: info.title || "" }),
      );
      label.style.borderLeftColor = info.color;
      const side = h("div", { class: "snb-side" }, ...metricRows(info.metrics));
      const row = h("div", { class: "snb-lane", "data-key": info.key, "data-kind": info.kind }, label, h("div", { class: "snb-wavecol" }, waveBox, head, status), side);
      const lane = { info, row, head, status, wave, ready: false, pending: null, volume: 1 };
      if (info.kind === "take") side.append(ratingControls(lane));
      body.append(row);
      lane.switchBtn = h("button", { class: "snb-switch", title: `${info.label} (key ${i + 1})`, onclick: () => activate(i) }, String(i + 1));
      lane.switchBtn.style.borderBottomColor = info.color;
      switches.append(lane.switchBtn);
      st.lanes.push(lane);
      if (info.error) showLaneError(lane, info.error);

      const regions = Regions.create();
      const peaks = info.peaks && info.peaks.length ? [Float32Array.from(info.peaks, (v) => v / 255)] : undefined;
      // Our own <audio> element, in the page (hidden): one per lane, so the transport can
      // switch between them without reloading anything.
      const media = h("audio", { class: "snb-media", preload: "auto" });
      row.append(media);
      lane.ws = WaveSurfer.create({
        container: wave,
        media,
        height: 56,
        waveColor,
        progressColor: info.color,
        cursorWidth: 0,
        barWidth: 2,
        barGap: 1,
        normalize: false,
        interact: true,
        peaks,
        duration: info.duration || undefined,
        plugins: [regions],
      });
      lane.ws.on("decode", () => {
        regions.clearRegions();
        if (b > a) regions.addRegion({ start: a + (info.offset_s || 0), end: b + (info.offset_s || 0), color: regionColor, drag: false, resize: false });
      });
      lane.ws.on("ready", () => {
        lane.ready = true;
        lane.row.dataset.ready = "true";
        lane.ws.setVolume(lane.volume);
        if (lane.pending !== null && st.lanes[st.active] === lane) lane.ws.setTime(laneTime(lane, lane.pending));
        lane.pending = null;
      });
      lane.ws.on("error", (err) => showLaneError(lane, `This audio cannot be played here: ${err && err.message ? err.message : err}`));
      lane.ws.on("interaction", (t) => {
        const tt = transportTime(lane, t);
        if (st.active !== i) {
          const was = st.playing;
          pause();
          st.active = i;
          markActive();
          seek(tt);
          if (was) play();
        } else {
          setPosition(tt);
        }
        root.focus({ preventScroll: true });
      });
      lane.ws.on("finish", () => { if (st.lanes[st.active] === lane) pause(); });
      if (info.url) {
        lane.ws.load(info.url, peaks, info.duration || undefined);
        lane.status.textContent = "streaming from the service";
      } else if (info.bytes) {
        lane.status.textContent = "loading audio from the kernel…";
        model.send({ type: "audio", key: info.key });
      } else if (!info.error) {
        showLaneError(lane, "No audio URL for this track.");
      }
    });
    if (infos.length) body.prepend(rulerRow(maxDurationOf(infos)));
    st.active = Math.min(st.active, Math.max(0, st.lanes.length - 1));
    markActive();
    applyVolumes();
    showRatings();
    setPosition(0);
  }

  function rulerRow(total) {
    // One shared time axis: ticks every 5/10/15/30/60 s, whichever gives about ten.
    const step = [5, 10, 15, 30, 60, 120].find((x) => total / x <= 12) || 300;
    const ticks = h("div", { class: "snb-ruler" });
    for (let t = 0; t <= total + 1e-6; t += step) {
      const tick = h("span", { class: "snb-tick", text: clock(t).replace(/\.0$/, "") });
      tick.style.left = `${(100 * t) / total}%`;
      ticks.append(tick);
    }
    return h("div", { class: "snb-rulerrow" }, h("div"), ticks, h("div"));
  }

  function maxDurationOf(infos) {
    return Math.max(1e-3, ...infos.map((l) => l.duration || 0));
  }

  function onAudio(msg, buffers) {
    const lane = st.lanes.find((l) => l.info.key === msg.key);
    if (!lane) return;
    if (msg.type === "audio_error") {
      showLaneError(lane, msg.message);
      return;
    }
    const buf = buffers && buffers[0];
    const blob = new Blob([buf], { type: msg.mime || "audio/mpeg" }); // a DataView: exact bytes
    const url = URL.createObjectURL(blob);
    st.urls.push(url);
    lane.status.textContent = "";
    const peaks = lane.info.peaks && lane.info.peaks.length ? [Float32Array.from(lane.info.peaks, (v) => v / 255)] : undefined;
    lane.ws.load(url, peaks, lane.info.duration || undefined);
  }

  function showHeader() {
    const head = model.get("heading") || {};
    const tasks = model.get("tasks") || [];
    header.replaceChildren();
    if (tasks.length > 1) {
      const sel = h("select", { class: "snb-picker" });
      for (const t of tasks) {
        const o = h("option", { value: t.task_id, text: t.label });
        if (t.task_id === model.get("task_id")) o.selected = true;
        sel.append(o);
      }
      sel.addEventListener("change", () => { model.set("task_id", sel.value); model.save_changes(); });
      const step = (d) => () => {
        const i = tasks.findIndex((t) => t.task_id === model.get("task_id"));
        const j = Math.max(0, Math.min(tasks.length - 1, i + d));
        model.set("task_id", tasks[j].task_id);
        model.save_changes();
      };
      header.append(h("div", { class: "snb-batch" },
        h("button", { title: "Previous task", onclick: step(-1) }, "◀"), sel,
        h("button", { title: "Next task", onclick: step(1) }, "▶"),
        h("span", { class: "snb-sub", text: ` ${tasks.length} tasks` })));
    }
    if (head.title) {
      header.append(h("div", { class: "snb-title" }, h("b", { text: head.title }), h("span", { class: "snb-sub", text: head.detail ? `  ${head.detail}` : "" })));
    }
    const msg = model.get("message");
    root.dataset.task = model.get("task_id") || "";
    footer.textContent = model.get("feedback") || "";
    if (msg) header.append(h("div", { class: "snb-message", text: msg }));
    transport.style.display = (model.get("lanes") || []).length ? "" : "none";
  }

  // --- keys, messages, model changes ---------------------------------------------------------
  root.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "INPUT" && e.target.type !== "checkbox") return;
    if (/^[1-9]$/.test(e.key)) {
      activate(Number(e.key) - 1);
    } else if (e.key === " ") {
      toggle();
    } else if (e.key === "l" || e.key === "L") {
      loopBox.click();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation(); // keep JupyterLab's notebook shortcuts out of it
  });
  root.addEventListener("mousedown", () => root.focus({ preventScroll: true }));
  // Canvas colours cannot use CSS variables: re-read them when JupyterLab switches theme.
  const recolor = () => {
    const wave = cssVar(root, "--jp-ui-font-color3", "#9e9e9e");
    for (const lane of st.lanes) if (lane.ws) lane.ws.setOptions({ waveColor: wave });
  };
  const themeWatch = new MutationObserver(() => requestAnimationFrame(recolor));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  const onOtherPlay = (e) => { if (e.detail !== id && st.playing) pause(); };
  document.addEventListener(PLAY_EVENT, onOtherPlay);
  const onMsg = (msg, buffers) => { if (msg && (msg.type === "audio" || msg.type === "audio_error")) onAudio(msg, buffers); };
  model.on("msg:custom", onMsg);
  const sync = () => {
    loopBox.checked = !!model.get("loop");
    preroll.value = String(model.get("preroll"));
    levelBox.checked = !!model.get("level_match");
  };
  model.on("change:lanes", build);
  model.on("change:section", build);
  model.on("change:ratings", showRatings);
  for (const name of ["loop", "preroll", "level_match"]) model.on(`change:${name}`, () => { sync(); applyVolumes(); });
  for (const name of ["heading", "tasks", "message", "feedback", "task_id"]) model.on(`change:${name}`, showHeader);
  sync();
  showHeader();
  build();

  return () => {
    destroyLanes();
    themeWatch.disconnect();
    document.removeEventListener(PLAY_EVENT, onOtherPlay);
    model.off("msg:custom", onMsg);
  };
}

export default { render };
