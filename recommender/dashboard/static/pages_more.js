// One item (details, similar items, its knowledge-graph neighbourhood), groups, experiments.
"use strict";

(() => {
  const { el, table, itemLink, count, pct, num, when } = Dash;
  const PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860",
    "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"];

  // --- one item ----------------------------------------------------------------------------
  Dash.pages.item = async (main, itemId) => {
    const [item, similar] = await Promise.all([
      Dash.get("items/" + encodeURIComponent(itemId), { radius: 2, max_nodes: 36 }),
      Dash.post("similar_items", { item_id: itemId, k: 10 }),
    ]);
    const attrs = Object.entries(item.attributes).map(([k, v]) => ({ k, v }));
    attrs.push({ k: "interactions", v: count(item.interactions) });
    main.replaceChildren(
      el("h1", {}, el("span", { "data-testid": "item-title" }, item.title),
        el("span", { class: "muted" }, "  · item " + item.item_id)),
      el("div", { class: "cols" },
        el("div", {},
          el("div", { class: "panel" }, el("h2", {}, "Details"),
            table([{ label: "field", value: (r) => r.k }, { label: "value", value: (r) => r.v }],
              attrs, { "data-testid": "details" }),
            item.entities.length
              ? el("p", {}, "Entities: ", item.entities.map((e) =>
                el("span", { class: "chip" }, e.type + ": " + e.value)))
              : null),
          el("div", { class: "panel" }, el("h2", {}, "Similar items (the similar_items API)"),
            table([
              { label: "item", value: (r) => itemLink(r.item_id, r.title) },
              { label: "score", num: true, value: (r) => num(r.score, 3) },
            ], similar.items, { "data-testid": "similar" }))),
        el("div", { class: "panel" },
          el("h2", {}, "Knowledge-graph neighbourhood (click an item to open it)"),
          item.graph
            ? el("div", { class: "chart graph", id: "kg-chart", "data-testid": "graph",
              "data-nodes": item.graph.nodes.length })
            : el("p", { class: "muted" }, "This model has no knowledge graph."))),
    );
    if (item.graph) drawGraph(main.querySelector("#kg-chart"), item.graph);
  };

  // a box with the layout's own aspect ratio, so that the picture is not stretched
  function graphBox(node, graph) {
    const span = (vals) => Math.max(Math.max(...vals) - Math.min(...vals), 1e-6);
    const rx = span(graph.nodes.map((n) => n.x));
    const ry = span(graph.nodes.map((n) => n.y));
    const W = node.clientWidth - 160; // room for the labels right of the nodes
    const H = node.clientHeight - 70; // room for the legend
    const w = Math.min(W, (H * rx) / ry);
    const h = (w * ry) / rx;
    const left = 40 + (W - w) / 2;
    const top = 50 + (H - h) / 2;
    return { left, top, width: w, height: h };
  }

  function drawGraph(node, graph) {
    const kinds = [...new Set(graph.nodes.map((n) => n.kind))];
    const c = Dash.chart(node, {
      tooltip: { formatter: (p) => (p.dataType === "node" ? p.data.kind + ": " + p.data.name : "") },
      legend: { data: kinds, top: 0 },
      series: [{
        // positions from the server (the same layout as `recbento kg` pictures), in
        // units of 1/1000: ECharts' graph mis-draws coordinates spanning less than ~1
        name: "neighbourhood", type: "graph", layout: "none", roam: true, draggable: true,
        ...graphBox(node, graph),
        categories: kinds.map((k, i) => ({ name: k, itemStyle: { color: PALETTE[i % 10] } })),
        label: { show: true, position: "right", fontSize: 11,
          formatter: (p) => (p.data.name.length > 26 ? p.data.name.slice(0, 25) + "…" : p.data.name) },
        data: graph.nodes.map((n) => ({
          id: n.id, name: n.label, kind: n.kind, itemId: n.item_id, x: 1000 * n.x, y: -1000 * n.y,
          category: kinds.indexOf(n.kind), symbolSize: n.id === graph.center ? 26 : 12,
        })),
        links: graph.edges.map((e) => ({ source: e.source, target: e.target })),
        lineStyle: { color: "#b8c0cc" },
      }],
    });
    c.on("click", (p) => {
      if (p.dataType === "node" && p.data.kind === "item" && p.data.id !== graph.center) {
        window.location.hash = "#/item/" + encodeURIComponent(p.data.itemId);
      }
    });
  }

  // --- groups ------------------------------------------------------------------------------
  Dash.pages.groups = async (main) => {
    const [groups, map] = await Promise.all([Dash.post("groups", {}), Dash.get("user_map")]);
    const ids = [...new Set(groups.groups.flatMap((g) => (g.top_items || []).slice(0, 5)
      .map((it) => it.item)))];
    const titles = ids.length ? (await Dash.get("titles", { ids: ids.join(",") })).titles : {};
    main.replaceChildren(
      el("h1", {}, "User groups"),
      el("p", { class: "muted" }, count(groups.n_groups) + " groups · silhouette " +
        num(groups.silhouette, 3)),
      el("div", { class: "panel" },
        el("h2", {}, "Map of users (their vectors' two principal axes, " +
          pct(map.explained_variance[0] + map.explained_variance[1]) + " of the variance)"),
        el("div", { class: "chart tall", id: "map-chart", "data-testid": "map",
          "data-points": map.points.length })),
      el("div", { class: "groups", "data-testid": "portraits" }, groups.groups.map((g) => portrait(g, titles))),
    );
    drawMap(main.querySelector("#map-chart"), map);
  };

  function portrait(g, titles) {
    return el("div", { class: "panel", "data-group": g.group },
      el("h2", {}, el("span", { style: "color:" + PALETTE[g.group % 10] }, "●"),
        " Group " + g.group),
      el("p", {}, el("span", { "data-col": "size" }, count(g.size)), " users (" + pct(g.share) + ")"),
      el("div", {}, (g.top_entities || []).slice(0, 8).map((e) =>
        el("span", { class: "chip", title: "lift " + num(e.lift, 2) },
          e.entity + " ×" + num(e.lift, 1)))),
      el("ol", {}, (g.top_items || []).slice(0, 5).map((it) =>
        el("li", {}, itemLink(it.item, titles[it.item] || String(it.item)), " ",
          el("span", { class: "muted" }, pct(it.share))))),
    );
  }

  function drawMap(node, map) {
    const groups = [...new Set(map.points.map((p) => p.group))].sort((a, b) => a - b);
    const c = Dash.chart(node, {
      tooltip: { formatter: (p) => "user " + p.data.userId + " · group " + p.data.group },
      legend: { top: 0 },
      xAxis: { type: "value", scale: true }, yAxis: { type: "value", scale: true },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      series: groups.map((g) => ({
        name: g === null ? "no group" : "group " + g, type: "scatter", symbolSize: 6,
        itemStyle: { color: g === null ? "#8C8C8C" : PALETTE[g % 10] },
        data: map.points.filter((p) => p.group === g)
          .map((p) => ({ value: [p.x, p.y], userId: p.user_id, group: p.group })),
      })),
    });
    c.on("click", (p) => { window.location.hash = "#/user/" + encodeURIComponent(p.data.userId); });
  }

  // --- experiments -------------------------------------------------------------------------
  Dash.pages.experiments = async (main) => {
    const out = await Dash.get("experiments");
    main.replaceChildren(el("h1", {}, "Experiments"));
    if (!out.experiments.length) {
      main.append(el("p", { class: "muted", "data-testid": "no-experiments" },
        "No experiment yet: start one with `recbento experiment start NAME --arm ...`."));
      return;
    }
    out.experiments.forEach((exp, n) => {
      const chartId = "exp-chart-" + n;
      main.append(el("div", { class: "panel", "data-experiment": exp.name },
        el("h2", {}, exp.name + (exp.active ? " (running)" : " (stopped)")),
        el("p", { class: "muted" }, "Started " + when(exp.started_at) +
          (exp.stopped_at ? " · stopped " + when(exp.stopped_at) : "")),
        table([
          { label: "arm", value: (a) => a.name },
          { label: "model", value: (a) => a.model },
          { label: "share", num: true, testid: "share", value: (a) => pct(a.share) },
        ], exp.arms, { "data-testid": "arms" }),
        exp.metrics.length ? el("div", { class: "chart", id: chartId }) : null,
        table([
          { label: "arm", value: (r) => r.arm },
          { label: "lists", num: true, testid: "impressions", value: (r) => count(r.impressions) },
          { label: "CTR", num: true, testid: "ctr", value: (r) => pct(r.ctr) },
          { label: "95% interval", num: true, testid: "ctr_ci",
            value: (r) => pct(r.ctr_low) + " – " + pct(r.ctr_high) },
          { label: "hit rate", num: true, testid: "hit_rate", value: (r) => pct(r.hit_rate) },
          { label: "conversion", num: true, value: (r) => pct(r.conversion) },
          { label: "CTR lift", num: true, value: (r) => pct(r.ctr_lift) },
          { label: "p-value", num: true, testid: "p_value", value: (r) => num(r.p_value, 3) },
        ], exp.metrics, { "data-testid": "metrics" }),
        el("p", { "data-testid": "verdict" }, exp.verdict.message)));
      if (exp.metrics.length) drawArms(main.querySelector("#" + chartId), exp.metrics);
    });
  };

  function drawArms(node, rows) {
    // CTR per arm with its 95% Wilson interval drawn as a whisker
    const arms = rows.map((r) => r.arm);
    Dash.chart(node, {
      tooltip: { trigger: "axis", valueFormatter: (v) => pct(v) },
      grid: { left: 60, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: arms },
      yAxis: { type: "value", min: 0, axisLabel: { formatter: (v) => pct(v) } },
      series: [
        { name: "CTR", type: "bar", barWidth: "40%", data: rows.map((r) => r.ctr),
          itemStyle: { color: "#4C72B0" } },
        { name: "95% interval", type: "custom", data: rows.map((r, i) => [i, r.ctr_low, r.ctr_high]),
          renderItem: (params, api) => {
            const lo = api.coord([api.value(0), api.value(1)]);
            const hi = api.coord([api.value(0), api.value(2)]);
            const w = api.size([1, 0])[0] * 0.12;
            const style = { stroke: "#1d2430", lineWidth: 1.5 };
            return { type: "group", children: [
              { type: "line", shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style },
              { type: "line", shape: { x1: lo[0] - w, y1: lo[1], x2: lo[0] + w, y2: lo[1] }, style },
              { type: "line", shape: { x1: hi[0] - w, y1: hi[1], x2: hi[0] + w, y2: hi[1] }, style },
            ] };
          },
          encode: { x: 0, y: [1, 2] }, z: 10 },
      ],
    });
  }

})();
