// The operations dashboard: polls GET /v1/dashboard every second and draws it,
// and the newest history reports (GET /v1/history/reports) every 10 seconds;
// the dead-letter console lists, opens and redrives dead letters over /v1/dlq, and
// lists and redelivers webhook deliveries given up on over /v1/webhooks/dead.
// Everything from the server is put in the page as text (textContent), never as
// HTML: tenant ids, errors and bodies come from producers.
import uPlot from "./uPlot.esm.js";

const KEY = "achd.key";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

// ---- the key: from the fragment (#key=…, never sent to the server) or session storage ----

function takeKeyFromFragment() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
  // Out of the address bar and the history, so it is not shared by copying the URL.
  history.replaceState(null, "", location.pathname + location.search);
}

/** Thrown for 401/403: back to the sign-in form with the server's message. */
class AuthError extends Error {}

/** Any other answer that is not a 2xx: its status and body (`{error, message, …}`). */
class HttpError extends Error {
  constructor(status, body) {
    super(body.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, init = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = { ...(init.headers ?? {}), ...(key ? { authorization: `Bearer ${key}` } : {}) };
  const res = await fetch(path, { ...init, headers, cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) throw new AuthError(body.message ?? `HTTP ${res.status}`);
  if (!res.ok) throw new HttpError(res.status, body);
  return body;
}

// ---- small DOM helpers ----

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "data") Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const nf = new Intl.NumberFormat("en");
const num = (v) => (v === null || v === undefined ? "–" : nf.format(v));
const rate = (v) => (v === null || v === undefined ? "–" : v >= 100 ? nf.format(Math.round(v)) : v.toFixed(1));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  return `${Math.floor(seconds / 60)} m ${Math.round(seconds % 60)} s`;
}

function ago(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "–");

function rows(tbody, list, cells) {
  tbody.replaceChildren(...list.map((x) => el("tr", {}, ...cells(x))));
}

// ---- charts ----

const COLORS = { received: "#60a5fa", applied: "#34d399", rejected: "#f87171", unlocks: "#fbbf24" };
const axis = { stroke: "#8b95a7", grid: { stroke: "#232a38", width: 1 }, ticks: { stroke: "#232a38", width: 1 } };
const clock = (s, seconds) => new Date(s * 1000).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}) });
// Time ticks as 24-hour clock times, with seconds only where a tick is not on a whole minute.
const timeAxis = { ...axis, space: 80, values: (_u, splits) => splits.map((s) => clock(s, s % 60 !== 0)) };

function chart(target, series) {
  const opts = {
    width: target.clientWidth || 400,
    height: 200,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
    legend: { live: false },
    axes: [timeAxis, { ...axis, size: 44 }],
    series: [{}, ...series.map(([label, color]) => ({ label, stroke: color, width: 2, fill: `${color}1f`, points: { show: false } }))],
  };
  const u = new uPlot(opts, [[], ...series.map(() => [])], target);
  new ResizeObserver(() => u.setSize({ width: target.clientWidth, height: 200 })).observe(target);
  return u;
}

let eventsChart;
let unlocksChart;

function drawCharts(s) {
  if (!s || !Array.isArray(s.t)) return;
  eventsChart ??= chart($("chart-events"), [["received", COLORS.received], ["applied", COLORS.applied], ["rejected", COLORS.rejected]]);
  unlocksChart ??= chart($("chart-unlocks"), [["unlocks", COLORS.unlocks]]);
  const col = (xs) => (Array.isArray(xs) ? xs : s.t.map(() => null));
  eventsChart.setData([s.t, col(s.received), col(s.applied), col(s.rejected)]);
  unlocksChart.setData([s.t, col(s.unlocks)]);
  const span = s.t.length > 1 ? s.t[s.t.length - 1] - s.t[0] : 0;
  $("events-window").textContent = span ? `last ${span >= 120 ? `${Math.round(span / 60)} min` : `${span} s`}` : "";
}

/** The mean of the last `n` values of a series: the rate shown under a total. */
function recent(xs, n = 5) {
  if (!Array.isArray(xs) || xs.length === 0) return null;
  const tail = xs.slice(-n).filter((v) => typeof v === "number");
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null;
}

