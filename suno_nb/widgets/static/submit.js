// suno_nb submit form: the section picker (anywidget front end).
//
// The original's waveform (wavesurfer.js, drawn from peaks the kernel computed: the browser
// never fetches the audio) with the section as a region to drag or resize (or drag out a new
// one), start/end fields kept in sync both ways, the song's lines beside it (click,
// shift-click or drag over lines to choose them; the region follows), a text area for the
// chosen lines' replacement, and the kernel's live rule checks.  The vendored wavesurfer.js
// builds come from the kernel once per page as message buffers (as for the audition).
// Everything else travels as synced traits.

// loadLibs(model) (static/libs.js) and clock/h/cssVar (static/dom.js): prepended by the kernel.

// Keys JupyterLab may keep: run the cell, leave the widget.
const PASS_KEYS = (e) => (e.key === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey)) || e.key === "Escape";

async function render({ model, el }) {
  const root = h("div", { class: "snb-submit", tabindex: "-1" });
  el.append(root);
  // Keys typed inside the picker are its own: not JupyterLab's command-mode shortcuts
  // ("a", "b", "m", "d d" would insert, convert or delete cells).
  root.addEventListener("keydown", (e) => { if (!PASS_KEYS(e)) e.stopPropagation(); });

  const round = (t) => {
    const k = Math.pow(10, model.get("decimals"));
    return Math.round(t * k) / k;
  };
  const save = (values) => {
    for (const [k, v] of Object.entries(values)) model.set(k, v);
    model.save_changes();
  };

  // --- waveform column ---------------------------------------------------------------------
  const wave = h("div", { class: "snb-wave", "aria-label": "waveform of the original: drag the section" });
  const message = h("div", { class: "snb-wavemsg" });
  const startIn = h("input", { type: "number", class: "snb-start", min: "0", step: "0.01", "aria-label": "section start (s)" });
  const endIn = h("input", { type: "number", class: "snb-end", min: "0", step: "0.01", "aria-label": "section end (s)" });
  const length = h("span", { class: "snb-length" });
  const fields = h(
    "div",
    { class: "snb-fields" },
    h("label", {}, "Start ", startIn, " s"),
    h("label", {}, "End ", endIn, " s"),
    length,
  );
  const info = h("div", { class: "snb-info" });
  const checks = h("div", { class: "snb-checks", role: "status", "aria-live": "polite" });
  const ruler = h("div", { class: "snb-ruler", "aria-hidden": "true" });
  const waveCol = h("div", { class: "snb-wavecol" }, wave, ruler, message, fields, info, checks);

  // --- lyrics pane -------------------------------------------------------------------------
  const linesBox = h("div", { class: "snb-lines", role: "listbox", "aria-multiselectable": "true", "aria-label": "lines of the song" });
  const plan = h("div", { class: "snb-plan" });
  const newText = h("textarea", { class: "snb-newlyrics", rows: "3", placeholder: "the new words for the chosen lines", "aria-label": "new lyrics for the chosen lines" });
  const clearBtn = h("button", { class: "snb-clear", type: "button", title: "choose no lines: the section alone" }, "clear");
  const editBox = h("div", { class: "snb-edit" }, h("div", { class: "snb-edithead" }, h("span", { text: "New lines" }), clearBtn), newText, plan);
  const lyricsCol = h(
    "div",
    { class: "snb-lyrics" },
    h("div", { class: "snb-lyricshead", text: "Lines — click, shift-click or drag to choose" }),
    linesBox,
    editBox,
  );
  root.append(h("div", { class: "snb-body" }, waveCol, lyricsCol));

  // --- the waveform and its region -----------------------------------------------------------
  let ws = null, regions = null, region = null, dragging = false, built = "";
  let WaveSurfer = null, Regions = null;
  const regionColor = () => `color-mix(in srgb, ${cssVar(root, "--jp-brand-color1", "#1976d2")} 28%, transparent)`;
  const waveColor = () => cssVar(root, "--jp-ui-font-color2", "#616161");

  function showFields(a, b) {
    if (document.activeElement !== startIn) startIn.value = a.toFixed(2);
    if (document.activeElement !== endIn) endIn.value = b.toFixed(2);
    length.textContent = b > a ? `${(b - a).toFixed(2)} s` : "";
    root.dataset.start = a.toFixed(2);
    root.dataset.end = b.toFixed(2);
  }

  function placeRegion() {
    const a = model.get("start"), b = model.get("end");
    showFields(a, b);
    if (!regions || dragging) return;
    if (region && (Math.abs(region.start - a) > 1e-6 || Math.abs(region.end - b) > 1e-6)) {
      region.setOptions({ start: a, end: b });
    } else if (!region && b > a) {
      region = regions.addRegion({ start: a, end: b, color: regionColor(), drag: true, resize: true });
      region.element.classList.add("snb-region");
    }
  }

  // A time axis under the waveform, in percent of its width: it stays aligned at any width.
  function drawRuler(duration) {
    ruler.replaceChildren();
    if (!(duration > 0)) return;
    const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => duration / s <= 8) || 600;
    for (let t = 0; t <= duration - 0.08 * duration || t === 0; t += step) {
      const label = `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}`;
      ruler.append(h("span", { class: "snb-tick", style: `left: ${(100 * t) / duration}%`, text: label }));
    }
  }

  function destroyWave() {
    if (ws) ws.destroy();
    ws = regions = region = null;
    wave.replaceChildren();
  }

  function buildWave() {
    const peaks = model.get("peaks") || [];
    const duration = model.get("duration") || 0;
    const key = `${peaks.length}:${duration}:${peaks.slice(0, 16).join(",")}`;
    if (key === built && ws) return placeRegion();
    destroyWave();
    built = "";
    root.dataset.ready = "false";
    drawRuler(peaks.length ? duration : 0);
    if (!WaveSurfer || !peaks.length || !(duration > 0)) return;
    built = key;
    regions = Regions.create();
    ws = WaveSurfer.create({
      container: wave,
      height: 88,
      waveColor: waveColor(),
      progressColor: waveColor(),
      cursorWidth: 0,
      barWidth: 2,
      barGap: 1,
      normalize: false,
      interact: false,
      peaks: [Float32Array.from(peaks, (v) => v / 255)],
      duration,
      plugins: [regions],
    });
    regions.enableDragSelection({ color: regionColor() }); // drag on the waveform: a new section
    regions.on("region-created", (r) => {
      if (r === region) return;
      if (region) region.remove();
      region = r;
      region.element.classList.add("snb-region");
      region.setOptions({ drag: true, resize: true });
      commit(r);
    });
    regions.on("region-update", (r) => { dragging = true; showFields(r.start, r.end); });
    regions.on("region-updated", (r) => commit(r));
    ws.on("decode", () => { region = null; placeRegion(); });
    ws.on("ready", () => { root.dataset.ready = "true"; });
  }

  function commit(r) {
    dragging = false;
    const a = round(Math.max(0, r.start)), b = round(Math.min(model.get("duration") || r.end, r.end));
    showFields(a, b);
    save({ start: a, end: b });
  }

  const typed = () => {
    const a = parseFloat(startIn.value), b = parseFloat(endIn.value);
    if (!Number.isFinite(a) || !Number.isFinite(b)) return;
    save({ start: round(a), end: round(b) });
  };
  startIn.addEventListener("change", typed);
  endIn.addEventListener("change", typed);

  // --- lines ---------------------------------------------------------------------------------
  let anchor = null, sweeping = false;
  function choose(i, extend) {
    if (extend && anchor !== null) {
      const [a, b] = [Math.min(anchor, i), Math.max(anchor, i)];
      save({ selected: Array.from({ length: b - a + 1 }, (_, k) => a + k) });
    } else {
      anchor = i;
      save({ selected: [i] });
    }
  }
  function drawLines() {
    const lines = model.get("lines") || [];
    linesBox.replaceChildren();
    let last = null;
    lines.forEach((line, i) => {
      if (line.section && line.section !== last) linesBox.append(h("div", { class: "snb-section", text: line.section }));
      last = line.section;
      const row = h(
        "div",
        { class: "snb-line", role: "option", tabindex: "0", "data-line": String(i), title: `${clock(line.start_s, 2)} → ${clock(line.end_s, 2)}` },
        h("span", { class: "snb-linetime", text: clock(line.start_s, 2).replace(/\.\d+$/, "") }),
        h("span", { class: "snb-linetext", text: line.text }),
      );
      row.addEventListener("mousedown", (e) => { e.preventDefault(); sweeping = true; choose(i, e.shiftKey); row.focus({ preventScroll: true }); });
      row.addEventListener("mouseenter", () => { if (sweeping) choose(i, true); });
      row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); choose(i, e.shiftKey); } });
      linesBox.append(row);
    });
    lyricsCol.classList.toggle("snb-empty", !lines.length);
    if (!lines.length) linesBox.append(h("div", { class: "snb-nolines", text: "No timed lyrics for this track: drag the section on the waveform." }));
    markLines();
  }
  const endSweep = () => { sweeping = false; };
  document.addEventListener("mouseup", endSweep);
  function markLines() {
    const sel = new Set(model.get("selected") || []), cov = new Set(model.get("covered") || []);
    for (const row of linesBox.querySelectorAll(".snb-line")) {
      const i = Number(row.dataset.line);
      row.classList.toggle("snb-chosen", sel.has(i));
      row.classList.toggle("snb-covered", cov.has(i));
      row.setAttribute("aria-selected", sel.has(i) ? "true" : "false");
    }
    editBox.style.display = sel.size ? "" : "none";
    root.dataset.selected = [...sel].join(",");
  }
  let typing = null;
  newText.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => save({ new_lyrics: newText.value }), 250);
  });
  newText.addEventListener("change", () => { clearTimeout(typing); save({ new_lyrics: newText.value }); });
  clearBtn.addEventListener("click", () => { anchor = null; save({ selected: [] }); });

  // --- state from the kernel -----------------------------------------------------------------
  function showState() {
    const off = model.get("disabled");
    root.classList.toggle("snb-disabled", off);
    startIn.disabled = endIn.disabled = off;
    message.textContent = model.get("message") || "";
    message.style.display = model.get("message") ? "" : "none";
    info.textContent = model.get("info") || "";
    const broken = model.get("checks") || "";
    checks.textContent = broken ? `⚠ ${broken}` : "";
    checks.style.display = broken ? "" : "none";
    root.dataset.ok = broken ? "false" : "true";
    root.dataset.formReady = model.get("ready") ? "true" : "false";
    plan.textContent = model.get("plan") || "";
    if (document.activeElement !== newText) newText.value = model.get("new_lyrics") || "";
  }
  model.on("change:peaks", buildWave);
  model.on("change:duration", buildWave);
  model.on("change:start", placeRegion);
  model.on("change:end", placeRegion);
  model.on("change:lines", drawLines);
  model.on("change:selected", markLines);
  model.on("change:covered", markLines);
  for (const name of ["disabled", "message", "info", "checks", "ready", "plan", "new_lyrics"]) model.on(`change:${name}`, showState);
  showState();
  drawLines();
  showFields(model.get("start"), model.get("end"));

  // Canvas colours cannot use CSS variables: re-read them when JupyterLab switches theme.
  const recolor = () => {
    if (ws) ws.setOptions({ waveColor: waveColor(), progressColor: waveColor() });
    if (region) region.setOptions({ color: regionColor() });
  };
  const themeWatch = new MutationObserver(() => requestAnimationFrame(recolor));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });

  try {
    ({ WaveSurfer, Regions } = await loadLibs(model));
    buildWave();
  } catch (err) {
    message.textContent = `The waveform cannot be drawn: ${err.message || err}`;
    message.style.display = "";
  }

  return () => {
    destroyWave();
    themeWatch.disconnect();
    document.removeEventListener("mouseup", endSweep);
    clearTimeout(typing);
  };
}

export default { render };
