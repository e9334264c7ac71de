// callbridge dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
// The API key lives in sessionStorage only (gone when the tab closes). Live data arrives over
// Server-Sent Events: each (re)connection starts with a full document, so the page is correct
// again as soon as a reconnect succeeds.
"use strict";

const KEY_STORAGE = "callbridge.apiKey";
// The key's scope, as the session answer names it: a read key is offered no writes (the API
// would refuse them anyway, with 403).
const SCOPE_STORAGE = "callbridge.scope";
const STREAM = "/dashboard/stream";
const DISPOSITION_ORDER = [
  "answered", "voicemail", "voicemail_left", "no_answer", "busy", "failed",
  "dnc", "expired", "cancelled", "removed",
];
const LABELS = {
  answered: "Answered", voicemail: "Voicemail", voicemail_left: "Voicemail left",
  no_answer: "No answer", busy: "Busy", failed: "Failed", dnc: "Do not call",
  expired: "Expired", cancelled: "Cancelled", removed: "Removed", unknown: "Other",
  pending: "Pending", in_progress: "In progress", done: "Done",
};
const RETRY_OUTCOMES = ["busy", "no_answer", "failed", "voicemail"];
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const app = {
  key: sessionStorage.getItem(KEY_STORAGE),
  scope: sessionStorage.getItem(SCOPE_STORAGE),
  source: null,          // the EventSource
  streamFor: undefined,  // campaign id the stream shows, null for the list
  renewTimer: null,
  retryTimer: null,
  retryDelay: 1000,
  view: null,            // {name, campaignId, ...} of what is on screen
};

// --- small helpers -------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === "text") {
      el.textContent = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : value);
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);
function label(name) {
  if (LABELS[name]) return LABELS[name];
  const text = String(name).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
const pct = (done, total) => (total > 0 ? Math.floor((100 * done) / total) : 0);

function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const sameDay = at.toDateString() === new Date().toDateString();
  return sameDay ? at.toLocaleTimeString() : at.toLocaleString();
}

function seconds(value) {
  return value === null || value === undefined ? "—" : `${value} s`;
}

function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, options = {}) {
  const headers = { Authorization: `Bearer ${app.key}`, ...(options.headers || {}) };
  const init = { method, headers };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    init.body = options.body;
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !options.login) {
    logout("The API key was refused; log in again.");
    throw new ApiError("unauthorized", 401);
  }
  if (options.raw && response.ok) return response;
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    // callbridge's routes answer {"error": {message}}, the ElevenLabs-compatible ones {"detail"}.
    const detail = body && body.detail;
    const message = (body && body.error && body.error.message)
      || (typeof detail === "string" ? detail : detail && detail.message) || response.statusText;
    throw new ApiError(message, response.status, body);
  }
  return body;
}

// --- session and live stream -----------------------------------------------------------------

function canWrite() {
  return app.scope !== "read";
}

function setScope(scope) {
  const changed = scope !== app.scope;
  app.scope = scope;
  sessionStorage.setItem(SCOPE_STORAGE, scope);
  if (changed && app.key) route();
}

async function openSession() {
  const session = await api("POST", "/api/v1/dashboard/session");
  setScope(session.scope);
  clearTimeout(app.renewTimer);
  // Renew at half the ticket's life, so a stream reconnecting always finds a valid one.
  app.renewTimer = setTimeout(() => openSession().catch(() => {}), session.ttl_seconds * 500);
  return session;
}

function setLive(state, text) {
  const live = $("#live");
  live.dataset.state = state;
  live.textContent = text;
}

function closeStream() {
  clearTimeout(app.retryTimer);
  if (app.source) app.source.close();
  app.source = null;
  app.streamFor = undefined;
}

function connect(campaignId) {
  if (app.source && app.streamFor === campaignId) return;
  closeStream();
  const url = campaignId ? `${STREAM}?campaign=${encodeURIComponent(campaignId)}` : STREAM;
  const source = new EventSource(url);
  app.source = source;
  app.streamFor = campaignId;
  setLive("connecting", "Connecting…");
  source.addEventListener("open", () => {
    app.retryDelay = 1000;
    setLive("on", "Live");
  });
  source.addEventListener("campaigns", (event) => onCampaigns(JSON.parse(event.data)));
  source.addEventListener("campaign", (event) => onCampaign(JSON.parse(event.data)));
  source.addEventListener("missing", () => onMissing());
  source.addEventListener("error", () => {
    if (app.source !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // Refused (a ticket from a restarted node, or an expired one): get a new ticket, retry.
      setLive("off", "Reconnecting…");
      source.close();
      app.source = null;
      const delay = app.retryDelay;
      app.retryDelay = Math.min(app.retryDelay * 2, 15000);
      app.retryTimer = setTimeout(async () => {
        try {
          await openSession();
        } catch (error) {
          if (error.status === 401) return;
        }
        if (app.streamFor === campaignId && app.key) {
          app.streamFor = undefined;
          connect(campaignId);
        }
      }, delay);
    } else {
      setLive("off", "Reconnecting…");
    }
  });
}

// --- routing ---------------------------------------------------------------------------------

function route() {
  const main = $("#main");
  if (!app.key) {
    closeStream();
    return renderLogin(main);
  }
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $('#nav a[href="#/new"]').hidden = !canWrite();
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/campaigns\/([\w-]+)$/);
  if (match) return renderCampaign(main, match[1]);
  if (hash === "#/new") return canWrite() ? renderNew(main) : renderReadOnly(main);
  return renderList(main);
}

function show(main, title, ...content) {
  main.replaceChildren(...content);
  document.title = `${title} · callbridge`;
}

function renderReadOnly(main) {
  closeStream();
  app.view = { name: "read-only" };
  show(main, "Read-only key",
    h("h1", { text: "This API key can only read" }),
    h("p", { text: "Creating, starting, pausing and cancelling campaigns need a key of scope write." }),
    h("p", {}, h("a", { href: "#/", text: "Back to the campaigns" })));
}