/**
 * Runs `fn` (which handles its own errors) one call at a time: a call while a
 * run is under way makes one more run after it, which sees every change made
 * meanwhile. The returned promise ends with the run this call started (at
 * once when it only asked for one more).
 */
function singleFlight(fn) {
  let running = false;
  let again = false;
  const run = async () => {
    if (running) return void (again = true);
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        void run();
      }
    }
  };
  return run;
}

/** Shows `text` in the `<prefix>-result` box of a console (and opens its detail pane), in `tone` (ok, warn, bad). */
function showResult(prefix, text, tone) {
  const r = $(`${prefix}-result`);
  r.hidden = false;
  r.textContent = text;
  r.className = `result ${tone}`;
  $(`${prefix}-detail`).hidden = false;
}

// ---- the overview ----

function drawHeader(d) {
  const ps = d.processes ?? [];
  $("processes").replaceChildren(
    ...ps.map((p) => {
      const roles = [p.worker ? "worker" : null, p.api ? "api" : null].filter(Boolean).join(" + ");
      const parts = Array.isArray(p.partitions) && p.partitions.length ? `p ${p.partitions.join(",")}` : "no partitions";
      // The server lists only live processes, and marks one that has missed snapshots.
      const stale = p.stale === true;
      return el("span", { class: `proc${stale ? " stale" : ""}`, title: `last seen ${ago(p.seen_ms_ago)} ago` }, el("b", {}, p.id), ` ${roles} · ${parts}`);
    }),
  );
}

function drawKpis(d) {
  const t = d.totals ?? {};
  const s = d.series ?? {};
  const kpi = (id, label, value, sub, tone = "") =>
    el("div", { class: `kpi ${tone}`, id: `kpi-${id}` }, el("div", { class: "kpi-label" }, label), el("div", { class: "kpi-value" }, value), el("div", { class: "kpi-sub" }, sub ?? "\u00a0"));
  const perS = (xs) => `${rate(recent(xs))} /s`;
  const depth = d.dlq?.depth;
  $("kpis").replaceChildren(
    kpi("received", "received", num(t.received), perS(s.received), "blue"),
    kpi("applied", "applied", num(t.applied), perS(s.applied), "green"),
    kpi("unlocks", "unlocks", num(t.unlocks), perS(s.unlocks), "amber"),
    kpi("duplicates", "duplicates", num(t.duplicates), "counted once"),
    kpi("rejected", "rejected", num(t.rejected), perS(s.rejected), t.rejected ? "red" : ""),
    kpi("late", "late", num(t.late), "outside the reorder window"),
    kpi("dlq", "dead letters", num(depth), depth ? "open the console →" : "none waiting", depth ? "red" : ""),
  );
}

function drawLatency(l) {
  const cell = (label, v) => el("div", { class: "lat" }, el("div", { class: "lat-label" }, label), el("div", { class: "lat-value", id: `latency-${label}` }, duration(v)));
  $("latency").replaceChildren(cell("p50", l?.p50), cell("p90", l?.p90), cell("p99", l?.p99), el("div", { class: "muted small lat-count" }, `${num(l?.count)} unlocks measured`));
}

function drawPartitions(list) {
  const maxLag = Math.max(1, ...list.map((p) => p.pending ?? 0));
  rows($("partitions").tBodies[0], list, (p) => {
    const lag = p.pending ?? 0;
    const bar = el("span", { class: "lagbar" });
    bar.style.width = `${Math.round((lag / maxLag) * 100)}%`;
    return [
      el("td", {}, String(p.partition)),
      el("td", { class: p.owner ? "" : "warn" }, p.owner ?? "unowned"),
      el("td", { class: `num lag${lag > 0 ? " busy" : ""}` }, el("span", { class: "lagtrack" }, bar), num(p.pending)),
      el("td", { class: "num" }, num(p.ack_pending)),
      el("td", { class: "num muted" }, num(p.ack_floor)),
      el("td", { class: "num" }, ago(p.lease_age_ms)),
    ];
  });
}

