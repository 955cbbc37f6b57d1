/* Vigil's analyst console: plain JavaScript, no framework, no build step. Everything it shows
   and does goes through Vigil's HTTP API (same origin); it offers only what the caller may do. */
"use strict";

const API = new URL("..", document.currentScript.src).pathname; // "/api/"
const SVG = "http://www.w3.org/2000/svg";
const STATUSES = ["new", "inProgress", "resolved"];
const SEVERITIES = ["informational", "low", "medium", "high"];
const CLASSIFICATIONS = ["unknown", "truePositive", "falsePositive", "informationalExpectedActivity"];
let me = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(path, options) {
  const opts = options || {};
  // A write from a browser session carries X-Requested-With (cross-site forms cannot send it).
  const headers = { "X-Requested-With": "vigil-console", ...(opts.headers || {}) };
  const response = await fetch(API + path, { credentials: "same-origin", ...opts, headers });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status}`;
    throw new Error(`${response.status}: ${message}`);
  }
  return { body, etag: response.headers.get("ETag") };
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toISOString().replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC");
}

function sev(value) {
  return h("span", { class: `sev sev-${value}` }, value);
}

function facts(entries) {
  return h("dl", { class: "facts" }, entries.flatMap(([k, v]) => [
    h("dt", {}, k), h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)),
  ]));
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

function failed(error) {
  show(h("p", { class: "error", role: "alert" }, String(error.message || error)));
}

/* ---- the alert queue -------------------------------------------------------------------- */

async function alertsView(params) {
  const filters = h("form", { class: "filters", "aria-label": "filters" },
    h("label", {}, "Status", select("status", ["", ...STATUSES], params.get("status"))),
    h("label", {}, "Severity", select("severity", ["", ...SEVERITIES], params.get("severity"))),
    h("label", {}, "Source", select("source", ["", "workplace", "entra"], params.get("source"))),
    h("label", {}, "Detector", h("input", { name: "detector", value: params.get("detector") || "", placeholder: "vigil.impossible_travel" })),
    h("label", {}, "User", h("input", { name: "user", value: params.get("user") || "", placeholder: "e-mail or id" })),
    h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) chosen.set(k, String(v));
    if (params.get("top")) chosen.set("top", params.get("top"));
    location.hash = `#/alerts?${chosen}`;
  });
  const body = h("tbody");
  const table = h("table", { id: "alerts" },
    h("thead", {}, h("tr", {}, ["Created", "Severity", "Title", "User", "Detector", "Status"].map((t) => h("th", {}, t)))),
    body);
  const more = h("button", { class: "secondary", id: "more", hidden: true }, "More");
  show(h("h2", {}, "Alerts"), filters, table, h("p", {}, more));
  const query = new URLSearchParams(params);
  if (!query.has("top")) query.set("top", "25");
  async function page(next) {
    if (next) query.set("next", next);
    const { body: answer } = await api(`alerts?${query}`);
    for (const a of answer.value) {
      body.append(h("tr", { class: "row", "data-id": a.id, onclick: () => { location.hash = `#/alert/${a.id}`; } },
        h("td", {}, when(a.createdDateTime)), h("td", {}, sev(a.severity)),
        h("td", {}, h("a", { href: `#/alert/${a.id}` }, a.title)), h("td", {}, a.userEmail || a.userId),
        h("td", {}, a.detectorId), h("td", {}, h("span", { class: "pill" }, a.status))));
    }
    if (!answer.value.length && !next) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No alerts match.")));
    more.hidden = !answer.next;
    more.onclick = () => page(answer.next).catch(failed);
  }
  await page(null);
}

function select(name, options, chosen, labels) {
  return h("select", { name }, options.map((o) => h("option", { value: o, selected: o === (chosen || "") }, (labels && labels[o]) || o || "any")));
}

/* ---- one alert --------------------------------------------------------------------------- */

