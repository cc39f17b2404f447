// recbento dashboard: routing, requests and formatting shared by every page.
// Everything is fetched from the service that served this page, nothing from elsewhere.
"use strict";

const Dash = (() => {
  const TOKEN_KEY = "recbento-api-token";
  const pages = {};
  const charts = [];
  // the page is /<prefix>/dashboard/; the public APIs live at /<prefix>/<api>
  const apiBase = new URL("../", window.location.href);
  const dashBase = new URL("./", window.location.href);

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : "HTTP " + status);
      this.status = status;
      this.body = body;
    }
  }

  async function answer(resp) {
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = { message: text }; }
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }

  // GET a dashboard endpoint: get("overview") -> /dashboard/api/overview
  async function get(path, params) {
    const url = new URL("api/" + path, dashBase);
    Object.entries(params || {}).forEach(([k, v]) => {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    });
    return answer(await fetch(url, { headers: headers(false) }));
  }

  // POST to a dashboard endpoint ("api/recommend") or a public API ("similar_items")
  async function post(path, body, { dashboard = false } = {}) {
    const url = new URL(path, dashboard ? dashBase : apiBase);
    const resp = await fetch(url, {
      method: "POST", headers: headers(true), body: JSON.stringify(body || {}),
    });
    return answer(resp);
  }

  function showError(err) {
    const box = document.getElementById("error");
    if (!err) { box.hidden = true; box.textContent = ""; return; }
    let msg = err.message || String(err);
    if (err.status === 401) msg = "This service needs its API token: enter it above. (" + msg + ")";
    box.textContent = msg;
    box.hidden = false;
  }

  // --- DOM helpers ---------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === undefined || v === null || v === false) return;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    children.flat().forEach((c) => {
      if (c === null || c === undefined || c === false) return;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    });
    return node;
  }

  function table(columns, rows, attrs) {
    // columns: [{label, value: row => text|Node, num: bool, testid}]
    return el("table", attrs,
      el("thead", {}, el("tr", {}, columns.map((c) =>
        el("th", { class: c.num ? "num" : null }, c.label)))),
      el("tbody", {}, rows.map((r, i) => el("tr", { "data-row": i }, columns.map((c) =>
        el("td", { class: c.num ? "num" : null, "data-col": c.testid || c.label },
          c.value(r, i)))))));
  }

  function card(label, value, testid) {
    return el("div", { class: "card" },
      el("div", { class: "label" }, label),
      el("div", { class: "value", "data-testid": testid }, value));
  }

  function itemLink(id, title) {
    return el("a", { href: "#/item/" + encodeURIComponent(id), "data-item": id }, title);
  }

  function userLink(id) {
    return el("a", { href: "#/user/" + encodeURIComponent(id), "data-user": id }, String(id));
  }

  // --- formatting (the tests format the APIs' numbers the same way) ---------------------
  function count(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }
  function num(x, digits = 3) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
  function when(unix) {
    return unix === null || unix === undefined ? "–"
      : new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }

  function chart(node, option) {
    // drawn at once, no animation: an operator reads figures, and a picture is complete
    const c = echarts.init(node, null, { renderer: "canvas" });
    c.setOption({ animation: false, ...option });
    charts.push(c);
    return c;
  }

  // --- routing ---------------------------------------------------------------------------
  async function route() {
    while (charts.length) charts.pop().dispose();
    const parts = (window.location.hash.replace(/^#\/?/, "") || "overview").split("/");
    const name = parts[0];
    const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : null;
    const page = pages[name] || pages.overview;
    document.querySelectorAll("nav a").forEach((a) => {
      const nav = a.dataset.nav;
      a.classList.toggle("active", nav === name || (nav === "users" && name === "user"));
    });
    const main = document.getElementById("page");
    main.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    main.dataset.ready = "";
    showError(null);
    try {
      await page(main, arg);
    } catch (err) {
      main.replaceChildren();
      showError(err);
    }
    main.dataset.page = name;
    main.dataset.ready = "1";
  }

  function start() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token");
    input.value = token();
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      window.sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      route();
    });
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
    route();
  }

  return {
    pages, get, post, el, table, card, itemLink, userLink, count, pct, num, when, chart,
    showError, start, route,
  };
})();
