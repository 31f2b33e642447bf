// The admin page's script (served at /app.js; the page's CSP allows no inline script).
// Every value from the API goes into the page as text (textContent, text nodes), never as HTML.
"use strict";

const api = "/api/v1";
const TOKEN_KEY = "crmsync.token";
// Users and statuses are read in pages of this many (the API's largest page).
const PAGE_SIZE = 500;
const $ = (s) => document.querySelector(s);

// An element with properties (`class`, `text`, `data: {...}`, other attributes) and children
// (nodes, or strings added as text).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null) { continue; }
    if (k === "class") { e.className = v; }
    else if (k === "text") { e.textContent = String(v); }
    else if (k === "data") { for (const [dk, dv] of Object.entries(v)) { e.dataset[dk] = String(dv); } }
    else { e.setAttribute(k, String(v)); }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) { continue; }
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// The token lives in sessionStorage: gone when the browser session ends. (Older versions of this
// page kept it in localStorage; it is removed from there.)
localStorage.removeItem(TOKEN_KEY);
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

// A link with #token=… (printed by `crmsync demo`) stores the token and leaves the address bar.
function tokenFromHash() {
  const t = new URLSearchParams(location.hash.slice(1)).get("token");
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("#token").value = token();
  return Boolean(t);
}

async function call(method, path) {
  const r = await fetch(api + path, { method, headers: { "Authorization": "Bearer " + token() } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { throw new Error((body.error && body.error.message) || r.statusText || String(r.status)); }
  return body;
}

// Every item of a paged list, following next_cursor to the end.
async function allPages(path, params) {
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams(params);
    q.set("limit", String(PAGE_SIZE));
    if (cursor) { q.set("cursor", cursor); }
    const page = await call("GET", `${path}?${q}`);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

function when(t) { return t ? new Date(t).toLocaleString() : "—"; }
function counts(m) { const e = Object.entries(m || {}); return e.length ? e.map(([k, v]) => `${k} ${v}`).join(", ") : "—"; }
function value(v) { return v == null ? "" : (typeof v === "string" ? v : JSON.stringify(v)); }
function showError(e) { $("#message").replaceChildren(el("span", { class: "error", text: e.message })); }
function messageRow(cols, cls, text) { return el("tr", {}, el("td", { colspan: cols, class: cls, text })); }

function connectionCell(conn) {
  if (!conn) { return null; }
  return [
    el("div", { class: `state ${conn.state}`, text: conn.state }),
    el("div", { class: "muted", text: conn.method === "none" ? "no connection" : `via ${conn.method}` }),
    conn.last_error ? el("div", { class: "error", text: conn.last_error }) : null,
  ];
}

function failingList(items) {
  if (!items || !items.length) { return null; }
  return el("details", { class: "failing" },
    el("summary", { text: `${items.length} failing record(s)` }),
    el("ul", {}, items.map((f) => el("li", {},
      el("code", { text: f.item_id }), ` (${f.side}, ${f.attempts} run(s)${f.parked_at ? ", parked" : ""}): `,
      el("span", { class: "error", text: f.last_error })))));
}

function kindCell(user, kind, status) {
  if (!status) { return el("span", { class: "muted", text: "status unavailable" }); }
  const st = (status.kinds || {})[kind];
  if (!st) { return el("span", { class: "muted", text: "not configured" }); }
  const wait = st.awaiting_confirmation;
  const button = el("button", { type: "button", data: { user: user.id, kind }, text: "Start synchronization" });
  button.addEventListener("click", () => start(button));
  return [
    el("div", { class: `state ${st.state}`, text: st.state }),
    el("div", { class: "muted" }, st.schedule || "manual only", el("br"),
      `last success: ${when(st.last_success_at)}`, el("br"), `next: ${when(st.next_due_at)}`),
    wait && wait.count > 0
      ? el("div", { class: "awaiting", text: `${wait.count} records await confirmation from Google; retried at ${wait.retry_at ? when(wait.retry_at) : "the next run"}` })
      : null,
    st.message ? el("div", { class: "muted", text: st.message }) : null,
    st.last_error ? el("div", { class: "error", text: st.last_error }) : null,
    failingList(st.failing),
    el("div", { class: "actions" }, button),
  ];
}

function userRow(user, status) {
  const link = el("a", { href: "#", data: { runs: user.id }, text: user.display_name });
  link.addEventListener("click", (ev) => { ev.preventDefault(); runs(user.id); });
  const reset = el("button", { type: "button", class: "secondary", data: { reset: user.id }, text: "Reset connection" });
  reset.addEventListener("click", () => resetConnection(reset, user));
  return el("tr", { data: { userId: user.id } },
    el("td", {}, link, el("div", { class: "muted", text: user.email })),
    el("td", {}, user.google_alias, connectionCell(status && status.connection), el("div", { class: "actions" }, reset)),
    el("td", {}, kindCell(user, "contacts", status)),
    el("td", {}, kindCell(user, "activities", status)));
}

let generation = 0;

// Reads every user and every user's status (paged: one request per page, not one per user) and
// shows them. After "Start synchronization" (`outcome`) the run's outcome stays on screen.
async function load(selected, outcome) {
  const mine = ++generation;
  if (!token()) {
    $("#message").textContent = "Enter an admin token to see your users' synchronization.";
    return;
  }
  const filter = $("#state-filter").value;
  try {
    const [users, statuses] = await Promise.all([
      allPages("/users", {}),
      allPages("/sync-status", filter ? { state: filter } : {}),
    ]);
    if (mine !== generation) { return; }
    const byUser = new Map(statuses.map((s) => [s.user_id, s]));
    const shown = filter ? users.filter((u) => byUser.has(u.id)) : users;
    if (!outcome) {
      $("#message").textContent = filter
        ? `${shown.length} of ${users.length} user(s) have a kind in state ${filter}.`
        : `${users.length} user(s).`;
    }
    $("#users tbody").replaceChildren(...shown.map((u) => userRow(u, byUser.get(u.id))));
    const first = shown.length ? shown[0].id : null;
    if (selected || first) { runs(selected || first); }
  } catch (e) {
    if (mine === generation) { showError(e); }
  }
}

async function runs(userId) {
  const body = $("#runs tbody");
  try {
    const list = (await call("GET", `/sync-runs?user_id=${encodeURIComponent(userId)}&limit=20`)).items || [];
    if (!list.length) { body.replaceChildren(messageRow(8, "muted", "No runs yet.")); return; }
    body.replaceChildren(...list.map((r) => {
      const link = el("a", { href: "#", data: { run: r.id }, text: when(r.requested_at) });
      link.addEventListener("click", (ev) => { ev.preventDefault(); journal(r.id); });
      return el("tr", {},
        el("td", {}, link),
        el("td", { text: r.kind }),
        el("td", { text: r.trigger }),
        el("td", { class: `state ${r.state}`, text: r.state }),
        el("td", { text: counts(r.counts && r.counts.crm) }),
        el("td", { text: counts(r.counts && r.counts.google) }),
        el("td", { text: r.conflicts }),
        el("td", { text: r.message || "" }));
    }));
  } catch (e) {
    body.replaceChildren(messageRow(8, "error", e.message));
  }
}

async function journal(runId) {
  const body = $("#journal tbody");
  try {
    const list = (await call("GET", `/journal?run_id=${encodeURIComponent(runId)}&limit=500`)).items || [];
    $("#journal-title").textContent = `Run ${runId}: ${list.length} change(s).`;
    if (!list.length) { body.replaceChildren(messageRow(8, "muted", "This run changed nothing.")); return; }
    body.replaceChildren(...list.map((j) => el("tr", {},
      el("td", {}, el("code", { text: j.crm_id || j.google_id || "" })),
      el("td", { text: j.side }),
      el("td", { text: j.action }),
      el("td", { text: j.rule }),
      el("td", { text: j.field || "" }),
      el("td", { text: j.winner || "" }),
      el("td", { text: value(j.before) }),
      el("td", { text: value(j.after) }))));
  } catch (e) {
    body.replaceChildren(messageRow(8, "error", e.message));
  }
}

async function start(button) {
  const { user, kind } = button.dataset;
  button.disabled = true;
  button.textContent = "Synchronizing…";
  try {
    const run = await call("POST", `/users/${encodeURIComponent(user)}/sync/${encodeURIComponent(kind)}?wait=true`);
    $("#message").textContent = `${kind}: ${run.state}${run.message ? " — " + run.message : ""}`;
  } catch (e) {
    showError(e);
  }
  await load(user, true);
}

// Forgets the user's own Google connection (refresh token, pending Connect); the user then syncs
// through the domain's service account, if there is one.
async function resetConnection(button, user) {
  if (!window.confirm(`Reset the Google connection of ${user.email}? Its stored authorization is forgotten; ` +
    "the user syncs through the domain's service account if there is one, or connects again.")) {
    return;
  }
  button.disabled = true;
  try {
    const answer = await call("DELETE", `/users/${encodeURIComponent(user.id)}/google/connection`);
    const conn = (answer && (answer.connection || answer)) || {};
    const now = [conn.method, conn.state].filter((v) => typeof v === "string").join(", ");
    const note = answer && typeof answer.message === "string" ? ` ${answer.message}` : "";
    $("#message").textContent = `${user.email}: Google connection reset${now ? ` (now ${now})` : ""}.${note}`;
  } catch (e) {
    showError(e);
  }
  await load(user.id, true);
}

tokenFromHash();
window.addEventListener("hashchange", () => { if (tokenFromHash()) { load(); } });
$("#save").addEventListener("click", () => { sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim()); load(); });
$("#state-filter").addEventListener("change", () => load());
load();
