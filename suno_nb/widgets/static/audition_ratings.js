// suno_nb audition, part 2 of 5: the link to the kernel, ratings, and the lines that say
// what cannot be done (receiver stopped, kernel gone) or what is new.

// The link to the kernel.  After a kernel restart the view still renders and plays from its
// blob URLs, but nothing it sends arrives: ipywidgets' manager marks every model
// "comm_live = false" when the kernel restarts (event "comm_live_update"), and a send on a
// dead comm throws "Cannot send".  Either way the view says it is disconnected instead of
// losing clicks silently.
function makeLink(model, onDead) {
  const link = { dead: false };
  const die = (why) => {
    if (link.dead) return;
    link.dead = true;
    onDead(why);
  };
  link.send = (msg) => {
    if (link.dead) return false;
    try {
      model.send(msg);
      return true;
    } catch (err) {
      die(`the kernel is gone (${err.message || err})`);
      return false;
    }
  };
  link.save = (name, value) => {
    if (link.dead) return false;
    try {
      model.set(name, value);
      model.save_changes();
      return true;
    } catch (err) {
      die(`the kernel is gone (${err.message || err})`);
      return false;
    }
  };
  // comm_live only changes after a view exists when the manager lets go of the kernel
  const onLive = () => die("the kernel was restarted or shut down");
  model.on("comm_live_update", onLive);
  link.close = () => model.off("comm_live_update", onLive);
  return link;
}

// Stars, keep and a note per take.  A note typed before any stars is sent with the stars.
function makeRatings(model, link, lanes) {
  const ratings = {};
  ratings.controls = (lane) => {
    const box = h("div", { class: "snb-rating" });
    const note = h("input", { class: "snb-note", type: "text", placeholder: "note…", maxlength: "500" });
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", {
        class: "snb-star",
        "data-stars": String(n),
        title: `${n} star${n > 1 ? "s" : ""}`,
        onclick: () => link.send({ type: "rate", track_id: lane.info.track_id, stars: n, note: note.value || null }),
      }, "★"),
    );
    const pick = h("button", {
      class: "snb-pick",
      title: "Keep this take (one per task)",
      onclick: () => link.send({ type: "pick", track_id: lane.info.track_id, picked: !lane.picked }),
    }, "keep");
    note.addEventListener("change", () => link.send({ type: "note", track_id: lane.info.track_id, note: note.value }));
    box.append(...stars, pick, note);
    lane.stars = stars;
    lane.pickBtn = pick;
    lane.note = note;
    return box;
  };
  ratings.show = () => {
    const r0 = model.get("ratings") || {};
    for (const lane of lanes()) {
      if (!lane.stars) continue;
      const r = r0[lane.info.track_id] || {};
      lane.stars.forEach((b, i) => b.classList.toggle("snb-on", (r.stars || 0) > i));
      lane.picked = !!r.picked;
      lane.pickBtn.classList.toggle("snb-on", lane.picked);
      lane.pickBtn.textContent = lane.picked ? "✓ kept" : "keep";
      if (document.activeElement !== lane.note && (r.note || !lane.note.value)) lane.note.value = r.note || "";
      lane.row.dataset.stars = String(r.stars || 0);
    }
  };
  // Ratings on or off: off when the receiver cannot keep them or the kernel is gone.
  ratings.enable = (on) => {
    for (const lane of lanes()) {
      if (!lane.stars) continue;
      for (const el of [...lane.stars, lane.pickBtn, lane.note]) el.disabled = !on;
    }
  };
  return ratings;
}

// One line each: the receiver stopped (and how to bring it back), the kernel gone, new
// results waiting.  Shown above the transport.
function makeNotices(model, link, onShow) {
  const box = h("div", { class: "snb-notices" });
  const offline = h("div", { class: "snb-offline", role: "status" });
  const dead = h("div", { class: "snb-disconnected", role: "alert" });
  const fresh = h("div", { class: "snb-fresh" });
  box.append(dead, offline, fresh);
  const notices = { box };
  notices.update = () => {
    const live = model.get("live") !== false;
    offline.textContent = live ? "" : model.get("offline") || "Ratings are off: the receiver is stopped.";
    offline.style.display = live || link.dead ? "none" : "";
    dead.style.display = link.dead ? "" : "none";
    const ids = model.get("fresh") || [];
    const tasks = model.get("tasks") || [];
    fresh.replaceChildren();
    fresh.style.display = ids.length && !link.dead ? "" : "none";
    if (ids.length) {
      const t = tasks.find((x) => x.task_id === ids[0]) || { label: ids[0] };
      const more = ids.length > 1 ? ` (+${ids.length - 1} more)` : "";
      fresh.append(
        h("span", { text: `New result: ${t.label}${more} ` }),
        h("button", { class: "snb-show-fresh", onclick: () => onShow(ids[0]) }, "show it"),
      );
    }
  };
  notices.disconnected = (why) => {
    dead.textContent = `Disconnected: ${why}. Nothing clicked here reaches the kernel any more; re-run this cell for a live player.`;
    notices.update();
  };
  return notices;
}
