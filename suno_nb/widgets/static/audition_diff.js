// suno_nb audition, part 3 of 5: the difference view.  A spectrogram of the active take (or
// the master) minus the original, aligned by the measured offset, around the section and its
// seams; computed in the kernel (numpy STFT, widgets/_diff.py) and sent as a PNG buffer.

function makeDiff(link) {
  const panel = h("div", { class: "snb-diff" });
  const caption = h("div", { class: "snb-sub snb-diff-caption" });
  const img = h("img", { class: "snb-diff-img", alt: "difference spectrogram" });
  panel.append(caption, img);
  const diff = { on: false, key: null, cache: new Map(), panel };
  const draw = () => {
    panel.style.display = diff.on ? "" : "none";
    panel.dataset.key = diff.key || "";
    const got = diff.cache.get(diff.key);
    img.style.display = got && got.url ? "" : "none";
    if (got) {
      if (got.url) img.src = got.url;
      caption.textContent = got.text;
      panel.dataset.state = got.url ? "shown" : "error";
    } else {
      caption.textContent = diff.key ? "computing the difference…" : "Pick a take (or the master) to compare with the original.";
      panel.dataset.state = diff.key ? "loading" : "idle";
    }
  };
  // lane: the active lane's info (null or the original: nothing to compare)
  diff.show = (lane) => {
    diff.key = lane && lane.kind !== "original" ? lane.key : null;
    if (diff.on && diff.key && !diff.cache.has(diff.key) && !diff.asked?.has(diff.key)) {
      diff.asked = diff.asked || new Set();
      diff.asked.add(diff.key);
      link.send({ type: "diff", key: diff.key });
    }
    draw();
  };
  diff.onMessage = (msg, buffers) => {
    if (msg.type === "diff") {
      const url = URL.createObjectURL(new Blob([buffers[0]], { type: "image/png" }));
      diff.cache.set(msg.key, { url, text: msg.caption });
    } else {
      diff.cache.set(msg.key, { url: null, text: msg.message });
    }
    if (diff.asked) diff.asked.delete(msg.key);
    draw();
  };
  diff.reset = () => {
    for (const v of diff.cache.values()) if (v.url) URL.revokeObjectURL(v.url);
    diff.cache.clear();
    if (diff.asked) diff.asked.clear();
    draw();
  };
  draw();
  return diff;
}