function logout(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  sessionStorage.removeItem(SCOPE_STORAGE);
  app.scope = null;
  const key = app.key;
  app.key = null;
  clearTimeout(app.renewTimer);
  closeStream();
  setLive("off", "Not connected");
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  if (key) {
    fetch("/api/v1/dashboard/session", {
      method: "DELETE", headers: { Authorization: `Bearer ${key}` },
    }).catch(() => {});
  }
  if (location.hash !== "#/") location.hash = "#/";
  route();
  if (message) toast(message);
}

// --- login -----------------------------------------------------------------------------------

function renderLogin(main) {
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  const error = h("p", { class: "error", id: "login-error", role: "alert" });
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", required: true,
    autocomplete: "current-password", "aria-describedby": "api-key-help login-error",
  });
  const form = h("form", { class: "card narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Log in" }),
    h("label", { for: "api-key", text: "API key" }),
    input,
    h("p", { id: "api-key-help", class: "hint",
      text: "Kept in this browser tab only, and forgotten when the tab closes." }),
    error,
    h("button", { type: "submit", text: "Log in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    app.key = input.value.trim();
    try {
      const session = await api("POST", "/api/v1/dashboard/session", { login: true });
      app.scope = session.scope;
      sessionStorage.setItem(SCOPE_STORAGE, session.scope);
    } catch (failure) {
      app.key = null;
      error.textContent = failure.status === 401 ? "That API key was refused." : failure.message;
      input.focus();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, app.key);
    await openSession().catch(() => {});
    route();
    $("#main").focus();
  });
  show(main, "Log in", form);
  input.focus();
}

// --- campaign actions ------------------------------------------------------------------------

const ACTIONS = {
  draft: ["start", "cancel"],
  scheduled: ["cancel"],
  running: ["pause", "cancel"],
  paused: ["resume", "cancel"],
};

function actionButtons(campaign, onDone) {
  const names = canWrite() ? ACTIONS[campaign.status] || [] : [];
  return names.map((action) => h("button", {
    type: "button",
    class: action === "cancel" ? "danger" : action === "start" ? "primary" : "",
    dataset: { action },
    "aria-label": `${label(action)} ${campaign.name}`,
    text: action[0].toUpperCase() + action.slice(1),
    on: { click: (event) => runAction(campaign, action, event.currentTarget, onDone) },
  }));
}

async function runAction(campaign, action, button, onDone) {
  if (action === "cancel" && !confirm(`Cancel “${campaign.name}”? Contacts not yet called will not be called.`)) {
    return;
  }
  button.disabled = true;
  try {
    const updated = await api("POST", `/api/v1/campaigns/${campaign.id}/${action}`);
    toast(`${campaign.name}: ${label(updated.status || "done")}`);
    // Show the new state at once; the stream confirms it with the next full document.
    const view = app.view;
    if (updated.status && view && view.name === "campaign" && view.campaign && view.campaign.id === campaign.id) {
      onCampaign({ ...view.campaign, status: updated.status });
    }
    if (onDone) onDone(updated);
  } catch (error) {
    if (error.status !== 401) toast(`Could not ${action} ${campaign.name}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function progressBar(id, campaignName) {
  const fill = h("span", { class: "fill" });
  const bar = h("div", {
    class: "progress", role: "progressbar", id,
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
    "aria-label": `Progress of ${campaignName}`,
  }, fill);
  const text = h("span", { class: "progress-text" });
  return {
    node: h("div", { class: "progress-wrap" }, bar, text),
    update(counts) {
      const percent = pct(counts.done, counts.contacts);
      fill.style.width = `${percent}%`;
      bar.setAttribute("aria-valuenow", String(percent));
      bar.setAttribute("aria-valuetext", `${counts.done} of ${counts.contacts} contacts done`);
      bar.dataset.done = String(counts.done);
      bar.dataset.total = String(counts.contacts);
      text.textContent = `${counts.done} / ${counts.contacts} · ${percent}%`;
    },
  };
}

// --- campaign list ---------------------------------------------------------------------------

function renderList(main) {
  app.view = { name: "list", rows: new Map() };
  const body = h("tbody", { id: "campaign-rows" });
  const empty = h("p", { id: "no-campaigns", class: "hint", hidden: true },
    ...(canWrite() ? ["No campaigns yet. ", h("a", { href: "#/new", text: "Create one" }), "."]
      : ["No campaigns yet."]));
  const table = h("table", { class: "campaigns" },
    h("caption", { class: "sr-only", text: "Campaigns, newest first" }),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", text: "Campaign" }),
      h("th", { scope: "col", text: "Status" }),
      h("th", { scope: "col", text: "Progress" }),
      h("th", { scope: "col", class: "wide-only", text: "Next call" }),
      h("th", { scope: "col", text: "Actions" }))),
    body);
  show(main, "Campaigns",
    h("div", { class: "page-head" },
      h("h1", { text: "Campaigns" }),
      canWrite() ? h("a", { class: "button primary", href: "#/new", text: "New campaign" })
        : h("span", { class: "hint", id: "read-only", text: "Read-only key" })),
    h("div", { class: "table-scroll" }, table),
    empty);
  connect(null);
}

function onCampaigns(document_) {
  const view = app.view;
  if (!view || view.name !== "list") return;
  const body = $("#campaign-rows");
  const seen = new Set();
  document_.campaigns.forEach((campaign, index) => {
    seen.add(campaign.id);
    let row = view.rows.get(campaign.id);
    if (!row) {
      row = listRow(campaign);
      view.rows.set(campaign.id, row);
    }
    row.update(campaign);
    if (body.children[index] !== row.node) body.insertBefore(row.node, body.children[index] || null);
  });
  for (const [id, row] of view.rows) {
    if (!seen.has(id)) {
      row.node.remove();
      view.rows.delete(id);
    }
  }
  $("#no-campaigns").hidden = document_.campaigns.length > 0;
}

function listRow(campaign) {
  const progress = progressBar(`progress-${campaign.id}`, campaign.name);
  const status = h("span", { class: "badge" });
  const next = h("td", { class: "wide-only" });
  const actions = h("div", { class: "actions" });
  const node = h("tr", { dataset: { campaign: campaign.id } },
    h("th", { scope: "row" },
      h("a", { href: `#/campaigns/${campaign.id}`, text: campaign.name }),
      h("div", { class: "hint mono", text: campaign.id })),
    h("td", {}, status),
    h("td", { class: "progress-cell" }, progress.node),
    next,
    h("td", {}, actions));
  let shownStatus = null;
  return {
    node,
    update(current) {
      status.textContent = label(current.status);
      status.dataset.status = current.status;
      progress.update(current.counts);
      next.textContent = current.next_call_at ? when(current.next_call_at) : "—";
      if (shownStatus !== current.status) {
        shownStatus = current.status;
        const focused = actions.contains(document.activeElement);
        actions.replaceChildren(...actionButtons(current));
        if (focused && actions.firstChild) actions.firstChild.focus();
      }
    },
  };
}

