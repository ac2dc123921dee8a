/* ragtune dashboard: one page, no build step, no library.
 *
 * Everything shown comes from the keyed API on the same origin and is rendered as text (textContent,
 * createTextNode, setAttribute): never as HTML. The page's Content-Security-Policy forbids inline script and
 * style, so styles come from app.css classes and charts are SVG elements built one by one.
 */
"use strict";

(() => {
  const KEY_STORAGE = "ragtune.apiKey";
  const POLL_MS = 2000;
  const MAX_COMPARE = 5;
  const RUNS_PAGE = 20;
  const CHOICE_PAGE = 100;
  // A run in one of these has stopped moving: nothing to poll for.
  const FINAL = new Set(["succeeded", "failed", "cancelled", "tracking_failed"]);
  const STATUSES = [
    "preparing", "prepared", "starting", "validating_files", "queued", "running", "paused",
    "deploying", "importing", "succeeded", "failed", "cancelled", "tracking_failed",
  ];
  const EVALUATION_LIVE = new Set(["pending", "running"]);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KEY_REFUSED = "The API refused the key (403): check it and paste it again.";
  const NETWORK_ERROR = "The API could not be reached (network error): check the connection, then try again.";

  /* ---------- DOM helpers: the only way this file creates elements ---------- */

  function applyOptions(node, options) {
    const { class: className, text, attrs, on, props } = options || {};
    if (className) node.setAttribute("class", className);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      // Event-handler and style attributes are never set from here (CSP forbids them; data must not reach them).
      if (/^on/i.test(name) || name.toLowerCase() === "style") throw new Error(`refusing attribute ${name}`);
      if (name.toLowerCase() === "href" && !String(value).startsWith("#") && !safeUrl(value)) {
        throw new Error("refusing a link that is not http(s)");
      }
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const [event, handler] of Object.entries(on || {})) node.addEventListener(event, handler);
    for (const [name, value] of Object.entries(props || {})) node[name] = value;
  }

  function appendAll(parent, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return parent;
  }

  function el(tag, options, ...children) {
    const node = document.createElement(tag);
    applyOptions(node, options);
    return appendAll(node, children);
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    applyOptions(node, { attrs });
    return appendAll(node, children);
  }

  function setChildren(parent, ...children) {
    parent.replaceChildren();
    return appendAll(parent, children);
  }

  /** The URL when it is an absolute http(s) link (API-provided links go to S3), else null. */
  function safeUrl(value) {
    if (typeof value !== "string") return null;
    try {
      const url = new URL(value);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  /** A link opening away from the page, or plain text when the URL is not http(s). */
  function externalLink(url, label, id) {
    const href = safeUrl(url);
    if (!href) return el("span", { class: "muted", text: `${label} (link unavailable)` });
    return el("a", { text: label, attrs: { href, id, rel: "noopener noreferrer", target: "_blank" } });
  }

  /** A class-name-safe token for a status word (statuses are API data). */
  function token(value) {
    return String(value || "unknown").toLowerCase().replace(/[^a-z0-9_-]/g, "-");
  }

  function statusBadge(status, id) {
    const word = status || "unknown";
    return el("span", { class: `badge status-${token(word)}`, text: word.replace(/_/g, " "), attrs: { id } });
  }

  /* ---------- formatting ---------- */

  const isFinal = (status) => FINAL.has(status);
  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

  function fmtInt(value) {
    return isNumber(value) ? Math.round(value).toLocaleString("en-US") : "—";
  }

  function fmtNumber(value) {
    if (!isNumber(value)) return "—";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    const options = Math.abs(value) < 1 ? { maximumSignificantDigits: 4 } : { maximumFractionDigits: 4 };
    return value.toLocaleString("en-US", options);
  }

  function fmtPct(fraction) {
    return isNumber(fraction) ? `${(fraction * 100).toFixed(1)}%` : "—";
  }

  function fmtUsd(value) {
    if (!isNumber(value)) return "—";
    return value < 0.01 && value > 0 ? `$${value.toPrecision(2)}` : `$${value.toFixed(2)}`;
  }

  function fmtBytes(value) {
    if (!isNumber(value)) return "—";
    const units = ["bytes", "KB", "MB", "GB"];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${size} bytes` : `${size.toFixed(1)} ${units[unit]}`;
  }

  /** Milliseconds since the epoch from an ISO date-time or epoch seconds (the API uses both), else null. */
  function toMillis(value) {
    if (isNumber(value)) return value < 1e12 ? value * 1000 : value;
    if (typeof value !== "string" || !value) return null;
    if (/^\d+(\.\d+)?$/.test(value)) return toMillis(Number(value));
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** A <time> in the reader's time zone, YYYY-MM-DD HH:MM, the exact instant in its datetime. */
  function timeNode(value) {
    const ms = toMillis(value);
    if (ms === null) return document.createTextNode(value ? String(value) : "—");
    const d = new Date(ms);
    const shown = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return el("time", { text: shown, attrs: { datetime: d.toISOString(), title: d.toString() } });
  }

  function fmtDuration(ms) {
    if (!isNumber(ms) || ms < 0) return "—";
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  const LABELS = {
    cost_usd: "Cost (USD)",
    max_cost_usd: "Maximum cost (USD)",
    price_per_million_tokens: "Price per million tokens (USD)",
    price_per_1k_tokens: "Price per 1,000 tokens (USD)",
    price_per_gpu_hour: "Price per GPU hour (USD)",
    serving_price_per_cmu_minute: "Serving price per CMU-minute (USD)",
    gpu_hours: "GPU hours",
    total_steps: "Total steps",
  };

  function humanise(key) {
    if (LABELS[key]) return LABELS[key];
    const words = String(key).replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  /** Any JSON value as text or a nested key/value list: estimates and counts differ by provider. */
  function valueNode(value) {
    if (value === null || value === undefined || value === "") return document.createTextNode("—");
    if (typeof value === "boolean") return document.createTextNode(value ? "yes" : "no");
    if (typeof value === "number") return document.createTextNode(fmtNumber(value));
    if (Array.isArray(value)) {
      if (value.every((item) => item === null || typeof item !== "object")) {
        return document.createTextNode(value.map((item) => String(item)).join(", ") || "—");
      }
      return el("ol", { class: "plain-list" }, value.map((item) => el("li", {}, valueNode(item))));
    }
    if (typeof value === "object") return objectList(value);
    return document.createTextNode(String(value));
  }

  function objectList(object) {
    const entries = Object.entries(object || {});
    if (!entries.length) return el("p", { class: "muted", text: "Nothing recorded." });
    return kvList(entries.map(([key, value]) => [humanise(key), valueNode(value)]));
  }

  /** A <dl> of [label, value] pairs; pairs whose value is null, undefined or "" are left out. */
  function kvList(pairs) {
    const shown = pairs.filter(([, value]) => value !== null && value !== undefined && value !== "");
    if (!shown.length) return el("p", { class: "muted", text: "Nothing recorded." });
    return el("dl", { class: "kv" },
      shown.map(([label, value]) => el("div", { class: "kv-row" }, el("dt", { text: label }), el("dd", {}, value))));
  }

  function section(title, id, ...children) {
    const headingId = `${id}-heading`;
    return el("section", { class: "panel", attrs: { id, "aria-labelledby": headingId } },
      el("h2", { text: title, attrs: { id: headingId } }), children);
  }

  /** Tables scroll sideways on narrow screens; the wrapper is focusable so the keyboard can scroll it. */
  function tableWrap(table, label) {
    return el("div", { class: "table-wrap", attrs: { tabindex: "0", role: "region", "aria-label": label } }, table);
  }

  function headRow(names) {
    return el("thead", {}, el("tr", {}, names.map((name) => el("th", { text: name, attrs: { scope: "col" } }))));
  }

  function button(label, options) {
    const { id, className, onClick } = options || {};
    return el("button", { class: className, text: label, attrs: { type: "button", id }, on: onClick ? { click: onClick } : {} });
  }

  /* ---------- messages ---------- */

  const alertBox = document.getElementById("alert");
  const noticeBox = document.getElementById("notice");

  function showAlert(message) {
    alertBox.textContent = message;
    alertBox.hidden = false;
  }

  function clearAlert() {
    alertBox.textContent = "";
    alertBox.hidden = true;
  }

  function showNotice(message) {
    noticeBox.textContent = message;
    noticeBox.hidden = false;
  }

  function clearNotice() {
    noticeBox.textContent = "";
    noticeBox.hidden = true;
  }

  /* ---------- the API key: this tab's sessionStorage only ---------- */

  function getKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (error) {
      return "";
    }
  }

  function setKey(value) {
    try {
      window.sessionStorage.setItem(KEY_STORAGE, value);
      return true;
    } catch (error) {
      return false;
    }
  }

  function clearKey() {
    try {
      window.sessionStorage.removeItem(KEY_STORAGE);
    } catch (error) {
      /* storage unavailable: nothing kept */
    }
  }

  /* ---------- the API client ---------- */

  class ApiError extends Error {
    constructor(status, message, code, body) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.code = code || null;
      this.body = body;
    }
  }

  class NetworkError extends Error {
    constructor() {
      super(NETWORK_ERROR);
      this.name = "NetworkError";
    }
  }

  class KeyMissingError extends Error {
    constructor() {
      super("No API key yet.");
      this.name = "KeyMissingError";
    }
  }

  /** The API's URL for a relative path: the page is served from the API's own stage folder. */
  function apiUrl(path, query) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, String(value));
    }
    return url;
  }

  /** JSON from the API, the key in `x-api-key`; an error answer becomes an ApiError with its `message`. */
  async function api(path, options) {
    const { method = "GET", body, query, signal } = options || {};
    const key = getKey();
    if (!key) throw new KeyMissingError();
    const headers = { "x-api-key": key, accept: "application/json" };
    const init = { method, headers, signal, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    let text;
    try {
      response = await fetch(apiUrl(path, query), init);
      text = await response.text();
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new NetworkError();
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const message = data && typeof data.message === "string" && data.message.trim()
        ? data.message
        : `The API answered ${response.status} without a message.`;
      throw new ApiError(response.status, message, data && data.code, data);
    }
    if (data === null || typeof data !== "object") {
      throw new ApiError(response.status, "The API's answer was not the JSON expected.", "bad_response", null);
    }
    return data;
  }

  /** Shows what went wrong; a 403 means the key is wrong, so it is dropped and asked for again. */
  function reportError(error) {
    if (!error || error.name === "AbortError") return;
    if (error instanceof KeyMissingError) {
      showKeyForm();
    } else if (error instanceof ApiError && error.status === 403) {
      clearKey();
      showKeyForm();
      showAlert(KEY_REFUSED);
    } else if (error instanceof ApiError || error instanceof NetworkError) {
      showAlert(error.message);
    } else {
      showAlert("Something went wrong in the page; reload it to try again.");
      console.error(error); // a fault of the page, never the key or data from the API
    }
  }

  /* ---------- views' lifetime: timers and fetches end when the view does ---------- */

  class ViewContext {
    constructor() {
      this.controller = new AbortController();
      this.timers = new Set();
      this.alive = true;
    }

    get signal() {
      return this.controller.signal;
    }

    later(callback, ms) {
      const id = window.setTimeout(() => {
        this.timers.delete(id);
        if (this.alive) callback();
      }, ms);
      this.timers.add(id);
      return id;
    }

    cancel(id) {
      if (id === null || id === undefined) return;
      window.clearTimeout(id);
      this.timers.delete(id);
    }

    api(path, options) {
      return api(path, { ...options, signal: this.signal });
    }

    dispose() {
      this.alive = false;
      for (const id of this.timers) window.clearTimeout(id);
      this.timers.clear();
      this.controller.abort();
    }
  }

  /* ---------- key form ---------- */

  const keySection = document.getElementById("key-section");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("api-key");
  const forgetButton = document.getElementById("forget-key");
  const viewRoot = document.getElementById("view");
  let current = null;

  function showKeyForm() {
    if (current) current.dispose();
    current = null;
    viewRoot.replaceChildren();
    keySection.hidden = false;
    forgetButton.hidden = true;
    document.title = "API key · ragtune";
    keyInput.focus();
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault(); // nothing is ever submitted anywhere: the key stays in this tab
    const value = keyInput.value.trim();
    if (!value) {
      showAlert("Paste the API key first.");
      keyInput.focus();
      return;
    }
    if (!setKey(value)) {
      showAlert("This browser does not allow sessionStorage here, so the key cannot be kept.");
      return;
    }
    keyInput.value = "";
    clearAlert();
    route(true);
  });

  forgetButton.addEventListener("click", () => {
    clearKey();
    clearAlert();
    showKeyForm();
    showNotice("The key is forgotten: this tab no longer holds it.");
  });

  /* ---------- routing: #/runs, #/runs/<id>, #/compare?runs=a,b, #/ask?run=<id> ---------- */

  function parseRoute() {
    const raw = window.location.hash.replace(/^#\/?/, "");
    const at = raw.indexOf("?");
    const path = at >= 0 ? raw.slice(0, at) : raw;
    const query = new URLSearchParams(at >= 0 ? raw.slice(at + 1) : "");
    const segments = path.split("/").filter(Boolean);
    if (segments[0] === "runs" && segments.length > 1) {
      try {
        return { name: "run", runId: decodeURIComponent(segments.slice(1).join("/")) };
      } catch (error) {
        return { name: "runs" };
      }
    }
    if (segments[0] === "compare") {
      const ids = (query.get("runs") || "").split(",").map((id) => id.trim()).filter(Boolean);
      return { name: "compare", runIds: [...new Set(ids)].slice(0, MAX_COMPARE) };
    }
    if (segments[0] === "ask") return { name: "ask", runId: query.get("run") || "" };
    return { name: "runs" };
  }

  const runHref = (runId) => `#/runs/${encodeURIComponent(runId)}`;

  function route(moveFocus) {
    if (current) current.dispose();
    current = null;
    clearAlert();
    clearNotice();
    if (!getKey()) {
      showKeyForm();
      return;
    }
    keySection.hidden = true;
    forgetButton.hidden = false;
    const where = parseRoute();
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      const active = link.dataset.view === (where.name === "run" ? "runs" : where.name);
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const ctx = new ViewContext();
    current = ctx;
    const view = where.name === "run" ? runView(ctx, where.runId)
      : where.name === "compare" ? compareView(ctx, where.runIds)
      : where.name === "ask" ? askView(ctx, where.runId)
      : runsView(ctx);
    setChildren(viewRoot, view);
    if (moveFocus) {
      const heading = view.querySelector("h1");
      if (heading) heading.focus();
    }
  }

  /* ---------- Runs view ---------- */

  /** What a run summary offers for a column, if anything: the summary's fields vary by provider. */
  function baseModelOf(run) {
    return run.base_model || (run.config && run.config.fine_tune && run.config.fine_tune.model) || null;
  }

  function costOf(run) {
    if (isNumber(run.cost_usd)) return run.cost_usd;
    if (isNumber(run.estimated_cost_usd)) return run.estimated_cost_usd;
    return run.estimate && isNumber(run.estimate.cost_usd) ? run.estimate.cost_usd : null;
  }

  function durationOf(run) {
    const start = toMillis(run.created_at);
    if (start === null) return "—";
    if (!isFinal(run.status)) return `${fmtDuration(Date.now() - start)} so far`;
    const end = toMillis(run.finished_at) ?? toMillis(run.status_changed_at) ?? toMillis(run.updated_at);
    return end === null ? "—" : fmtDuration(end - start);
  }

  function runRow(run) {
    const cost = costOf(run);
    return el("tr", { attrs: { "data-run-id": run.run_id } },
      el("th", { attrs: { scope: "row" } }, el("a", { class: "run-link", text: run.run_id, attrs: { href: runHref(run.run_id) } })),
      el("td", { text: run.provider || "openai" }),
      el("td", { class: "model-cell", text: baseModelOf(run) || "—" }),
      el("td", { class: "status" }, statusBadge(run.status)),
      el("td", {}, timeNode(run.created_at)),
      el("td", { text: durationOf(run) }),
      el("td", { class: "num", text: fmtInt(run.trained_tokens) }),
      el("td", { class: "num", text: cost === null ? "—" : `${fmtUsd(cost)} (estimate)` }));
  }

  function runsView(ctx) {
    document.title = "Runs · ragtune";
    const state = { cursors: [null], page: null, timer: null };
    const filter = el("select", { attrs: { id: "status-filter" } },
      el("option", { text: "All statuses", attrs: { value: "all" } }),
      STATUSES.map((status) => el("option", { text: status.replace(/_/g, " "), attrs: { value: status } })));
    const body = el("tbody", {}, el("tr", {}, el("td", { text: "Loading runs…", attrs: { colspan: "8" } })));
    const table = el("table", { attrs: { id: "runs-table" } },
      el("caption", { class: "visually-hidden", text: "Runs, newest first" }),
      headRow(["Run", "Provider", "Base model", "Status", "Started", "Duration", "Trained tokens", "Cost"]),
      body);
    const pageInfo = el("p", { class: "muted", attrs: { id: "runs-page-info", "aria-live": "polite" } });
    const firstButton = button("First page", { id: "first-page", onClick: () => go([null]) });
    const previousButton = button("Previous page", { id: "previous-page", onClick: () => go(state.cursors.slice(0, -1)) });
    const nextButton = button("Next page", {
      id: "next-page",
      onClick: () => state.page && state.page.next_cursor && go([...state.cursors, state.page.next_cursor]),
    });
    for (const control of [firstButton, previousButton, nextButton]) control.disabled = true;
    // The API filters by status (GET /runs?status=): a new filter starts again from its first page.
    filter.addEventListener("change", () => go([null]));

    function go(cursors) {
      state.cursors = cursors.length ? cursors : [null];
      load();
    }

    function render() {
      const page = state.page;
      if (!page) return;
      const chosen = filter.value;
      const runs = (page.runs || []).filter((run) => chosen === "all" || run.status === chosen);  // one that moved on
      // Polling rebuilds the rows: keep the keyboard focus on the same run's link.
      const focusedRow = document.activeElement && body.contains(document.activeElement)
        ? document.activeElement.closest("tr[data-run-id]") : null;
      const focusedId = focusedRow ? focusedRow.getAttribute("data-run-id") : null;
      if (runs.length) setChildren(body, runs.map(runRow));
      else {
        const empty = chosen !== "all"
          ? `No run has the status ${chosen.replace(/_/g, " ")}.`
          : "No runs yet: start one with the CLI (ragtune submit) or by uploading a config.";
        setChildren(body, el("tr", {}, el("td", { text: empty, attrs: { colspan: "8" } })));
      }
      if (focusedId !== null) {
        const again = [...body.querySelectorAll("tr[data-run-id]")].find((row) => row.getAttribute("data-run-id") === focusedId);
        const link = again && again.querySelector("a");
        if (link) link.focus();
      }
      const live = (page.runs || []).some((run) => !isFinal(run.status));
      const number = state.cursors.length;
      pageInfo.textContent = `Page ${number}: ${(page.runs || []).length} runs${chosen === "all" ? "" : `, ${runs.length} shown`}.`
        + (live ? " A run is live: this page updates every 2 seconds." : "");
      firstButton.disabled = number === 1;
      previousButton.disabled = number === 1;
      nextButton.disabled = !page.next_cursor;
    }

    async function load() {
      ctx.cancel(state.timer);
      state.timer = null;
      const cursor = state.cursors[state.cursors.length - 1];
      try {
        const status = filter.value === "all" ? null : filter.value;
        const page = await ctx.api("runs", { query: { limit: RUNS_PAGE, cursor, status } });
        if (!ctx.alive) return;
        state.page = page;
        clearAlert();
        render();
        if ((page.runs || []).some((run) => !isFinal(run.status))) state.timer = ctx.later(load, POLL_MS);
      } catch (error) {
        if (!ctx.alive) return;
        reportError(error);
        // A live page keeps trying (a blip of the network); a refused key has left the view already.
        if (state.page && (state.page.runs || []).some((run) => !isFinal(run.status))) state.timer = ctx.later(load, POLL_MS);
      }
    }

    load();
    return el("section", { class: "view", attrs: { id: "runs-view", "aria-labelledby": "runs-title" } },
      el("div", { class: "view-head" },
        el("h1", { text: "Runs", attrs: { id: "runs-title", tabindex: "-1" } }),
        el("div", { class: "field inline" }, el("label", { text: "Status", attrs: { for: "status-filter" } }), filter)),
      tableWrap(table, "Runs table"),
      el("div", { class: "pager" }, firstButton, previousButton, nextButton),
      pageInfo);
  }

  /* ---------- charts (SVG, no library) ---------- */

  /** About `count` round tick values covering [min, max]. */
  function niceTicks(min, max, count) {
    if (!(max > min)) return [min];
    const raw = (max - min) / Math.max(1, count);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
      ticks.push(Number(value.toPrecision(12)));
    }
    return ticks;
  }

  const linear = (d0, d1, r0, r1) => (value) => (d1 === d0 ? (r0 + r1) / 2 : r0 + ((value - d0) / (d1 - d0)) * (r1 - r0));

  function axisText(x, y, text, anchor, className) {
    return svgEl("text", { x, y, "text-anchor": anchor, class: className || "axis-label" }, text);
  }

  function fmtLoss(value) {
    return isNumber(value) ? value.toFixed(4) : "—";
  }

  function curvePointTitle(row) {
    const parts = [`Step ${fmtInt(row.step)}`, `training loss ${fmtLoss(row.train_loss)}`, `validation loss ${fmtLoss(row.valid_loss)}`];
    if (isNumber(row.train_accuracy)) parts.push(`training accuracy ${fmtPct(row.train_accuracy)}`);
    if (isNumber(row.valid_accuracy)) parts.push(`validation accuracy ${fmtPct(row.valid_accuracy)}`);
    return parts.join(", ");
  }

  function curveSummary(rows) {
    const train = rows.filter((row) => isNumber(row.train_loss));
    const valid = rows.filter((row) => isNumber(row.valid_loss));
    const steps = rows.map((row) => row.step).filter(isNumber);
    const parts = [`Loss curve over ${rows.length} logged steps, step ${fmtInt(Math.min(...steps))} to ${fmtInt(Math.max(...steps))}`];
    if (train.length) parts.push(`training loss from ${fmtLoss(train[0].train_loss)} to ${fmtLoss(train[train.length - 1].train_loss)}`);
    if (valid.length) parts.push(`validation loss from ${fmtLoss(valid[0].valid_loss)} to ${fmtLoss(valid[valid.length - 1].valid_loss)}`);
    return `${parts.join("; ")}.`;
  }

  /** The loss curve: training (solid) and validation (dashed) lines, one `circle.point` per row. */
  function lossChart(rows, readout) {
    const width = 720;
    const height = 320;
    const m = { top: 16, right: 20, bottom: 48, left: 64 };
    const steps = rows.map((row) => row.step).filter(isNumber);
    const losses = rows.flatMap((row) => [row.train_loss, row.valid_loss]).filter(isNumber);
    let xMin = Math.min(...steps);
    let xMax = Math.max(...steps);
    if (xMin === xMax) { xMin -= 1; xMax += 1; }
    const yMax = losses.length ? Math.max(...losses) * 1.05 : 1;
    const yMin = losses.length ? Math.min(0, Math.min(...losses)) : 0;
    const x = linear(xMin, xMax, m.left, width - m.right);
    const y = linear(yMin, yMax || 1, height - m.bottom, m.top);
    const svg = svgEl("svg", {
      id: "curve", class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": curveSummary(rows),
    });
    const xTicks = niceTicks(xMin, xMax, 8);
    const yTicks = niceTicks(yMin, yMax || 1, 5);
    for (const tick of yTicks) {
      svg.appendChild(svgEl("line", { x1: m.left, x2: width - m.right, y1: y(tick), y2: y(tick), class: "grid" }));
      svg.appendChild(axisText(m.left - 8, y(tick) + 4, fmtNumber(tick), "end"));
    }
    for (const tick of xTicks) {
      svg.appendChild(svgEl("line", { x1: x(tick), x2: x(tick), y1: height - m.bottom, y2: height - m.bottom + 5, class: "axis" }));
      svg.appendChild(axisText(x(tick), height - m.bottom + 18, fmtInt(tick), "middle"));
    }
    svg.appendChild(svgEl("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }));
    svg.appendChild(svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: "axis" }));
    svg.appendChild(axisText((m.left + width - m.right) / 2, height - 8, "Step", "middle", "axis-title"));
    svg.appendChild(svgEl("text", {
      x: 14, y: (m.top + height - m.bottom) / 2, "text-anchor": "middle", class: "axis-title",
      transform: `rotate(-90 14 ${(m.top + height - m.bottom) / 2})`,
    }, "Loss"));
    const line = (field, className) => {
      const points = rows.filter((row) => isNumber(row.step) && isNumber(row[field]))
        .map((row) => `${x(row.step).toFixed(1)},${y(row[field]).toFixed(1)}`);
      if (points.length > 1) svg.appendChild(svgEl("polyline", { points: points.join(" "), class: className }));
    };
    line("train_loss", "line-train");
    line("valid_loss", "line-valid");
    // Validation markers are squares (shape, not only colour); they are not `.point`s.
    for (const row of rows) {
      if (!isNumber(row.step) || !isNumber(row.valid_loss)) continue;
      svg.appendChild(svgEl("rect", {
        x: x(row.step) - 3, y: y(row.valid_loss) - 3, width: 6, height: 6, class: "valid-point",
      }, svgEl("title", {}, curvePointTitle(row))));
    }
    // One hoverable point per row of metrics.csv, on the training loss (or the validation loss when alone).
    for (const row of rows) {
      const value = isNumber(row.train_loss) ? row.train_loss : row.valid_loss;
      const known = isNumber(row.step) && isNumber(value);
      svg.appendChild(svgEl("circle", {
        class: known ? "point" : "point no-value",
        cx: known ? x(row.step) : m.left, cy: known ? y(value) : height - m.bottom, r: known ? 3 : 0,
        "data-step": row.step,
      }, svgEl("title", {}, curvePointTitle(row))));
    }
    // Hover anywhere: a guide line at the nearest logged step, its values written beside the chart.
    const guide = svgEl("line", { x1: 0, x2: 0, y1: m.top, y2: height - m.bottom, class: "guide", visibility: "hidden" });
    svg.appendChild(guide);
    const sorted = rows.filter((row) => isNumber(row.step)).sort((a, b) => a.step - b.step);
    svg.addEventListener("pointermove", (event) => {
      const matrix = svg.getScreenCTM();
      if (!matrix || !sorted.length) return;
      const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
      let nearest = sorted[0];
      for (const row of sorted) if (Math.abs(x(row.step) - point.x) < Math.abs(x(nearest.step) - point.x)) nearest = row;
      guide.setAttribute("x1", x(nearest.step));
      guide.setAttribute("x2", x(nearest.step));
      guide.setAttribute("visibility", "visible");
      readout.textContent = `${curvePointTitle(nearest)}.`;
    });
    svg.addEventListener("pointerleave", () => {
      guide.setAttribute("visibility", "hidden");
      readout.textContent = "Point at the chart to read a step's values.";
    });
    return svg;
  }

  function legendSwatch(className) {
    return svgEl("svg", { class: "swatch", viewBox: "0 0 32 10", width: 32, height: 10, "aria-hidden": "true" },
      svgEl("line", { x1: 0, x2: 32, y1: 5, y2: 5, class: className }));
  }

  function curveTable(rows) {
    return el("table", { class: "data-table" },
      el("caption", { text: "Logged steps (metrics.csv)" }),
      headRow(["Step", "Training loss", "Validation loss", "Training accuracy", "Validation accuracy"]),
      el("tbody", {}, rows.map((row) => el("tr", {},
        el("th", { text: fmtInt(row.step), attrs: { scope: "row" } }),
        el("td", { class: "num", text: fmtLoss(row.train_loss) }),
        el("td", { class: "num", text: fmtLoss(row.valid_loss) }),
        el("td", { class: "num", text: fmtPct(row.train_accuracy) }),
        el("td", { class: "num", text: fmtPct(row.valid_accuracy) })))));
  }

  function curveContent(curve) {
    const rows = (curve && curve.rows) || [];
    if (!curve || !curve.published) {
      return el("p", { class: "muted", text: "The curve is published once the job has ended." });
    }
    if (!rows.length) return el("p", { class: "muted", text: "The job logged no steps." });
    const readout = el("p", { class: "curve-readout", text: "Point at the chart to read a step's values." });
    const details = el("details", {}, el("summary", { text: `The curve's data (${rows.length} rows)` }));
    // The data table can hold thousands of rows: built only when opened.
    details.addEventListener("toggle", () => {
      if (details.open && details.childElementCount === 1) details.appendChild(tableWrap(curveTable(rows), "Curve data"));
    });
    return [
      el("figure", { class: "chart-figure" },
        lossChart(rows, readout),
        el("figcaption", {},
          el("ul", { class: "legend" },
            el("li", {}, legendSwatch("line-train"), "Training loss (solid line, round points)"),
            el("li", {}, legendSwatch("line-valid"), "Validation loss (dashed line, square points)")))),
      readout,
      details,
    ];
  }

  /** Accuracy per arm as a dot with its 95% interval as an error bar (0–100%). */
  function accuracyChart(arms) {
    const shown = arms.filter((arm) => !arm.error && isNumber(arm.accuracy));
    const rowHeight = 38;
    const m = { top: 12, right: 72, bottom: 44, left: 200 };
    const width = 720;
    const height = m.top + m.bottom + rowHeight * Math.max(1, shown.length);
    const x = linear(0, 1, m.left, width - m.right);
    const label = shown.length
      ? `Accuracy with 95% intervals: ${shown.map((arm) => `${arm.name} ${fmtPct(arm.accuracy)}${
        Array.isArray(arm.ci95) ? ` (${fmtPct(arm.ci95[0])} to ${fmtPct(arm.ci95[1])})` : ""}`).join("; ")}.`
      : "Accuracy chart: no arm has an accuracy yet.";
    const svg = svgEl("svg", { id: "accuracy-chart", class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
    for (let tick = 0; tick <= 1.0001; tick += 0.2) {
      svg.appendChild(svgEl("line", { x1: x(tick), x2: x(tick), y1: m.top, y2: height - m.bottom, class: "grid" }));
      svg.appendChild(axisText(x(tick), height - m.bottom + 18, `${Math.round(tick * 100)}%`, "middle"));
    }
    svg.appendChild(svgEl("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }));
    svg.appendChild(axisText((m.left + width - m.right) / 2, height - 8, "Accuracy (dot) and 95% interval (bar)", "middle", "axis-title"));
    shown.forEach((arm, index) => {
      const cy = m.top + rowHeight * index + rowHeight / 2;
      const name = arm.name.length > 28 ? `${arm.name.slice(0, 27)}…` : arm.name;
      const title = `${arm.name}: ${fmtPct(arm.accuracy)}`
        + (Array.isArray(arm.ci95) ? `, 95% interval ${fmtPct(arm.ci95[0])} to ${fmtPct(arm.ci95[1])}` : "")
        + (arm.recorded ? " (recorded answers)" : "");
      const group = svgEl("g", { class: arm.recorded ? "arm recorded" : "arm", "data-arm": arm.name }, svgEl("title", {}, title));
      group.appendChild(axisText(m.left - 10, cy + 4, arm.recorded ? `${name} (recorded)` : name, "end", "arm-label"));
      if (Array.isArray(arm.ci95) && isNumber(arm.ci95[0]) && isNumber(arm.ci95[1])) {
        const [low, high] = arm.ci95;
        group.appendChild(svgEl("line", { x1: x(low), x2: x(high), y1: cy, y2: cy, class: "error-bar" }));
        group.appendChild(svgEl("line", { x1: x(low), x2: x(low), y1: cy - 7, y2: cy + 7, class: "error-bar" }));
        group.appendChild(svgEl("line", { x1: x(high), x2: x(high), y1: cy - 7, y2: cy + 7, class: "error-bar" }));
      }
      group.appendChild(svgEl("circle", { cx: x(arm.accuracy), cy, r: 6, class: "accuracy-dot" }));
      group.appendChild(axisText(width - m.right + 8, cy + 4, fmtPct(arm.accuracy), "start", "value-label"));
      svg.appendChild(group);
    });
    return svg;
  }

  /* ---------- evaluation: table, chart, per-question answers ---------- */

  function armNote(arm) {
    const notes = [];
    if (arm.recorded) {
      const of = isNumber(arm.recorded.questions) ? ` (${fmtInt(arm.questions)} of ${fmtInt(arm.recorded.questions)} questions)` : "";
      notes.push(el("span", { class: "tag tag-recorded", text: "recorded answers" }), ` from `, timeNode(arm.recorded.recorded_at), of);
    }
    if (arm.model_shutdown) notes.push(notes.length ? "; " : "", `model ${arm.model_shutdown}`);
    return notes.length ? notes : "—";
  }

  function evaluationTable(arms) {
    const columns = ["Arm", "Model", "Accuracy", "95% interval", "Correct", "Errors", "Prompt tokens (mean)",
      "Completion tokens (mean)", "Latency p50", "Cost per 1,000 questions", "Notes"];
    return el("table", { attrs: { id: "evaluation-table" } },
      el("caption", { class: "visually-hidden", text: "Evaluation arms" }),
      headRow(columns),
      el("tbody", {}, arms.map((arm) => {
        const cells = [el("th", { text: arm.name, attrs: { scope: "row" } }), el("td", { class: "model-cell", text: arm.model || "—" })];
        if (arm.error) {
          const error = arm.error;
          cells.push(el("td", { class: "arm-error", attrs: { colspan: String(columns.length - 2) } },
            el("strong", { text: "Not evaluated: " }), typeof error === "string" ? error : error.message || "no reason given",
            error.code ? el("span", { class: "muted", text: ` (${error.code})` }) : null));
        } else {
          const ci = Array.isArray(arm.ci95) ? `${fmtPct(arm.ci95[0])} – ${fmtPct(arm.ci95[1])}` : "—";
          cells.push(
            el("td", { class: "accuracy num", text: fmtPct(arm.accuracy) }),
            el("td", { class: "num", text: ci }),
            el("td", { class: "num", text: isNumber(arm.correct) ? `${fmtInt(arm.correct)} of ${fmtInt(arm.questions)}` : "—" }),
            el("td", { class: "num", text: fmtInt(arm.errors) }),
            el("td", { class: "num", text: fmtNumber(arm.prompt_tokens_mean) }),
            el("td", { class: "num", text: fmtNumber(arm.completion_tokens_mean) }),
            el("td", { class: "num", text: isNumber(arm.latency_ms_p50) ? `${fmtInt(arm.latency_ms_p50)} ms` : "—" }),
            el("td", { class: "num", text: fmtUsd(arm.cost_per_1k_usd) }),
            el("td", { class: "notes-cell" }, armNote(arm)));
        }
        return el("tr", { attrs: { "data-arm": arm.name } }, cells);
      })));
  }

  /** The evaluation's status line, error, table and chart (used by the run view and the compare view). */
  function evaluationContent(evaluation) {
    const arms = evaluation.arms || [];
    const parts = [
      el("p", { class: "status-line" }, "Evaluation ", statusBadge(evaluation.status),
        isNumber(evaluation.questions) ? ` · ${fmtInt(evaluation.questions)} held-out questions` : "",
        evaluation.match ? ` · an answer counts when the reference is found at its ${evaluation.match === "start" ? "start" : "anywhere in it"}` : ""),
    ];
    if (evaluation.error) {
      parts.push(el("p", { class: "error-box" }, el("strong", { text: "The evaluation failed: " }),
        evaluation.error.message || "no reason given"));
    }
    if (evaluation.estimate && EVALUATION_LIVE.has(evaluation.status)) {
      parts.push(el("details", {}, el("summary", { text: "What it may spend at most" }), objectList(evaluation.estimate)));
    }
    if (!arms.length) {
      const why = evaluation.status === "running" ? "The evaluation is running: the arms appear when it has finished."
        : evaluation.status === "pending" ? "No evaluation has run yet: it starts once the run has succeeded, or with Evaluate again."
          : "No arms recorded.";
      parts.push(el("p", { class: "muted", text: why }));
      return parts;
    }
    parts.push(tableWrap(evaluationTable(arms), "Evaluation table"));
    parts.push(el("figure", { class: "chart-figure" }, accuracyChart(arms),
      el("figcaption", { class: "muted", text: "Dots: accuracy on the held-out questions; bars: 95% (Wilson) interval. Hollow dots: recorded answers of a model that is gone." })));
    return parts;
  }

  function armVerdict(answer) {
    if (!answer) return el("span", { class: "verdict verdict-none", text: "not asked" });
    if (answer.error) return el("span", { class: "verdict verdict-error", text: "error (not scored)" });
    if (answer.correct === true) return el("span", { class: "verdict verdict-right", text: "✓ correct" });
    if (answer.correct === false) return el("span", { class: "verdict verdict-wrong", text: "✗ wrong" });
    return el("span", { class: "verdict verdict-none", text: "not scored" });
  }

  function armAnswerCell(answer) {
    let body;
    if (!answer) body = null;
    else if (answer.error) body = el("p", { class: "answer-text muted", text: String(answer.error) });
    else if (answer.refusal) body = el("p", { class: "answer-text" }, el("em", { text: "Refused: " }), answer.refusal);
    else body = el("p", { class: "answer-text", text: answer.answer === null || answer.answer === undefined ? "—" : answer.answer });
    return el("td", {}, armVerdict(answer), body);
  }

  /** Per-question answers with a filter for questions some arm got wrong. */
  function answersContent(answers) {
    if (!answers.length) return el("p", { class: "muted", text: "No answers yet: they are written when an evaluation finishes." });
    const armNames = [];
    const models = {};
    for (const row of answers) {
      for (const [name, answer] of Object.entries(row.arms || {})) {
        if (!armNames.includes(name)) armNames.push(name);
        if (answer && answer.model && !models[name]) models[name] = answer.model;
      }
    }
    const someWrong = (row) => Object.values(row.arms || {}).some((answer) => answer && answer.correct === false);
    const rows = answers.map((row) => el("tr", { attrs: { "data-index": row.index, "data-some-wrong": someWrong(row) ? "true" : "false" } },
      el("th", { text: fmtInt(row.index), attrs: { scope: "row" } }),
      el("td", { class: "question-cell", text: row.question === undefined ? "—" : row.question }),
      el("td", { class: "reference-cell", text: row.reference === undefined ? "—" : row.reference }),
      armNames.map((name) => armAnswerCell((row.arms || {})[name]))));
    const table = el("table", { attrs: { id: "answers-table" } },
      el("caption", { class: "visually-hidden", text: "Each held-out question with every arm's answer" }),
      el("thead", {}, el("tr", {},
        el("th", { text: "#", attrs: { scope: "col" } }),
        el("th", { text: "Question", attrs: { scope: "col" } }),
        el("th", { text: "Reference", attrs: { scope: "col" } }),
        armNames.map((name) => el("th", { attrs: { scope: "col" } }, name,
          models[name] ? el("span", { class: "th-model", text: models[name] }) : null)))),
      el("tbody", {}, rows));
    const count = el("p", { class: "muted", attrs: { "aria-live": "polite" } });
    const wrongCount = answers.filter(someWrong).length;
    const onlyWrong = el("input", { attrs: { type: "checkbox", id: "only-wrong" } });
    const apply = () => {
      for (const row of rows) row.hidden = onlyWrong.checked && row.getAttribute("data-some-wrong") !== "true";
      count.textContent = onlyWrong.checked
        ? `Showing the ${fmtInt(wrongCount)} of ${fmtInt(answers.length)} questions some arm got wrong.`
        : `Showing all ${fmtInt(answers.length)} questions (${fmtInt(wrongCount)} with a wrong answer).`;
    };
    onlyWrong.addEventListener("change", apply);
    apply();
    return [
      el("div", { class: "field inline" }, onlyWrong, el("label", { text: "Only questions some arm got wrong", attrs: { for: "only-wrong" } })),
      count,
      tableWrap(table, "Answers table"),
    ];
  }

  /* ---------- One run ---------- */

  function runView(ctx, runId) {
    document.title = `Run ${runId} · ragtune`;
    const path = `runs/${encodeURIComponent(runId)}`;
    const state = { run: null, timer: null, firstStep: null, curve: null, evaluationStatus: undefined };

    const statusSlot = el("p", { class: "status-line" }, "Loading the run…");
    const progress = el("progress", { attrs: { id: "progress", max: "1", "aria-describedby": "progress-text" } });
    const progressText = el("p", { attrs: { id: "progress-text" } });
    const progressPanel = el("div", { class: "panel progress-panel", attrs: { id: "progress-section" } },
      el("label", { text: "Training progress", attrs: { for: "progress" } }), progress, progressText);
    progressPanel.hidden = true;
    const errorSlot = el("div");
    const overviewSlot = el("div");
    const eventsSlot = el("div");
    const dataSlot = el("div");
    const estimateSlot = el("div");
    const filesSlot = el("div");
    const pngSlot = el("p");
    const curveSlot = el("div", {}, el("p", { class: "muted", text: "Loading the curve…" }));
    const evaluationSlot = el("div", {}, el("p", { class: "muted", text: "Loading the evaluation…" }));
    const answersSlot = el("div", {}, el("p", { class: "muted", text: "No answers yet: they are written when an evaluation finishes." }));
    const config = el("pre", { class: "config", attrs: { id: "config", tabindex: "0", "aria-label": "The run's config as JSON" } });

    const actions = el("div", { class: "actions" },
      button("Cancel job", { id: "cancel-run", className: "danger", onClick: (event) => act(event.currentTarget, {
        question: `Cancel the fine-tuning job of run ${runId}? Training stops at its provider; this cannot be undone.`,
        call: () => ctx.api(`${path}/cancel`, { method: "POST" }),
        done: (result) => `Cancel requested: the job now reads “${result.status}”.`,
      }) }),
      button("Delete model", { id: "delete-model", className: "danger", onClick: (event) => act(event.currentTarget, {
        question: `Delete the model deployment of run ${runId}? It stops answering (and billing); the run keeps its record.`,
        call: () => ctx.api(`${path}/model`, { method: "DELETE" }),
        done: (result) => result.message || `Deleted: ${result.deleted}.`,
      }) }),
      button("Evaluate again", { id: "evaluate-again", onClick: (event) => act(event.currentTarget, {
        question: `Evaluate run ${runId} again? Every held-out question is asked of every arm: paid calls to the models.`,
        call: () => ctx.api(`${path}/evaluation`, { method: "POST", body: {} }),
        done: (result) => `Evaluation started (${result.status}); the table below updates when it has finished.`,
      }) }),
      el("a", { class: "button-link", text: "Compare with other runs", attrs: { href: `#/compare?runs=${encodeURIComponent(runId)}` } }),
      el("a", { class: "button-link", text: "Ask this run's model", attrs: { href: `#/ask?run=${encodeURIComponent(runId)}` } }));

    /** A confirmed action; its answer (or the API's refusal) is shown as a sentence, then the run is read again. */
    async function act(control, { question, call, done }) {
      if (!window.confirm(question)) return;
      clearAlert();
      clearNotice();
      control.disabled = true;
      control.setAttribute("aria-busy", "true");
      try {
        const result = await call();
        if (!ctx.alive) return;
        showNotice(done(result));
      } catch (error) {
        if (!ctx.alive) return;
        reportError(error);
      } finally {
        control.disabled = false;
        control.removeAttribute("aria-busy");
      }
      if (ctx.alive) tick();
    }

    function renderStatus(run) {
      setChildren(statusSlot, statusBadge(run.status, "run-status"),
        run.status_changed_at ? [" since ", timeNode(run.status_changed_at)] : "",
        isFinal(run.status) ? "" : el("span", { class: "muted", text: " · updates every 2 seconds" }));
    }

    /** Step and total: the provider's metrics (open: `step`, `total_steps`), else its newest "Step N/M" event
     * (OpenAI's), as the ragtune command reads them; a provider that reports no total (Bedrock) gives the step only. */
    function stepsOf(run) {
      const metrics = run.metrics || {};
      let step = isNumber(metrics.step) ? metrics.step : null;
      let total = isNumber(metrics.total_steps) ? metrics.total_steps : null;
      for (const event of [...(run.events || [])].reverse()) {
        const found = /\bStep (\d+)\/(\d+)\b/.exec(String(event.message || ""));
        if (found) {
          if (total === null) [step, total] = [Number(found[1]), Number(found[2])];
          break;
        }
      }
      return { step, total };
    }

    function renderProgress(run) {
      const { step, total } = stepsOf(run);
      const training = !isFinal(run.status) && isNumber(step);
      progressPanel.hidden = !training;
      if (!training) return;
      if (!isNumber(total) || total <= 0) {  // no total known: an indeterminate bar, the step and the finish time
        progress.removeAttribute("value");
        const finish = toMillis(run.estimated_finish);
        progressText.textContent = `Step ${fmtInt(step)}`
          + (finish === null ? "." : `; about ${fmtDuration(Math.max(0, finish - Date.now()))} left.`);
        return;
      }
      progress.max = total;
      progress.value = Math.min(step, total);
      // Without the provider's estimated finish, the ETA is the rate of steps since this page saw the first one.
      if (!state.firstStep || step < state.firstStep.step) state.firstStep = { step, at: Date.now() };
      let remaining = null;
      const finish = toMillis(run.estimated_finish);
      if (finish !== null) remaining = Math.max(0, finish - Date.now());
      else if (step > state.firstStep.step) {
        const rate = (step - state.firstStep.step) / (Date.now() - state.firstStep.at);
        remaining = (total - step) / rate;
      }
      progressText.textContent = `Step ${fmtInt(step)} of ${fmtInt(total)} (${Math.round((100 * step) / total)}%)`
        + (remaining === null ? "; estimating the time left…" : `; about ${fmtDuration(remaining)} left.`);
    }

    function renderOverview(run) {
      const cfg = run.config || {};
      const baseModel = (cfg.fine_tune && cfg.fine_tune.model) || null;
      const adopted = (cfg.adopt && cfg.adopt.model) || null;
      const manifest = run.weights_manifest_url ? externalLink(run.weights_manifest_url, "manifest", "weights-manifest") : null;
      const code = (value) => (value ? el("code", { text: value }) : null);
      setChildren(overviewSlot, kvList([
        ["Provider", run.provider || "openai"],
        ["Base model", baseModel],
        ["Fine-tuned model", code(run.fine_tuned_model)],
        ["Adopted model", adopted ? [code(adopted), " (trained elsewhere; nothing trained here)"] : null],
        ["Model shutdown", run.model_shutdown],
        ["Model gone since", run.model_gone_at ? timeNode(run.model_gone_at) : null],
        ["Deployment", code(run.deployment_arn)],
        ["Model deleted", run.model_deleted_at ? [timeNode(run.model_deleted_at), run.deleted_deployment_arn ? [" (", code(run.deleted_deployment_arn), ")"] : ""] : null],
        ["Weights", run.weights_uri || manifest ? [code(run.weights_uri), run.weights_uri && manifest ? " · " : "", manifest] : null],
        ["Job", code(run.job_id)],
        ["Training file", code(run.training_file_id)],
        ["Validation file", code(run.validation_file_id)],
        ["Trained tokens", isNumber(run.trained_tokens) ? fmtInt(run.trained_tokens) : null],
        ["Created", timeNode(run.created_at)],
        ["Updated", timeNode(run.updated_at)],
        ["Finished", run.finished_at ? timeNode(run.finished_at) : null],
        ["Duration", durationOf(run)],
        ["Estimated finish", run.estimated_finish && !isFinal(run.status) ? timeNode(run.estimated_finish) : null],
        ["Evaluation", run.evaluation_status ? statusBadge(run.evaluation_status) : null],
        ["Config", run.config_key ? [code(run.config_key), run.config_version ? ` (version ${run.config_version})` : ""] : null],
        ["Dataset", run.dataset_object ? [code(run.dataset_object.uri), run.dataset_object.version_id ? ` (version ${run.dataset_object.version_id})` : ""] : null],
        ["Notice not sent", run.notification_error],
        ["Latest metrics", run.metrics && Object.keys(run.metrics).length ? objectList(run.metrics) : null],
      ]));
      setChildren(errorSlot, run.error
        ? el("div", { class: "error-box", attrs: { id: "run-error" } },
          el("strong", { text: "Error: " }), run.error.message || "no message",
          el("span", { class: "muted", text: ` (${[run.error.code, run.error.openai_code].filter(Boolean).join(", ")})` }))
        : null);
    }

    function renderEvents(run) {
      const events = Array.isArray(run.events) ? run.events : [];
      if (!events.length) {
        setChildren(eventsSlot, el("p", { class: "muted", text: "No job events recorded." }));
        return;
      }
      setChildren(eventsSlot, el("ol", { class: "events" }, events.map((event) => el("li", {},
        timeNode(event.created_at), " ",
        el("span", { class: `level level-${token(event.level)}`, text: event.level || "info" }), " ",
        el("span", { class: "event-message", text: event.message || "" })))));
    }

    function gateTable(gate) {
      const files = ["train", "validation"].filter((name) => gate[name]);
      const keys = [];
      for (const name of files) for (const key of Object.keys(gate[name])) if (!keys.includes(key)) keys.push(key);
      return el("table", { class: "data-table", attrs: { id: "gate-table" } },
        el("caption", { text: "The data gate's report per file" }),
        headRow(["Check", ...files.map((name) => (name === "train" ? "Training file" : "Validation file"))]),
        el("tbody", {}, keys.map((key) => el("tr", {},
          el("th", { text: humanise(key), attrs: { scope: "row" } }),
          files.map((name) => el("td", { class: "num" }, valueNode(gate[name][key])))))));
    }

    function renderData(run) {
      setChildren(dataSlot,
        el("h3", { text: "Counts" }), run.counts ? objectList(run.counts) : el("p", { class: "muted", text: "Not prepared yet." }),
        el("h3", { text: "Data gate" }), run.gate ? tableWrap(gateTable(run.gate), "Data gate table") : el("p", { class: "muted", text: "Not prepared yet." }));
      setChildren(estimateSlot,
        el("h3", { text: "Tokens" }), run.tokens ? objectList(run.tokens) : el("p", { class: "muted", text: "Not counted yet." }),
        el("h3", { text: "Estimate" }), run.estimate ? objectList(run.estimate) : el("p", { class: "muted", text: "No estimate recorded." }));
    }

    function renderFiles(run) {
      const files = run.files || {};
      const names = ["train", "validation", "questions"].filter((name) => files[name]);
      const reports = run.report_urls || {};
      const reportNames = { loss_png: "Loss curve (PNG)", metrics_csv: "Metrics (CSV)", evaluation_jsonl: "Answers (JSONL)" };
      setChildren(filesSlot,
        names.length
          ? tableWrap(el("table", { class: "data-table", attrs: { id: "files-table" } },
            el("caption", { text: "Prepared files in the data bucket" }),
            headRow(["File", "S3 key", "Size", "Examples"]),
            el("tbody", {}, names.map((name) => el("tr", {},
              el("th", { text: name, attrs: { scope: "row" } }),
              el("td", {}, el("code", { text: files[name].key || "—" })),
              el("td", { class: "num", text: fmtBytes(files[name].bytes) }),
              el("td", { class: "num", text: fmtInt(files[name].examples) }))))), "Files table")
          : el("p", { class: "muted", text: "No files prepared yet." }),
        Object.keys(reports).length
          ? el("div", {}, el("h3", { text: "Reports (links valid for 15 minutes)" }),
            el("ul", { class: "plain-list" }, Object.entries(reports).map(([name, url]) =>
              el("li", {}, externalLink(url, reportNames[name] || humanise(name))))))
          : null);
      setChildren(pngSlot, reports.loss_png
        ? externalLink(reports.loss_png, "Download PNG", "curve-png")
        : el("span", { class: "muted", text: "The PNG is written when the job has ended." }));
    }

    function renderRun(run) {
      const first = state.run === null;
      state.run = run;
      renderStatus(run);
      renderProgress(run);
      renderOverview(run);
      renderEvents(run);
      renderData(run);
      renderFiles(run);
      if (first) config.textContent = run.config ? JSON.stringify(run.config, null, 2) : "Not prepared yet.";
      else if (run.config) config.textContent = JSON.stringify(run.config, null, 2);
    }

    /** A section's own expected refusal (e.g. no held-out questions) is shown in place; others go to the alert. */
    function inPlace(slot, error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 409)) {
        setChildren(slot, el("p", { class: "muted", text: error.message }));
        return true;
      }
      return false;
    }

    async function loadCurve() {
      try {
        const curve = await ctx.api(`${path}/curve`);
        if (!ctx.alive) return;
        const changed = !state.curve || state.curve.published !== curve.published || (state.curve.rows || []).length !== (curve.rows || []).length;
        state.curve = curve;
        if (changed) setChildren(curveSlot, curveContent(curve));
      } catch (error) {
        if (ctx.alive && !inPlace(curveSlot, error)) reportError(error);
      }
    }

    async function loadEvaluation() {
      try {
        const evaluation = await ctx.api(`${path}/evaluation`);
        if (!ctx.alive) return;
        const was = state.evaluationStatus;
        state.evaluationStatus = evaluation.status;
        setChildren(evaluationSlot, evaluationContent(evaluation));
        if (was !== evaluation.status && !EVALUATION_LIVE.has(evaluation.status)) loadAnswers();
      } catch (error) {
        if (ctx.alive && !inPlace(evaluationSlot, error)) reportError(error);
      }
    }

    async function loadAnswers() {
      try {
        // Paged by the API (a Lambda answers at most 6 MB): read every page, then draw the table once.
        const result = { answers: [] };
        for (let offset = 0; offset !== null && offset !== undefined;) {
          const page = await ctx.api(`${path}/evaluation/answers?offset=${offset}&limit=200`);
          if (!ctx.alive) return;
          result.answers.push(...(page.answers || []));
          offset = page.next_offset;
        }
        if (!ctx.alive) return;
        const keep = document.getElementById("only-wrong");
        const wasChecked = keep ? keep.checked : false;
        setChildren(answersSlot, answersContent(result.answers || []));
        const box = document.getElementById("only-wrong");
        if (box && wasChecked) {
          box.checked = true;
          box.dispatchEvent(new Event("change"));
        }
      } catch (error) {
        if (ctx.alive && !inPlace(answersSlot, error)) reportError(error);
      }
    }

    /** Read the run; while it (or its evaluation) is live, again in 2 s. */
    async function tick() {
      ctx.cancel(state.timer);
      state.timer = null;
      let run;
      try {
        run = await ctx.api(path);
      } catch (error) {
        if (!ctx.alive) return;
        if (error instanceof ApiError && error.status === 404) {
          setChildren(statusSlot, el("strong", { text: error.message }));
          showAlert(error.message);
          return;
        }
        reportError(error);
        if (state.run && !isFinal(state.run.status)) state.timer = ctx.later(tick, POLL_MS);
        return;
      }
      if (!ctx.alive) return;
      const before = state.run;
      renderRun(run);
      const pending = [];
      // The curve is published when the job has ended: read again while it is not, as the run moves.
      if (!state.curve || !state.curve.published) {
        if (!before || before.status !== run.status || !isFinal(run.status)) pending.push(loadCurve());
      }
      // The run's record says how its evaluation stands: read the evaluation when that changes or while it is live.
      // A succeeded run with held-out questions is evaluated right after: wait for it while it has not started yet.
      const evaluationDue = run.status === "succeeded" && !run.evaluation_status && Boolean((run.files || {}).questions);
      const evaluationLive = evaluationDue || EVALUATION_LIVE.has(run.evaluation_status) || state.evaluationStatus === "running";
      if (!before || evaluationLive || before.evaluation_status !== run.evaluation_status) pending.push(loadEvaluation());
      await Promise.all(pending);
      if (!ctx.alive) return;
      if (!isFinal(run.status) || evaluationLive) state.timer = ctx.later(tick, POLL_MS);
    }

    tick();
    return el("section", { class: "view", attrs: { id: "run-view", "aria-labelledby": "run-title" } },
      el("p", { class: "breadcrumb" }, el("a", { text: "← All runs", attrs: { href: "#/runs" } })),
      el("h1", { attrs: { id: "run-title", tabindex: "-1" } }, "Run ", el("code", { text: runId })),
      statusSlot,
      actions,
      progressPanel,
      errorSlot,
      section("Overview", "run-overview", overviewSlot),
      section("Events", "run-events", eventsSlot),
      el("div", { class: "columns" },
        section("Data", "run-data", dataSlot),
        section("Tokens and estimate", "run-estimate", estimateSlot)),
      section("Files", "run-files", filesSlot),
      section("Loss curve", "run-curve", pngSlot, curveSlot),
      section("Evaluation", "run-evaluation", evaluationSlot),
      section("Answers per question", "run-answers", answersSlot),
      section("Config", "run-config", config));
  }

  /* ---------- Compare ---------- */

  function runChoiceLabel(run) {
    const model = run.fine_tuned_model || baseModelOf(run);
    return [run.run_id, run.provider || "openai", model].filter(Boolean).join(" · ");
  }

  function compareView(ctx, initialIds) {
    document.title = "Compare · ragtune";
    const state = { chosen: [...initialIds], runs: [], cursor: null, timer: null, first: null, comparing: false };
    const list = el("ul", { class: "choices", attrs: { id: "compare-choices" } }, el("li", { class: "muted", text: "Loading runs…" }));
    const more = button("More runs", { id: "compare-more", className: "secondary", onClick: () => loadRuns() });
    more.hidden = true;
    const order = el("p", { attrs: { id: "compare-order", "aria-live": "polite" } });
    const compareButton = button("Compare", { id: "compare-button", onClick: () => startComparison() });
    const results = el("div", { attrs: { id: "compare-results" } });

    function boxes() {
      return [...list.querySelectorAll("input[type=checkbox]")];
    }

    function sync() {
      // The choice stays in the address (without firing a new route) so the view can be shared or reloaded.
      const hash = state.chosen.length ? `#/compare?runs=${state.chosen.map(encodeURIComponent).join(",")}` : "#/compare";
      if (window.location.hash !== hash) window.history.replaceState(null, "", hash);
      for (const box of boxes()) box.disabled = !box.checked && state.chosen.length >= MAX_COMPARE;
      if (!state.chosen.length) order.textContent = "Choose up to five runs: the first one's held-out questions are asked of every other run's model.";
      else {
        order.textContent = `Questions of ${state.chosen[0]}` + (state.chosen.length > 1
          ? `, asked of ${state.chosen.slice(1).join(", ")} (${state.chosen.length} of ${MAX_COMPARE} chosen).`
          : ". Choose at least one more run to compare.");
      }
      compareButton.disabled = state.chosen.length < 2;
      if (state.chosen[0] !== state.first) {
        state.first = state.chosen[0] || null;
        state.comparing = false;
        loadEvaluation();
      }
    }

    function choice(run, index) {
      const id = `compare-run-${index}`;
      const box = el("input", { attrs: { type: "checkbox", id, value: run.run_id }, props: { checked: state.chosen.includes(run.run_id) } });
      box.addEventListener("change", () => {
        if (box.checked && !state.chosen.includes(run.run_id)) state.chosen.push(run.run_id);
        if (!box.checked) state.chosen = state.chosen.filter((chosenId) => chosenId !== run.run_id);
        sync();
      });
      return el("li", {}, box, el("label", { attrs: { for: id } }, runChoiceLabel(run), " ", statusBadge(run.status)));
    }

    function renderChoices() {
      // Only succeeded runs have a model (or recorded answers) to compare; runs named in the address stay listed.
      const listed = state.runs.filter((run) => run.status === "succeeded" || state.chosen.includes(run.run_id));
      const known = new Set(listed.map((run) => run.run_id));
      const extra = state.chosen.filter((id) => !known.has(id)).map((id) => ({ run_id: id, status: "unknown", provider: "" }));
      const all = [...listed, ...extra];
      setChildren(list, all.length ? all.map(choice) : el("li", { class: "muted", text: "No succeeded runs yet." }));
      more.hidden = !state.cursor;
      sync();
    }

    async function loadRuns() {
      try {
        const page = await ctx.api("runs", { query: { limit: CHOICE_PAGE, cursor: state.cursor } });
        if (!ctx.alive) return;
        state.runs.push(...(page.runs || []));
        state.cursor = page.next_cursor || null;
        renderChoices();
      } catch (error) {
        if (ctx.alive) reportError(error);
      }
    }

    /** The first chosen run's evaluation as recorded (nothing is started); polled while it is live. */
    async function loadEvaluation() {
      ctx.cancel(state.timer);
      state.timer = null;
      const first = state.first;
      if (!first) {
        setChildren(results, el("p", { class: "muted", text: "No run chosen yet." }));
        return;
      }
      try {
        const evaluation = await ctx.api(`runs/${encodeURIComponent(first)}/evaluation`);
        if (!ctx.alive || state.first !== first) return;
        setChildren(results, el("h2", {}, "Arms on the questions of ", el("a", { text: first, attrs: { href: runHref(first) } })),
          evaluationContent(evaluation));
        // A never-evaluated run reads `pending` for good: poll only a running evaluation or one just asked for.
        if (evaluation.status === "running" || (state.comparing && EVALUATION_LIVE.has(evaluation.status))) {
          state.timer = ctx.later(loadEvaluation, POLL_MS);
        }
        else if (state.comparing) {
          state.comparing = false;
          if (evaluation.status === "succeeded") showNotice("The comparison has finished: every arm is in the table.");
          else showAlert((evaluation.error && evaluation.error.message) || "The comparison failed.");
        }
      } catch (error) {
        if (!ctx.alive || state.first !== first) return;
        if (error instanceof ApiError && (error.status === 404 || error.status === 409)) {
          setChildren(results, el("p", { class: "muted", text: error.message }));
        } else reportError(error);
      }
    }

    async function startComparison() {
      const [first, ...others] = state.chosen;
      if (!first || !others.length) return;
      const question = `Ask the models of ${others.join(", ")} every held-out question of ${first}? `
        + "Each question is a paid call to each model.";
      if (!window.confirm(question)) return;
      clearAlert();
      clearNotice();
      compareButton.disabled = true;
      compareButton.setAttribute("aria-busy", "true");
      try {
        const started = await ctx.api(`runs/${encodeURIComponent(first)}/evaluation`, { method: "POST", body: { compare_with: others } });
        if (!ctx.alive) return;
        showNotice(`Comparison started (${started.status}); the table updates every 2 seconds until it has finished.`);
        state.comparing = true;
        state.first = first;
        loadEvaluation();
      } catch (error) {
        if (ctx.alive) reportError(error);
      } finally {
        compareButton.removeAttribute("aria-busy");
        compareButton.disabled = state.chosen.length < 2;
      }
    }

    loadRuns();
    return el("section", { class: "view", attrs: { id: "compare-view", "aria-labelledby": "compare-title" } },
      el("h1", { text: "Compare runs", attrs: { id: "compare-title", tabindex: "-1" } }),
      el("p", { text: "The arms already recorded for the first chosen run are shown at once. Compare asks every other chosen run's model the same held-out questions (a model that is gone answers from its recorded answers)." }),
      el("fieldset", { class: "panel" },
        el("legend", { text: `Runs to compare (up to ${MAX_COMPARE}; the first chosen supplies the questions)` }),
        list, more),
      order,
      el("div", { class: "actions" }, compareButton),
      results);
  }

  /* ---------- Ask ---------- */

  function askView(ctx, preselected) {
    document.title = "Ask · ragtune";
    const select = el("select", { attrs: { id: "ask-run" } },
      el("option", { text: "Latest succeeded run with a model", attrs: { value: "" } }));
    const question = el("textarea", { attrs: { id: "question", rows: "5", maxlength: "2000", "aria-describedby": "question-help" } });
    const help = el("p", { class: "muted", attrs: { id: "question-help" }, text: "Up to 2,000 characters. Ctrl+Enter asks." });
    const askButton = button("Ask", { id: "ask-button", onClick: () => ask() });
    const answer = el("p", { class: "answer-text", attrs: { id: "answer" } });
    const answerKind = el("p", { class: "muted", attrs: { id: "answer-kind" } });
    const model = el("code", { attrs: { id: "answer-model" } });
    const runLink = el("span", { attrs: { id: "answer-run" } });
    const usage = el("span", { attrs: { id: "answer-usage" } });
    const latency = el("span", { attrs: { id: "answer-latency" } });
    const result = el("section", { class: "panel", attrs: { id: "answer-section", "aria-labelledby": "answer-heading", "aria-live": "polite" } },
      el("h2", { text: "Answer", attrs: { id: "answer-heading" } }), answerKind, answer,
      el("dl", { class: "kv" },
        el("div", { class: "kv-row" }, el("dt", { text: "Model" }), el("dd", {}, model)),
        el("div", { class: "kv-row" }, el("dt", { text: "Run" }), el("dd", {}, runLink)),
        el("div", { class: "kv-row" }, el("dt", { text: "Tokens" }), el("dd", {}, usage)),
        el("div", { class: "kv-row" }, el("dt", { text: "Latency" }), el("dd", {}, latency))));
    result.hidden = true;

    question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        ask();
      }
    });

    async function loadRuns() {
      try {
        const page = await ctx.api("runs", { query: { limit: CHOICE_PAGE } });
        if (!ctx.alive) return;
        const runs = (page.runs || []).filter((run) => run.status === "succeeded");
        for (const run of runs) select.appendChild(el("option", { text: runChoiceLabel(run), attrs: { value: run.run_id } }));
        if (preselected && !runs.some((run) => run.run_id === preselected)) {
          select.appendChild(el("option", { text: preselected, attrs: { value: preselected } }));
        }
        if (preselected) select.value = preselected;
      } catch (error) {
        if (ctx.alive) reportError(error);
      }
    }

    async function ask() {
      if (askButton.disabled) return;
      const text = question.value;
      clearAlert();
      clearNotice();
      if (!text.trim()) {
        showAlert("Write a question first.");
        question.focus();
        return;
      }
      const body = { question: text };
      if (select.value) body.run_id = select.value;
      askButton.disabled = true;
      askButton.setAttribute("aria-busy", "true");
      askButton.textContent = "Asking…";
      const started = performance.now();
      try {
        const reply = await ctx.api("ask", { method: "POST", body });
        const elapsed = performance.now() - started;
        if (!ctx.alive) return;
        const refused = reply.answer === null || reply.answer === undefined;
        answerKind.textContent = refused ? "The model declined to answer; its refusal:" : "";
        answerKind.hidden = !refused;
        answer.textContent = refused ? reply.refusal || "(no refusal message)" : reply.answer;
        answer.classList.toggle("refusal", refused);
        model.textContent = reply.model || "—";
        setChildren(runLink, reply.run_id ? el("a", { text: reply.run_id, attrs: { href: runHref(reply.run_id) } }) : "—");
        const u = reply.usage || {};
        usage.textContent = `prompt ${fmtInt(u.prompt_tokens)} · completion ${fmtInt(u.completion_tokens)} · total ${fmtInt(u.total_tokens)}`;
        latency.textContent = `${fmtInt(elapsed)} ms (measured in this page, request to answer)`;
        result.hidden = false;
      } catch (error) {
        if (ctx.alive) reportError(error);
      } finally {
        askButton.disabled = false;
        askButton.removeAttribute("aria-busy");
        askButton.textContent = "Ask";
      }
    }

    loadRuns();
    return el("section", { class: "view", attrs: { id: "ask-view", "aria-labelledby": "ask-title" } },
      el("h1", { text: "Ask a fine-tuned model", attrs: { id: "ask-title", tabindex: "-1" } }),
      el("div", { class: "panel ask-form" },
        el("div", { class: "field" }, el("label", { text: "Run whose model answers", attrs: { for: "ask-run" } }), select),
        el("div", { class: "field" }, el("label", { text: "Question", attrs: { for: "question" } }), question, help),
        el("div", { class: "actions" }, askButton)),
      result);
  }

  /* ---------- start ---------- */

  window.addEventListener("hashchange", () => route(true));
  if (!window.location.hash) window.history.replaceState(null, "", "#/runs");
  route(false);
})();
