// The admin page's script (served at /app.js; the page's CSP allows no inline script).
// Every value from the API goes into the page as text (textContent, text nodes, attribute
// values), never as HTML.
"use strict";

const api = "/api/v1";
const TOKEN_KEY = "crmsync.token";
// Users per screen of the fleet list: one request to GET /sync-status per screen.
const FLEET_PAGE = 100;
const KINDS = ["contacts", "activities"];
const $ = (s) => document.querySelector(s);

// An element with properties (`class`, `text`, `data: {...}`, other attributes) and children
// (nodes, or strings added as text).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) { continue; }
    if (k === "class") { e.className = v; }
    else if (k === "text") { e.textContent = String(v); }
    else if (k === "data") { for (const [dk, dv] of Object.entries(v)) { e.dataset[dk] = String(dv); } }
    else if (v === true) { e.setAttribute(k, ""); }
    else { e.setAttribute(k, String(v)); }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) { continue; }
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function button(text, onClick, props) {
  const b = el("button", Object.assign({ type: "button", text }, props || {}));
  b.addEventListener("click", () => onClick(b));
  return b;
}

// A label and its control, tied by id.
let nextId = 0;
function field(labelText, control) {
  if (!control.id) { control.id = `f${++nextId}`; }
  return el("div", { class: "field" }, el("label", { for: control.id, text: labelText }), control);
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

class ApiFailure extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function call(method, path, body) {
  const headers = { "Authorization": "Bearer " + token() };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(api + path, init);
  const answer = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = answer.error || {};
    throw new ApiFailure(r.status, err.code || "", err.message || r.statusText || String(r.status));
  }
  return answer;
}

function when(t) { return t ? new Date(t).toLocaleString() : "—"; }
function counts(m) { const e = Object.entries(m || {}); return e.length ? e.map(([k, v]) => `${k} ${v}`).join(", ") : "—"; }
function value(v) { return v == null ? "" : (typeof v === "string" ? v : JSON.stringify(v)); }
function say(text) { $("#message").replaceChildren(text); }
function showError(e) { $("#message").replaceChildren(el("span", { class: "error", text: e.message })); }
function messageRow(cols, cls, text) { return el("tr", {}, el("td", { colspan: cols, class: cls, text })); }
function result(target, ok, text) { $(target).replaceChildren(el("div", { class: ok ? "ok" : "error", text })); }

// ---------------------------------------------------------------------------------------------
// The domain-wide pause switch.

let paused = false;

async function loadPause() {
  try {
    const p = await call("GET", "/sync-pause");
    paused = Boolean(p.paused);
    $("#pause").checked = paused;
    $("#pause-state").textContent = p.message || "";
    document.body.classList.toggle("paused", paused);
  } catch (e) {
    $("#pause-state").textContent = e.message;
  }
}

async function togglePause() {
  const want = $("#pause").checked;
  try {
    const p = await call("PUT", "/sync-pause", { paused: want });
    paused = Boolean(p.paused);
    $("#pause-state").textContent = p.message || "";
    say(want ? "All sync is paused." : "Sync resumed.");
  } catch (e) {
    $("#pause").checked = !want;
    showError(e);
  }
  document.body.classList.toggle("paused", paused);
  await load(undefined, true);
}

// ---------------------------------------------------------------------------------------------
// Google: the service account, its check, the OAuth client.

async function uploadServiceAccount(ev) {
  ev.preventDefault();
  const file = $("#sa-key").files[0];
  const domain = $("#sa-domain").value.trim();
  if (!domain) { result("#sa-result", false, "Enter the Workspace domain (for example example.com)."); return; }
  if (!file) { result("#sa-result", false, "Choose the service account's JSON key file."); return; }
  const text = await file.text();
  let key = text;
  try { key = JSON.parse(text); } catch (_) { /* sent as it is: the server says what is wrong */ }
  try {
    const sa = await call("PUT", "/google/service-account", { domain, key });
    $("#sa-result").replaceChildren(el("div", { class: "ok" },
      el("div", {}, "Stored for ", el("strong", { text: sa.domain }), ". Client id: ", el("code", { class: "client-id", text: sa.client_id })),
      el("div", { text: "Authorize these scopes for it (Domain-wide delegation):" }),
      el("ul", { class: "scopes" }, (sa.scopes || []).map((s) => el("li", {}, el("code", { text: s })))),
      el("div", { class: "muted", text: sa.message || "" })));
  } catch (e) {
    result("#sa-result", false, e.message);
  }
}

async function checkServiceAccount() {
  const user = $("#check-user").value;
  if (!user) { result("#check-result", false, "Choose a user to check the service account for."); return; }
  const b = $("#sa-check");
  b.disabled = true;
  $("#check-result").replaceChildren(el("div", { class: "muted", text: "Checking…" }));
  try {
    const c = await call("POST", "/google/service-account/check", { user_id: user });
    $("#check-result").replaceChildren(el("div", { class: c.ok ? "ok check-pass" : "error check-fail" },
      el("div", { text: c.ok ? "Check passed" : "Check failed: scope missing" }),
      el("ul", { class: "scopes" }, (c.scopes || []).map((s) => el("li", {},
        el("span", { class: s.ok ? "ok" : "error", text: s.ok ? "✓ " : "✗ " }), el("code", { text: s.scope }),
        s.error ? el("div", { class: "muted", text: s.error }) : null))),
      el("div", { text: c.message || "" })));
  } catch (e) {
    result("#check-result", false, e.message);
  }
  b.disabled = false;
}