// --- one campaign ----------------------------------------------------------------------------

function renderCampaign(main, campaignId) {
  const progress = progressBar("campaign-progress", campaignId);
  const view = {
    name: "campaign", campaignId, progress, campaign: null, status: null,
    contactQuery: { q: "", disposition: "", state: "", page: 1 },
    refreshTimer: null, lastCounts: null,
  };
  app.view = view;
  const title = h("h1", { id: "campaign-title", text: "Campaign" });
  const status = h("span", { class: "badge", id: "campaign-status" });
  const actions = h("div", { class: "actions", id: "campaign-actions" });
  const exportButton = h("button", {
    type: "button", id: "export", text: "Download export (CSV)",
    on: { click: () => downloadExport(campaignId, exportButton) },
  });
  const facts = h("dl", { class: "facts", id: "campaign-facts" });

  const search = h("input", { id: "contact-search", type: "search", placeholder: "+1415…, ext-42" });
  const disposition = h("select", { id: "contact-disposition" },
    h("option", { value: "", text: "Any" }),
    DISPOSITION_ORDER.map((d) => h("option", { value: d, text: label(d) })));
  const state = h("select", { id: "contact-state" },
    h("option", { value: "", text: "Any" }),
    ["pending", "in_progress", "done"].map((s) => h("option", { value: s, text: label(s) })));
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter contacts" },
    h("div", { class: "field" },
      h("label", { for: "contact-search", text: "Number or external id" }), search),
    h("div", { class: "field" },
      h("label", { for: "contact-disposition", text: "Disposition" }), disposition),
    h("div", { class: "field" }, h("label", { for: "contact-state", text: "State" }), state));
  filters.addEventListener("submit", (event) => event.preventDefault());
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.contactQuery.q = search.value; view.contactQuery.page = 1; loadContacts(); }, 250);
  });
  disposition.addEventListener("change", () => {
    view.contactQuery.disposition = disposition.value; view.contactQuery.page = 1; loadContacts();
  });
  state.addEventListener("change", () => {
    view.contactQuery.state = state.value; view.contactQuery.page = 1; loadContacts();
  });

  show(main, "Campaign",
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/", text: "← Campaigns" })),
    h("div", { class: "page-head" }, h("div", {}, title, status), actions),
    h("section", { class: "card", "aria-labelledby": "progress-title" },
      h("h2", { id: "progress-title", text: "Progress" }),
      progress.node,
      facts,
      exportButton),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "dispositions-title" },
        h("h2", { id: "dispositions-title", text: "Dispositions" }),
        h("ul", { class: "bars", id: "dispositions" })),
      h("section", { class: "card", "aria-labelledby": "cpm-title" },
        h("h2", { id: "cpm-title", text: "Calls per minute" }),
        h("div", { id: "cpm" }))),
    h("section", { class: "card", "aria-labelledby": "live-title" },
      h("h2", { id: "live-title" }, "Live calls ", h("span", { class: "count", id: "live-count", text: "0" })),
      h("div", { id: "live-calls" })),
    h("section", { class: "card", id: "attention-panel", "aria-labelledby": "attention-title" },
      h("h2", { id: "attention-title" }, "Needs attention ", h("span", { class: "count", id: "attention-count", text: "0" })),
      h("div", { id: "attention" })),
    h("div", { class: "grid" },
      h("section", { class: "card", id: "policy-panel", "aria-labelledby": "policy-title" },
        h("h2", { id: "policy-title", text: "Calling policy" }),
        h("div", { id: "policy" })),
      h("section", { class: "card", id: "follow-ups-panel", "aria-labelledby": "follow-ups-title" },
        h("h2", { id: "follow-ups-title", text: "Follow-ups asked for" }),
        h("div", { id: "follow-ups" }))),
    h("section", { class: "card", "aria-labelledby": "contacts-title" },
      h("h2", { id: "contacts-title", text: "Contacts and attempts" }),
      filters,
      h("p", { class: "hint", text: "Choose a number to see its attempts and call summaries." }),
      h("p", { id: "contacts-summary", class: "hint", "aria-live": "polite" }),
      h("div", { class: "table-scroll" },
        h("table", { class: "contacts" },
          h("caption", { class: "sr-only", text: "Contacts of this campaign" }),
          h("thead", {}, h("tr", {},
            h("th", { scope: "col", class: "wide-only", text: "Row" }),
            h("th", { scope: "col", text: "Number" }),
            h("th", { scope: "col", class: "wide-only", text: "External id" }),
            h("th", { scope: "col", text: "Disposition" }),
            h("th", { scope: "col", class: "num", text: "Attempts" }),
            h("th", { scope: "col", class: "wide-only", text: "Last call" }))),
          h("tbody", { id: "contact-rows" }))),
      h("div", { class: "pager", id: "pager" })));
  view.parts = { title, status, actions, facts };
  connect(campaignId);
  loadContacts();
}

function onMissing() {
  const view = app.view;
  if (!view || view.name !== "campaign") return;
  show($("#main"), "Not found",
    h("h1", { text: "No such campaign" }),
    h("p", {}, h("a", { href: "#/", text: "Back to the campaigns" })));
  app.view = null;
}

