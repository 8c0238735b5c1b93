// suno_nb audition, part 1 of 5: the metrics beside each take (DOM helpers: dom.js).
// The kernel concatenates libs.js, dom.js, audition_ui.js, audition_ratings.js, audition_diff.js,
// audition_header.js and audition.js (part 5: the player) into one module (audition.py: MODULES).

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


function maxDurationOf(infos) {
  return Math.max(1e-3, ...infos.map((l) => l.duration || 0));
}

// One shared time axis in the same grid column as the waveforms.  Ticks every 5/10/15/30/60 s,
// as many as fit the column's real width (about one per 60 px), redrawn when it changes.
function rulerRow(total) {
  const ticks = h("div", { class: "snb-ruler" });
  const row = h("div", { class: "snb-rulerrow" }, h("div"), ticks, h("div"));
  let drawn = -1;
  const draw = () => {
    const width = ticks.clientWidth || 600;
    const most = Math.max(2, Math.floor(width / 60));
    const step = [5, 10, 15, 30, 60, 120, 300].find((x) => total / x <= most) || 600;
    if (step === drawn) return;
    drawn = step;
    ticks.dataset.step = String(step);
    ticks.replaceChildren();
    for (let t = 0; t <= total + 1e-6; t += step) {
      const tick = h("span", { class: "snb-tick", text: clock(t).replace(/\.0$/, "") });
      tick.style.left = `${(100 * t) / total}%`;
      ticks.append(tick);
    }
  };
  const watch = new ResizeObserver(() => draw());
  watch.observe(ticks);
  draw();
  return { row, close: () => watch.disconnect() };
}