async function saveOAuthClient(ev) {
  ev.preventDefault();
  try {
    const c = await call("PUT", "/google/oauth-client", {
      client_id: $("#oauth-id").value.trim(),
      client_secret: $("#oauth-secret").value,
      redirect_uri: $("#oauth-redirect").value.trim(),
    });
    $("#oauth-secret").value = "";
    result("#oauth-result", true, `OAuth client ${c.client_id} stored; users can now press "Connect Google".`);
  } catch (e) {
    result("#oauth-result", false, e.message);
  }
}

async function connectGoogle(user, cell) {
  try {
    const s = await call("POST", `/users/${encodeURIComponent(user.user_id)}/google/oauth/start`);
    cell.replaceChildren(el("div", { class: "muted" },
      `Send ${s.google_account} this link (valid until ${when(s.expires_at)}): `,
      el("a", { href: s.authorization_url, target: "_blank", rel: "noopener noreferrer", text: "Connect Google" })));
  } catch (e) {
    cell.replaceChildren(el("div", { class: "error", text: e.message }));
  }
}

// A user's sync health: per kind linked / awaiting / out of scope / failing, with the failing
// records and why.
async function showHealth(user, cell) {
  try {
    const h = await call("GET", `/users/${encodeURIComponent(user.user_id)}/sync-health`);
    cell.replaceChildren(el("div", { class: "health" }, KINDS.map((k) => {
      const kh = (h.kinds || {})[k];
      if (!kh) { return null; }
      return el("div", { data: { healthKind: k } },
        el("strong", { text: `${k}: ` }),
        `${kh.linked} linked, ${kh.awaiting_confirmation} awaiting Google, ${kh.out_of_scope} out of scope, ${kh.failing} failing${kh.parked ? ` (${kh.parked} parked)` : ""}`,
        failingList(kh.failing_records));
    })));
  } catch (e) {
    cell.replaceChildren(el("div", { class: "error", text: e.message }));
  }
}

// ---------------------------------------------------------------------------------------------
// The fleet: one page of users with their per-kind status.

let cursors = [null];   // the cursor of each page visited (the first page has none)
let pageIndex = 0;
let shownUsers = [];

function connectionCell(user) {
  const conn = user.connection;
  const note = el("div", { class: "note" });
  const reset = button("Reset connection", (b) => resetConnection(b, user), { class: "secondary", data: { reset: user.user_id } });
  const connect = button("Connect Google", () => connectGoogle(user, note), { class: "secondary", data: { connect: user.user_id } });
  const resume = conn && conn.state === "auth_error"
    ? button("Resume", (b) => resumeUser(b, user), { data: { resume: user.user_id } })
    : null;
  return [
    el("div", { text: user.google_alias }),
    conn ? el("div", { class: `state ${conn.state}`, text: conn.state }) : null,
    conn ? el("div", { class: "muted", text: conn.method === "none" ? "no connection" : `via ${conn.method}` }) : null,
    conn && conn.last_error ? el("div", { class: "error", text: conn.last_error }) : null,
    el("div", { class: "actions" }, resume, connect, reset,
      button("Health", () => showHealth(user, note), { class: "secondary", data: { health: user.user_id } })),
    note,
  ];
}

function failingList(items) {
  if (!items || !items.length) { return null; }
  return el("details", { class: "failing" },
    el("summary", { text: `${items.length} failing record(s)` }),
    el("ul", {}, items.map((f) => el("li", {},
      recordLink(f.item_id), ` (${f.side}, ${f.attempts} run(s)${f.parked_at ? ", parked" : ""}): `,
      el("span", { class: "error", text: f.last_error })))));
}

function kindCell(user, kind) {
  const st = (user.kinds || {})[kind];
  const settings = button("Settings", () => openSettings(user), { class: "secondary", data: { settings: user.user_id, kind } });
  const wait = st && st.awaiting_confirmation;
  const awaiting = wait && wait.count > 0
    ? el("div", { class: "awaiting", text: `${wait.count} records await confirmation from Google; retried at ${wait.retry_at ? when(wait.retry_at) : "the next run"}` })
    : null;
  if (!st || st.state === "not_configured" && !st.auto_sync && !st.schedule) {
    return [
      el("div", { class: "state not_configured", text: "not_configured" }),
      el("div", { class: "muted", text: "No sync settings yet: press Settings to choose the schedule" + (kind === "contacts" ? " and the sync tag." : ".") }),
      awaiting,
      st ? failingList(st.failing) : null,
      el("div", { class: "actions" }, settings),
    ];
  }
  const resetPanel = el("div", { class: "reset", data: { resetPanel: user.user_id, kind } });
  const start = button(paused ? "Paused" : "Start synchronization", (b) => startSync(b, user.user_id, kind),
    { data: { user: user.user_id, kind }, disabled: paused });
  const last = st.last_run;
  const blocked = last && last.state === "blocked";
  return [
    el("div", { class: `state ${st.state}`, text: st.state }),
    el("div", { class: "muted" }, st.schedule || "manual only", el("br"),
      `last success: ${when(st.last_success_at)}`, el("br"), `next: ${when(st.next_due_at)}${paused && st.next_due_at ? " (sync is paused)" : ""}`),
    awaiting,
    pushLine(st.push),
    pageMessage(st) ? el("div", { class: "muted", text: pageMessage(st) }) : null,
    st.last_error && !(blocked && st.last_error === last.message) && st.last_error !== (user.connection || {}).last_error
      ? el("div", { class: "error", text: st.last_error }) : null,
    blocked ? el("div", { class: "blocked" },
      el("div", { class: "warn", text: `Stopped by the mass-untag guard. ${last.message || "Too many contacts would lose the sync tag."}` }),
      el("div", { class: "actions" },
        button("Carry out", (b) => decideGuard(b, user.user_id, kind, "confirm"), { data: { guard: "confirm", user: user.user_id, kind } }),
        button("Undo", (b) => decideGuard(b, user.user_id, kind, "restore"), { class: "secondary", data: { guard: "restore", user: user.user_id, kind } })))
      : null,
    failingList(st.failing),
    el("div", { class: "actions" }, start, settings,
      button("Reset…", (b) => previewReset(b, user, kind, resetPanel), { class: "secondary", data: { resetSync: user.user_id, kind } })),
    resetPanel,
  ];
}