async function alertView(id, notice) {
  const { body: a, etag } = await api(`alerts/${encodeURIComponent(id)}`);
  const f = a.facts || {};
  const parts = [
    h("h2", {}, a.title),
    notice ? h("p", { class: "notice", role: "status" }, notice) : null,
    h("div", { class: "panel" }, facts([
      ["Severity", a.severity], ["Status", a.status], ["Classification", a.classification],
      ["Detector", a.detectorId], ["User", a.userEmail || a.userId],
      ["First activity", when(a.firstActivityDateTime)], ["Last activity", when(a.lastActivityDateTime)],
      ["Created", when(a.createdDateTime)],
    ]), h("p", {}, a.description),
    h("p", {}, h("a", { href: `#/user/${encodeURIComponent(a.userId)}?${new URLSearchParams({ tenant: a.tenantId, to: a.lastActivityDateTime })}` }, "User page"))),
  ];
  const picture = evidencePicture(a);
  parts.push(h("div", { class: "grid" },
    h("div", { class: "panel", id: "evidence" }, h("h3", {}, "Evidence"), picture, facts(Object.entries(f))),
    h("div", { class: "panel", id: "suppressions" }, h("h3", {}, "Suppressions evaluated"),
      a.suppressionsEvaluated.length ? h("ul", { class: "plain" }, a.suppressionsEvaluated.map((x) => h("li", {}, x)))
        : h("p", { class: "muted" }, "None applied to this alert."))));
  if (me && me.mayRespond) parts.push(triageForm(a, etag));
  parts.push(h("div", { class: "panel" }, h("h3", {}, "Activities"), activityTable(a.activities || [])));
  parts.push(h("div", { class: "panel" }, h("h3", {}, "Governance actions"), actionsTable(a.governanceActionRecords || [], () => alertView(id))));
  parts.push(h("div", { class: "panel" }, h("h3", {}, "History"),
    (a.history || []).length ? h("ul", { class: "plain" }, a.history.map((e) => h("li", {}, `${when(e.time)} ${(e.by && e.by.name) || ""}: `,
      Object.entries(e.changes || {}).map(([k, v]) => `${k} ${v.from} → ${v.to}; `).join(""),
      e.comment ? `“${e.comment}” ` : "", e.suppressDays ? `(suppressed ${e.suppressDays} days)` : "")))
      : h("p", { class: "muted" }, "No changes yet.")));
  show(...parts);
}

function triageForm(a, etag) {
  const form = h("form", { class: "panel triage", id: "triage", "aria-label": "triage" },
    h("label", {}, "Status", select("status", STATUSES, a.status)),
    h("label", {}, "Classification", select("classification", CLASSIFICATIONS, a.classification)),
    h("label", {}, "Comment", h("textarea", { name: "comment" })),
    h("label", {}, "Suppress (days)", h("input", { name: "suppress", type: "number", min: 0, max: 365, value: 0 })),
    h("button", { type: "submit" }, "Save"),
    h("span", { class: "error", id: "triage-error", role: "alert" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const change = { status: data.get("status"), classification: data.get("classification") };
    if (data.get("comment")) change.comment = data.get("comment");
    const days = Number(data.get("suppress") || 0);
    if (days > 0) change.suppress = { days };
    try {
      await api(`alerts/${encodeURIComponent(a.id)}`, {
        method: "PATCH", headers: { "If-Match": etag, "Content-Type": "application/json" }, body: JSON.stringify(change),
      });
      await alertView(a.id, days > 0 ? `Saved; suppressed for ${days} days.` : "Saved.");
    } catch (error) {
      document.getElementById("triage-error").textContent = error.message;
    }
  });
  return form;
}

function evidencePicture(a) {
  const f = a.facts || {};
  if (Array.isArray(f.coordinates) && f.coordinates.length === 2) return travelMap(f);
  const times = (a.activities || []).map((x) => x.time);
  if (times.length > 1) return timeline(a.activities, f);
  return h("span");
}

/* Two places on an equirectangular map fitted around them, each circle its accuracy radius
   (at least a few pixels), the graticule every 10 or 30 degrees, labelled. */
function travelMap(f) {
  const [[lat1, lon1], [lat2, lon2]] = f.coordinates;
  const kms = [Number(f.radius_from_km || 0), Number(f.radius_to_km || 0)];
  const pad = Math.max(8, ...kms.map((km) => km / 111.2 + 2));
  let west = Math.max(-180, Math.min(lon1, lon2) - pad), east = Math.min(180, Math.max(lon1, lon2) + pad);
  let south = Math.max(-90, Math.min(lat1, lat2) - pad), north = Math.min(90, Math.max(lat1, lat2) + pad);
  if (east - west < 2 * (north - south)) { const grow = (2 * (north - south) - (east - west)) / 2; west -= grow; east += grow; }
  else { const grow = ((east - west) / 2 - (north - south)) / 2; south -= grow; north += grow; }
  const W = 400, H = 200, k = W / (east - west);
  const x = (lon) => (lon - west) * k, y = (lat) => (north - lat) * k;
  const svg = s("svg", { class: "map", id: "travel-map", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "travel map" });
  const step = east - west > 120 ? 30 : 10;
  for (let lon = Math.ceil(west / step) * step; lon <= east; lon += step) {
    svg.append(s("line", { class: "land-grid", x1: x(lon), y1: 0, x2: x(lon), y2: H }));
    svg.append(s("text", { class: "grid-label", x: x(lon) + 2, y: H - 3 }, `${Math.abs(lon)}°${lon < 0 ? "W" : lon > 0 ? "E" : ""}`));
  }
  for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
    svg.append(s("line", { class: "land-grid", x1: 0, y1: y(lat), x2: W, y2: y(lat) }));
    svg.append(s("text", { class: "grid-label", x: 2, y: y(lat) - 2 }, `${Math.abs(lat)}°${lat < 0 ? "S" : lat > 0 ? "N" : ""}`));
  }
  svg.append(s("line", { class: "trip", x1: x(lon1), y1: y(lat1), x2: x(lon2), y2: y(lat2) }));
  const places = [[lat1, lon1, (f.countries || [])[0], (f.times || [])[0]], [lat2, lon2, (f.countries || [])[1], (f.times || [])[1]]];
  places.forEach(([lat, lon, country, time], i) => {
    const r = Math.max(4, (kms[i] / 111.2) * k);
    const right = x(lon) > W / 2;
    svg.append(s("circle", { class: "place", cx: x(lon), cy: y(lat), r, "data-place": i, "data-km": kms[i] }));
    svg.append(s("circle", { class: "dot", cx: x(lon), cy: y(lat), r: 2 }));
    svg.append(s("text", { x: x(lon) + (right ? -8 : 8), y: y(lat) - 6, "text-anchor": right ? "end" : "start" },
      `${country || "?"} ±${Math.round(kms[i])} km, ${time ? when(time).slice(11) : ""}`));
  });
  const summary = h("p", { id: "travel-summary" },
    `${Math.round(f.effective_km)} km apart (after the accuracy radii; ${Math.round(f.raw_km)} km between the points) in ${Number(f.hours).toFixed(2)} h: ${Math.round(f.kmh)} km/h.`);
  return h("div", {}, svg, summary);
}