function bars(target, items, empty) {
  if (!items.length) return target.replaceChildren(...(empty ? [el("li", { class: "muted empty" }, empty)] : []));
  const max = Math.max(1, ...items.map((i) => i.value));
  target.replaceChildren(
    ...items.map((i) => {
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(2, Math.round((i.value / max) * 100))}%`;
      return el("li", {}, el("div", { class: "bar-text" }, el("span", { class: "bar-label" }, i.label, i.sub ? el("span", { class: "muted" }, ` ${i.sub}`) : null), el("span", { class: "bar-value" }, num(i.value))), el("div", { class: "bar" }, fill));
    }),
  );
}

function drawFeed(list) {
  const feed = $("feed");
  if (!list.length) return feed.replaceChildren(el("li", { class: "muted empty" }, "No unlocks yet."));
  feed.replaceChildren(
    ...list.map((u) =>
      el(
        "li",
        { class: "unlock", data: { unlockId: u.unlock_id } },
        el("span", { class: "trophy" }, "★"),
        el("div", {}, el("div", {}, el("b", {}, u.achievement_id), u.tier ? el("span", { class: "tier" }, u.tier) : null, u.title ? el("span", { class: "muted" }, ` ${u.title}`) : null), el("div", { class: "muted small" }, `${u.tenant_id} / ${u.user_id} · ${u.rule_id} v${u.rule_version}`)),
        el("time", { class: "muted small", title: `unlocked at ${u.unlocked_at}` }, time(u.processed_at)),
      ),
    ),
  );
}

function drawTenants(list) {
  rows($("tenants").tBodies[0], list, (t) => [
    el("td", {}, el("b", {}, t.tenant)),
    el("td", { class: "num" }, rate(t.events_per_s)),
    el("td", { class: "num" }, num(t.received)),
    el("td", { class: "num" }, num(t.applied)),
    el("td", { class: `num${t.rejected ? " bad" : ""}` }, num(t.rejected)),
    el("td", { class: "num" }, num(t.unlocks)),
  ]);
}

// ---- history runs (GET /v1/history/reports): shadow runs, backfills, rebuilds ----

const HISTORY_REFRESH_MS = 10_000;
const HISTORY_SHOWN = 10;
let historyLoadedAt = 0;

/** What a report is about: the rule and its version (and tenant), or the user. */
function historySubject(r) {
  if (r.kind === "rebuild") return `${r.tenant_id} / ${r.user_id}`;
  const version = r.kind === "shadow" ? r.candidate?.version : r.version;
  const scope = r.scope ? ` · ${r.scope}` : " · shared";
  return `${r.rule_id ?? "–"}${version !== undefined ? ` v${version}` : ""}${scope}`;
}

/** A report's headline numbers (none yet while it runs). */
function historyNumbers(r) {
  if (r.kind === "shadow") {
    const t = r.totals;
    return t ? `${num(t.gain_users)} users gain · ${num(t.lose_users)} lose · ${num(t.move_users)} move` : "–";
  }
  if (r.kind === "backfill") {
    if (r.status === "running" && !r.implied) return "evaluating…";
    return `${num(r.recorded)} recorded · ${num(r.already_recorded)} already recorded · ${r.would_lose === null || r.would_lose === undefined ? "–" : num(r.would_lose)} would lose`;
  }
  if (r.kind === "rebuild") return `${num(r.rules_changed?.length)} rules changed · ${num(r.delivered?.length)} delivered`;
  return "–";
}

const loadHistory = singleFlight(async () => {
  historyLoadedAt = Date.now();
  try {
    const { reports } = await api(`/v1/history/reports?limit=${HISTORY_SHOWN}`);
    const list = (reports ?? []).slice(0, HISTORY_SHOWN);
    rows($("history").tBodies[0], list, (r) => [
      el("td", { class: "small", title: r.created_at ?? "" }, r.created_at ? new Date(r.created_at).toLocaleString([], { hour12: false }) : "–"),
      el("td", {}, el("span", { class: "kind" }, r.kind)),
      el("td", { class: "clip", title: r.id }, historySubject(r)),
      el("td", {}, el("span", { class: `state state-${r.status ?? "done"}`, title: r.error ?? "" }, r.status ?? "done")),
      el("td", { class: "small" }, historyNumbers(r)),
    ]);
    $("history-empty").hidden = list.length > 0;
    $("history-error").hidden = true;
  } catch (err) {
    if (err instanceof AuthError) return signIn(err.message);
    $("history-error").hidden = false;
    $("history-error").textContent = `Could not list history reports: ${err.message}`;
  }
});

let lastDepth = null;

function draw(d) {
  drawHeader(d);
  drawKpis(d);
  drawCharts(d.series);
  drawLatency(d.latency);
  drawPartitions(d.partitions ?? []);
  bars($("top-achievements"), (d.top_achievements ?? []).map((a) => ({ label: a.achievement, sub: a.tenant, value: a.unlocks })), "No unlocks yet.");
  const reasons = Object.entries(d.dlq?.by_reason ?? {}).sort((a, b) => b[1] - a[1]);
  bars($("dlq-reasons"), reasons.map(([label, value]) => ({ label, value })), "The DLQ is empty.");
  const byTenant = Object.entries(d.dlq?.by_tenant ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 8);
  $("dlq-tenants-title").hidden = byTenant.length === 0;
  // "_" is where letters without a valid tenant id go.
  bars($("dlq-tenants"), byTenant.map(([t, value]) => ({ label: t === "_" ? "(no valid tenant)" : t, value })), "");
  $("dlq-depth-label").textContent = d.dlq ? `${num(d.dlq.depth)} in the DLQ` : "";
  drawFeed(d.recent_unlocks ?? []);
  drawTenants(d.tenants ?? []);
  if (!$("overview").hidden && Date.now() - historyLoadedAt > HISTORY_REFRESH_MS) void loadHistory();
  const depth = d.dlq?.depth ?? null;
  $("dlq-badge").hidden = !depth;
  $("dlq-badge").textContent = num(depth);
  $("dlq-kind-events").textContent = depth ? num(depth) : "";
  fillReasons(reasons.map(([r]) => r));
  // The console's list follows the DLQ: a new letter or a redrive elsewhere shows without a click, re-read at most
  // every few seconds (a steady flow of dead letters changes the depth at every poll).
  if (depth !== lastDepth && !$("dlq").hidden && Date.now() - dlqLoadedAt > WHD_REFRESH_MS) {
    lastDepth = depth;
    dlqLoadedAt = Date.now();
    void loadDeadLetters();
  }
  // The webhook dead letters have no count in /v1/dashboard: their list is read again every few seconds while it shows.
  if (!$("dlq").hidden && Date.now() - whdLoadedAt > WHD_REFRESH_MS) void loadWebhookDead();
}

// ---- status and polling ----

function status(text, tone) {
  const s = $("status");
  s.textContent = text;
  s.className = `pill pill-${tone}`;
}

let polling = false;
let timer;

async function poll() {
  clearTimeout(timer);
  try {
    const d = await api("/v1/dashboard");
    showApp();
    draw(d);
    // Parts the server could not read this time (NATS electing a leader, say): the rest still shows.
    const problems = Array.isArray(d.problems) ? d.problems : [];
    $("problems").hidden = problems.length === 0;
    $("problems").textContent = problems.join(" · ");
    const live = (d.processes ?? []).length;
    const engine = d.engine && d.engine !== "running" ? `${d.engine} · ` : "";
    status(`${engine}live · ${live} process${live === 1 ? "" : "es"} · ${time(d.now)}`, engine || problems.length ? "warn" : "ok");
  } catch (err) {
    // Without a key, a 401 only means this engine wants one: no error to show yet.
    if (err instanceof AuthError) return signIn(sessionStorage.getItem(KEY) ? err.message : undefined);
    status(`no answer: ${err.message}`, "bad");
  }
  if (polling) timer = setTimeout(poll, POLL_MS);
}

function start() {
  polling = true;
  void poll();
}

// ---- sign-in ----

function signIn(message) {
  polling = false;
  clearTimeout(timer);
  sessionStorage.removeItem(KEY);
  for (const id of ["overview", "dlq"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("tabs").hidden = true;
  $("signin-error").hidden = !message;
  $("signin-error").textContent = message ?? "";
  status("signed out", "wait");
  $("signin-key").focus();
}

function showApp() {
  if (!$("signin").hidden || ($("overview").hidden && $("dlq").hidden)) {
    $("signin").hidden = true;
    showTab(currentTab);
  }
  $("sign-out").hidden = !sessionStorage.getItem(KEY);
  $("tabs").hidden = false;
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $("signin-key").value.trim());
  $("signin-key").value = "";
  start();
});

$("sign-out").addEventListener("click", () => signIn());

// ---- tabs ----

let currentTab = "overview";

function showTab(name) {
  currentTab = name;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  $("overview").hidden = name !== "overview";
  $("dlq").hidden = name !== "dlq";
  if (name === "dlq") {
    void loadDeadLetters();
    void loadWebhookDead();
  }
  // uPlot measures its container: a chart drawn while hidden is resized when shown.
  if (name === "overview") window.dispatchEvent(new Event("resize"));
}

for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
$("kpis").addEventListener("click", (e) => {
  if (e.target.closest("#kpi-dlq")) showTab("dlq");
});

// ---- the dead-letter console ----

let knownReasons = [];

function fillReasons(reasons) {
  const all = [...new Set([...knownReasons, ...reasons])].sort();
  if (all.join() === knownReasons.join()) return;
  knownReasons = all;
  const sel = $("dlq-reason");
  const chosen = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "any"), ...all.map((r) => el("option", { value: r }, r)));
  sel.value = chosen;
}

/** A letter's original subject, `ach.events.<tenant>.<user>.<type>` → "tenant / user"; "–" when it has none (an invalid id). */
const whose = (subject) => {
  const m = /^ach\.events\.([^.]+)\.([^.]+)\./.exec(subject);
  return m ? `${m[1]} / ${m[2]}` : "–";
};

let openSeq = null;

// One request at a time; a call meanwhile (a redrive, a new filter) loads once more after it.
const loadDeadLetters = singleFlight(async () => {
  const q = new URLSearchParams({ limit: "200" });
  const tenant = $("dlq-tenant").value.trim();
  const reason = $("dlq-reason").value;
  if (tenant) q.set("tenant", tenant);
  if (reason) q.set("reason", reason);
  try {
    const { dead_letters: list } = await api(`/v1/dlq?${q}`);
    rows($("dlq-list").tBodies[0], list, (d) => {
      const tr = [
        el("td", { class: "num" }, String(d.seq)),
        el("td", { class: "small" }, d.failed_at ? new Date(d.failed_at).toLocaleString([], { hour12: false }) : "–"),
        el("td", {}, el("span", { class: "reason" }, d.reason || "–")),
        el("td", {}, whose(d.subject)),
        el("td", { class: "mono small" }, d.event_id ?? "–"),
        el("td", { class: "small clip", title: d.error }, d.error),
      ];
      return tr;
    });
    for (const [i, tr] of [...$("dlq-list").tBodies[0].rows].entries()) {
      tr.dataset.seq = String(list[i].seq);
      tr.classList.toggle("open", list[i].seq === openSeq);
      tr.addEventListener("click", () => void openDeadLetter(list[i].seq));
    }
    $("dlq-empty").hidden = list.length > 0;
    $("dlq-count").textContent = list.length ? `${list.length} shown, oldest first` : "";
  } catch (err) {
    if (err instanceof AuthError) signIn(err.message);
    else result(`Could not list dead letters: ${err.message}`, "bad");
  }
});

$("dlq-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  void loadDeadLetters();
});
$("dlq-reason").addEventListener("change", () => void loadDeadLetters());

const result = (text, tone) => showResult("dlq", text, tone);

async function openDeadLetter(seq) {
  try {
    const d = await api(`/v1/dlq/${seq}`);
    openSeq = seq;
    for (const tr of $("dlq-list").tBodies[0].rows) tr.classList.toggle("open", tr.dataset.seq === String(seq));
    $("dlq-detail-seq").textContent = `#${seq}`;
    const meta = [
      ["reason", d.reason],
      ["error", d.error],
      ["subject", d.subject],
      ["event id", d.event_id],
      ["origin", d.origin],
      ["failed at", d.failed_at],
      ["deliveries", d.delivery_count],
      ["stream seq", d.stream_seq],
      ["size", `${num(d.bytes)} bytes`],
    ].filter(([, v]) => v !== undefined && v !== "");
    $("dlq-meta").replaceChildren(...meta.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
    $("dlq-headers").textContent = Object.entries(d.headers ?? {})
      .map(([k, vs]) => vs.map((v) => `${k}: ${v}`).join("\n"))
      .join("\n");
    $("dlq-body").value = pretty(d.body);
    $("dlq-result").hidden = true;
    $("dlq-detail").hidden = false;
    actions(true);
  } catch (err) {
    if (err instanceof AuthError) signIn(err.message);
    else result(`Could not open dead letter ${seq}: ${err.message}`, "bad");
  }
}

/** The body indented when it is JSON, else as stored. */
function pretty(body) {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

function actions(enabled) {
  for (const id of ["dlq-redrive", "dlq-redrive-body"]) $(id).disabled = !enabled;
}

async function redrive(withBody) {
  const seq = openSeq;
  if (seq === null) return;
  let init = { method: "POST" };
  if (withBody) {
    let body;
    try {
      body = JSON.parse($("dlq-body").value);
    } catch (err) {
      return result(`The body is not JSON: ${err.message}`, "bad");
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) return result("The body must be a JSON object: the event.", "bad");
    init = { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ body }) };
  }
  const what = withBody ? "with the edited body" : "as it is";
  if (!confirm(`Redrive dead letter #${seq} ${what}? It is published again on its event subject and removed from the DLQ.`)) return;
  try {
    const r = await api(`/v1/dlq/${seq}/redrive`, init);
    result(`Redriven: dead letter #${r.seq} is stream message ${r.stream_seq} on ${r.subject}${r.duplicate ? " (a duplicate: the stream already had it)" : ""}.`, "ok");
    openSeq = null;
    // It is gone from the DLQ: nothing left here to redrive.
    actions(false);
    $("dlq-detail-seq").textContent = `#${r.seq} (redriven)`;
    await loadDeadLetters();
  } catch (err) {
    if (err instanceof AuthError) signIn(err.message);
    else result(`Redrive failed: ${err.message}`, "bad");
  }
}

$("dlq-redrive").addEventListener("click", () => void redrive(false));
$("dlq-redrive-body").addEventListener("click", () => void redrive(true));

// ---- webhook deliveries given up on (GET /v1/webhooks/dead, POST …/dead/:seq/redeliver) ----

const WHD_REFRESH_MS = 5000;
/** When the events' dead-letter list was last read because the depth changed. */
let dlqLoadedAt = 0;

function showKind(kind) {
  $("dlq").dataset.kind = kind;
  for (const b of $("dlq-kind").querySelectorAll(".seg")) {
    b.classList.toggle("active", b.dataset.kind === kind);
    b.setAttribute("aria-pressed", String(b.dataset.kind === kind));
  }
  if (kind === "webhooks") void loadWebhookDead();
}

for (const b of $("dlq-kind").querySelectorAll(".seg")) b.addEventListener("click", () => showKind(b.dataset.kind));

/** The letters last listed, by seq (the detail is drawn from them: the list holds everything but the payload). */
let whdRows = new Map();
let whdOpen = null;
let whdLoadedAt = 0;

/** "500" or "no answer" (a network error or a timeout has no status). */
const lastAnswer = (d) => (d.last_status === null || d.last_status === undefined ? "no answer" : String(d.last_status));

const loadWebhookDead = singleFlight(async () => {
  whdLoadedAt = Date.now();
  const q = new URLSearchParams({ limit: "200" });
  const tenant = $("whd-tenant").value.trim();
  if (tenant) q.set("tenant", tenant);
  try {
    const { dead_letters: list, next_from: more } = await api(`/v1/webhooks/dead?${q}`);
    whdRows = new Map(list.map((d) => [d.seq, d]));
    rows($("whd-list").tBodies[0], list, (d) => [
      el("td", { class: "num" }, String(d.seq)),
      el("td", { class: "small" }, d.failed_at ? new Date(d.failed_at).toLocaleString([], { hour12: false }) : "–"),
      el("td", {}, `${d.tenant} / ${d.user_id}`),
      el("td", {}, d.achievement_id),
      el("td", { class: "small clip", title: d.webhook_url ?? d.webhook_id }, el("span", { class: "mono" }, d.webhook_id), d.webhook_enabled ? null : el("span", { class: "off" }, "disabled"), el("div", { class: "muted" }, d.webhook_url ?? "(removed)")),
      el("td", { class: "num" }, num(d.attempts)),
      // "answered 500" says no more than the status beside it.
      el("td", { class: "small clip", title: d.last_error ?? "" }, el("span", { class: "status" }, lastAnswer(d)), d.last_error === `answered ${d.last_status}` ? "" : (d.last_error ?? "")),
    ]);
    for (const [i, tr] of [...$("whd-list").tBodies[0].rows].entries()) {
      tr.dataset.seq = String(list[i].seq);
      tr.classList.toggle("open", list[i].seq === whdOpen);
      tr.addEventListener("click", () => openWebhookDead(list[i].seq));
    }
    $("whd-empty").hidden = list.length > 0;
    $("whd-count").textContent = list.length ? `${list.length}${more ? "+" : ""} shown, oldest first` : "";
    $("dlq-kind-webhooks").textContent = list.length ? `${num(list.length)}${more ? "+" : ""}` : "";
    // The letter open here was redelivered (or removed) elsewhere: nothing left to send.
    if (whdOpen !== null && !whdRows.has(whdOpen)) $("whd-redeliver").disabled = true;
  } catch (err) {
    if (err instanceof AuthError) signIn(err.message);
    else whdResult(`Could not list webhook dead letters: ${err.message}`, "bad");
  }
});

$("whd-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  void loadWebhookDead();
});