// Whether changes reach this kind within seconds (push), in the page's words.
function pushLine(push) {
  if (!push) return null;
  let text = null;
  if (push.crm_changes && push.google_changes) {
    text = `push: CRM and Google edits sync within seconds (watch channel until ${when(push.channel_expires_at)})`;
  } else if (push.crm_changes) {
    text = "push: CRM edits sync within seconds; Google edits at the next scheduled run";
  }
  if (push.run_due_at) text = `${text || "push"}; a run is due at ${when(push.run_due_at)}`;
  if (!text && !push.message) return null;
  return el("div", { class: "muted push", data: { push: push.google_changes ? "both" : push.crm_changes ? "crm" : "off" } },
    text, text && push.message ? el("br") : null, push.message || null);
}

// The user's kind statuses, or only the chosen kind's.
function kindsOf(u, kind) {
  const all = u.kinds || {};
  return kind ? (all[kind] ? [all[kind]] : []) : Object.values(all);
}

// What a state means and what to do, in the page's words (the API's messages name API routes).
function pageMessage(st) {
  if (st.state === "auth_error") {
    return "Google refused access: scheduled syncs are skipped until the cause is fixed. Fix it (see the Google account column), then press Resume.";
  }
  if (st.state === "not_configured" && st.message && st.message.includes("/api/v1")) {
    return "No way to reach this user's Google account yet: upload the domain's service-account key under Connect Google, or press Connect Google on the user.";
  }
  return st.message;
}

function hasErrors(u, kind) {
  if (u.connection && (u.connection.state === "auth_error" || u.connection.last_error)) { return true; }
  return kindsOf(u, kind).some((k) => k.last_error || (k.failing && k.failing.length) || k.state === "auth_error");
}

function isOverdue(u, kind, now) {
  return kindsOf(u, kind).some((k) => k.auto_sync && k.next_due_at && Date.parse(k.next_due_at) < now - 60000);
}

// With a kind chosen: the users whose kind is in the state filtered on (or set up at all).
function kindMatches(u, kind, state) {
  const k = (u.kinds || {})[kind];
  return Boolean(k) && (state ? k.state === state : k.state !== "not_configured");
}

function userRow(user) {
  const link = el("a", { href: "#", data: { runs: user.user_id }, text: user.display_name || user.email });
  link.addEventListener("click", (ev) => { ev.preventDefault(); runs(user.user_id); });
  return el("tr", { data: { userId: user.user_id } },
    el("td", {}, link, el("div", { class: "muted", text: user.email })),
    el("td", {}, connectionCell(user)),
    el("td", { data: { label: "Contacts" } }, kindCell(user, "contacts")),
    el("td", { data: { label: "Activities" } }, kindCell(user, "activities")));
}

let generation = 0;

