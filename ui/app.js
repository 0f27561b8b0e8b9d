// Alertray's windows: Alerts (#alerts), Settings (#settings[/key]) and the Connect guide
// (#guide). Every fact comes from the core through commands; this file only draws.
"use strict";

const tauri = window.__TAURI__;
const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
const $ = (sel, root = document) => root.querySelector(sel);
const page = $("#page");

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces an element's children, flattening arrays and skipping null/undefined/false.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  // A page opened from another starts at its top, in the same frame as its content.
  if (el === page && toTop) { toTop = false; window.scrollTo(0, 0); }
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2200);
}

function errorText(e) {
  return (e && e.message) || String(e);
}

// Opens a link in the browser; where none opens, the link goes on the clipboard instead.
async function openLink(url) {
  try {
    await invoke("open_url", { url });
  } catch (e) {
    try {
      await invoke("copy_text", { text: url });
      toast("No browser opened the link; it is on the clipboard");
    } catch {
      toast(errorText(e));
    }
  }
}

async function copy(text, what) {
  try {
    await invoke("copy_text", { text });
    toast(`${what} copied`);
  } catch (e) {
    toast(errorText(e));
  }
}

// A name from the network (a host, an alert, a chart), with places where it may wrap after
// its dots, underscores, dashes and slashes rather than anywhere, and nothing added to what
// a copy of it takes.
function breakable(text) {
  return String(text).replace(/([._\-/])/g, "$1\u0000").split("\u0000").flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

const when = (ms) => new Date(ms).toLocaleString();

// ---- header: receiver status -------------------------------------------------------------

async function drawReceiver() {
  const st = await invoke("status");
  const r = st.receiver;
  const el = $("#receiver");
  el.replaceChildren();
  const degraded = st.tray.status_line.startsWith("Degraded: ");
  el.classList.toggle("stopped", r.state !== "running" || degraded);
  const text = degraded ? st.tray.status_line
    : r.state === "running" ? `Receiver listening on ${r.addr}` : `Receiver not running: ${r.reason}`;
  // One line, cut with an ellipsis; the whole of it on hover.
  el.append(h("span", { class: "dot" }), h("span", { class: "text", title: text }, text));
  return st;
}

// ---- Alerts --------------------------------------------------------------------------------

const alertsView = { tab: "active", tools: null, activeFilter: "", filters: { text: "", status: "", host: "", range: "" }, pages: [], rows: [], armed: null, acted: null, historyLoads: 0, snoozesOpen: false };

function levelWord(level) {
  return { critical: "Critical", warning: "Warning", unreachable: "Unreachable", clear: "Clear", reachable: "Reachable",
    test: "Test", unknown: "Unknown" }[level] || level;
}

// Which control has the keyboard focus, in terms that survive a redraw: its id, or its row's
// key, its action and the row's place.
function focusMark() {
  const el = document.activeElement;
  if (!el || el === document.body || !page.contains(el)) return null;
  const row = el.closest("tr[data-key]");
  return {
    id: el.id || null,
    key: row ? row.dataset.key : null,
    action: el.dataset.action || null,
    index: row ? [...row.parentNode.children].indexOf(row) : -1,
  };
}

// Puts the focus back where `mark` was after a redraw replaced it: the same control; or,
// when its row went away or was just acknowledged (which sorts it down the list), the same
// action on the row now in its place; else the Active tab.
function restoreFocus(mark) {
  if (!mark || (document.activeElement && document.activeElement !== document.body)) return;
  let el = mark.id ? document.getElementById(mark.id) : null;
  if (!el && mark.key !== null) {
    const rows = [...page.querySelectorAll("tr[data-key]")];
    const same = rows.find((r) => r.dataset.key === mark.key);
    // Moved on from only once a redraw shows it acknowledged: one drawn from what was read
    // before the acknowledgement leaves it in its place, and the focus on it.
    const acted = alertsView.acted === mark.key && !(same && !same.classList.contains("acknowledged"));
    if (acted) alertsView.acted = null;
    const row = (acted ? null : same) || rows[Math.min(mark.index, rows.length - 1)];
    if (row) el = row.querySelector(`[data-action="${mark.action}"]:not([disabled])`) || row.querySelector("button:not([disabled])");
    else el = $("#tab-active");
  }
  if (el) el.focus({ preventScroll: true });
}

// The first row in view and how far from the top of the window it is, so that a live
// update that adds rows above it does not move what the user is reading.
function scrollMark() {
  if (window.scrollY <= 0) return null;
  const row = [...page.querySelectorAll("tr[data-key], tr[data-id]")].find((r) => r.getBoundingClientRect().bottom > 0);
  return row ? { key: row.dataset.key || null, id: row.dataset.id || null, top: row.getBoundingClientRect().top } : null;
}

function restoreScroll(mark) {
  if (!mark) return;
  const row = [...page.querySelectorAll("tr[data-key], tr[data-id]")]
    .find((r) => (mark.key !== null && r.dataset.key === mark.key) || (mark.id !== null && r.dataset.id === mark.id));
  if (row) window.scrollBy(0, row.getBoundingClientRect().top - mark.top);
}

// Replaces `el`'s children with `children`, keeping the keyboard focus and what is in view.
function redraw(el, ...children) {
  const focus = focusMark();
  const scroll = scrollMark();
  fill(el, ...children);
  restoreScroll(scroll);
  restoreFocus(focus);
}

async function drawAlerts() {
  const show = (tab) => { alertsView.tab = tab; if (tab === "history") alertsView.pages = []; drawAlerts(); };
  const tab = (name, label) => h("button", {
    id: `tab-${name}`, role: "tab", class: alertsView.tab === name ? "active" : "", "aria-selected": String(alertsView.tab === name),
    onclick: () => show(name),
    // Left and Right move between the tabs, as in any tab strip.
    onkeydown: (e) => {
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
      e.preventDefault();
      const other = name === "active" ? "history" : "active";
      show(other);
      setTimeout(() => { const b = document.getElementById(`tab-${other}`); if (b) b.focus(); }, 0);
    },
  }, label);
  const tabs = h("div", { class: "tabs", role: "tablist" }, tab("active", "Active"), tab("history", "History"));
  // In a storm: narrow the active list, and acknowledge what it shows at once. Outside the
  // list, so that live updates do not redraw the field being typed in.
  // Kept in alertsView: the list is drawn before the page holds this.
  const tools = alertsView.tools = alertsView.tab === "active" ? h("div", { class: "filters", id: "active-tools", hidden: true },
    h("input", { type: "search", id: "active-filter", placeholder: "Filter by node, alert or message", value: alertsView.activeFilter,
      oninput: debounce((e) => { alertsView.activeFilter = e.target.value; redrawActive(); }, 150) }),
    h("button", { class: "btn", id: "ack-shown", onclick: acknowledgeShown }, "Acknowledge all shown")) : null;
  const body = h("div", { id: "alerts-body" });
  // Filled before it is shown, so that the page is swapped in one step.
  if (alertsView.tab === "active") await drawActive(body);
  else await drawHistory(body);
  redraw(page, h("h1", {}, "Alerts"), tabs, tools, body);
}

// Whether the active alert `a` matches the Active tab's filter (every word, in any field).
function matchesActiveFilter(a) {
  const words = alertsView.activeFilter.toLowerCase().split(/\s+/).filter(Boolean);
  const text = [a.host, a.name, a.message, a.summary, a.value, a.space, levelWord(a.level)].join(" ").toLowerCase();
  return words.every((w) => text.includes(w));
}

// Acknowledges every alert the Active tab shows that is not acknowledged yet.
async function acknowledgeShown() {
  const keys = [...page.querySelectorAll("#active-table tr[data-key]:not(.acknowledged)")].map((r) => r.dataset.key);
  let done = 0;
  for (const key of keys) {
    try { await invoke("acknowledge", { key, acknowledged: true }); done += 1; } catch { /* cleared meanwhile */ }
  }
  toast(`Acknowledged ${done} alert${done === 1 ? "" : "s"}`);
  redrawActive();
}

async function drawActive(body) {
  let active;
  try {
    active = await invoke("active_alerts");
  } catch (e) {
    redraw(body, h("div", { class: "empty" }, errorText(e)));
    return;
  }
  const st = await invoke("status");
  const counts = {};
  for (const a of active) if (!a.acknowledged) counts[a.level] = (counts[a.level] || 0) + 1;
  const acked = active.filter((a) => a.acknowledged).length;
  const snoozed = snoozeList(st.snoozes, active);
  const pills = h("div", { class: "summary" },
    ["critical", "unreachable", "warning"].filter((l) => counts[l]).map((l) => h("span", { class: `pill ${l}` }, `${counts[l]} ${l}`)),
    acked ? h("span", { class: "pill muted" }, `${acked} acknowledged`) : null,
    snoozed.toggle);
  // The receiver not running is the first thing to fix.
  const stopped = st.receiver.state !== "running"
    ? h("div", { class: "note warn", id: "receiver-stopped" }, `The receiver is not running: ${st.receiver.reason} `,
      h("button", { class: "btn", id: "fix-receiver", onclick: () => invoke("open_window", { page: "settings", anchor: st.receiver.key || null }) }, "Fix in Settings"))
    : null;
  const tools = alertsView.tools;
  if (tools) tools.hidden = active.length < 2 && !alertsView.activeFilter;
  const shown = active.filter(matchesActiveFilter);
  const ackShown = tools && tools.querySelector("#ack-shown");
  if (ackShown) {
    const open = shown.filter((a) => !a.acknowledged).length;
    ackShown.disabled = !open;
    ackShown.textContent = !open ? "All acknowledged"
      : alertsView.activeFilter ? `Acknowledge the ${open} shown` : `Acknowledge all ${open}`;
  }
  if (active.length && !shown.length) {
    redraw(body, stopped, pills, snoozed.list, h("div", { class: "empty", id: "no-match" }, "No active alert matches the filter."));
    return;
  }
  if (!active.length) {
    // Nothing received at all yet: say where to start rather than "all clear".
    const any = await invoke("history", { query: { limit: 1 } }).then((r) => r.length > 0, () => true);
    redraw(body, stopped, pills, snoozed.list, any
      ? h("div", { class: "empty", id: "all-clear" }, "All clear: no active alerts.")
      : h("div", { class: "empty", id: "all-clear" }, "Nothing received yet. ",
        h("button", { class: "btn", id: "open-guide", onclick: () => invoke("open_window", { page: "guide" }) }, "Connect Netdata Cloud")));
    return;
  }
  const rows = shown.map((a) => h("tr", { class: a.acknowledged ? "acknowledged" : "", "data-key": a.key },
    h("td", { class: `sev ${a.level}`, title: levelWord(a.level) }),
    h("td", {}, h("div", { class: "host" }, breakable(a.host)), h("div", { class: "small" }, a.space || "")),
    h("td", {}, h("div", { class: "alert-name" }, breakable(a.name)), h("div", { class: "small" }, a.summary || a.message)),
    h("td", { class: "state" }, h("span", { class: `pill ${a.level}` }, levelWord(a.level)), a.value ? h("span", { class: "value" }, a.value) : null,
      snoozedText(snoozedBy(st.snoozes, a))),
    h("td", { title: when(a.since_ms), class: "ago", "data-ms": a.since_ms }, ago(a.since_ms)),
    h("td", { class: "small rooms" }, (a.rooms || []).map((r) => r.name).join(", ")),
    h("td", { class: "actions" },
      h("button", { class: "btn", "data-action": "open", disabled: !a.url, onclick: () => openLink(a.url) }, "Open"), " ",
      h("button", { class: "btn ack", "data-action": "ack", onclick: async () => {
        try {
          // Acknowledged, it sorts down the list: the focus moves on to the row in its place.
          if (!a.acknowledged) alertsView.acted = a.key;
          await invoke("acknowledge", { key: a.key, acknowledged: !a.acknowledged });
          toast(`${a.acknowledged ? "Unacknowledged" : "Acknowledged"}: ${a.name} on ${a.host}`);
        } catch (e) { toast(errorText(e)); }
        try { await drawAlerts(); } finally { alertsView.acted = null; }
      } }, a.acknowledged ? "Unacknowledge" : "Acknowledge"), " ",
      snoozeButton(st.snoozes, { scope: "alert", target: a.key }, "snooze", "this alert", `${a.name} on ${a.host}`, "Snooze 1 h"), " ",
      snoozeButton(st.snoozes, { scope: "node", target: a.host }, "snooze-node", "this node", a.host, "Snooze node"), " ",
      h("button", { class: `btn dismiss${dismissArmed(a.key) ? " armed" : ""}`, "data-action": "dismiss", title: "Take it off this list, for an alert Netdata will never clear (it stays in history)", onclick: async (e) => {
        // Two clicks: the first asks. Which alert is asking is kept outside the button, which
        // a live update may redraw in between.
        if (!dismissArmed(a.key)) {
          alertsView.armed = { key: a.key, until: Date.now() + 3000 };
          e.currentTarget.classList.add("armed");
          e.currentTarget.textContent = "Click to dismiss";
          setTimeout(() => {
            if (dismissArmed(a.key)) return;
            for (const b of page.querySelectorAll("button.dismiss.armed")) { b.classList.remove("armed"); b.textContent = "Dismiss"; }
          }, 3100);
          return;
        }
        alertsView.armed = null;
        try { await invoke("dismiss", { key: a.key }); toast(`${a.name} on ${a.host} dismissed`); } catch (err) { toast(errorText(err)); }
        drawAlerts();
      } }, dismissArmed(a.key) ? "Click to dismiss" : "Dismiss"))));
  redraw(body, stopped, pills, snoozed.list, h("table", { id: "active-table" },
    h("thead", {}, h("tr", {}, h("th", {}), h("th", {}, "Node"), h("th", {}, "Alert"), h("th", {}, "State"), h("th", {}, "Since"), h("th", {}, "Rooms"), h("th", {}))),
    h("tbody", {}, rows)));
}

// Redraws the Active tab's list when it is the one shown (not while the tab is being drawn:
// its body is not in the page yet, and it shows the news).
function redrawActive() {
  const body = $("#alerts-body");
  if (alertsView.tab === "active" && body) drawActive(body);
}

// Whether the Dismiss button of `key` was clicked once in the last 3 seconds.
function dismissArmed(key) {
  return Boolean(alertsView.armed && alertsView.armed.key === key && Date.now() < alertsView.armed.until);
}

// The snoozes in force, each with what it holds back and a Resume: also those of a node or
// an alert no longer listed (recovered since), which no row shows. A pill among the counts
// opens the list, drawn below them.
function snoozeList(snoozes, active) {
  const live = snoozes.filter((s) => s.until_ms > Date.now());
  if (!live.length) {
    alertsView.snoozesOpen = false;
    return { toggle: null, list: null };
  }
  const what = (s) => {
    if (s.scope === "all") return "All popups";
    if (s.scope === "node") return `Node ${s.target}`;
    const a = active.find((x) => x.key === s.target);
    return a ? `${a.name} on ${a.host}` : `Alert ${s.target.split("|").filter(Boolean).pop() || s.target} (no longer active)`;
  };
  const open = alertsView.snoozesOpen;
  const toggle = h("button", { class: "pill muted toggle", id: "snoozes-toggle", "aria-expanded": String(open), "aria-controls": "snoozes",
    onclick: () => { alertsView.snoozesOpen = !alertsView.snoozesOpen; redrawActive(); } },
    `${live.length} snooze${live.length > 1 ? "s" : ""} in force ${open ? "▴" : "▾"}`);
  const list = open ? h("ul", { id: "snoozes", class: "snoozes card" }, live.map((s) => h("li", { "data-scope": s.scope },
    h("span", {}, `${what(s)}: none until ${untilText(s.until_ms)}`),
    h("button", { class: "btn", onclick: async () => {
      await resume(s, what(s));
      redrawActive();
    } }, "Resume")))) : null;
  return { toggle, list };
}

// When a snooze ends, as the tray says it: "Mon 17:24".
function untilText(ms) {
  return new Date(ms).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

// The snooze in force that holds back `a`'s popups, if any.
function snoozedBy(snoozes, a) {
  const now = Date.now();
  const covering = snoozes.filter((s) => s.until_ms > now && (s.scope === "all"
    || (s.scope === "alert" && s.target === a.key)
    || (s.scope === "node" && s.target.toLowerCase() === a.host.toLowerCase())));
  return covering.sort((x, y) => y.until_ms - x.until_ms)[0] || null;
}

function snoozedText(s) {
  if (!s) return null;
  const until = untilText(s.until_ms);
  return h("span", { class: "small snoozed" }, s.scope === "all" ? `all popups snoozed until ${until}` : `no popups until ${until}`);
}

// "Snooze" for `scope`, or "Resume" while a snooze of exactly that scope is in force.
function snoozeButton(snoozes, scope, action, what, name, label) {
  const now = Date.now();
  const on = snoozes.find((s) => s.until_ms > now && s.scope === scope.scope
    && (scope.scope === "node" ? s.target.toLowerCase() === scope.target.toLowerCase() : s.target === scope.target));
  if (on) {
    return h("button", { class: "btn", "data-action": action, title: `Popups for ${what} again, now`, onclick: async () => {
      await resume(on, name);
      redrawActive();
    } }, scope.scope === "node" ? "Resume node" : "Resume");
  }
  return h("button", { class: "btn", "data-action": action, title: `No popups for ${what} for 1 hour`, onclick: async () => {
    await snooze(scope, name);
    redrawActive();
  } }, label);
}

// Lifts the snooze `s` (its scope and target), saying so with `what` it held back.
async function resume(s, what) {
  try {
    await invoke("resume", { scope: { scope: s.scope, target: s.target } });
    toast(`${what}: popups again`);
  } catch (e) {
    toast(errorText(e));
  }
}

async function snooze(scope, what) {
  try {
    const until = await invoke("snooze", { snooze: { ...scope, minutes: 60 } });
    toast(`${what}: no popups until ${untilText(until)}`);
  } catch (e) {
    toast(errorText(e));
  }
}

async function drawHistory(body) {
  const f = alertsView.filters;
  const rerun = () => { alertsView.pages = []; loadHistory(list); };
  const debounced = debounce(rerun, 250);
  const filters = h("div", { class: "filters" },
    h("input", { type: "search", id: "history-search", placeholder: "Search messages, nodes, alerts", value: f.text, oninput: (e) => { f.text = e.target.value; debounced(); } }),
    select("history-status", f.status, [["", "Any status"], ["critical", "Critical"], ["warning", "Warning"], ["clear", "Clear"], ["unreachable", "Unreachable"], ["reachable", "Reachable"], ["other", "Other status"], ["test", "Test"], ["unknown", "Unknown shape"]], (v) => { f.status = v; rerun(); }),
    h("input", { type: "text", id: "history-host", placeholder: "Node (name or start)", value: f.host, oninput: (e) => { f.host = e.target.value; debounced(); } }),
    select("history-range", f.range, [["", "Any time"], ["3600000", "Last hour"], ["86400000", "Last 24 hours"], ["604800000", "Last 7 days"], ["2592000000", "Last 30 days"]], (v) => { f.range = v; rerun(); }));
  const list = h("div", { id: "history-list" });
  fill(body, filters, list);
  await loadHistory(list);
}

function select(id, value, options, onchange) {
  return h("select", { id, onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

const PAGE_SIZE = 50;

async function loadHistory(list) {
  const f = alertsView.filters;
  const before = alertsView.pages.length ? alertsView.pages[alertsView.pages.length - 1] : null;
  const query = {
    text: f.text || null, status: f.status || null, host: f.host || null,
    since_ms: f.range ? Date.now() - Number(f.range) : null, before_id: before, limit: PAGE_SIZE,
  };
  const load = ++alertsView.historyLoads;
  let rows;
  try {
    rows = await invoke("history", { query });
  } catch (e) {
    redraw(list, h("div", { class: "empty" }, errorText(e)));
    return;
  }
  if (!rows.length) {
    const filtered = query.text || query.status || query.host || query.since_ms || before;
    redraw(list, h("div", { class: "empty" }, filtered ? "No notifications match."
      : "No notifications yet. Once Netdata Cloud sends one, it is listed here (the Connect guide shows how to connect)."));
    return;
  }
  const table = h("table", { id: "history-table" },
    h("thead", {}, h("tr", {}, h("th", {}), h("th", {}, "Received"), h("th", {}, "Status"), h("th", {}, "Node"), h("th", {}, "Message"))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-id": r.id },
      h("td", { class: `sev ${r.status || ""}` }),
      h("td", { title: r.triggered_at ? `Triggered ${r.triggered_at}` : "" }, when(r.received_ms)),
      h("td", {}, h("span", { class: `pill ${r.status || "muted"}` }, levelWord(r.status || r.kind))),
      h("td", { class: "host" }, breakable(r.host || "")),
      h("td", {}, r.name ? [h("strong", { class: "alert-name" }, breakable(r.name)), " "] : null, r.message, r.deliveries > 1 ? h("span", { class: "small" }, ` (delivered ${r.deliveries} times)`) : null,
        r.url ? [" ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); openLink(r.url); } }, "open")] : null)))));
  // Above and below the list; the ids stay on the lower one, where paging leaves the focus.
  const first = (alertsView.pages.length * PAGE_SIZE) + 1;
  const range = `${first} to ${first + rows.length - 1}`;
  const pager = (where) => h("div", { class: `pager ${where}` },
    h("button", { class: "btn", id: where === "bottom" ? "history-newer" : null, disabled: !alertsView.pages.length, onclick: () => { alertsView.pages.pop(); loadHistory(list).then(() => list.scrollIntoView()); } }, "Newer"),
    h("span", { class: "small range", "aria-live": where === "bottom" ? "polite" : null }, `${range}, newest first`),
    h("button", { class: "btn", id: where === "bottom" ? "history-older" : null, disabled: rows.length < PAGE_SIZE, onclick: () => { alertsView.pages.push(rows[rows.length - 1].id); loadHistory(list).then(() => list.scrollIntoView()); } }, "Older"));
  redraw(list, pager("top"), table, pager("bottom"));
  // The total comes after the rows (counting reads every matching row); a newer load wins.
  invoke("history_count", { query: { ...query, before_id: null } }).then((total) => {
    if (load !== alertsView.historyLoads) return;
    for (const el of list.querySelectorAll(".pager .range")) {
      el.textContent = `${range} of ${total.toLocaleString()}, newest first`;
    }
  }, () => {});
}

function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// Runs `fn` at most every `ms`, and once more after the last call: a steady stream of calls
// still redraws now and then (a debounce would wait for the stream to stop).
function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  const later = () => {
    if (pending) {
      pending = false;
      fn();
      timer = setTimeout(later, ms);
    } else {
      timer = null;
    }
  };
  return () => {
    if (timer) {
      pending = true;
      return;
    }
    fn();
    timer = setTimeout(later, ms);
  };
}

// ---- Settings ------------------------------------------------------------------------------

// Every setting of the config, grouped. `key` is the dotted config key the core names in its
// errors; the core validates, this only lays out.
const SETTINGS = [
  { group: "Receiver", fields: [
    { key: "server.listen", label: "Listen address", type: "text", placeholder: "127.0.0.1:8443", help: "IP address and port of the HTTPS receiver. Your tunnel forwards to it." },
    { key: "server.path", label: "Webhook path", type: "text", placeholder: "/", help: "Every other path answers 404." },
    { key: "server.public_url", label: "Public URL", type: "text", placeholder: "https://name.ngrok.app/", help: "The https:// URL your tunnel gives you." },
    { key: "server.max_connections", label: "Max connections", type: "number", placeholder: "256" },
    { key: "server.request_timeout_secs", label: "Request timeout (s)", type: "number", placeholder: "10" },
  ] },
  { group: "Tunnel", anchor: "tunnel", fields: [
    { key: "tunnel.command", label: "Tunnel command", type: "text", placeholder: "cloudflared tunnel --url https://localhost:{port} --no-tls-verify", help: "Started with the receiver, restarted if it exits, stopped on quit. {port} is the receiver's port. Its public URL replaces Public URL." },
    { key: "tunnel.url_pattern", label: "URL pattern", type: "text", placeholder: "(bore, ngrok, cloudflared and Tailscale Funnel are recognised)", help: "For other tunnels: a regular expression whose first group captures the public address in the tunnel's output." },
  ] },
  { group: "Certificate", fields: [
    { key: "tls.cert", label: "Certificate chain (PEM)", type: "text", placeholder: "leave empty for a self-signed certificate" },
    { key: "tls.key", label: "Private key (PEM)", type: "text", placeholder: "leave empty for a self-signed certificate" },
    { key: "tls.acme.email", label: "ACME contact e-mail", type: "text", placeholder: "you@example.com", help: "Set this (or the domain) to get a certificate Netdata trusts from Let's Encrypt, renewed automatically. Needs a tunnel that passes TLS through, on port 443 of the public host." },
    { key: "tls.acme.domain", label: "ACME domain", type: "text", placeholder: "the host of Public URL" },
    { key: "tls.acme.directory", label: "ACME directory", type: "text", placeholder: "https://acme-v02.api.letsencrypt.org/directory" },
  ] },
  { group: "Authentication", anchor: "auth", fields: [
    { key: "auth.client_certificate", label: "Client certificate", type: "select", options: ["", "required", "optional", "off"], help: "Mutual TLS with Netdata's certificate. Needs a tunnel that passes TLS through." },
    { key: "auth.client_ca", label: "Client CA", type: "text", placeholder: "netdata", help: "\"netdata\" (built in) or the path of a PEM bundle." },
    { key: "auth.client_names", label: "Accepted certificate names", type: "list", placeholder: "app.netdata.cloud, api.netdata.cloud" },
    { key: "auth.method", label: "Method", type: "select", options: ["", "none", "basic", "bearer"] },
    { key: "auth.username", label: "Basic user name", type: "text" },
    { key: "auth.password", label: "Basic password", type: "secret" },
    { key: "auth.token", label: "Bearer token", type: "secret" },
    { key: "auth.challenge_secret", label: "Challenge secret", type: "secret", help: "Paste the same value into Netdata's form." },
    { key: "auth.headers", label: "Extra headers", type: "headers", help: "Headers every POST must carry, as set in Netdata's Extra headers." },
    { key: "auth.max_failures_per_minute", label: "Failures allowed per minute", type: "number", placeholder: "10" },
    { key: "auth.allow_unauthenticated", label: "Allow no authentication", type: "bool", help: "Not recommended: the receiver faces the internet." },
  ] },
  { group: "Notifications", fields: [
    { key: "notifications.enabled", label: "Desktop popups", type: "bool", default: true },
    { key: "notifications.max_popups_per_minute", label: "Popups per minute", type: "number", placeholder: "10", help: "Beyond this, popups fold into one summary." },
    { key: "notifications.min_severity", label: "Minimum severity", type: "select", options: ["", "clear", "warning", "critical"], help: "clear: every popup; warning: no recovery popups; critical: critical and unreachable only." },
    { key: "notifications.quiet_hours", label: "Quiet hours", type: "text", placeholder: "22:00-07:00" },
    { key: "notifications.quiet_hours_allow_critical", label: "Critical during quiet hours", type: "bool", default: true },
  ] },
  { group: "History", fields: [
    { key: "store.retention_days", label: "Keep history (days)", type: "number", placeholder: "90", help: "0 keeps everything." },
  ] },
];

// raw: what the file held when the form was drawn; drawn: each field's value then (JSON);
// fresh: what the file holds since an edit by hand arrived while the form held edits.
const settingsView = { raw: {}, errors: {}, drawn: {}, fresh: null, stoppedBy: null };

function getPath(obj, key) {
  return key.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function setPath(obj, key, value) {
  const parts = key.split(".");
  const empty = value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length);
  // Walk down, creating parents only when there is something to set; tables left empty by
  // a removal are removed too, so that an untouched [tls.acme] never appears.
  const chain = [obj];
  for (const p of parts.slice(0, -1)) {
    const o = chain[chain.length - 1];
    if (o[p] == null) {
      if (empty) return;
      o[p] = {};
    }
    chain.push(o[p]);
  }
  const last = parts[parts.length - 1];
  if (empty) delete chain[chain.length - 1][last];
  else chain[chain.length - 1][last] = value;
  for (let i = chain.length - 1; i > 0; i--) {
    if (Object.keys(chain[i]).length) break;
    delete chain[i - 1][parts[i - 1]];
  }
}

function fieldInput(f) {
  const id = fieldId(f.key);
  const value = getPath(settingsView.raw, f.key);
  const changed = () => validate();
  switch (f.type) {
    case "select":
      return h("select", { id, "data-key": f.key, onchange: changed },
        f.options.map((o) => h("option", { value: o, selected: String(value || "").trim().toLowerCase() === o }, o || "(default)")));
    case "bool":
      return h("input", { id, type: "checkbox", "data-key": f.key, checked: value ?? f.default ?? false, onchange: changed });
    case "number":
      return h("input", { id, type: "number", "data-key": f.key, value: value ?? "", placeholder: f.placeholder, oninput: debounce(changed, 300) });
    case "list":
      return h("input", { id, type: "text", "data-key": f.key, value: (value || []).join(", "), placeholder: f.placeholder, oninput: debounce(changed, 300) });
    case "secret": {
      const input = h("input", { id, type: "password", "data-key": f.key, value: value || "", autocomplete: "off", oninput: debounce(changed, 300) });
      return h("div", { class: "row" }, input,
        h("button", { class: "btn", type: "button", onclick: (e) => { input.type = input.type === "password" ? "text" : "password"; e.target.textContent = input.type === "password" ? "Show" : "Hide"; } }, "Show"),
        h("button", { class: "btn", type: "button", onclick: () => input.value ? copy(input.value, f.label) : toast("Nothing to copy") }, "Copy"),
        h("button", { class: "btn", type: "button", onclick: async () => { input.value = await invoke("generate_secret"); validate(); toast(`New ${f.label.toLowerCase()} generated: save to use it`); } }, "Generate"));
    }
    case "headers": {
      const rows = h("div", { id, "data-key": f.key, class: "headers" });
      const add = (name = "", val = "") => rows.append(h("div", { class: "row header-row" },
        h("input", { type: "text", class: "hname", placeholder: "X-Api-Key", value: name, oninput: debounce(changed, 300) }),
        h("input", { type: "password", class: "hvalue", placeholder: "value", value: val, oninput: debounce(changed, 300) }),
        h("button", { class: "btn", type: "button", onclick: (e) => { e.target.parentElement.remove(); validate(); } }, "Remove")));
      for (const [k, v] of Object.entries(value || {})) add(k, v);
      return h("div", {}, rows, h("button", { class: "btn", type: "button", onclick: () => add() }, "Add header"));
    }
    default:
      return h("input", { id, type: "text", "data-key": f.key, value: value ?? "", placeholder: f.placeholder, oninput: debounce(changed, 300) });
  }
}

// Each field's value as the form has it: [key, value] pairs.
function formValues() {
  const values = [];
  for (const g of SETTINGS) for (const f of g.fields) {
    const el = document.getElementById(fieldId(f.key));
    if (!el) continue;
    let v;
    switch (f.type) {
      case "bool": v = el.checked; if (f.default === v && getPath(settingsView.raw, f.key) === undefined) v = null; break;
      case "number": v = el.value === "" ? null : Number(el.value); break;
      case "list": v = el.value.split(",").map((s) => s.trim()).filter(Boolean); break;
      case "headers": {
        v = {};
        for (const row of el.querySelectorAll(".header-row")) {
          const name = $(".hname", row).value.trim();
          if (name) v[name] = $(".hvalue", row).value;
        }
        if (!Object.keys(v).length) v = null;
        break;
      }
      default: v = el.value.trim() === "" ? null : el.value.trim();
    }
    values.push([f.key, v]);
  }
  return values;
}

// The config the form stands for: what the file held, with the form's values. After an edit
// by hand (fresh), only the fields edited here replace what the file holds now.
function readForm() {
  const raw = JSON.parse(JSON.stringify(settingsView.fresh || settingsView.raw));
  for (const [key, v] of formValues()) {
    if (settingsView.fresh && JSON.stringify(v) === settingsView.drawn[key]) continue;
    setPath(raw, key, v);
  }
  return raw;
}

// Notes the form as it shows now as the file's content: nothing to discard or save.
function noteFormSaved() {
  const values = formValues();
  settingsView.drawn = Object.fromEntries(values.map(([k, v]) => [k, JSON.stringify(v)]));
  settingsView.saved = JSON.stringify(values);
}

// The id of the input of the setting `key` ("server.listen" -> "f-server-listen").
function fieldId(key) {
  return `f-${key.replace(/\./g, "-")}`;
}

// The field a setting's error belongs to: the one with its key, or the one whose key it
// extends ("auth.headers.X-Api-Key" belongs to "auth.headers"). Keys are compared, never put
// into a selector: a header name can hold any character.
function fieldOf(key) {
  const fields = [...page.querySelectorAll(".field[data-key]")];
  return fields.find((el) => el.dataset.key === key)
    || fields.filter((el) => key.startsWith(`${el.dataset.key}.`)).sort((a, b) => b.dataset.key.length - a.dataset.key.length)[0];
}

// A number field that does not hold a whole number, as an error like the core's.
function numberProblem() {
  for (const g of SETTINGS) for (const f of g.fields) {
    if (f.type !== "number") continue;
    const el = document.getElementById(fieldId(f.key));
    if (el && (el.validity.badInput || (el.value !== "" && !Number.isInteger(Number(el.value))))) {
      return { key: f.key, message: "a whole number is needed" };
    }
  }
  return null;
}

function showErrors(err) {
  for (const el of page.querySelectorAll(".field")) {
    el.classList.remove("invalid");
    const box = $(".error", el);
    if (box) box.textContent = "";
  }
  $("#form-error").textContent = "";
  if (!err) return;
  if (typeof err === "string") err = { message: err };
  // Several settings at fault: each shows at its own field.
  const formErrors = [];
  for (const p of err.problems && err.problems.length ? err.problems : [err]) {
    const field = p.key && fieldOf(p.key);
    if (field && p.key !== "auth") {
      field.classList.add("invalid");
      // Next to its own field, the setting needs no naming: "server.listen = "x" is not..."
      // reads as ""x" is not...". Several extra headers share one field: each keeps its name.
      const prefix = `${p.key} = `;
      const text = field.dataset.key === p.key && p.message.startsWith(prefix) ? p.message.slice(prefix.length) : p.message;
      const box = $(".error", field);
      // Other settings it names link to their fields, by their labels.
      if (box.textContent) box.append("\n");
      box.append(...settingLinks(text));
    } else {
      formErrors.push(p.message);
    }
  }
  fill($("#form-error"), formErrors.map((m, i) => [i ? "\n" : null, settingLinks(m)]));
}

async function validate() {
  syncDiscard();
  const bad = numberProblem();
  if (bad) {
    showErrors(bad);
    return false;
  }
  try {
    await invoke("validate_settings", { raw: readForm() });
    // Nothing wrong with the form; what stopped the receiver, if anything, still stands.
    showErrors(stoppedByShown());
    return true;
  } catch (e) {
    showErrors(e);
    return false;
  }
}

// What stopped the receiver, at its setting, while that setting holds the value it had:
// changed, the next save tells.
function stoppedByShown() {
  const s = settingsView.stoppedBy;
  if (!s) return null;
  const now = formValues().find(([k]) => k === s.key);
  return now && JSON.stringify(now[1]) === settingsView.drawn[s.key] ? s : null;
}

// Notes what stopped the receiver, when the form cannot see it (its values are right): a
// port another program holds, TLS files that do not load.
async function noteStoppedBy(formOk) {
  const st = await invoke("status").catch(() => null);
  settingsView.stoppedBy = formOk ? stoppedAt(st && st.receiver) : null;
}

// The setting a stopped receiver names, with why it stopped; none while it runs.
function stoppedAt(receiver) {
  return receiver && receiver.state !== "running" && receiver.key ? { key: receiver.key, message: receiver.reason } : null;
}

async function drawSettings(anchor) {
  settingsView.stoppedBy = null;
  const s = await invoke("settings");
  settingsView.raw = s.raw || {};
  settingsView.fresh = null;
  const groups = SETTINGS.map((g) => h("fieldset", { id: `group-${g.anchor || g.group.toLowerCase()}` }, h("legend", {}, g.group),
    g.fields.map((f) => h("div", { class: "field", "data-key": f.key },
      h("label", { for: fieldId(f.key) }, f.label), fieldInput(f),
      f.help ? h("div", { class: "help" }, f.help) : null,
      h("div", { class: "error" })))));
  const autostart = h("input", { type: "checkbox", id: "autostart", checked: s.autostart, onchange: async (e) => {
    try { e.target.checked = await invoke("set_autostart", { enabled: e.target.checked }); toast(e.target.checked ? "Alertray starts at login" : "Autostart off"); }
    catch (err) { e.target.checked = !e.target.checked; toast(errorText(err)); }
  } });
  const result = h("span", { class: "result", id: "save-result" });
  fill(page, 
    h("h1", {}, "Settings"),
    s.load_error ? h("div", { class: "note warn" }, `The config file could not be read: ${s.load_error.message}. The form shows the rest of what it holds (or the defaults, where it is not TOML at all); saving keeps the current file as ${s.config_path}.unreadable.`) : null,
    s.refused && !s.load_error ? refusedNote(s.refused) : null,
    h("div", { class: "small" }, `Config file: ${s.config_path}`),
    h("div", { id: "form-error", class: "note warn", style: "display:none" }),
    groups,
    h("fieldset", {}, h("legend", {}, "App"),
      h("div", { class: "field" }, h("label", { for: "autostart" }, "Start at login"), autostart),
      h("div", { class: "field" }, h("label", {}, "Log files"), h("code", { id: "log-dir" }, s.log_dir))),
    h("div", { class: "savebar" },
      h("button", { class: "btn primary", id: "save", onclick: save, title: "Enter in a field saves too" }, "Save and apply"),
      h("button", { class: "btn", id: "discard", disabled: true, onclick: discard, title: "Put back what the config file holds" }, "Discard changes"),
      result));
  // The form error box shows only with text in it.
  const fe = $("#form-error");
  new MutationObserver(() => { fe.style.display = fe.textContent ? "" : "none"; }).observe(fe, { childList: true, characterData: true, subtree: true });
  // A file that did not load leaves the defaults in the form: their own gaps (no token yet)
  // are not the user's mistakes, so they show once the form is edited or saved.
  showMethodFields();
  noteFormSaved();
  const formOk = s.load_error ? false : await validate();
  // A receiver stopped by a setting the form cannot fault (a port another program holds)
  // says why at that setting.
  await noteStoppedBy(formOk);
  if (settingsView.stoppedBy) showErrors(settingsView.stoppedBy);
  syncDiscard();
  if (anchor) pointAt(anchor);
}

// The note on an edit of the file by hand left unapplied (the receiver runs on as it was).
function refusedNote(reason) {
  return h("div", { class: "note warn", id: "refused" }, `The config file's latest edit is not applied, and the receiver keeps the settings it had: ${reason}. It is applied once that is fixed; the form shows the file as it is now.`);
}

// Brings the note on an edit left unapplied up to date without redrawing the form (it may
// hold edits): shown with `reason`, or gone with none.
function showRefused(reason) {
  const note = document.getElementById("refused");
  if (!reason) { if (note) note.remove(); return; }
  if (note) note.replaceWith(refusedNote(reason));
  else { const title = $("h1", page); if (title) title.after(refusedNote(reason)); }
}

// Discard changes is there to press only while the form holds edits.
function syncDiscard() {
  const b = document.getElementById("discard");
  if (b) b.disabled = !settingsDirty();
}

// Puts the form back as the config file has it.
async function discard() {
  await drawSettings(null);
  showErrors(stoppedByShown());
  toast("Changes discarded");
  const first = page.querySelector(".field input, .field select");
  if (first) first.focus({ preventScroll: true });
}

// "#settings/<key>" points at a setting; "#settings/<key>=<value, URI-encoded>" also fills it
// in (the Connect guide's Use buttons), unsaved, for the user to review and save.
function pointAt(anchor) {
  const eq = anchor.indexOf("=");
  if (eq < 0) return focusField(anchor);
  const key = anchor.slice(0, eq);
  let value;
  try { value = decodeURIComponent(anchor.slice(eq + 1)); } catch { return focusField(key); }
  const input = document.getElementById(fieldId(key));
  if (input) {
    input.value = value;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    const result = $("#save-result");
    result.className = "result";
    result.textContent = "Filled in from the Connect guide, not saved yet: check it, then Save and apply.";
  }
  focusField(key);
  // The same Use button again must fill it in again: forget the value in the address.
  history.replaceState(null, "", `#settings/${key}`);
}

// Only the credentials of the chosen method are shown (the others keep their values).
function showMethodFields() {
  const method = document.getElementById(fieldId("auth.method"));
  if (!method) return;
  const shown = { "auth.username": method.value === "basic", "auth.password": method.value === "basic", "auth.token": method.value === "bearer" };
  for (const [key, on] of Object.entries(shown)) {
    const field = fieldOf(key);
    if (field) field.style.display = on ? "" : "none";
  }
}
document.addEventListener("change", (e) => { if (e.target.id === fieldId("auth.method")) showMethodFields(); });

// An edit after saving makes the last save's result stale.
document.addEventListener("input", () => {
  const r = $("#save-result");
  if (r && r.textContent !== "Saving...") { r.textContent = ""; r.className = "result"; }
  syncDiscard();
});
document.addEventListener("change", syncDiscard);

// Enter in a Settings field saves its edits, as in any form (not in a list of buttons or a
// switch; a held key saves once).
document.addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || e.ctrlKey || e.altKey || e.shiftKey || e.metaKey || e.isComposing) return;
  const el = e.target;
  if (el.tagName !== "INPUT" || !["text", "password", "number"].includes(el.type) || !el.closest(".field")) return;
  if (!document.getElementById("save")) return;
  e.preventDefault();
  if (!e.repeat && settingsDirty()) save();
});

// Whether the Settings form holds edits not saved yet.
// The form is asked about, not the address: on the way to Settings from another page, the
// address already says "settings" while that page still shows.
function settingsDirty() {
  return !!document.getElementById("save") && settingsView.saved !== undefined && JSON.stringify(formValues()) !== settingsView.saved;
}

function focusField(key) {
  const field = fieldOf(key) || document.getElementById(`group-${key.split(".")[0]}`);
  if (!field) return;
  field.scrollIntoView({ block: "center" });
  // The highlight plays again at each visit.
  field.classList.remove("flash");
  void field.offsetWidth;
  field.classList.add("flash");
  const input = field.querySelector("input, select");
  if (input) input.focus();
}

// One save at a time: two at once would race for the file and restart the receiver twice.
let saving = false;

async function save() {
  if (saving) return;
  saving = true;
  const button = document.getElementById("save");
  if (button) button.disabled = true;
  try { await saveNow(); } finally {
    saving = false;
    const b = document.getElementById("save");
    if (b) b.disabled = false;
  }
}

async function saveNow() {
  let result = $("#save-result");
  result.className = "result";
  result.textContent = "Saving...";
  const bad = numberProblem();
  if (bad) {
    showErrors(bad);
    result.className = "result bad";
    const f = SETTINGS.flatMap((g) => g.fields).find((x) => x.key === bad.key);
    result.textContent = `Not saved: ${f ? f.label : bad.key}: ${bad.message}`;
    focusField(bad.key);
    return;
  }
  try {
    const raw = readForm();
    const st = await invoke("save_settings", { raw });
    if (settingsView.fresh) {
      // Merged with an edit by hand: the form shows the file as saved.
      await drawSettings(null);
      result = $("#save-result");
    } else {
      showErrors(null);
      settingsView.raw = readForm();
      noteFormSaved();
      syncDiscard();
      // What was saved replaced any edit by hand left unapplied.
      showRefused(null);
    }
    settingsView.stoppedBy = stoppedAt(st);
    if (st.state === "running") {
      result.className = "result ok";
      // A tunnel starts on its own time, and may fail: where to see how it goes.
      const tunnel = raw.tunnel && raw.tunnel.command ? " The tunnel starts with it: the Connect guide shows whether it is up." : "";
      result.textContent = `Saved. The receiver is listening on ${st.addr}.${tunnel}`;
    } else {
      result.className = "result bad";
      result.textContent = `Saved, but the receiver is not running: ${st.reason}`;
      if (settingsView.stoppedBy) showErrors(settingsView.stoppedBy);
      if (st.key) focusField(st.key);
    }
  } catch (e) {
    showErrors(e);
    result.className = "result bad";
    result.textContent = e.problems && e.problems.length
      ? `Not saved: ${e.problems.length} settings need fixing, each shown at its field`
      : `Not saved: ${errorText(e)}`;
    if (e.key) focusField(e.key);
  }
  drawReceiver();
}

// ---- Connect guide -------------------------------------------------------------------------

// Tunnels, with a command that works as Tunnel command ({port}: the receiver's port).
const TUNNELS = [
  ["cloudflared", "cloudflared tunnel --url https://localhost:{port} --no-tls-verify", false],
  ["ngrok HTTP", "ngrok http https://localhost:{port} --log stdout", false],
  ["Tailscale Funnel (HTTPS)", "tailscale funnel https+insecure://localhost:{port}", false],
  ["localtunnel", "lt --port {port} --local-https --allow-invalid-cert", false],
  ["bore, on a server of yours", "bore local {port} --to alerts.example.com --port 443", true],
  ["ngrok TLS", "ngrok tls {port} --url tls://alerts.example.com --log stdout", true],
  ["frp tcp", "frpc tcp -s frp.example.com:7000 -l {port} -r 443", true],
  ["Tailscale Funnel (TCP)", "tailscale funnel --tcp 443 tcp://localhost:{port}", true],
];

function copyLine(label, value, id, secret) {
  const shown = value == null || value === "" ? null : value;
  return h("div", { class: "copyline" },
    h("strong", {}, label),
    h("code", { id }, shown === null ? "(not set)" : (secret ? "•".repeat(Math.min(24, shown.length)) : shown)),
    h("span", {},
      secret && shown ? h("button", { class: "btn", onclick: (e) => { const c = $(`#${id}`); const hidden = c.textContent.startsWith("•"); c.textContent = hidden ? shown : "•".repeat(Math.min(24, shown.length)); e.target.textContent = hidden ? "Hide" : "Show"; } }, "Show") : null, " ",
      h("button", { class: "btn", disabled: shown === null, onclick: () => copy(shown, label) }, "Copy")));
}

const checkView = { running: false, report: null, error: null, ranFor: null, stale: false };

const STEP_MARK = { ok: "✓", warning: "!", failed: "✗", skipped: "–" };

async function runCheck() {
  if (checkView.running) return;
  checkView.running = true;
  checkView.error = null;
  checkView.stale = false;
  drawCheck();
  try {
    checkView.report = await invoke("check_connection");
  } catch (e) {
    checkView.error = errorText(e);
  }
  checkView.running = false;
  drawCheck();
}

// Config keys named in a text (the core's check report names them, as in the TOML), each
// turned into a link that shows the setting's label and opens Settings at its field. A key
// that is a group of fields (tls.acme) opens its first one; the longest key wins.
function settingLinks(text) {
  const fields = SETTINGS.flatMap((g) => g.fields);
  const keys = new Map(fields.map((f) => [f.key, f]));
  keys.set("tls.acme", { key: "tls.acme.email", label: "ACME certificate" });
  const names = [...keys.keys()].sort((a, b) => b.length - a.length).map((k) => k.replace(/\./g, "\\."));
  const pattern = new RegExp(`\\b(${names.join("|")})\\b(?![\\w.]*\\w)`, "g");
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    const f = keys.get(m[1]);
    parts.push(text.slice(last, m.index));
    // In the Settings window, a field hidden (another method's credentials) has no place to go.
    const here = route().name === "settings" ? fieldOf(f.key) : null;
    if (here && here.offsetParent === null) {
      parts.push(f.label);
    } else {
      parts.push(h("a", { href: "#", class: "setting-link", title: `${m[1]} in Settings`, "data-key": f.key,
        onclick: (e) => {
          e.preventDefault();
          // Already in the Settings window: straight to the field, however often.
          if (route().name === "settings" && fieldOf(f.key)) { focusField(f.key); return; }
          invoke("open_window", { page: "settings", anchor: f.key }).catch((err) => toast(errorText(err)));
        } },
        f.label));
    }
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

function drawCheck() {
  const box = $("#check");
  if (!box) return;
  const r = checkView.report;
  fill(box,
    h("div", { class: "row" },
      h("button", { class: "btn primary", id: "check-run", disabled: checkView.running, onclick: runCheck }, checkView.running ? "Checking..." : "Check connection"),
      h("span", { class: "small" }, "Goes through the public URL as Netdata would: DNS, connection, certificate, challenge, credentials.")),
    checkView.error ? h("div", { class: "note warn" }, checkView.error) : null,
    r && checkView.stale ? h("div", { class: "note", id: "check-stale" }, "The receiver or the tunnel has changed since this check: run it again to see where things stand now.") : null,
    r ? h("div", { id: "check-report" },
      h("p", { id: "check-verdict", class: r.passed ? "ok" : "bad" },
        !r.passed ? `Netdata Cloud cannot deliver${r.url ? ` to ${r.url}` : ""} yet:`
          : r.steps.some((s) => s.status === "warning") ? `Nothing failed for ${r.url}, but see the warnings below:`
          : `Netdata Cloud can reach ${r.url}.`),
      h("ul", { class: "steps" }, r.steps.map((s) => h("li", { class: `step ${s.status}`, "data-step": s.name },
        h("span", { class: "mark" }, STEP_MARK[s.status] || "?"),
        h("div", {}, h("strong", {}, s.name), " ", ...settingLinks(s.detail), s.fix ? h("div", { class: "fix" }, ...settingLinks(s.fix)) : null))))) : null);
}

function drawTunnel(t) {
  if (!t || t.phase === "off") {
    return h("div", { class: "card", id: "tunnel-state", "data-phase": "off" },
      h("p", { class: "small" }, "Alertray does not run a tunnel. Set ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); invoke("open_window", { page: "settings", anchor: "tunnel.command" }); } }, "Tunnel command"), " to have it start one with the receiver, or run your own and set Public URL."));
  }
  const label = { starting: "Starting...", up: "Up", failed: "Failed" }[t.phase];
  return h("div", { class: "card", id: "tunnel-state", "data-phase": t.phase },
    h("div", { class: "copyline" }, h("strong", {}, "Tunnel"), h("span", { class: `badge ${t.phase}` }, label),
      h("code", {}, t.command)),
    t.url ? h("div", { class: "copyline" }, h("strong", {}, "Public address"), h("code", { id: "tunnel-url" }, t.url)) : null,
    t.reason ? h("p", { class: "small" }, `It ${t.reason}${t.retry_in_secs != null ? `; restarting in ${t.retry_in_secs} s` : ""}${t.restarts ? ` (restarted ${t.restarts} times)` : ""}.`) : null,
    t.phase !== "up" && t.last_lines.length ? h("pre", { class: "output" }, t.last_lines.join("\n")) : null);
}

async function drawGuide(anchor) {
  let g;
  try {
    g = await invoke("guide");
  } catch (e) {
    fill(page, h("div", { class: "empty" }, errorText(e)));
    return;
  }
  const c = g.guide;
  const lines = [];
  if (c) {
    lines.push(copyLine("Webhook URL", c.webhook_url, "guide-url", false));
    lines.push(copyLine("Authentication", { none: "Mutual TLS only", basic: "Basic", bearer: "Bearer" }[c.method], "guide-method", false));
    if (c.method === "basic") {
      lines.push(copyLine("Username", c.username, "guide-username", false));
      lines.push(copyLine("Password", c.password, "guide-password", true));
    }
    if (c.method === "bearer") lines.push(copyLine("Token", c.token, "guide-token", true));
    c.headers.forEach(([k, v], i) => lines.push(copyLine(`Header ${k}`, v, `guide-header-${i}`, true)));
    lines.push(copyLine("Challenge secret", c.challenge_secret, "guide-challenge", true));
  }
  const tokenBox = h("div", { class: "card", id: "verification" },
    g.token
      ? h("div", { class: "copyline" }, h("strong", {}, "Verification token"), h("code", { id: "guide-verification-token" }, g.token.token),
        h("span", {}, h("span", { class: "small", id: "token-age", "data-ms": g.token.received_ms }, `received ${ago(g.token.received_ms)}`), " ",
          h("button", { class: "btn", onclick: () => copy(g.token.token, "Verification token") }, "Copy")))
      : h("p", { class: "small", id: "guide-no-token" }, "Waiting for a Test notification: press Test in Netdata Cloud's webhook form. The token appears here within seconds."));
  const certNote = c && c.client_certificate === "required"
    ? h("div", { class: "note" }, "Client certificates are required: use a tunnel that passes TLS through, and a certificate Netdata trusts for the public name (tls.cert, tls.key).")
    : h("div", { class: "note" }, "Client certificates are not required, so any tunnel works: the token or password above protects the receiver.");
  fill(page, 
    h("h1", {}, "Connect Netdata Cloud"),
    h("ol", {},
      h("li", {}, "Start a tunnel to ", h("code", {}, c ? c.listen : "the receiver"), " (or let Alertray run it: Tunnel command in Settings), or set its https:// URL as Public URL."),
      h("li", {}, "In Netdata Cloud: Space settings → Alerts & Notifications → Notification methods → Add configuration → Webhook."),
      h("li", {}, "Paste the values below. Saving makes Netdata check the URL with a challenge, which Alertray answers."),
      h("li", {}, "Press Test, then paste the verification token shown below into the form.")),
    c ? null : h("div", { class: "note warn" }, "The config did not load, so there is nothing to paste yet: fix it in Settings."),
    h("h2", {}, "Tunnel"),
    drawTunnel(g.tunnel),
    h("h2", {}, "Check the connection"),
    h("div", { class: "card", id: "check" }),
    h("h2", {}, "Values for the webhook form"),
    h("div", { class: "card" }, lines),
    h("h2", {}, "Verification"),
    tokenBox,
    h("h2", {}, "Tunnels"),
    certNote,
    h("table", { id: "tunnels" },
      h("thead", {}, h("tr", {}, h("th", {}, "Tunnel"), h("th", {}, "Example"), h("th", {}, "Netdata's client certificate"))),
      h("tbody", {}, TUNNELS.map(([name, cmd, passes]) => h("tr", {}, h("td", {}, name),
        h("td", {}, h("code", { class: "cmd" }, cmd),
          h("div", { class: "row-actions" },
            h("button", { class: "btn", title: "Copy it, to paste as Tunnel command in Settings", onclick: () => copy(cmd, `The ${name} command`) }, "Copy"),
            h("button", { class: "btn", "data-use": cmd, title: "Fill it in as Tunnel command in Settings, to check and save",
              onclick: () => invoke("open_window", { page: "settings", anchor: `tunnel.command=${encodeURIComponent(cmd)}` }).catch((e) => toast(errorText(e))) }, "Use"))),
        h("td", {}, passes ? "reaches Alertray: mutual TLS possible" : "ends at the tunnel's edge: use Bearer, Basic or headers")))),
    ));
  drawCheck();
  // "#guide/check" (or "#guide/check-<n>" from the tray, new at each click) runs the check.
  if (anchor && anchor.startsWith("check") && anchor !== checkView.ranFor && !checkView.running) {
    checkView.ranFor = anchor;
    // Asked for from the tray: where its report appears is brought into view.
    const box = $("#check");
    if (box) box.scrollIntoView({ block: "start" });
    runCheck();
  }
}

// Relative times move on while a window stays open: the token's age, and how long each
// active alert has been firing.
setInterval(() => {
  const el = $("#token-age");
  if (el) el.textContent = `received ${ago(Number(el.dataset.ms))}`;
  for (const td of page.querySelectorAll("td.ago")) td.textContent = ago(Number(td.dataset.ms));
}, 1000);

// ---- routing and live updates --------------------------------------------------------------

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  return { name: name || "alerts", anchor: rest.join("/") || null };
}

// The page shown last, so that going to another page starts at its top; toTop: the next
// page drawn scrolls to its top (see fill).
let shownPage = null;
let toTop = false;

async function draw() {
  const r = route();
  const otherPage = r.name !== shownPage;
  shownPage = r.name;
  // The browser would keep the old page's scroll offset; a page pointed at a setting scrolls
  // to it itself.
  toTop = otherPage && !(r.name === "settings" && r.anchor);
  document.title = { alerts: "Alertray: alerts", settings: "Alertray: settings", guide: "Alertray: connect Netdata Cloud" }[r.name] || "Alertray";
  await drawReceiver().catch(() => {});
  // Pointed at a setting while editing (the tray's Copy webhook URL): keep the edits.
  if (r.name === "settings" && settingsDirty() && r.anchor) pointAt(r.anchor);
  else if (r.name === "settings") await drawSettings(r.anchor);
  else if (r.name === "guide") await drawGuide(r.anchor);
  else await drawAlerts();
  if (toTop) { toTop = false; window.scrollTo(0, 0); }
}

window.addEventListener("hashchange", draw);
// Ctrl+W (or Escape outside a form field) closes the window; the app stays in the tray.
// With unsaved settings, the first press only warns.
let closeArmed = false;
window.addEventListener("keydown", (e) => {
  const inField = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (e.key === "Escape" && alertsView.armed && dismissArmed(alertsView.armed.key)) {
    // Escape takes back a first click on Dismiss, rather than closing the window.
    e.preventDefault();
    alertsView.armed = null;
    for (const b of page.querySelectorAll("button.dismiss.armed")) { b.classList.remove("armed"); b.textContent = "Dismiss"; }
    return;
  }
  if ((e.ctrlKey && e.key.toLowerCase() === "w") || (e.key === "Escape" && !inField)) {
    e.preventDefault();
    if (settingsDirty() && !closeArmed) {
      closeArmed = true;
      setTimeout(() => { closeArmed = false; }, 3000);
      toast("Unsaved changes: press again to close without saving");
      return;
    }
    tauri.window.getCurrentWindow().close();
  }
});
draw();

// The core says what changed; redraw what shows it (never the Settings form being edited).
// What changed since the last redraw: "alerts", "token", "tunnel", "receiver"...
const changed = new Set();
const redrawChanged = throttle(async () => {
  const what = new Set(changed);
  changed.clear();
  const r = route();
  await drawReceiver().catch(() => {});
  const REJECTED = "config-rejected:";
  const rejected = [...what].find((w) => w.startsWith(REJECTED));
  if (rejected) toast(`The config file's edit is not applied (the receiver keeps its settings): ${rejected.slice(REJECTED.length)}`);
  if (r.name === "alerts") {
    // Not while the tab is being drawn (its body is not in the page yet): it shows the news.
    if (alertsView.tab === "active") redrawActive();
    else if (!alertsView.pages.length && $("#history-list")) loadHistory($("#history-list"));
  } else if (r.name === "settings" && (what.has("config") || rejected) && document.getElementById("save")) {
    // The file was edited by hand: the form shows it (and why it is not applied, if it is
    // not), unless it holds edits of its own.
    if (settingsDirty()) {
      const s = await invoke("settings");
      showRefused(s.load_error ? null : s.refused);
      // A file that does not load has nothing to merge with: saving replaces it (and keeps
      // it as .unreadable).
      if (what.has("config") && !s.load_error) {
        settingsView.fresh = s.raw || {};
        validate();
        toast("The config file changed on disk; saving keeps its changes, with your edits on top");
      } else {
        if (s.load_error) settingsView.fresh = null;
        toast("The config file changed on disk; saving these edits replaces it");
      }
    } else {
      await drawSettings(null);
      if (!rejected) toast("The config file changed on disk; the form shows it");
    }
  } else if (r.name === "settings" && what.has("receiver") && document.getElementById("save")) {
    // The receiver started or stopped on its own (a port freed, TLS files in place): what
    // the form says of it follows, without touching the form's edits.
    const formOk = await validate();
    await noteStoppedBy(formOk);
    if (formOk) showErrors(stoppedByShown());
  } else if (r.name === "guide" && [...what].some((w) => w !== "alerts")) {
    // The guide shows no alerts: a stream of them leaves it (and a token shown) alone.
    // A check's report from before the receiver or the tunnel changed may no longer hold.
    if (checkView.report && ["receiver", "config", "tunnel"].some((w) => what.has(w))) checkView.stale = true;
    drawGuide();
  }
}, 150);
tauri.event.listen("alertray://changed", (e) => { changed.add(String(e.payload)); redrawChanged(); });
