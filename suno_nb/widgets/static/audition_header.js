// suno_nb audition, part 4 of 5: the header (title, the task picker), the notices and the
// footer; and following new results.

function makeHeader(model, link, parts) {
  const { root, header, footer, transport, notices, ratings } = parts;
  function showHeader() {
    const head = model.get("heading") || {};
    const tasks = model.get("tasks") || [];
    header.replaceChildren();
    if (tasks.length > 1) {
      // Entries tell tasks apart: section · prompt · time · takes (or state); title on hover.
      const sel = h("select", { class: "snb-picker", disabled: link.dead });
      for (const t of tasks) {
        const o = h("option", { value: t.task_id, text: t.label, title: `${t.title || ""} · task ${t.task_id}` });
        if (t.task_id === model.get("task_id")) o.selected = true;
        sel.append(o);
      }
      sel.addEventListener("change", () => link.save("task_id", sel.value));
      const step = (d) => () => {
        const i = tasks.findIndex((t) => t.task_id === model.get("task_id"));
        const j = Math.max(0, Math.min(tasks.length - 1, i + d));
        link.save("task_id", tasks[j].task_id);
      };
      header.append(h("div", { class: "snb-batch" },
        h("button", { title: "Previous task", onclick: step(-1), disabled: link.dead }, "◀"), sel,
        h("button", { title: "Next task", onclick: step(1), disabled: link.dead }, "▶"),
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
    notices.update();
  }

  function showLive() {
    const live = model.get("live") !== false;
    root.dataset.live = String(live);
    ratings.enable(live && !link.dead);
    notices.update();
  }

  // A new task's result: move there when the user is not listening (nothing playing, focus
  // elsewhere); otherwise the notice's "show it" button waits for them.
  function onFresh() {
    notices.update();
    const ids = model.get("fresh") || [];
    const busy = parts.busy();
    if (ids.length && !busy && !link.dead) link.save("task_id", ids[0]);
  }
  return { showHeader, showLive, onFresh };
}