// Reads one page of users with their statuses (one request) and shows it. After an action
// (`keepMessage`) the action's outcome stays on screen.
async function load(selected, keepMessage) {
  const mine = ++generation;
  if (!token()) {
    say("Enter an admin token to see your users' synchronization.");
    return;
  }
  const filter = $("#state-filter").value;
  const q = new URLSearchParams({ limit: String(FLEET_PAGE) });
  if (filter) { q.set("state", filter); }
  // The server filters the whole fleet, so a page holds matching users only.
  if ($("#kind-filter").value) { q.set("kind", $("#kind-filter").value); }
  if ($("#errors-filter").checked) { q.set("errors", "true"); }
  if ($("#overdue-filter").checked) { q.set("overdue", "true"); }
  if (cursors[pageIndex]) { q.set("cursor", cursors[pageIndex]); }
  try {
    const page = await call("GET", `/sync-status?${q}`);
    if (mine !== generation) { return; }
    const items = page.items || [];
    cursors[pageIndex + 1] = page.next_cursor || null;
    const now = Date.now();
    const kind = $("#kind-filter").value;
    let shown = items;
    if (kind) { shown = shown.filter((u) => kindMatches(u, kind, filter)); }
    if ($("#errors-filter").checked) { shown = shown.filter((u) => hasErrors(u, kind)); }
    if ($("#overdue-filter").checked) { shown = shown.filter((u) => isOverdue(u, kind, now)); }
    shownUsers = shown;
    const from = pageIndex * FLEET_PAGE + 1;
    const to = pageIndex * FLEET_PAGE + items.length;
    const single = pageIndex === 0 && !page.next_cursor;
    $("#page-info").textContent = items.length ? `users ${from}–${to}${page.next_cursor ? " (more on the next page)" : ""}` : "";
    $("#prev-page").disabled = pageIndex === 0;
    $("#next-page").disabled = !page.next_cursor;
    if (!keepMessage) {
      const narrowed = shown.length !== items.length ? ` (${shown.length} shown)` : "";
      if (filter) { say(`${items.length} user(s) on this page have a kind in state ${filter}${narrowed}.`); }
      else if (single) { say(`${items.length} user(s).${narrowed}`); }
      else { say(`Users ${from}–${to}${narrowed}.`); }
    }
    $("#users tbody").replaceChildren(...(shown.length ? shown.map(userRow) : [messageRow(4, "muted", "No user matches.")]));
    // When the list was last drawn (ms since navigation), for the fleet test's printed figure.
    document.body.dataset.renderedMs = String(Math.round(performance.now()));
    const check = $("#check-user");
    const chosen = check.value;
    check.replaceChildren(el("option", { value: "", text: "choose a user on the list below" }),
      ...shown.map((u) => el("option", { value: u.user_id, text: `${u.display_name} (${u.google_alias})` })));
    if (shown.some((u) => u.user_id === chosen)) { check.value = chosen; }
    // Nobody can reach Google yet: open the connection setup.
    if (pageIndex === 0 && items.length && items.every((u) => !u.connection || u.connection.method === "none")) {
      $("#google-details").open = true;
    }
    const first = shown.length ? shown[0].user_id : null;
    if (selected || first) { runs(selected || first); }
  } catch (e) {
    if (mine === generation) { showError(e); }
  }
}

async function startSync(b, user, kind, massUntag) {
  b.disabled = true;
  const label = b.textContent;
  b.textContent = "Synchronizing…";
  const extra = massUntag ? `?mass_untag=${massUntag}` : "";
  try {
    const started = await call("POST", `/users/${encodeURIComponent(user)}/sync/${encodeURIComponent(kind)}${extra}`);
    const run = await followRun(started.run_id, b);
    say(`${kind}: ${run.state}${run.message ? " — " + run.message : ""}`);
  } catch (e) {
    showError(e);
  }
  b.textContent = label;
  await load(user, true);
}

// Polls a run until it ends, showing its progress (records handled of those read so far) on
// the button that started it.
async function followRun(runId, b) {
  const ended = ["succeeded", "failed", "blocked", "skipped"];
  const deadline = Date.now() + 30 * 60 * 1000;
  for (;;) {
    const run = await call("GET", `/sync-runs/${encodeURIComponent(runId)}`);
    if (ended.includes(run.state) || Date.now() > deadline) { return run; }
    b.textContent = run.items_known
      ? `Synchronizing… ${run.items_done || 0} of ${run.items_known}`
      : (run.state === "queued" ? "Queued…" : "Synchronizing…");
    await new Promise((r) => setTimeout(r, 300));
  }
}

// The mass-untag guard stopped the last run: carry the untags out, or put everything back.
async function decideGuard(b, user, kind, decision) {
  const what = decision === "confirm"
    ? "Carry out the untags? The CRM contacts lose the sync tag (their data is kept)."
    : "Undo? The contacts are put back in the Google group and keep the sync tag.";
  if (!window.confirm(what)) { return; }
  await startSync(b, user, kind, decision);
}

// A user in auth_error: a run of each configured kind (a successful one clears the error and the
// schedule resumes).
async function resumeUser(b, user) {
  b.disabled = true;
  const kinds = KINDS.filter((k) => user.kinds && user.kinds[k] && user.kinds[k].schedule != null);
  const outcomes = [];
  for (const kind of kinds.length ? kinds : KINDS) {
    try {
      const run = await call("POST", `/users/${encodeURIComponent(user.user_id)}/sync/${kind}?wait=true`);
      outcomes.push(`${kind}: ${run.state}${run.message ? " — " + run.message : ""}`);
    } catch (e) {
      outcomes.push(`${kind}: ${e.message}`);
    }
  }
  say(`Resume ${user.email}: ${outcomes.join("; ")}`);
  await load(user.user_id, true);
}

// A user's sync reset: first the dry run (what the first run after the reset would do, planned
// by the engine against Google and the CRM; nothing changes), then, if the admin agrees, the
// reset itself and the run that follows it.
const RESET_ACTIONS = {
  contacts: { "crm.created": "imported into the CRM", "crm.updated": "updated in the CRM", "crm.tagged": "tagged in the CRM",
    "crm.untagged": "untagged in the CRM", "google.created": "created in Google", "google.updated": "updated in Google",
    "google.added_to_group": "added to the Google group", "google.removed_from_group": "removed from the Google group",
    linked: "paired", unlinked: "unpaired" },
  activities: { "crm.created": "imported into the CRM", "crm.updated": "updated in the CRM", "crm.shown_in_calendar": "shown in the calendar",
    "crm.hidden_from_calendar": "hidden from the calendar", "google.created": "created in Google", "google.updated": "updated in Google",
    "google.restored": "restored in Google", "google.cancelled": "cancelled in Google", linked: "paired", unlinked: "unpaired" },
};