const whdResult = (text, tone) => showResult("whd", text, tone);

function openWebhookDead(seq) {
  const d = whdRows.get(seq);
  if (!d) return;
  whdOpen = seq;
  for (const tr of $("whd-list").tBodies[0].rows) tr.classList.toggle("open", tr.dataset.seq === String(seq));
  $("whd-detail-seq").textContent = `#${seq}`;
  const state = d.webhook_url === null ? "removed" : d.webhook_enabled ? "enabled" : `disabled: ${d.webhook_disabled_reason ?? "no reason given"} (enable it before redelivering)`;
  const meta = [
    ["tenant", d.tenant],
    ["webhook", d.webhook_id],
    ["url", d.webhook_url ?? "–"],
    ["webhook is", state],
    ["user", d.user_id],
    ["achievement", d.achievement_id],
    ["unlock id", d.unlock_id],
    ["unlock seq", d.unlock_seq],
    ["attempts", d.attempts],
    ["last status", lastAnswer(d)],
    ["last error", d.last_error],
    ["first attempt", d.first_attempt_at],
    ["failed at", d.failed_at],
  ].filter(([, v]) => v !== undefined && v !== null && v !== "");
  $("whd-meta").replaceChildren(...meta.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k === "webhook is" && !d.webhook_enabled ? "warn" : "" }, String(v))]));
  $("whd-result").hidden = true;
  $("whd-detail").hidden = false;
  $("whd-redeliver").disabled = false;
}

