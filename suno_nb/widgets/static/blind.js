// suno_nb blind test: ABX trials and blind ratings (anywidget front end).
//
// The page never knows which track a slot holds: it asks the kernel for the audio of a slot
// ("A", "B", "X", "1"...) of the current trial and gets the bytes as a message buffer: the
// same window of every track (the section with its pre-roll), equally long, level-matched.
// No waveform is drawn (its shape would tell the tracks apart): one looping <audio> element
// per slot, one transport that switches slots at the same position.

const PLAY_EVENT = "suno-nb-audition-play"; // exclusive playback across every audition

function render({ model, el }) {
  const id = Math.random().toString(36).slice(2);
  const root = h("div", { class: "snb-blind", tabindex: "0" });
  el.append(root);
  const header = h("div", { class: "snb-header" });
  const banner = h("div", { class: "snb-disabled" });
  const setup = h("div", { class: "snb-setup" });
  const stage = h("div", { class: "snb-stage" });
  const done = h("div", { class: "snb-results" });
  const footer = h("div", { class: "snb-footer" });
  root.append(header, banner, stage, done, setup, footer);
  const st = { players: {}, urls: [], active: null, playing: false, raf: 0, trial: 0 };

  const slotName = (s) => (model.get("mode") === "abx" ? s : `Take ? ${s}`);
  const locked = () => !!model.get("disabled");

  // --- the transport: times are the song's (the window starts at span[0]) ---------------------
  const spanStart = () => (model.get("span") || [0])[0] || 0;
  const spanLength = () => {
    const s = model.get("span") || [];
    return s.length === 2 ? s[1] - s[0] : 0;
  };
  const player = () => st.players[st.active];
  function position() {
    const p = player();
    return p ? p.audio.currentTime : 0;
  }
  function showTime(t) {
    const song = spanStart() + t;
    root.dataset.position = song.toFixed(3);
    if (st.time) st.time.textContent = clock(song);
    const len = spanLength() || (player() && player().audio.duration) || 0;
    if (st.head && len) st.head.style.left = `${Math.min(100, (100 * t) / len)}%`;
  }
  function play() {
    const p = player();
    if (!p || !p.ready) return;
    document.dispatchEvent(new CustomEvent(PLAY_EVENT, { detail: id }));
    p.audio.play().catch((err) => say(`Playback failed: ${err.message || err}`));
    st.playing = true;
    root.dataset.playing = "true";
    if (st.playBtn) st.playBtn.textContent = "❚❚";
    tick();
  }
  function pause() {
    for (const p of Object.values(st.players)) p.audio.pause();
    st.playing = false;
    root.dataset.playing = "false";
    if (st.playBtn) st.playBtn.textContent = "▶";
    cancelAnimationFrame(st.raf);
  }
  const toggle = () => (st.playing ? pause() : play());
  function tick() {
    cancelAnimationFrame(st.raf);
    const p = player();
    if (!st.playing || !p) return;
    showTime(p.audio.currentTime);
    st.raf = requestAnimationFrame(tick);
  }
  function activate(slot) {
    if (!(slot in st.players) || slot === st.active) return;
    const t = position();
    const was = st.playing;
    if (player()) player().audio.pause();
    st.active = slot;
    root.dataset.active = slot;
    for (const [s, p] of Object.entries(st.players)) p.button.classList.toggle("snb-active", s === slot);
    const p = player();
    if (p.ready) p.audio.currentTime = t; // same position: switching keeps the playhead
    else p.pending = t;
    showTime(t);
    if (was) play();
  }

  function dropPlayers() {
    pause();
    for (const p of Object.values(st.players)) p.audio.removeAttribute("src");
    for (const url of st.urls) URL.revokeObjectURL(url);
    st.players = {};
    st.urls = [];
    st.active = null;
  }

  function say(text) {
    footer.textContent = text;
  }

  // A click that saves something: only the kernel's reply says "saved".  If the kernel is
  // gone (restarted, shut down) the send fails or nothing comes back: say so, never "saved".
  const NOT_SAVED = "The kernel did not answer: nothing was saved. Is it running? Re-run this cell.";
  function act(msg) {
    clearTimeout(st.waiting);
    try {
      model.send(msg);
    } catch (err) {
      say(NOT_SAVED);
      root.dataset.disconnected = "true";
      return;
    }
    say("Sending…");
    st.waiting = setTimeout(() => {
      st.waiting = 0;
      say(NOT_SAVED);
      root.dataset.disconnected = "true";
    }, 10000);
  }
  function replied() {
    if (!st.waiting) return;
    clearTimeout(st.waiting);
    st.waiting = 0;
    delete root.dataset.disconnected;
    say(model.get("feedback") || "");
  }

  // --- a trial ------------------------------------------------------------------------------
  function buildTrial() {
    dropPlayers();
    stage.replaceChildren();
    const phase = model.get("phase");
    const slots = model.get("slots") || [];
    st.trial = model.get("trial");
    if (!(phase === "trial" || phase === "answered") || !slots.length) return;
    const abx = model.get("mode") === "abx";
    const title = h("div", { class: "snb-trial", text: `Trial ${st.trial} of ${model.get("trials")}` + (abx ? " · ABX: is X the same as A or as B?" : " · blind rating: which take is which is hidden") });
    st.playBtn = h("button", { class: "snb-play", title: "Play / pause (space)", onclick: () => toggle() }, "▶");
    st.time = h("span", { class: "snb-time", text: "0:00.0" });
    const switches = h("span", { class: "snb-switches" });
    const rows = h("div", { class: "snb-slots" });
    const media = h("div", { class: "snb-mediabox" }); // the hidden <audio> elements
    st.head = h("div", { class: "snb-head" });
    const bar = h("div", { class: "snb-bar", title: "The section with its pre-roll and post-roll; click to go there" }, sectionMark(), st.head);
    bar.addEventListener("click", (e) => {
      const p = player();
      const len = spanLength() || (p && p.audio.duration) || 0;
      if (!p || !p.ready || !len) return;
      const r = bar.getBoundingClientRect();
      p.audio.currentTime = Math.max(0, Math.min(len, (len * (e.clientX - r.left)) / r.width));
      showTime(p.audio.currentTime);
    });
    for (const slot of slots) {
      const audio = h("audio", { class: "snb-media", preload: "auto", loop: "", "data-slot": slot });
      const button = h("button", { class: "snb-switch", "data-slot": slot, title: `Listen to ${slotName(slot)} (key ${slot.toLowerCase()})`, onclick: () => { activate(slot); if (!st.playing) play(); } }, slotName(slot));
      const p = { audio, button, ready: false, pending: null };
      audio.addEventListener("canplay", () => {
        if (p.ready) return;
        p.ready = true;
        button.dataset.ready = "true";
        if (p.pending !== null) audio.currentTime = p.pending;
        p.pending = null;
        if (Object.values(st.players).every((q) => q.ready)) root.dataset.ready = "true";
      });
      audio.addEventListener("error", () => say(`${slotName(slot)} cannot be played here.`));
      st.players[slot] = p;
      switches.append(button);
      if (!abx) rows.append(starRow(slot));
      media.append(audio);
      model.send({ type: "audio", slot, trial: st.trial });
    }
    stage.append(title, h("div", { class: "snb-transport" }, st.playBtn, st.time, switches), bar, media);
    if (abx) {
      const answer = (x) => h("button", { class: "snb-answer", "data-x": x, onclick: () => act({ type: "answer", x, trial: st.trial }) }, `X is ${x}`);
      stage.append(h("div", { class: "snb-answers" }, answer("A"), answer("B")));
    } else {
      stage.append(rows);
    }
    stage.append(h("div", { class: "snb-after" }));
    activate(slots[0]);
    showStage();
  }

  function sectionMark() {
    const [a, b] = model.get("section") || [];
    const len = spanLength();
    const mark = h("div", { class: "snb-section" });
    if (!len || !(b > a)) return mark;
    mark.style.left = `${(100 * (a - spanStart())) / len}%`;
    mark.style.width = `${(100 * (b - a)) / len}%`;
    return mark;
  }

  function starRow(slot) {
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", { class: "snb-star", "data-stars": String(n), title: `${n} star${n > 1 ? "s" : ""}`, onclick: () => act({ type: "rate", slot, stars: n, trial: st.trial }) }, "★"),
    );
    return h("div", { class: "snb-rate", "data-slot": slot }, h("b", { text: `Take ? ${slot}` }), ...stars);
  }

  function showStage() {
    const phase = model.get("phase");
    const given = model.get("stars") || {};
    for (const row of stage.querySelectorAll(".snb-rate")) {
      const n = given[row.dataset.slot] || 0;
      row.dataset.stars = String(n);
      row.querySelectorAll(".snb-star").forEach((b, i) => b.classList.toggle("snb-on", n > i));
    }
    const answer = model.get("answer");
    for (const b of stage.querySelectorAll(".snb-answer")) b.classList.toggle("snb-on", b.dataset.x === answer);
    for (const b of stage.querySelectorAll(".snb-answer, .snb-star")) b.disabled = locked() || phase !== "trial";
    const after = stage.querySelector(".snb-after");
    if (!after) return;
    after.replaceChildren();
    if (phase !== "answered") return;
    const result = model.get("result") || {};
    if (result.trial === st.trial) {
      after.append(h("div", { class: "snb-result", text: describe(result) }));
    } else {
      after.append(h("button", { class: "snb-reveal", title: "Show which was which in this trial", onclick: () => act({ type: "reveal" }) }, "Reveal this trial"));
    }
    after.append(h("button", { class: "snb-next", onclick: () => act({ type: "next" }) }, "Next trial ▶"));
    for (const b of after.querySelectorAll("button")) b.disabled = locked();
  }

  function describe(r) {
    if (r.order) return `Trial ${r.trial}: shown as ${r.order.map((l, i) => `${i + 1} = ${l}`).join(", ")}.`;
    return `Trial ${r.trial}: A was ${r.A}, B was ${r.B}; X was ${r.x} (${r[r.x]}). You said ${r.answer}: ${r.correct ? "right" : "wrong"}.`;
  }

  // --- choosing, and the end of a session ---------------------------------------------------------
  function showSetup() {
    const phase = model.get("phase");
    setup.replaceChildren();
    done.replaceChildren();
    root.dataset.phase = phase;
    if (phase === "done") {
      const list = h("ol", { class: "snb-list" }, ...(model.get("results") || []).map((r) => h("li", { text: describe(r) })));
      done.append(h("div", { class: "snb-score", text: model.get("score") || "" }), list);
    }
    const cands = model.get("candidates") || [];
    if (!(phase === "setup" || phase === "done") || !cands.length) return;
    const mode = h("select", { class: "snb-mode" },
      h("option", { value: "abx", text: "ABX: can I hear a difference?" }),
      h("option", { value: "rating", text: "Blind rating: stars without names" }));
    mode.value = model.get("mode");
    mode.addEventListener("change", () => { model.set("mode", mode.value); model.save_changes(); });
    const pick = (i) => {
      const sel = h("select", { class: `snb-pair snb-pair${i + 1}` }, ...cands.map((c) => h("option", { value: c.key, text: c.label })));
      sel.value = (model.get("pair") || [])[i] || "";
      sel.addEventListener("change", () => {
        const pair = [...(model.get("pair") || ["", ""])];
        pair[i] = sel.value;
        model.set("pair", pair);
        model.save_changes();
      });
      return sel;
    };
    const trials = h("input", { class: "snb-trials", type: "number", min: "1", max: "100", value: String(model.get("trials")) });
    trials.addEventListener("change", () => {
      model.set("trials", Math.max(1, Math.min(100, parseInt(trials.value, 10) || 10)));
      model.save_changes();
    });
    trials.addEventListener("keydown", (e) => e.stopPropagation()); // typing is not a shortcut
    const start = h("button", { class: "snb-start", onclick: () => act({ type: "start" }) }, phase === "done" ? "New session" : "Start");
    start.disabled = locked();
    const row = h("div", { class: "snb-choose" }, mode);
    if (model.get("mode") === "abx") row.append(h("span", { text: " compare " }), pick(0), h("span", { text: " with " }), pick(1));
    row.append(h("span", { text: " · trials " }), trials, start);
    setup.append(row);
  }

  function showHeader() {
    header.replaceChildren();
    const title = model.get("heading");
    const [a, b] = model.get("section") || [];
    const level = model.get("level_match") ? ", levels matched" : "";
    if (title) header.append(h("b", { text: `Blind test · ${title}` }), h("span", { class: "snb-sub", text: b ? `  section ${clock(a)}–${clock(b)}, ±${model.get("preroll")} s${level}` : "" }));
    const msg = model.get("message");
    if (msg) header.append(h("div", { class: "snb-message", text: msg }));
    const why = model.get("disabled");
    banner.textContent = why || "";
    banner.style.display = why ? "" : "none";
    root.dataset.disabled = why ? "true" : "false";
    say(model.get("feedback") || "");
  }

  // --- audio, keys, model changes -----------------------------------------------------------------
  function onMsg(msg, buffers) {
    if (!msg || (msg.type !== "audio" && msg.type !== "audio_error") || msg.trial !== st.trial) return;
    const p = st.players[msg.slot];
    if (!p) return;
    if (msg.type === "audio_error") {
      say(msg.message);
      return;
    }
    const url = URL.createObjectURL(new Blob([buffers[0]], { type: msg.mime || "audio/mpeg" }));
    st.urls.push(url);
    p.audio.src = url;
  }
  model.on("msg:custom", onMsg);

  root.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
    if (key === " ") toggle();
    else if (key in st.players) activate(key);
    else if (e.key.length !== 1) return; // Tab, arrows, Escape: the page's
    // every other printable key stays here too: JupyterLab's command-mode shortcuts
    // (a, b, m, d d...) must not act on the notebook while the player has focus
    e.preventDefault();
    e.stopPropagation();
  });
  root.addEventListener("mousedown", () => root.focus({ preventScroll: true }));
  const onOtherPlay = (e) => { if (e.detail !== id && st.playing) pause(); };
  document.addEventListener(PLAY_EVENT, onOtherPlay);

  const onTrial = () => { if (model.get("trial") !== st.trial || !Object.keys(st.players).length) buildTrial(); else showStage(); };
  model.on("change:trial", onTrial);
  model.on("change:slots", buildTrial);
  model.on("change:phase", () => { if (!["trial", "answered"].includes(model.get("phase"))) { dropPlayers(); stage.replaceChildren(); } else onTrial(); showSetup(); });
  for (const name of ["feedback", "phase", "trial", "stars", "answer", "result", "disabled"]) model.on(`change:${name}`, replied);
  for (const name of ["stars", "answer", "result"]) model.on(`change:${name}`, showStage);
  for (const name of ["candidates", "pair", "mode", "trials", "results", "score"]) model.on(`change:${name}`, showSetup);
  for (const name of ["heading", "message", "feedback", "disabled", "section"]) model.on(`change:${name}`, () => { showHeader(); showStage(); showSetup(); });
  showHeader();
  showSetup();
  buildTrial();

  return () => {
    clearTimeout(st.waiting);
    dropPlayers();
    document.removeEventListener(PLAY_EVENT, onOtherPlay);
    model.off("msg:custom", onMsg);
  };
}

export default { render };