function resetSummary(kind, p) {
  const words = RESET_ACTIONS[kind] || {};
  const parts = [];
  for (const [side, m] of [["crm", p.counts.crm], ["google", p.counts.google]]) {
    for (const [k, v] of Object.entries(m || {})) { parts.push(`${v} ${words[`${side}.${k}`] || `${side} ${k}`}`); }
  }
  if (p.counts.linked) { parts.push(`${p.counts.linked} ${words.linked}`); }
  if (p.counts.unlinked) { parts.push(`${p.counts.unlinked} ${words.unlinked}`); }
  return parts.length ? parts.join(", ") : "nothing to change: both sides agree";
}

async function previewReset(b, user, kind, panel) {
  b.disabled = true;
  panel.replaceChildren(el("div", { class: "muted", text: "Planning the first run after a reset (nothing changes)…" }));
  try {
    const p = await call("POST", `/users/${encodeURIComponent(user.user_id)}/sync-reset/${encodeURIComponent(kind)}?dry_run=true`);
    const words = RESET_ACTIONS[kind] || {};
    const items = el("ul", { class: "reset-items" }, p.items.map((i) => el("li", {},
      el("span", { text: i.label || i.crm_id || i.google_id || "(unnamed)" }), ": ",
      i.actions.map((a) => words[a] || a).join(", "))));
    const go = button("Reset now", (b2) => doReset(b2, user, kind, panel), { data: { resetGo: user.user_id, kind } });
    const cancel = button("Cancel", () => panel.replaceChildren(), { class: "secondary", data: { resetCancel: user.user_id, kind } });
    panel.replaceChildren(el("div", { class: "blocked", data: { resetPreview: kind } },
      el("div", { class: "warn", text: `Dry run of a ${kind} reset for ${user.email}` }),
      el("div", { text: "A reset forgets the values both sides last agreed on, the sync position and the failing records; " +
        "the pairs are kept and nothing is deleted. The first run after it would do:" }),
      el("div", { class: "reset-summary", text: resetSummary(kind, p) }),
      p.blocked ? el("div", { class: "warn", text: p.blocked }) : null,
      p.items.length ? items : null,
      p.truncated ? el("div", { class: "muted", text: `(the first ${p.items.length} shown)` }) : null,
      el("div", { class: "actions" }, go, cancel)));
  } catch (e) {
    panel.replaceChildren(el("div", { class: "error", text: e.message }));
  }
  b.disabled = false;
}

async function doReset(b, user, kind, panel) {
  b.disabled = true;
  try {
    const done = await call("POST", `/users/${encodeURIComponent(user.user_id)}/sync-reset/${encodeURIComponent(kind)}`);
    const run = await followRun(done.run_id, b);
    panel.replaceChildren();
    say(`${user.email} ${kind}: reset (${done.bases_forgotten} pairs merged again); the run after it ${run.state}` +
      `${run.counts ? ` — ${resetSummary(kind, { counts: run.counts })}` : ""}${run.message ? ` — ${run.message}` : ""}`);
  } catch (e) {
    showError(e);
  }
  await load(user.user_id, true);
}

// Forgets the user's own Google connection (refresh token, pending Connect); the user then syncs
// through the domain's service account, if there is one.
async function resetConnection(b, user) {
  if (!window.confirm(`Reset the Google connection of ${user.email}? Its stored authorization is forgotten; ` +
    "the user syncs through the domain's service account if there is one, or connects again.")) {
    return;
  }
  b.disabled = true;
  try {
    const answer = await call("DELETE", `/users/${encodeURIComponent(user.user_id)}/google/connection`);
    const conn = (answer && (answer.connection || answer)) || {};
    const now = [conn.method, conn.state].filter((v) => typeof v === "string").join(", ");
    const note = answer && typeof answer.message === "string" ? ` ${answer.message}` : "";
    say(`${user.email}: Google connection reset${now ? ` (now ${now})` : ""}.${note}`);
  } catch (e) {
    showError(e);
  }
  await load(user.user_id, true);
}

// ---------------------------------------------------------------------------------------------
// Settings of one user: the user's Google alias and time zone, and per kind the schedule, the
// contact sync tag, synchronize_from and trigger words.

// Every tag (paged), for the user's private ones.
async function privateTagsOf(userId) {
  const tags = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: "500" });
    if (cursor) { q.set("cursor", cursor); }
    const page = await call("GET", `/tags?${q}`);
    tags.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor);
  return tags.filter((t) => t.visibility === "private" && t.owner_user_id === userId);
}

// The next `n` times of "every `minutes` minutes" from now, in `zone`.
function nextTimes(minutes, zone, n) {
  const out = [];
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: zone || undefined });
  for (let i = 1; i <= n; i++) { out.push(fmt.format(new Date(Date.now() + i * minutes * 60000))); }
  return out;
}