async function redeliver() {
  const seq = whdOpen;
  const d = seq === null ? undefined : whdRows.get(seq);
  if (!d) return;
  if (!confirm(`Redeliver webhook dead letter #${seq} (${d.achievement_id} of ${d.tenant} / ${d.user_id}) to ${d.webhook_url ?? d.webhook_id}? It is sent once, now; on a 2xx answer it leaves the list.`)) return;
  const button = $("whd-redeliver");
  button.disabled = true;
  try {
    const r = await api(`/v1/tenants/${encodeURIComponent(d.tenant)}/webhooks/${encodeURIComponent(d.webhook_id)}/dead/${seq}/redeliver`, { method: "POST" });
    whdResult(`Redelivered: the receiver answered ${r.status} in ${num(r.latency_ms)} ms; dead letter #${seq} left the list.`, "ok");
    whdOpen = null;
    $("whd-detail-seq").textContent = `#${seq} (redelivered)`;
  } catch (err) {
    if (err instanceof AuthError) return signIn(err.message);
    button.disabled = false;
    if (err instanceof HttpError && err.status === 502) whdResult(`Still failing: ${err.message}.`, "bad");
    else if (err instanceof HttpError && err.status === 409) whdResult(`Not sent: the webhook is disabled. ${err.message}`, "warn");
    else if (err instanceof HttpError && err.status === 404) {
      button.disabled = true;
      whdResult(`Not sent: ${err.message} (redelivered or removed meanwhile).`, "warn");
    } else whdResult(`Redelivery failed: ${err.message}`, "bad");
  }
  await loadWebhookDead();
}

$("whd-redeliver").addEventListener("click", () => void redeliver());

// ---- start: try without a key first (auth.mode none needs none); sign-in only on 401 ----

takeKeyFromFragment();
start();
