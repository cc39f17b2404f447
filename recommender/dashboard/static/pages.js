// Overview, users and one user: counts, quality, online metrics, history, live re-ranking.
"use strict";

(() => {
  const { el, table, card, itemLink, userLink, count, pct, num, when } = Dash;

  function setModel(tag) {
    document.getElementById("model-tag").textContent = tag || "";
  }

  // --- overview ----------------------------------------------------------------------------
  Dash.pages.overview = async (main) => {
    const ov = await Dash.get("overview");
    setModel(ov.model);
    const online = await Dash.post("online_metrics", { by: ["day", "arm"] });
    main.replaceChildren(
      el("h1", {}, "Overview"),
      el("div", { class: "cards" },
        card("Model version", ov.model, "model"),
        card("Items", count(ov.n_items), "n_items"),
        card("Users", count(ov.n_users), "n_users"),
        card("Interactions (stored)", count(ov.n_interactions), "n_interactions"),
        card("Feedback events", count(ov.n_feedback_events), "n_feedback_events"),
        card("User groups", count(ov.n_groups), "n_groups"),
      ),
      el("p", { class: "muted" },
        "Built " + (ov.built_at || "–") + " · encoder " + ov.encoder + " · components: " +
        (ov.components.join(", ") || "none") +
        (ov.trained_from ? " · trained from " + ov.trained_from : "")),
      el("h2", {}, "Offline quality of the served model"),
      quality(ov.quality),
      el("h2", {}, "Online: CTR and hit rate per day and experiment arm"),
      onlinePanel(online.rows),
    );
    if (online.rows.length) drawOnline(main.querySelector("#online-chart"), online.rows);
  };

  function quality(q) {
    if (!q) {
      return el("div", { class: "panel muted", "data-testid": "quality" },
        "This version was not trained: no validation results are stored with it " +
        "(a text-only model ranks by its encoder's vectors).");
    }
    const cols = q.columns.map((c) => ({
      label: c, num: true, testid: c,
      value: (r) => (c === "epoch" ? String(r[c]) + (r[c] === q.best_epoch ? " (best)" : "")
        : c === "seconds" ? num(r[c], 1) : num(r[c], 4)),
    }));
    const hybrid = Object.keys(q.hybrid || {}).length
      ? el("p", { class: "muted" }, "Collaborative blend: " + Object.entries(q.hybrid)
        .map(([k, v]) => k + " " + (Number.isInteger(v) ? count(v)
          : typeof v === "number" ? num(v, k === "seconds" ? 1 : 4) : v))
        .join(" · "))
      : null;
    return el("div", { class: "panel", "data-testid": "quality" },
      el("p", {}, "Validation of the user tower on " + count(q.n_val_users) +
        " held-out users; epoch " + q.best_epoch + " kept (stopped by " + q.stopped_by + ")."),
      table(cols, q.rows), hybrid);
  }

  function onlinePanel(rows) {
    if (!rows.length) {
      return el("div", { class: "panel muted", "data-testid": "online" },
        "No recommendation lists served yet (or none logged): nothing to measure.");
    }
    return el("div", { class: "panel", "data-testid": "online" },
      el("div", { class: "chart", id: "online-chart" }),
      table([
        { label: "day", value: (r) => r.day },
        { label: "arm", value: (r) => r.arm || "none" },
        { label: "lists", num: true, testid: "impressions", value: (r) => count(r.impressions) },
        { label: "CTR", num: true, testid: "ctr", value: (r) => pct(r.ctr) },
        { label: "95% interval", num: true, value: (r) => pct(r.ctr_low) + " – " + pct(r.ctr_high) },
        { label: "hit rate", num: true, testid: "hit_rate", value: (r) => pct(r.hit_rate) },
        { label: "coverage", num: true, value: (r) => pct(r.coverage) },
      ], rows, { "data-testid": "online-table" }));
  }

  function drawOnline(node, rows) {
    const days = [...new Set(rows.map((r) => r.day))].sort();
    const arms = [...new Set(rows.map((r) => r.arm || "none"))];
    const series = [];
    arms.forEach((arm) => {
      ["ctr", "hit_rate"].forEach((metric) => {
        series.push({
          name: arm + " · " + (metric === "ctr" ? "CTR" : "hit rate"),
          type: "line", symbolSize: 7,
          lineStyle: metric === "ctr" ? {} : { type: "dashed" },
          data: days.map((d) => {
            const r = rows.find((x) => x.day === d && (x.arm || "none") === arm);
            return r ? r[metric] : null;
          }),
        });
      });
    });
    Dash.chart(node, {
      tooltip: { trigger: "axis", valueFormatter: (v) => pct(v) },
      legend: { top: 0 },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value", min: 0, max: 1, axisLabel: { formatter: (v) => pct(v) } },
      series,
    });
  }

  // --- users -------------------------------------------------------------------------------
  Dash.pages.users = async (main) => {
    const list = el("div");
    const search = el("input", { placeholder: "user id starts with…", "aria-label": "user id" });
    async function load() {
      const out = await Dash.get("users", { q: search.value.trim(), limit: 100 });
      list.replaceChildren(
        el("p", { class: "muted" }, count(out.total) + " users" +
          (out.total > out.users.length ? ", the " + out.users.length + " most active shown" : "")),
        table([
          { label: "user", value: (r) => userLink(r.user_id) },
          { label: "events", num: true, value: (r) => count(r.n_events) },
        ], out.users, { "data-testid": "users" }));
    }
    search.addEventListener("input", () => load().catch(Dash.showError));
    await load();
    main.replaceChildren(el("h1", {}, "Users"), el("div", { class: "toolbar" }, search), list);
  };

  // --- one user ----------------------------------------------------------------------------
  const KNOB_RANGE = { diversity: 1, longtail_min_share: 1, calibration_alpha: 1,
    longtail_head_share: 1 };
  const SHOWN_KNOBS = ["kg_weight", "relevance", "diversity", "calibration", "group_popularity",
    "hotness", "freshness", "longtail_min_share"];

  Dash.pages.user = async (main, userId) => {
    const [user, knobInfo] = await Promise.all([
      Dash.get("users/" + encodeURIComponent(userId), { limit: 20 }), Dash.get("knobs"),
    ]);
    const recs = el("div", { "data-testid": "recommendations" });
    const meta = el("p", { class: "muted", "data-testid": "rec-meta" });
    const knobs = {};
    const defaults = knobInfo.defaults;

    async function refresh() {
      const changed = {};
      Object.entries(knobs).forEach(([k, input]) => {
        if (Number(input.value) !== defaults[k]) changed[k] = Number(input.value);
      });
      const body = { user_id: user.user_id, k: 10, explain: true };
      if (Object.keys(changed).length) body.knobs = changed;
      recs.dataset.ready = "";
      const out = await Dash.post("api/recommend", body, { dashboard: true });
      setModel(out.model);
      meta.textContent = "Group " + (out.group === null ? "–" : out.group) +
        (out.arm ? " · experiment arm " + out.arm : "") + " · model " + out.model +
        (Object.keys(changed).length ? " · knobs " + JSON.stringify(changed) : " · model defaults");
      recs.replaceChildren(el("ol", {}, out.items.map((it) => el("li", { "data-rec": it.item_id },
        itemLink(it.item_id, it.title), " ", el("span", { class: "muted" }, num(it.score, 3)),
        reasons(it.reasons)))));
      recs.dataset.ready = "1";
      recs.dataset.knobs = JSON.stringify(changed);
    }

    const grid = el("div", { class: "knobs" });
    const panel = el("div", { class: "panel", "data-testid": "knobs" },
      el("h2", {}, "Knobs (the list re-ranks as you let go of one)"), grid);
    SHOWN_KNOBS.filter((k) => defaults[k] !== null && defaults[k] !== undefined).forEach((k) => {
      const hi = KNOB_RANGE[k] || Math.max(2, 2 * defaults[k]);
      const input = el("input", { type: "range", min: 0, max: hi, step: "any", value: defaults[k],
        name: k, "aria-label": k });
      const shown = el("output", {}, num(defaults[k], 2));
      input.addEventListener("input", () => { shown.textContent = num(input.value, 2); });
      input.addEventListener("change", () => refresh().catch(Dash.showError));
      knobs[k] = input;
      grid.append(el("label", { class: "knob" }, el("span", {}, k), input, shown));
    });
    if (!Object.keys(knobs).length) {
      panel.append(el("p", { class: "muted" }, "This model has no reranker and no graph: no knobs."));
    }
    panel.append(el("button", { type: "button", onclick: () => {
      Object.entries(knobs).forEach(([k, input]) => {
        input.value = defaults[k];
        input.nextSibling.textContent = num(defaults[k], 2);
      });
      refresh().catch(Dash.showError);
    } }, "Model defaults"));

    await refresh();
    main.replaceChildren(
      el("h1", {}, "User ", el("span", { "data-testid": "user-id" }, String(user.user_id))),
      el("div", { class: "cols" },
        el("div", {},
          panel,
          el("div", { class: "panel" }, el("h2", {}, "Recommendations and their reasons"),
            meta, recs)),
        el("div", { class: "panel" },
          el("h2", {}, "History: " + count(user.n_events) + " events" +
            (user.n_events > user.history.length ? ", the " + user.history.length + " newest" : "") +
            " (stored group " + (user.group === null ? "–" : user.group) + ")"),
          table([
            { label: "item", value: (r) => itemLink(r.item_id, r.title) },
            { label: "when", value: (r) => when(r.timestamp) },
            { label: "weight", num: true, value: (r) => num(r.weight, 2) },
          ], user.history, { "data-testid": "history" }))),
    );
  };

  // the reason's sentence, its source item a link; the entities it names on hover
  function reason(r) {
    const text = r.text || "";
    const at = r.from_title ? text.indexOf(r.from_title) : -1;
    const title = (r.via || []).map((v) => v.type + ": " + v.value).join(", ");
    if (r.from_item === null || r.from_item === undefined || at < 0) {
      return el("li", { title }, text);
    }
    const link = el("a", { href: "#/item/" + encodeURIComponent(r.from_item),
      "data-reason": r.from_item }, r.from_title);
    return el("li", { title }, text.slice(0, at), link, text.slice(at + r.from_title.length));
  }

  function reasons(list) {
    if (!list || !list.length) return null;
    const [first, ...more] = list;
    return el("ul", { class: "reasons" }, reason(first), more.length
      ? el("li", { class: "more" }, el("details", {},
        el("summary", {}, more.length + " more reason" + (more.length > 1 ? "s" : "")),
        el("ul", {}, more.map(reason))))
      : null);
  }
})();
