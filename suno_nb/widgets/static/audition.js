// suno_nb audition: an A/B player for replace-section takes (anywidget front end).
//
// The vendored wavesurfer.js ESM builds (static/wavesurfer*.js) are not part of this module:
// the kernel sends them once per page as message buffers, imported here through blob URLs,
// so the widget's synced state (which a notebook may save) stays small and nothing is loaded
// from a CDN.  Audio arrives the same way (custom message "audio" + a buffer) or, for public
// URLs, is streamed.  Nothing here writes audio into the model.

// loadLibs(model): static/libs.js, prepended by the kernel.

const PLAY_EVENT = "suno-nb-audition-play"; // exclusive playback across every audition
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

  const st = { lanes: [], active: 0, playing: false, position: 0, urls: [], raf: 0, lastTake: 1 };
  const header = h("div", { class: "snb-header" });
  const transport = h("div", { class: "snb-transport" });
  const body = h("div", { class: "snb-lanes" });
  const footer = h("div", { class: "snb-footer" });
  const link = makeLink(model, (why) => {
    root.dataset.connected = "false";
    notices.disconnected(why);
    ratings.enable(false);
    for (const el of root.querySelectorAll("select, .snb-batch button, .snb-diff-toggle")) el.disabled = true;
  });
  const ratings = makeRatings(model, link, () => st.lanes);
  const notices = makeNotices(model, link, (taskId) => link.save("task_id", taskId));
  const diff = makeDiff(link);
  root.dataset.connected = "true";
  root.append(header, notices.box, transport, body, diff.panel, footer);

  // --- transport ---------------------------------------------------------------------------
  const playBtn = h("button", { class: "snb-play", title: "Play / pause (space)", onclick: () => toggle() }, "▶");
  const timeLabel = h("span", { class: "snb-time", text: "0:00.0" });
  const loopBox = h("input", { type: "checkbox", class: "snb-loop" });
  const preroll = h("input", { type: "number", class: "snb-preroll", min: "0", max: "30", step: "0.5" });
  const levelBox = h("input", { type: "checkbox", class: "snb-level" });
  const diffBox = h("input", { type: "checkbox", class: "snb-diff-toggle" });
  loopBox.addEventListener("change", () => {
    link.save("loop", loopBox.checked);
    if (loopBox.checked) seek(loopRange()[0]);
  });
  preroll.addEventListener("change", () => {
    // the box shows the value used: -5 typed becomes 0, "" becomes 0, 99 becomes 30
    const v = Math.max(0, Math.min(30, parseFloat(preroll.value) || 0));
    preroll.value = String(v);
    model.set("preroll", v); // used at once, even when the kernel is gone
    link.save("preroll", v);
  });
  levelBox.addEventListener("change", () => {
    model.set("level_match", levelBox.checked);
    link.save("level_match", levelBox.checked);
    applyVolumes();
  });
  diffBox.addEventListener("change", () => {
    diff.on = diffBox.checked;
    root.dataset.diff = String(diff.on);
    diff.show(activeLane() && activeLane().info);
  });
  const switches = h("span", { class: "snb-switches" });
  transport.append(
    playBtn,
    timeLabel,
    switches,
    h("span", { class: "snb-loopgroup" },
      h("label", { title: "Loop the section with pre-roll before and after it (L)" }, loopBox, " loop section ±"),
      preroll, " s"),
    h("label", { title: "Play every track at the same loudness in the section (from section LUFS)" }, levelBox, " level-matched"),
    h("label", { title: "Show a spectrogram of the active take minus the original around the section (D)" }, diffBox, " difference"),
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

  // Each lane's colours follow its state: the active lane shows its progress in its own
  // colour; the others show none (a stale played part would lie about where they are); a
  // lane still loading or failed is dimmed.
  function paint() {
    const wave = cssVar(root, "--jp-ui-font-color3", "#9e9e9e");
    st.lanes.forEach((lane, i) => {
      const state = lane.failed ? "error" : lane.ready ? "ready" : "loading";
      const progress = i === st.active && state === "ready" ? lane.info.color : wave;
      lane.row.dataset.state = state;
      lane.row.dataset.progress = progress;
      lane.switchBtn.dataset.state = state;
      if (lane.ws && lane.paint !== `${progress}|${wave}`) {
        lane.paint = `${progress}|${wave}`;
        lane.ws.setOptions({ progressColor: progress, waveColor: wave });
      }
    });
  }

  function markActive() {
    root.dataset.active = String(st.active);
    st.lanes.forEach((lane, i) => {
      lane.row.classList.toggle("snb-active", i === st.active);
      lane.switchBtn.classList.toggle("snb-active", i === st.active);
    });
    const cur = activeLane();
    if (cur && cur.info.kind !== "original") st.lastTake = st.active;
    paint();
    diff.show(cur && cur.info);
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
    lane.failed = true;
    paint();
  }

  // --- lanes ---------------------------------------------------------------------------------
  function destroyLanes() {
    pause();
    if (st.ruler) st.ruler.close();
    st.ruler = null;
    for (const lane of st.lanes) if (lane.ws) lane.ws.destroy();
    for (const url of st.urls) URL.revokeObjectURL(url);
    st.lanes = [];
    st.urls = [];
    body.replaceChildren();
    switches.replaceChildren();
  }

  function build() {
    const keepKey = st.task === model.get("task_id") && activeLane() ? activeLane().info.key : null;
    const keepAt = keepKey ? st.position : 0;
    st.task = model.get("task_id");
    root.dataset.section = section().join(","); // what the lanes show (task_id: what is picked)
    destroyLanes();
    diff.reset();
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
      if (info.kind === "take") side.append(ratings.controls(lane));
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
        paint();
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
        link.send({ type: "audio", key: info.key });
      } else if (!info.error) {
        showLaneError(lane, "No audio URL for this track.");
      }
    });
    if (infos.length) {
      const ruler = rulerRow(maxDurationOf(infos));
      body.prepend(ruler.row);
      st.ruler = ruler;
    }
    const kept = st.lanes.findIndex((l) => l.info.key === keepKey);
    st.active = kept >= 0 ? kept : Math.min(st.active, Math.max(0, st.lanes.length - 1));
    markActive();
    applyVolumes();
    ratings.show();
    ratings.enable(model.get("live") !== false && !link.dead);
    seek(keepAt);
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

  const { showHeader, showLive, onFresh } = makeHeader(model, link, {
    root, header, footer, transport, notices, ratings, busy: () => st.playing || root.contains(document.activeElement),
  });

  // --- keys ----------------------------------------------------------------------------------
  // Every key pressed inside the player stays inside it (JupyterLab's command mode would
  // otherwise insert cells on a/b, turn the cell into Markdown on m, delete it on d d), except
  // Escape and Shift/Ctrl+Enter, which keep their notebook meaning.
  const PASS_KEYS = (e) => (e.key === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey)) || e.key === "Escape";
  const laneOf = (kind) => st.lanes.findIndex((l) => l.info.kind === kind);
  const PLAYER_KEYS = {
    " ": () => toggle(),
    l: () => loopBox.click(),
    a: () => activate(laneOf("original")), // A/B: the original ...
    b: () => activate(st.lastTake < st.lanes.length ? st.lastTake : laneOf("take")), // ... and back
    m: () => activate(laneOf("master")),
    d: () => diffBox.click(),
    ArrowLeft: (e) => seek(st.position - (e.shiftKey ? 1 : 5)),
    ArrowRight: (e) => seek(st.position + (e.shiftKey ? 1 : 5)),
    ArrowUp: () => activate(st.active - 1),
    ArrowDown: () => activate(st.active + 1),
    Home: () => seek(section().length ? loopRange()[0] : 0),
  };
  root.addEventListener("keydown", (e) => {
    if (PASS_KEYS(e)) return;
    e.stopPropagation(); // never to the notebook
    const t = e.target;
    const typing = t && ((t.tagName === "INPUT" && t.type !== "checkbox") || t.tagName === "SELECT");
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return; // the control's own keys
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (/^[1-9]$/.test(key)) activate(Number(key) - 1);
    else if (PLAYER_KEYS[key]) PLAYER_KEYS[key](e);
    else return;
    e.preventDefault();
  });
  root.addEventListener("mousedown", () => root.focus({ preventScroll: true }));
  // Canvas colours cannot use CSS variables: re-read them when JupyterLab switches theme.
  const themeWatch = new MutationObserver(() => requestAnimationFrame(paint));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  const onOtherPlay = (e) => { if (e.detail !== id && st.playing) pause(); };
  document.addEventListener(PLAY_EVENT, onOtherPlay);
  const onMsg = (msg, buffers) => {
    if (!msg) return;
    if (msg.type === "audio" || msg.type === "audio_error") onAudio(msg, buffers);
    else if (msg.type === "diff" || msg.type === "diff_error") diff.onMessage(msg, buffers);
  };
  model.on("msg:custom", onMsg);
  const sync = () => {
    loopBox.checked = !!model.get("loop");
    preroll.value = String(model.get("preroll"));
    levelBox.checked = !!model.get("level_match");
  };
  model.on("change:lanes", build);
  model.on("change:section", build);
  model.on("change:ratings", ratings.show);
  model.on("change:live", showLive);
  model.on("change:offline", showLive);
  model.on("change:fresh", onFresh);
  for (const name of ["loop", "preroll", "level_match"]) model.on(`change:${name}`, () => { sync(); applyVolumes(); });
  for (const name of ["heading", "tasks", "message", "feedback", "task_id"]) model.on(`change:${name}`, showHeader);
  sync();
  showHeader();
  build();
  showLive();

  return () => {
    destroyLanes();
    diff.reset();
    link.close();
    themeWatch.disconnect();
    document.removeEventListener(PLAY_EVENT, onOtherPlay);
    model.off("msg:custom", onMsg);
  };
}

export default { render };