// A cron expression as the server reads it: 6 or 7 fields, seconds first.
function cronProblem(expr) {
  const fields = expr.trim().split(/\s+/).filter(Boolean);
  if (fields.length < 6 || fields.length > 7) {
    return `a cron expression has 6 or 7 fields, seconds first (e.g. 0 */15 * * * *); this one has ${fields.length}`;
  }
  if (!fields.every((f) => /^[0-9A-Za-z*?\/,\-#LW]+$/.test(f))) { return "a field holds a character cron does not use"; }
  return null;
}

function kindForm(user, kind, current, tags) {
  const form = el("form", { class: "panel kind-form", data: { kind } });
  const auto = el("input", { type: "checkbox", id: `auto-${kind}` });
  auto.checked = current ? current.auto_sync : true;
  const mode = el("select", { id: `mode-${kind}` },
    el("option", { value: "interval", text: "every N minutes" }),
    el("option", { value: "cron", text: "cron expression" }));
  const interval = el("input", { type: "number", min: "1", max: "525600", step: "1", id: `interval-${kind}`, inputmode: "numeric" });
  const cron = el("input", { type: "text", id: `cron-${kind}`, placeholder: "0 */15 * * * *", autocomplete: "off" });
  if (current && current.cron) { mode.value = "cron"; cron.value = current.cron; }
  else { interval.value = String((current && current.interval_minutes) || 15); }
  const hint = el("div", { class: "muted hint", "aria-live": "polite" });
  const save = el("button", { type: "submit", text: `Save ${kind} settings` });
  const out = el("div", { class: "form-result", "aria-live": "polite" });

  let previewTimer = null;
  let previewSeq = 0;
  // The server reads the cron expression as the settings route will, and answers the next three
  // run times in the user's zone (debounced: one request once the admin stops typing).
  function previewCron() {
    clearTimeout(previewTimer);
    const seq = ++previewSeq;
    save.disabled = true;
    hint.textContent = "Checking the cron expression…";
    previewTimer = setTimeout(async () => {
      const q = new URLSearchParams({ cron: cron.value.trim(), time_zone: user.time_zone || "UTC" });
      try {
        const p = await call("GET", `/schedule-preview?${q}`);
        if (seq !== previewSeq) { return; }
        const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: p.time_zone });
        hint.classList.remove("error");
        hint.textContent = `Next runs (${p.time_zone}): ${p.next.map((t) => fmt.format(new Date(t))).join("; ")}`;
        save.disabled = false;
      } catch (e) {
        if (seq !== previewSeq) { return; }
        hint.classList.add("error");
        hint.textContent = e.message;
        save.disabled = true;
      }
    }, 300);
  }

  function validate() {
    const isCron = mode.value === "cron";
    interval.parentElement.hidden = isCron;
    cron.parentElement.hidden = !isCron;
    let problem = null;
    if (isCron) {
      problem = cronProblem(cron.value);
      if (!problem) { previewCron(); return true; }
    } else {
      const n = Number(interval.value);
      if (!Number.isInteger(n) || n < 1 || n > 525600) { problem = "the interval is a whole number of minutes from 1 to 525600"; }
      else { hint.textContent = `Next runs (${user.time_zone}): ${nextTimes(n, user.time_zone, 3).join("; ")}`; }
    }
    previewSeq++;
    clearTimeout(previewTimer);
    if (problem) { hint.textContent = problem; hint.classList.add("error"); } else { hint.classList.remove("error"); }
    save.disabled = Boolean(problem);
    return !problem;
  }
  mode.addEventListener("change", validate);
  interval.addEventListener("input", validate);
  cron.addEventListener("input", validate);

  const parts = [
    el("h3", { text: kind === "contacts" ? "Contacts" : "Activities" }),
    el("div", { class: "field" }, el("label", { for: auto.id }, auto, " Auto-sync on a schedule")),
    field("Schedule", mode),
    field("Interval (minutes)", interval),
    field("Cron expression (seconds first)", cron),
    hint,
  ];
  let tagSelect = null;
  let dateInput = null;
  let wordsInput = null;
  if (kind === "contacts") {
    tagSelect = el("select", { id: "tag-contacts" },
      el("option", { value: "", text: "choose the user's private tag" }),
      tags.map((t) => el("option", { value: t.id, text: t.name })));
    if (current && current.tag_id) { tagSelect.value = current.tag_id; }
    const newTag = el("input", { type: "text", id: "new-tag", placeholder: "Clients", autocomplete: "off" });
    const create = button("Create tag", async () => {
      const name = newTag.value.trim();
      if (!name) { out.replaceChildren(el("div", { class: "error", text: "Enter a name for the new tag." })); return; }
      try {
        const t = await call("POST", "/tags", { name, visibility: "private", owner_user_id: user.user_id });
        tagSelect.append(el("option", { value: t.id, text: t.name }));
        tagSelect.value = t.id;
        newTag.value = "";
        out.replaceChildren(el("div", { class: "ok", text: `Tag ${t.name} created and chosen; save to use it.` }));
      } catch (e) {
        out.replaceChildren(el("div", { class: "error", text: e.message }));
      }
    }, { class: "secondary", id: "create-tag" });
    parts.push(field("Contact sync tag (contacts with it go to Google)", tagSelect),
      el("div", { class: "field" }, el("label", { for: newTag.id, text: "Or create a new private tag" }), el("div", { class: "row" }, newTag, create)));
  } else {
    dateInput = el("input", { type: "date", id: "from-activities" });
    if (current && current.synchronize_from) { dateInput.value = current.synchronize_from; }
    wordsInput = el("input", { type: "text", id: "words-activities", placeholder: "meeting, call", autocomplete: "off" });
    if (current && current.trigger_words) { wordsInput.value = current.trigger_words.join(", "); }
    parts.push(field("Synchronize from (activities starting on or after)", dateInput),
      field("Trigger words (import Google events whose title has one; comma-separated)", wordsInput));
  }
  parts.push(el("div", { class: "actions" }, save), out);
  form.append(...parts);
  validate();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (save.disabled) { return; }
    const body = { auto_sync: auto.checked };
    if (mode.value === "cron") { body.cron = cron.value.trim(); } else { body.interval_minutes = Number(interval.value); }
    if (tagSelect) {
      if (!tagSelect.value) { out.replaceChildren(el("div", { class: "error", text: "Choose the contact sync tag, or create one." })); return; }
      body.tag_id = tagSelect.value;
    }
    if (dateInput && dateInput.value) { body.synchronize_from = dateInput.value; }
    if (wordsInput) { body.trigger_words = wordsInput.value.split(",").map((w) => w.trim()).filter(Boolean); }
    save.disabled = true;
    try {
      await call("PUT", `/users/${encodeURIComponent(user.user_id)}/sync-settings/${kind}`, body);
      out.replaceChildren(el("div", { class: "ok", text: `${kind} settings saved.` }));
      say(`${user.email}: ${kind} settings saved.`);
      await load(user.user_id, true);
    } catch (e) {
      out.replaceChildren(el("div", { class: "error", text: e.message }));
    }
    save.disabled = false;
  });
  return form;
}