/* The activities on a time line: failed logins in red, the rest in blue. */
function timeline(activities, f) {
  const times = activities.map((a) => Date.parse(a.time));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const span = Math.max(t1 - t0, 60000);
  const W = 400, H = 70, L = 10, R = 390;
  const x = (t) => L + ((t - t0) / span) * (R - L);
  const svg = s("svg", { class: "timeline", id: "burst-timeline", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "time line" });
  if (f.first && f.last) svg.append(s("rect", { class: "window", x: x(Date.parse(f.first)), y: 10, width: Math.max(2, x(Date.parse(f.last)) - x(Date.parse(f.first))), height: 30 }));
  svg.append(s("line", { class: "axis", x1: L, y1: 40, x2: R, y2: 40 }));
  activities.forEach((a, i) => {
    const failedLogin = a.outcome === "failure";
    svg.append(s("line", { class: failedLogin ? "tick-failed" : "tick-other", x1: x(times[i]), y1: 15, x2: x(times[i]), y2: 40, "data-time": a.time }));
  });
  svg.append(s("text", { x: L, y: 58 }, when(new Date(t0).toISOString())));
  svg.append(s("text", { x: R, y: 58, "text-anchor": "end" }, when(new Date(t1).toISOString())));
  const minutes = ((t1 - t0) / 60000).toFixed(1);
  return h("div", {}, svg, h("p", { id: "burst-summary" }, `${activities.length} activities in ${minutes} minutes.`));
}

function activityTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "None.");
  return h("table", { class: "activities" },
    h("thead", {}, h("tr", {}, ["Time", "Event", "Outcome", "IP", "Country", "ISP"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((a) => h("tr", {}, h("td", {}, when(a.time)), h("td", {}, a.event || a.kind),
      h("td", {}, a.outcome), h("td", {}, a.ip), h("td", {}, a.country), h("td", {}, a.isp)))));
}

/* ---- governance --------------------------------------------------------------------------- */

function actionsTable(actions, refresh) {
  if (!actions.length) return h("p", { class: "muted" }, "None.");
  return h("table", { class: "actions" },
    h("thead", {}, h("tr", {}, ["Created", "Action", "Target", "Mode", "Status", "Error", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, actions.map((r) => h("tr", { "data-action": r.id },
      h("td", {}, when(r.created_at)), h("td", {}, r.action), h("td", {}, r.target), h("td", {}, r.mode),
      h("td", {}, h("span", { class: "pill" }, r.status)), h("td", {}, r.error_message || ""),
      h("td", {}, me && me.mayRespond ? commands(r, refresh) : "")))));
}

function commands(r, refresh) {
  const offered = [];
  if (r.status === "pending" && r.approval_required) offered.push("approve");
  if (r.status === "failed") offered.push("retry");
  if (r.status === "succeeded") offered.push("revert");
  return offered.map((c) => h("button", { class: "secondary", "data-command": c, onclick: async (event) => {
    event.target.disabled = true;
    try { await api(`governance/actions/${encodeURIComponent(r.id)}/${c}`, { method: "POST" }); await refresh(); }
    catch (error) { event.target.replaceWith(h("span", { class: "error" }, error.message)); }
  } }, c));
}

async function governanceView() {
  const { body } = await api("governance/actions?limit=200");
  show(h("h2", {}, "Governance log"), actionsTable(body.actions, governanceView));
}

/* ---- a user -------------------------------------------------------------------------------- */

async function userView(id, params) {
  const tenant = params.get("tenant") || "";
  const { body: u } = await api(`users/${encodeURIComponent(id)}${tenant ? `?tenant=${encodeURIComponent(tenant)}` : ""}`);
  // The time line: the 7 days up to the time asked for (an alert's), else the last seen.
  const dir = u.directory || {};
  const to = new Date(Date.parse(params.get("to") || dir.lastSeen || new Date().toISOString()) + 60000);
  const from = new Date(to.getTime() - 7 * 86400000);
  const query = { user: u.email || id, top: "500", from: from.toISOString(), to: to.toISOString() };
  const { body: log } = await api(`activities?${new URLSearchParams({ ...query, ...(tenant ? { tenant } : {}) })}`);
  const rows = Array.isArray(log) ? log : log.value || [];
  show(h("h2", {}, `User ${u.email || u.id}`),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h3", {}, "Directory"), facts(Object.entries(u.directory || {}))),
      h("div", { class: "panel" }, h("h3", {}, "Last 30 days"), facts(Object.entries(u.last30Days || {}).filter(([, v]) => typeof v !== "object")))),
    h("div", { class: "panel", id: "user-timeline" }, h("h3", {}, `Activity time line, ${when(from.toISOString())} to ${when(to.toISOString())}`), rows.length > 1 ? timeline(rows, {}) : h("span"), activityTable(rows)),
    h("div", { class: "panel" }, h("h3", {}, "Open alerts"), h("ul", { class: "plain" }, (u.openAlerts || []).map((a) => h("li", {}, h("a", { href: `#/alert/${a.id}` }, a.title || a.id))))),
    h("div", { class: "panel" }, h("h3", {}, "Governance actions"), actionsTable(u.governanceActions || [], () => userView(id, params))));
}

/* ---- posture --------------------------------------------------------------------------------- */

async function postureView() {
  const { body } = await api("posture");
  show(h("h2", {}, "Posture"), ...(body.value.length ? body.value.map((r) => h("div", { class: "panel posture" },
    h("h3", {}, `${r.title} (${r.community})`), facts([["State", r.state], ["Active users", r.activeUsers],
      ["Signing in with a password", r.passwordUsers], ["Share", `${Math.round(r.passwordShare * 100)} %`],
      ["Computed", when(r.computedDateTime)]]),
    h("p", {}, typeof r.howToFix === "string" ? r.howToFix : JSON.stringify(r.howToFix)),
    h("ul", { class: "plain" }, (r.users || []).map((x) => h("li", {}, x.email))))) : [h("p", { class: "muted" }, "No recommendation computed yet.")]));
}

/* ---- routing ------------------------------------------------------------------------------- */

async function route() {
  const [path, query] = (location.hash.slice(1) || "/alerts").split("?");
  const params = new URLSearchParams(query || "");
  const [, view, id] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === view);
  try {
    if (!me) {
      me = (await api("me")).body;
      document.getElementById("who").textContent = `${me.name} (${me.roles.join(", ")})`;
    }
    if (view === "alert" && id) await alertView(decodeURIComponent(id));
    else if (view === "user" && id) await userView(decodeURIComponent(id), params);
    else if (view === "governance") await governanceView();
    else if (view === "posture") await postureView();
    else await alertsView(params);
  } catch (error) {
    if (!me && String(error.message).startsWith("401")) {
      // App Service Authentication's sign-in, back to this page afterwards.
      const back = encodeURIComponent(location.pathname + location.hash);
      show(h("p", {}, h("a", { id: "sign-in", href: `/.auth/login/aad?post_login_redirect_uri=${back}` }, "Sign in")));
    } else failed(error);
  }
}

window.addEventListener("hashchange", route);
route();