function onCampaign(campaign) {
  const view = app.view;
  if (!view || view.name !== "campaign" || view.campaignId !== campaign.id) return;
  view.campaign = campaign;
  const { title, status, actions, facts } = view.parts;
  title.textContent = campaign.name;
  document.title = `${campaign.name} · callbridge`;
  status.textContent = label(campaign.status);
  status.dataset.status = campaign.status;
  $(".progress", view.progress.node).setAttribute("aria-label", `Progress of ${campaign.name}`);
  view.progress.update(campaign.counts);
  if (view.status !== campaign.status) {
    view.status = campaign.status;
    const focused = actions.contains(document.activeElement);
    actions.replaceChildren(...actionButtons(campaign));
    if (focused && actions.firstChild) actions.firstChild.focus();
  }
  const c = campaign.counts;
  facts.replaceChildren(
    ...fact("Contacts", c.contacts), ...fact("Pending", c.pending),
    ...fact("In progress", c.in_progress), ...fact("Live calls", c.live_calls),
    ...fact("Next call", campaign.next_call_at ? when(campaign.next_call_at) : "—"),
    ...fact("Pacing", `${campaign.concurrency} at once${campaign.cps ? `, ${campaign.cps}/s` : ""}`),
    ...fact("Agent", campaign.agent_id || "—"),
    ...fact("From", campaign.from_number || "default"));
  renderDispositions(c);
  renderCallsPerMinute(campaign.calls_per_minute.minutes);
  renderLiveCalls(campaign.live_calls, c.live_calls);
  // Re-drawn only when they change, so a resolution being typed is not wiped by the stream.
  const panels = JSON.stringify([campaign.policy, campaign.attention, campaign.follow_ups, campaign.status]);
  if (view.lastPanels !== panels) {
    view.lastPanels = panels;
    renderPolicy(campaign.policy);
    renderAttention(campaign.attention, campaign);
    renderFollowUps(campaign.follow_ups);
  }
  // The table follows the campaign: re-read it when the counts move, at most once a second.
  const counts = JSON.stringify(c);
  if (view.lastCounts !== null && view.lastCounts !== counts) refreshContactsSoon(view);
  view.lastCounts = counts;
}

function refreshContactsSoon(view) {
  if (view.refreshTimer) return;
  const wait = Math.max(0, (view.lastLoad || 0) + 1000 - Date.now());
  view.refreshTimer = setTimeout(() => {
    view.refreshTimer = null;
    view.lastLoad = Date.now();
    loadContacts();
  }, wait);
}

function fact(name, value) {
  return [h("dt", { text: name }), h("dd", { text: String(value) })];
}

function renderDispositions(counts) {
  const list = $("#dispositions");
  const entries = Object.entries(counts.dispositions)
    .sort(([a], [b]) => (DISPOSITION_ORDER.indexOf(a) + 99) % 99 - (DISPOSITION_ORDER.indexOf(b) + 99) % 99);
  const rows = [
    ...entries,
    ["in_progress", counts.in_progress],
    ["pending", counts.pending],
  ];
  const total = Math.max(counts.contacts, 1);
  list.replaceChildren(...rows.map(([name, n]) => h("li", { dataset: { disposition: name } },
    h("span", { class: "bar-label", text: label(name) }),
    h("span", { class: "bar-track", "aria-hidden": "true" }, barFill(name, (100 * n) / total)),
    h("span", { class: "bar-value", text: `${n} (${pct(n, counts.contacts)}%)` }))));
}

function barFill(name, percent) {
  // Through the CSSOM: the Content-Security-Policy refuses inline style attributes.
  const fill = h("span", { class: `bar-fill d-${name}` });
  fill.style.width = `${percent}%`;
  return fill;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

function renderCallsPerMinute(minutes) {
  const box = $("#cpm");
  const peak = Math.max(1, ...minutes.map((m) => m.calls));
  const total = minutes.reduce((sum, m) => sum + m.calls, 0);
  const width = 300;
  const height = 120;
  const step = width / minutes.length;
  const first = minutes[0] ? new Date(minutes[0].minute) : null;
  const last = minutes.length ? new Date(minutes[minutes.length - 1].minute) : null;
  const summary = `${total} calls in the last ${minutes.length} minutes, at most ${peak} in one minute`;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, class: "cpm",
    preserveAspectRatio: "none",
  },
  svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }),
  ...minutes.map((m, i) => {
    const barHeight = (height - 2) * (m.calls / peak);
    return svg("rect", {
      x: i * step + 1, y: height - barHeight, width: Math.max(step - 2, 1), height: barHeight,
      class: "cpm-bar",
    }, svg("title", {}, `${new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${m.calls} calls`));
  }),
  );
  const time = (at) => (at ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
  box.replaceChildren(
    h("div", { class: "cpm-peak", "aria-hidden": "true", text: `peak ${peak}/min` }),
    chart,
    h("div", { class: "cpm-axis", "aria-hidden": "true" }, h("span", { text: time(first) }), h("span", { text: time(last) })),
    h("p", { class: "hint", text: summary }));
}

function renderLiveCalls(calls, count) {
  $("#live-count").textContent = String(count);
  const box = $("#live-calls");
  if (!calls.length) {
    box.replaceChildren(h("p", { class: "hint", text: "No call is live right now." }));
    return;
  }
  box.replaceChildren(h("div", { class: "table-scroll" }, h("table", {},
    h("caption", { class: "sr-only", text: "Calls in progress" }),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", text: "Number" }),
      h("th", { scope: "col", text: "Attempt" }),
      h("th", { scope: "col", text: "Status" }),
      h("th", { scope: "col", text: "Since" }))),
    h("tbody", {}, calls.map((call) => h("tr", {},
      h("td", { class: "mono", text: call.phone_number }),
      h("td", { text: `#${call.number}` }),
      h("td", { text: call.answered_by ? `${call.status} (${call.answered_by})` : call.status }),
      h("td", { text: when(call.since) })))))));
}

function renderPolicy(policy) {
  const words = policy.words;
  $("#policy").replaceChildren(
    h("h3", { text: "Calling windows" }),
    h("ul", { id: "policy-windows" }, words.windows.map((line) => h("li", { text: line }))),
    h("p", { id: "policy-zone", class: "hint", text: words.zone }),
    h("h3", { text: "Retries and caps" }),
    h("ul", { id: "policy-retry" }, words.retry.map((line) => h("li", { text: line }))));
}