function userForm(user, full) {
  const form = el("form", { class: "panel user-form" });
  const alias = el("input", { type: "text", id: "user-alias", autocomplete: "off" });
  alias.value = full.google_alias;
  const zone = el("input", { type: "text", id: "user-zone", autocomplete: "off", placeholder: "Europe/London" });
  zone.value = full.time_zone;
  const out = el("div", { class: "form-result", "aria-live": "polite" });
  form.append(el("h3", { text: "User" }),
    field("Google account (alias)", alias),
    field("Time zone (IANA name)", zone),
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Save user" })), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await call("PATCH", `/users/${encodeURIComponent(user.user_id)}`, { google_alias: alias.value.trim(), time_zone: zone.value.trim() });
      out.replaceChildren(el("div", { class: "ok", text: "Saved." }));
      await load(user.user_id, true);
    } catch (e) {
      out.replaceChildren(el("div", { class: "error", text: e.message }));
    }
  });
  return form;
}

async function openSettings(user) {
  const section = $("#settings");
  section.hidden = false;
  $("#settings-title").textContent = `Settings of ${user.display_name || user.email}`;
  const body = $("#settings-body");
  body.replaceChildren(el("div", { class: "muted", text: "Loading…" }));
  try {
    const [full, list, tags] = await Promise.all([
      call("GET", `/users/${encodeURIComponent(user.user_id)}`),
      call("GET", `/users/${encodeURIComponent(user.user_id)}/sync-settings`),
      privateTagsOf(user.user_id),
    ]);
    const byKind = new Map((Array.isArray(list) ? list : (list.items || [])).map((s) => [s.kind, s]));
    const withZone = Object.assign({}, user, { time_zone: full.time_zone });
    const close = button("Close settings", () => { section.hidden = true; }, { class: "secondary" });
    body.replaceChildren(el("div", { class: "panels" },
      userForm(user, full),
      ...KINDS.map((k) => kindForm(withZone, k, byKind.get(k), tags))), el("div", { class: "actions" }, close));
    section.scrollIntoView({ block: "start" });
    const firstInput = body.querySelector("input");
    if (firstInput) { firstInput.focus(); }
  } catch (e) {
    body.replaceChildren(el("div", { class: "error", text: e.message }));
  }
}

// ---------------------------------------------------------------------------------------------
// Runs, their changes, and a record's history (the journal).

function recordLink(id) {
  if (!id) { return el("span", { text: "" }); }
  const a = el("a", { href: "#", data: { record: id } }, el("code", { text: id }));
  a.addEventListener("click", (ev) => { ev.preventDefault(); history_(id); });
  return a;
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

function journalRows(list) {
  return list.map((j) => el("tr", {},
    el("td", {}, j.crm_id ? recordLink(j.crm_id) : el("code", { text: j.google_id || "" })),
    el("td", { text: j.side }),
    el("td", { text: j.action }),
    el("td", { text: j.rule }),
    el("td", { text: j.field || "" }),
    el("td", { text: j.winner || "" }),
    el("td", { text: value(j.before) }),
    el("td", { text: value(j.after) })));
}

async function journal(runId) {
  const body = $("#journal tbody");
  try {
    const list = (await call("GET", `/journal?run_id=${encodeURIComponent(runId)}&limit=500`)).items || [];
    $("#journal-title").textContent = `Run ${runId}: ${list.length} change(s).`;
    if (!list.length) { body.replaceChildren(messageRow(8, "muted", "This run changed nothing.")); return; }
    body.replaceChildren(...journalRows(list));
  } catch (e) {
    body.replaceChildren(messageRow(8, "error", e.message));
  }
}

async function history_(recordId) {
  const body = $("#journal tbody");
  try {
    const list = (await call("GET", `/journal?record_id=${encodeURIComponent(recordId)}&limit=500`)).items || [];
    $("#journal-title").textContent = `History of record ${recordId}: ${list.length} change(s).`;
    if (!list.length) { body.replaceChildren(messageRow(8, "muted", "No change recorded for this record.")); return; }
    body.replaceChildren(...journalRows(list));
  } catch (e) {
    body.replaceChildren(messageRow(8, "error", e.message));
  }
}

// ---------------------------------------------------------------------------------------------
// Webhooks: list, add, remove, deliveries and their retry.

async function loadWebhooks() {
  const body = $("#webhook-list tbody");
  try {
    const list = (await call("GET", "/webhooks?limit=100")).items || [];
    if (!list.length) { body.replaceChildren(messageRow(4, "muted", "No webhook yet.")); return; }
    body.replaceChildren(...list.map((w) => el("tr", { data: { webhook: w.id } },
      el("td", {}, el("code", { text: w.url })),
      el("td", { text: (w.event_types || []).join(", ") }),
      el("td", {}, el("span", { class: `state ${w.health}`, text: w.health }),
        el("div", { class: "muted", text: `${w.pending_deliveries} pending, ${w.failed_deliveries} failed` }),
        w.last_failure ? el("div", { class: "error", text: `${w.last_failure.event_type}: ${w.last_failure.error}` }) : null),
      el("td", { class: "actions" },
        button("Deliveries", () => deliveries(w), { class: "secondary", data: { deliveries: w.id } }),
        button("Remove", (b) => removeWebhook(b, w), { class: "secondary", data: { remove: w.id } })))));
  } catch (e) {
    if (e.status === 404) {
      $("#webhooks").replaceChildren(el("h2", { text: "Webhooks" }),
        el("p", { class: "muted", text: "This server has no webhooks yet." }));
      return;
    }
    body.replaceChildren(messageRow(4, "error", e.message));
  }
}

async function addWebhook(ev) {
  ev.preventDefault();
  const url = $("#webhook-url").value.trim();
  const events = $("#webhook-events").value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { url };
  if (events.length) { body.event_types = events; }
  try {
    const w = await call("POST", "/webhooks", body);
    $("#webhook-url").value = "";
    $("#webhook-events").value = "";
    $("#webhook-result").replaceChildren(el("div", { class: "ok" },
      `Webhook added for ${w.url}. Its signing secret (shown only now; give it to the endpoint): `,
      el("code", { class: "secret", text: w.secret })));
  } catch (e) {
    result("#webhook-result", false, e.message);
  }
  await loadWebhooks();
}

async function removeWebhook(b, w) {
  if (!window.confirm(`Remove the webhook for ${w.url}? Its pending deliveries are dropped.`)) { return; }
  b.disabled = true;
  try {
    await call("DELETE", `/webhooks/${encodeURIComponent(w.id)}`);
    result("#webhook-result", true, `Webhook for ${w.url} removed.`);
  } catch (e) {
    result("#webhook-result", false, e.message);
  }
  await loadWebhooks();
}

async function deliveries(w) {
  const body = $("#deliveries tbody");
  $("#deliveries-title").textContent = `Deliveries to ${w.url}`;
  try {
    const list = (await call("GET", `/webhooks/${encodeURIComponent(w.id)}/deliveries?limit=100`)).items || [];
    if (!list.length) { body.replaceChildren(messageRow(6, "muted", "No delivery yet.")); return; }
    body.replaceChildren(...list.map((d) => el("tr", { data: { delivery: d.id } },
      el("td", { text: when(d.created_at) }),
      el("td", { text: d.event_type }),
      el("td", { class: `state ${d.state}`, text: d.state }),
      el("td", { text: d.attempt_count }),
      el("td", { text: [d.last_status_code, d.last_error].filter((v) => v != null).join(" ") || "—" }),
      el("td", {}, button(d.state === "delivered" ? "Send again" : "Retry now", (b) => retryDelivery(b, w, d), { class: "secondary", data: { retry: d.id } })))));
  } catch (e) {
    body.replaceChildren(messageRow(6, "error", e.message));
  }
}

async function retryDelivery(b, w, d) {
  b.disabled = true;
  try {
    await call("POST", `/webhooks/${encodeURIComponent(w.id)}/deliveries/${encodeURIComponent(d.id)}/retry`);
    result("#webhook-result", true, `Delivery ${d.id} is due now.`);
  } catch (e) {
    result("#webhook-result", false, e.message);
  }
  await deliveries(w);
}

// ---------------------------------------------------------------------------------------------

async function loadAll() {
  if (!token()) { await load(); return; }
  await loadPause();
  await Promise.all([load(), loadWebhooks()]);
}

function restart() { cursors = [null]; pageIndex = 0; load(); }

tokenFromHash();
$("#oauth-redirect").value = `${location.origin}/oauth/callback`;
window.addEventListener("hashchange", () => { if (tokenFromHash()) { loadAll(); } });
$("#save").addEventListener("click", () => { sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim()); loadAll(); });
$("#token").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { $("#save").click(); } });
$("#state-filter").addEventListener("change", restart);
$("#kind-filter").addEventListener("change", restart);
$("#errors-filter").addEventListener("change", restart);
$("#overdue-filter").addEventListener("change", restart);
$("#prev-page").addEventListener("click", () => { if (pageIndex > 0) { pageIndex--; load(); } });
$("#next-page").addEventListener("click", () => { if (cursors[pageIndex + 1]) { pageIndex++; load(); } });
$("#pause").addEventListener("change", togglePause);
$("#sa-form").addEventListener("submit", uploadServiceAccount);
$("#sa-check").addEventListener("click", checkServiceAccount);
$("#oauth-form").addEventListener("submit", saveOAuthClient);
$("#webhook-form").addEventListener("submit", addWebhook);
loadAll();