function renderAttention(attention, campaign) {
  const open = attention.items.filter((item) => item.open).length;
  $("#attention-count").textContent = String(open);
  const box = $("#attention");
  if (!attention.items.length) {
    box.replaceChildren(h("p", { class: "hint", text: "Nothing needs attention." }));
    return;
  }
  box.replaceChildren(h("ul", { class: "attention", id: "attention-items" },
    attention.items.map((item) => h("li", { dataset: { attention: item.id, open: String(item.open) } },
      h("div", { class: "attempt-head" },
        h("strong", { text: label(item.reason) + (item.code ? ` (${item.code})` : "") }),
        h("span", { class: "badge", dataset: { status: item.open ? "attention" : "resolved" },
          text: item.open ? "Open" : item.resolved_at ? "Resolved" : "Campaign ended" })),
      h("p", { text: item.message }),
      h("p", { class: "hint", text: item.remedy }),
      h("p", { class: "hint", text: attentionWhen(item) }),
      ...attentionActions(item, campaign)))),
  ...(attention.more ? [h("p", { class: "hint", text: "Older items are not shown." })] : []));
}

// Retry is the campaign's resume (which resolves its items); an outbound campaign's item can
// also be resolved alone, saying how, and the campaign stays paused.
function attentionActions(item, campaign) {
  if (!item.open || !canWrite()) return [];
  const nodes = [];
  if (campaign.status === "paused") {
    nodes.push(h("button", {
      type: "button", text: "Retry (resume the campaign)", dataset: { attentionAction: "retry" },
      on: { click: (event) => runAction(campaign, "resume", event.currentTarget) },
    }));
  }
  if (campaign.outbound_campaign) {
    const id = `resolution-${item.id}`;
    const input = h("input", { id, required: true, maxlength: "2000", autocomplete: "off" });
    const form = h("form", { class: "actions", dataset: { attentionAction: "resolve" } },
      h("label", { for: id, text: "How it was handled" }), input,
      h("button", { type: "submit", text: "Resolve" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        await api("POST", `/v1/convai/outbound-campaigns/attention/${item.id}/resolve`, {
          json: { resolution: input.value.trim() },
        });
        toast("Attention item resolved; the campaign stays paused until resumed.");
      } catch (error) {
        button.disabled = false;
        if (error.status !== 401) toast(`Could not resolve: ${error.message}`);
      }
    });
    nodes.push(form);
  }
  return nodes.length ? [h("div", { class: "actions" }, ...nodes)] : [];
}

function attentionWhen(item) {
  const since = `Since ${when(item.since)}`;
  if (item.open) return `${since}. Resuming the campaign resolves it.`;
  if (!item.resolved_at) return `${since}; the campaign has ended.`;
  return `${since}; resolved ${when(item.resolved_at)}${item.resolution ? `: ${item.resolution}` : ""}.`;
}

const FOLLOW_UP_KINDS = { callback: "Callback", redirect: "Call another number", stop: "Stop calling" };

function renderFollowUps(followUps) {
  const box = $("#follow-ups");
  if (!followUps.items.length) {
    box.replaceChildren(h("p", { class: "hint", id: "no-follow-ups",
      text: "No lead has asked for a callback, another number or a stop." }));
    return;
  }
  box.replaceChildren(h("div", { class: "table-scroll" }, h("table", { id: "follow-up-rows" },
    h("caption", { class: "sr-only", text: "Follow-ups the leads asked for, newest first" }),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", text: "Lead" }),
      h("th", { scope: "col", text: "Asked for" }),
      h("th", { scope: "col", text: "When / number" }),
      h("th", { scope: "col", text: "Decision" }),
      h("th", { scope: "col", text: "Lead now" }))),
    h("tbody", {}, followUps.items.map((f) => h("tr", { dataset: { followUp: f.id } },
      h("td", { class: "mono", text: f.lead.external_id ? `${f.lead.external_id} ${f.lead.phone_number}` : f.lead.phone_number }),
      h("td", { text: FOLLOW_UP_KINDS[f.kind] || label(f.kind) }),
      h("td", { text: f.call_at ? when(f.call_at) : f.phone_number || f.asked || "—" }),
      h("td", { text: label(f.decision) + (f.reason ? `: ${f.reason}` : "") }),
      h("td", { text: f.lead.disposition ? label(f.lead.disposition) : label(f.lead.state) })))))),
  ...(followUps.more ? [h("p", { class: "hint", text: "Older follow-ups are not shown." })] : []));
}

async function loadContacts() {
  const view = app.view;
  if (!view || view.name !== "campaign") return;
  const query = view.contactQuery;
  const params = new URLSearchParams({ page: String(query.page), per_page: "25" });
  if (query.q) params.set("q", query.q);
  if (query.disposition) params.set("disposition", query.disposition);
  if (query.state) params.set("state", query.state);
  let page;
  try {
    page = await api("GET", `/api/v1/dashboard/campaigns/${view.campaignId}/contacts?${params}`);
  } catch (error) {
    if (error.status !== 401 && error.status !== 404) toast(`Contacts: ${error.message}`);
    return;
  }
  if (app.view !== view) return;
  const focusedId = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.contact : undefined;
  const body = $("#contact-rows");
  body.replaceChildren(...page.contacts.map((contact) => h("tr", { dataset: { row: contact.id } },
    h("td", { class: "wide-only", text: contact.row_number ?? "" }),
    h("td", {}, h("button", {
      type: "button", class: "link mono", dataset: { contact: contact.id },
      "aria-label": `Attempts of ${contact.phone_number}`, text: contact.phone_number,
      on: { click: () => openContact(contact.id) },
    })),
    h("td", { class: "wide-only", text: contact.external_id || "" }),
    h("td", {}, h("span", {
      class: "badge", dataset: { status: contact.disposition || contact.state },
      text: contact.disposition ? label(contact.disposition) : label(contact.state),
    })),
    h("td", { class: "num", text: String(contact.attempts) }),
    h("td", { class: "wide-only", text: contact.last_status ? `${contact.last_status}${contact.answered_by ? ` (${contact.answered_by})` : ""}` : "—" }))));
  if (focusedId) {
    const again = body.querySelector(`[data-contact="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  const pages = Math.max(1, Math.ceil(page.total / page.per_page));
  $("#contacts-summary").textContent = `${page.total} contact${page.total === 1 ? "" : "s"} match.`;
  const pager = $("#pager");
  pager.replaceChildren(
    h("button", { type: "button", class: "quiet", disabled: query.page <= 1, text: "Previous",
      on: { click: () => { query.page -= 1; loadContacts(); } } }),
    h("span", { text: `Page ${query.page} of ${pages}` }),
    h("button", { type: "button", class: "quiet", disabled: query.page >= pages, text: "Next",
      on: { click: () => { query.page += 1; loadContacts(); } } }));
}

async function openContact(contactId) {
  const dialog = $("#contact-dialog");
  const body = $("#contact-body");
  let contact;
  try {
    contact = await api("GET", `/api/v1/dashboard/contacts/${contactId}`);
  } catch (error) {
    if (error.status !== 401) toast(`Contact: ${error.message}`);
    return;
  }
  $("#contact-title").textContent = contact.phone_number;
  const variables = Object.entries(contact.dynamic_variables || {});
  body.replaceChildren(
    h("dl", { class: "facts" },
      ...fact("External id", contact.external_id || "—"),
      ...fact("State", label(contact.state)),
      ...fact("Disposition", contact.disposition ? label(contact.disposition) : "—"),
      ...fact("Attempts", contact.attempts),
      ...variables.flatMap(([name, value]) => fact(name, value))),
    h("h3", { text: "Attempts" }),
    contact.calls.length
      ? h("ol", { class: "attempts", id: "attempt-list" }, contact.calls.map((a) => h("li", { dataset: { attempt: a.id, direction: a.direction } },
        h("div", { class: "attempt-head" },
          // An inbound call is the contact calling back, not a dial of the campaign.
          h("strong", { text: a.direction === "inbound" ? `Called back (call ${a.number})` : `Attempt ${a.number}` }),
          h("span", { class: "badge", dataset: { status: a.outcome || a.status }, text: a.outcome ? label(a.outcome) : a.status })),
        h("dl", { class: "facts" },
          ...fact("Direction", a.direction === "inbound" ? "Inbound (called back)" : "Outbound"),
          ...fact("Status", a.status),
          ...fact("Answered by", a.answered_by || "—"),
          ...(a.direction === "inbound" ? fact("Answered", when(a.answered_at)) : fact("Dialled", when(a.dialed_at))),
          ...fact("Ringing", seconds(a.ring_seconds)),
          ...fact("Talking", seconds(a.talk_seconds)),
          ...(a.error_code ? fact("Error", `${a.error_code} ${a.error_message || ""}`) : [])),
        a.transcript_summary
          ? h("blockquote", { class: "summary" }, h("p", { text: a.transcript_summary }))
          : h("p", { class: "hint", text: "No agent conversation summary." }),
        ...conversation(a))))
      : h("p", { class: "hint", text: "Not called yet." }));
  if (!dialog.open) dialog.showModal();
  // While a call is live its transcript grows: read the contact again until the call is over.
  clearTimeout(openContact.timer);
  if (contact.calls.some((a) => LIVE_STATUSES.has(a.status))) {
    openContact.timer = setTimeout(() => {
      if (dialog.open && dialog.dataset.contact === contactId) openContact(contactId);
    }, 2000);
  }
  dialog.dataset.contact = contactId;
}

const LIVE_STATUSES = new Set(["dialing", "queued", "initiated", "ringing", "in-progress"]);

// The live transcript, the client tools the agent called and its error, when there are any.
function conversation(a) {
  const nodes = [];
  if (a.live_transcript && a.live_transcript.length) {
    nodes.push(h("ol", { class: "transcript", "aria-label": `Transcript of attempt ${a.number}` },
      a.live_transcript.map((line) => h("li", { dataset: { role: line.role } },
        h("strong", { text: line.role === "agent" ? "Agent: " : "Callee: " }),
        h("span", { text: line.message + (line.interrupted ? " (cut off)" : "") })))));
  }
  if (a.tool_calls && a.tool_calls.length) {
    nodes.push(h("p", { class: "hint", text: `Client tools: ${a.tool_calls.map((c) => `${c.tool_name}${c.is_error ? " (error)" : ""}`).join(", ")}` }));
  }
  if (a.agent_error) nodes.push(h("p", { class: "error", text: `Agent error: ${a.agent_error}` }));
  return nodes;
}

async function downloadExport(campaignId, button) {
  button.disabled = true;
  try {
    const response = await api("GET", `/api/v1/campaigns/${campaignId}/export.csv`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `${campaignId}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    if (error.status !== 401) toast(`Export failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- new campaign ----------------------------------------------------------------------------

function field(id, text, input, hint) {
  input.id = id;
  if (!input.name) input.name = id;
  const nodes = [h("label", { for: id, text }), input];
  if (hint) {
    input.setAttribute("aria-describedby", `${id}-hint`);
    nodes.push(h("p", { class: "hint", id: `${id}-hint`, text: hint }));
  }
  return h("div", { class: "field" }, ...nodes);
}

function numberInput(value, min, max, step) {
  return h("input", { type: "number", value: value === "" ? "" : String(value), min, max, step: step || "1", inputmode: "numeric" });
}

function windowRow(list) {
  const index = list.children.length + 1;
  const days = WEEKDAYS.map((day, i) => h("label", { class: "day" },
    h("input", { type: "checkbox", value: String(i), checked: i < 5 }), day));
  const start = h("input", { type: "time", value: "09:00", id: `window-${index}-start`, required: true });
  const end = h("input", { type: "time", value: "17:00", id: `window-${index}-end`, required: true });
  const row = h("fieldset", { class: "window" },
    h("legend", { text: `Window ${index}` }),
    h("div", { class: "days" }, days),
    h("div", { class: "field inline" }, h("label", { for: start.id, text: "From" }), start),
    h("div", { class: "field inline" }, h("label", { for: end.id, text: "Until" }), end),
    h("button", { type: "button", class: "quiet", text: `Remove window ${index}`,
      on: { click: () => row.remove() } }));
  row.read = () => ({
    weekdays: days.map((d) => d.firstChild).filter((box) => box.checked).map((box) => Number(box.value)),
    start: start.value,
    end: end.value === "00:00" ? "24:00" : end.value,
  });
  list.append(row);
  start.focus();
}

function renderNew(main) {
  closeStream();
  setLive("off", "Not live on this page");
  app.view = { name: "new" };
  const f = {
    name: h("input", { required: true, maxlength: "200", autocomplete: "off" }),
    agent: h("input", { autocomplete: "off" }),
    from: h("input", { type: "tel", placeholder: "+14155550100", autocomplete: "off" }),
    region: h("input", { value: "US", maxlength: "2", required: true, autocomplete: "off" }),
    file: h("input", { type: "file", accept: ".csv,text/csv,text/plain", required: true }),
    phoneColumn: h("input", { value: "phone_number", required: true, autocomplete: "off" }),
    concurrency: numberInput(5, 1, 10000),
    cps: numberInput("", 0.1, 1000, "0.1"),
    maxAttempts: numberInput(3, 1, 20),
    retryDelay: numberInput(300, 0, 2592000),
    perDay: numberInput("", 1, 20),
    machine: h("select", {},
      h("option", { value: "DetectMessageEnd", text: "Detect, wait for the beep (DetectMessageEnd)" }),
      h("option", { value: "Enable", text: "Detect quickly (Enable)" }),
      h("option", { value: "", text: "Off" })),
    voicemail: h("select", {},
      h("option", { value: "hang_up", text: "Hang up" }),
      h("option", { value: "leave_message", text: "Leave a message" }),
      h("option", { value: "agent", text: "Let the agent handle it" })),
    message: h("textarea", { rows: "3" }),
    timezone: h("input", { value: "", placeholder: "UTC", autocomplete: "off" }),
    tcpa: h("input", { type: "checkbox" }),
    startAt: h("input", { type: "datetime-local" }),
  };
  const retryRows = RETRY_OUTCOMES.map((outcome) => {
    const retry = h("input", { type: "checkbox", id: `retry-${outcome}`, checked: outcome !== "voicemail" });
    const delays = h("input", { id: `delays-${outcome}`, placeholder: "default delay", inputmode: "numeric", autocomplete: "off" });
    return {
      outcome, retry, delays,
      node: h("tr", {},
        h("th", { scope: "row", text: label(outcome) }),
        h("td", {}, h("label", { class: "check" }, retry, h("span", { class: "sr-only", text: `Retry ${label(outcome)}` }), h("span", { "aria-hidden": "true", text: "retry" }))),
        h("td", {}, h("label", { class: "sr-only", for: `delays-${outcome}`, text: `Delays after ${label(outcome)}, seconds` }), delays)),
    };
  });
  const windows = h("div", { id: "windows" });
  const messageField = field("voicemail-message", "Voicemail message ({{first_name}} and other columns are filled in)", f.message);
  messageField.hidden = true;
  f.voicemail.addEventListener("change", () => { messageField.hidden = f.voicemail.value !== "leave_message"; });

  const report = h("section", { id: "intake-report", class: "card", "aria-live": "polite", hidden: true });
  const error = h("p", { class: "error", role: "alert", id: "new-error" });
  const confirmButton = h("button", { type: "button", class: "primary", id: "confirm", hidden: true, text: "Create campaign with these contacts" });
  const checkButton = h("button", { type: "submit", id: "check", text: "Check the file" });
  const form = h("form", { class: "new-campaign", "aria-labelledby": "new-title", novalidate: false },
    h("h1", { id: "new-title", text: "New campaign" }),
    h("fieldset", { class: "card" }, h("legend", { text: "Who to call" }),
      field("name", "Name", f.name),
      field("csv", "Contacts (CSV file)", f.file, "A header row; one phone number per row. An id column becomes the external id; other columns become dynamic variables."),
      h("div", { class: "row" },
        field("phone-column", "Phone column", f.phoneColumn),
        field("region", "Default region", f.region, "For numbers written without +country code."))),
    h("fieldset", { class: "card" }, h("legend", { text: "Agent and caller id" }),
      h("div", { class: "row" },
        field("agent", "Agent id", f.agent),
        field("from", "From number", f.from, "Empty: the service's default caller id."))),
    h("fieldset", { class: "card" }, h("legend", { text: "When to call" }),
      h("div", { class: "row" },
        field("start-at", "Start at (your local time; empty: when started)", f.startAt),
        field("timezone", "Time zone for numbers without one", f.timezone)),
      h("label", { class: "check" }, f.tcpa, " Apply US TCPA calling hours (08:00–21:00 local and state rules)"),
      h("p", { class: "hint", id: "windows-hint", text: "Calling windows are read in each recipient's local time; “Until” 00:00 is the end of the day. No window: any time." }),
      windows,
      h("button", { type: "button", class: "quiet", id: "add-window", text: "Add a calling window",
        on: { click: () => windowRow(windows) } })),
    h("fieldset", { class: "card" }, h("legend", { text: "Retries" }),
      h("div", { class: "row" },
        field("max-attempts", "Attempts per contact (at most)", f.maxAttempts),
        field("retry-delay", "Default delay between attempts (seconds)", f.retryDelay),
        field("per-day", "Attempts per contact per local day", f.perDay, "Empty: no daily cap.")),
      h("div", { class: "table-scroll" }, h("table", { class: "retry-rules" },
        h("caption", { text: "Per outcome: retry or not, and the delays in seconds (e.g. 300, 1800, 7200)" }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Outcome" }), h("th", { scope: "col", text: "Retry" }), h("th", { scope: "col", text: "Delays (s)" }))),
        h("tbody", {}, retryRows.map((r) => r.node))))),
    h("fieldset", { class: "card" }, h("legend", { text: "Voicemail" }),
      h("div", { class: "row" },
        field("machine-detection", "Answering machine detection", f.machine),
        field("voicemail-policy", "On reaching voicemail", f.voicemail)),
      messageField),
    h("fieldset", { class: "card" }, h("legend", { text: "Pace" }),
      h("div", { class: "row" },
        field("concurrency", "Calls at once (concurrency)", f.concurrency),
        field("cps", "New calls per second (CPS)", f.cps, "Empty: no per-second limit."))),
    error,
    h("div", { class: "actions" }, checkButton, confirmButton));

  function spec() {
    const body = {
      name: f.name.value.trim(),
      default_region: f.region.value.trim().toUpperCase() || "US",
      concurrency: Number(f.concurrency.value || 5),
      max_attempts: Number(f.maxAttempts.value || 3),
      retry_delay_seconds: Number(f.retryDelay.value || 300),
      machine_detection: f.machine.value,
    };
    if (f.agent.value.trim()) body.agent_id = f.agent.value.trim();
    if (f.from.value.trim()) body.from_number = f.from.value.trim();
    if (f.cps.value) body.cps = Number(f.cps.value);
    if (f.startAt.value) body.start_at = new Date(f.startAt.value).toISOString();
    // Policy fields are sent only when they differ from the defaults.
    if (f.timezone.value.trim()) body.timezone = f.timezone.value.trim();
    if (f.tcpa.checked) body.rule_set = "us_tcpa";
    const periods = [...windows.children].map((row) => row.read());
    if (periods.length) body.calling_periods = periods;
    if (f.perDay.value) body.max_attempts_per_day = Number(f.perDay.value);
    const rules = {};
    for (const r of retryRows) {
      const delays = r.delays.value.split(/[\s,]+/).filter(Boolean).map(Number);
      if (r.retry.checked !== (r.outcome !== "voicemail") || delays.length) {
        rules[r.outcome] = { retry: r.retry.checked };
        if (delays.length) rules[r.outcome].delays = delays;
      }
    }
    if (Object.keys(rules).length) body.retry_rules = rules;
    if (f.voicemail.value !== "hang_up") body.voicemail_policy = f.voicemail.value;
    if (f.voicemail.value === "leave_message") body.voicemail_message = f.message.value;
    return body;
  }

  const query = () => new URLSearchParams({
    default_region: f.region.value.trim().toUpperCase() || "US",
    phone_column: f.phoneColumn.value.trim() || "phone_number",
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    confirmButton.hidden = true;
    const file = f.file.files[0];
    if (!f.name.value.trim()) { error.textContent = "Give the campaign a name."; f.name.focus(); return; }
    if (!file) { error.textContent = "Choose a CSV file of contacts."; f.file.focus(); return; }
    checkButton.disabled = true;
    try {
      const result = await api("POST", `/api/v1/dashboard/intake-preview?${query()}`, {
        body: file, headers: { "Content-Type": "text/csv" },
      });
      showReport(report, result, file.name, false);
      confirmButton.hidden = result.accepted === 0;
      if (result.accepted) confirmButton.focus();
    } catch (failure) {
      if (failure.status === 413) {
        showNote(report, `${file.name} is too large to check here; its rows are checked when imported.`);
        confirmButton.hidden = false;
      } else if (failure.status !== 401) {
        report.hidden = true;
        error.textContent = `The file was refused: ${failure.message}`;
      }
    } finally {
      checkButton.disabled = false;
    }
  });

  confirmButton.addEventListener("click", async () => {
    error.textContent = "";
    confirmButton.disabled = true;
    let campaign;
    try {
      campaign = await api("POST", "/api/v1/campaigns", { json: spec() });
    } catch (failure) {
      confirmButton.disabled = false;
      if (failure.status !== 401) error.textContent = `The campaign was not created: ${failure.message}`;
      return;
    }
    try {
      const result = await api("POST", `/api/v1/campaigns/${campaign.id}/contacts?${new URLSearchParams({ phone_column: f.phoneColumn.value.trim() || "phone_number" })}`, {
        body: f.file.files[0], headers: { "Content-Type": "text/csv" },
      });
      toast(`${campaign.name} created with ${result.accepted} contacts; start it when ready.`);
    } catch (failure) {
      if (failure.status !== 401) toast(`${campaign.name} was created, but its contacts were not imported: ${failure.message}`);
    }
    location.hash = `#/campaigns/${campaign.id}`;
  });

  show(main, "New campaign", form, report);
  f.name.focus();
}

function showNote(report, text) {
  report.hidden = false;
  report.replaceChildren(h("h2", { text: "Intake report" }), h("p", { text }));
}

function showReport(report, result, fileName) {
  report.hidden = false;
  const rows = result.errors.map((e) => h("tr", {},
    h("td", { text: String(e.row) }),
    h("td", { class: "mono", text: e.value }),
    h("td", { text: e.reason.replace(/_/g, " ") })));
  report.replaceChildren(
    h("h2", { id: "report-title", text: `Intake report: ${fileName}` }),
    h("dl", { class: "facts big" },
      ...fact("Rows", result.rows), ...fact("Accepted", result.accepted), ...fact("Rejected", result.rejected)),
    result.errors.length
      ? h("div", { class: "table-scroll" }, h("table", { id: "rejected-rows" },
        h("caption", { text: result.rejected > result.errors.length ? `The first ${result.errors.length} rejected rows` : "Rejected rows" }),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Row" }), h("th", { scope: "col", text: "Value" }), h("th", { scope: "col", text: "Reason" }))),
        h("tbody", {}, rows)))
      : h("p", { text: "Every row is accepted." }),
    h("p", { class: "hint", text: result.accepted ? "Nothing is stored until you confirm." : "No row can be imported: fix the file and check it again." }));
}

// --- start -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#logout").addEventListener("click", () => logout("Logged out."));
  $("#contact-close").addEventListener("click", () => $("#contact-dialog").close());
  window.addEventListener("hashchange", route);
  if (app.key) openSession().catch(() => {});
  route();
});
