// The status page. See status_page.h. Plain HTML + JavaScript, no external resources (it is
// served on premise, often without internet access): an overview of what an admin must know at
// a glance (links, counts, waiting messages, certificates, disk, the last 24 hours drawn as an
// SVG chart, refused intake) with what needs action in red, then the messages or the refusals.
// Norwegian bokmål or English by ?lang= or the browser's language; times in the browser's time
// zone with their offset.
#include "integration-point/status_page.h"

namespace bud::ip {

const std::string_view kStatusPageHtml = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Budstikke</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
  h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
  h2 { font-size: 1.05rem; margin: 1.2rem 0 .5rem; }
  form { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; margin-bottom: 1rem; }
  label { display: flex; flex-direction: column; font-size: .8rem; color: #555; }
  [hidden] { display: none !important; }
  input, select { font: inherit; padding: .2rem .3rem; }
  table { border-collapse: collapse; width: 100%; font-size: .88rem; }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #dde; vertical-align: top; }
  th { background: #f3f4f8; position: sticky; top: 0; }
  .status { font-weight: 600; }
  .FEIL, .LEVETID_UTLOPT { color: #b00020; }
  .LEVERT, .INNKOMMENDE_LEVERT, .LEST { color: #0a7a32; }
  .history { color: #555; font-size: .8rem; }
  .late { text-decoration: line-through; }
  #meta { color: #666; font-size: .8rem; margin-bottom: .5rem; }
  #error { color: #b00020; }
  code { font-size: .8rem; }
  #overview { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: .6rem; }
  .card { border: 1px solid #dde; border-radius: .4rem; padding: .5rem .7rem; background: #fafbfd; }
  .card h3 { font-size: .78rem; font-weight: 600; color: #555; margin: 0 0 .3rem; text-transform: uppercase; }
  .card .value { font-size: 1.05rem; font-weight: 600; }
  .card .detail { font-size: .78rem; color: #555; }
  .card.alert { border-color: #b00020; background: #fff2f3; }
  .card.alert .value { color: #b00020; }
  .card.ok .value { color: #0a7a32; }
  #chart svg { width: 100%; height: 130px; }
  #chart .out { fill: #3b6fd8; } #chart .in { fill: #18a08a; }
  #chart text { font-size: 9px; fill: #555; }
  .legend span { display: inline-block; width: .7rem; height: .7rem; margin: 0 .2rem 0 .8rem; }
  #refusalCount { margin-left: .8rem; font-size: .9rem; }
  #refusalCount.alert { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1><span data-t="title">Messages of this integration point</span>
  <a href="#" id="refusalCount" data-count="0"></a></h1>
<div id="overview" aria-live="polite"></div>
<div id="chart"><h2 data-t="chart">Messages per hour, last 24 hours</h2>
  <div class="legend"><span class="out" style="background:#3b6fd8"></span><span data-t="out">out</span>
  <span class="in" style="background:#18a08a"></span><span data-t="in">in</span></div>
  <svg id="chartsvg" viewBox="0 0 720 130" preserveAspectRatio="none" role="img"></svg></div>
<h2 id="listTitle" data-t="messages">Messages</h2>
<form id="filters">
  <label><span data-t="show">Show</span>
    <select name="view">
      <option value="messages" data-t="viewMessages">messages</option>
      <option value="refused" data-t="viewRefused">refused intake</option>
    </select></label>
  <label><span data-t="status">Status</span>
    <select name="status">
      <option value="" data-t="any">any</option>
      <option>OPPRETTET</option><option>SENDT</option><option>MOTTATT</option>
      <option>LEVERT</option><option>LEST</option><option>FEIL</option>
      <option>LEVETID_UTLOPT</option><option>INNKOMMENDE_MOTTATT</option>
      <option>INNKOMMENDE_LEVERT</option>
    </select></label>
  <label><span data-t="direction">Direction</span>
    <select name="direction">
      <option value="" data-t="both">both</option><option value="OUTGOING" data-t="outgoing">outgoing</option>
      <option value="INCOMING" data-t="incoming">incoming</option>
    </select></label>
  <label><span data-t="organisation">Organisation</span> <input name="orgnr" placeholder="910075918" size="12"></label>
  <label><span data-t="from">Updated from</span> <input name="fromDateTime" type="datetime-local"></label>
  <label><span data-t="to">Updated to</span> <input name="toDateTime" type="datetime-local"></label>
  <label><span data-t="messageId">Message id</span> <input name="messageId" size="36"></label>
  <label id="tokenbox" hidden><span data-t="token">API token</span> <input name="token" type="password" size="20"></label>
  <button type="submit" data-t="apply">Apply</button>
</form>
<div id="meta">...</div>
<div id="error"></div>
<table id="messageTable">
  <thead><tr><th data-t="thDirection">Direction</th><th data-t="status">Status</th>
  <th data-t="thMessage">Message</th><th data-t="thFrom">From</th><th data-t="thTo">To</th>
  <th data-t="thTitle">Title</th><th data-t="thUpdated">Last update</th><th data-t="thHistory">History</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<table id="refusalTable" hidden>
  <thead><tr><th data-t="thRefused">Refused</th><th data-t="thClass">Class</th><th data-t="thName">Name</th>
  <th data-t="thWhere">Where it is now</th><th data-t="thReason">Reason</th></tr></thead>
  <tbody id="refusalRows"></tbody>
</table>
<script>
"use strict";
const T = {
  en: {
    title: "Messages of this integration point", chart: "Messages per hour, last 24 hours",
    out: "out", in: "in", messages: "Messages", refusedTitle: "Refused intake: not sent",
    show: "Show", viewMessages: "messages", viewRefused: "refused intake", status: "Status",
    any: "any", direction: "Direction", both: "both", outgoing: "outgoing", incoming: "incoming",
    organisation: "Organisation", from: "Updated from", to: "Updated to",
    messageId: "Message id", token: "API token", apply: "Apply",
    thDirection: "Direction", thMessage: "Message", thFrom: "From", thTo: "To", thTitle: "Title",
    thUpdated: "Last update", thHistory: "History", thRefused: "Refused", thClass: "Class",
    thName: "Name", thWhere: "Where it is now", thReason: "Reason",
    broker: "Broker", registry: "Registry", connected: "connected", disconnected: "NOT connected",
    reachable: "answers", unreachable: "NOT answering", lastContact: "last contact",
    never: "never", since: "since", today: "Today", total: "All messages",
    oldestNotSent: "Oldest not SENDT", oldestNotReceived: "Oldest not MOTTATT", none: "none",
    certificates: "Certificates", days: "days", disk: "Disk free", refusals: "Refused intake",
    refusedCount: "refused: {n}", open: "open", messageCount: "{n} message(s)",
    newestShown: ", newest {n} shown", refreshed: "refreshed", refusalTotal: "{n} refused, not sent",
    cannotLoad: "Cannot load", needToken: "this integration point needs its API token (see http.token_file)",
    out_short: "out", in_short: "in",
    ageMinutes: "{n} min", ageHours: "{n} h", ageDays: "{n} d",
  },
  nb: {
    title: "Meldinger i dette integrasjonspunktet", chart: "Meldinger per time, siste 24 timer",
    out: "ut", in: "inn", messages: "Meldinger", refusedTitle: "Avvist inntak: ikke sendt",
    show: "Vis", viewMessages: "meldinger", viewRefused: "avvist inntak", status: "Status",
    any: "alle", direction: "Retning", both: "begge", outgoing: "utgående", incoming: "inngående",
    organisation: "Organisasjon", from: "Oppdatert fra", to: "Oppdatert til",
    messageId: "Meldings-ID", token: "API-nøkkel", apply: "Bruk",
    thDirection: "Retning", thMessage: "Melding", thFrom: "Fra", thTo: "Til", thTitle: "Tittel",
    thUpdated: "Sist oppdatert", thHistory: "Historikk", thRefused: "Avvist", thClass: "Klasse",
    thName: "Navn", thWhere: "Ligger nå", thReason: "Årsak",
    broker: "Meldingsformidler", registry: "Adresseregister", connected: "tilkoblet",
    disconnected: "IKKE tilkoblet", reachable: "svarer", unreachable: "SVARER IKKE",
    lastContact: "sist kontakt", never: "aldri", since: "siden", today: "I dag",
    total: "Alle meldinger", oldestNotSent: "Eldste ikke SENDT", oldestNotReceived: "Eldste ikke MOTTATT",
    none: "ingen", certificates: "Sertifikater", days: "dager", disk: "Ledig disk",
    refusals: "Avvist inntak", refusedCount: "avvist: {n}", open: "åpne",
    messageCount: "{n} melding(er)", newestShown: ", de nyeste {n} vises", refreshed: "oppdatert",
    refusalTotal: "{n} avvist, ikke sendt", cannotLoad: "Kan ikke hente",
    needToken: "integrasjonspunktet krever API-nøkkelen (se http.token_file)",
    out_short: "ut", in_short: "inn",
    ageMinutes: "{n} min", ageHours: "{n} t", ageDays: "{n} d",
  },
};
function pickLang() {
  const asked = new URLSearchParams(location.search).get("lang");
  const tries = asked ? [asked] : (navigator.languages || [navigator.language || "en"]);
  for (const l of tries) {
    const p = String(l).toLowerCase().slice(0, 2);
    if (p === "nb" || p === "nn" || p === "no") return "nb";
    if (p === "en") return "en";
  }
  return "en";
}
const lang = pickLang();
document.documentElement.lang = lang;
function t(key, n) {
  const s = (T[lang][key] !== undefined ? T[lang][key] : T.en[key]);
  return n === undefined ? s : s.replace("{n}", n);
}
for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
document.title = "Budstikke: " + t("title");

function pad(n) { return String(n).padStart(2, "0"); }
// An ISO time in the browser's time zone, with the offset: 2026-12-03 16:05:09 +01:00.
function local(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  const a = Math.abs(off);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    `${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}
function age(seconds) {
  if (seconds < 3600) return t("ageMinutes", Math.floor(seconds / 60));
  if (seconds < 86400) return t("ageHours", Math.floor(seconds / 3600));
  return t("ageDays", Math.floor(seconds / 86400));
}
function toIso(v) { return v ? new Date(v).toISOString() : ""; }
function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}
const form = document.getElementById("filters");
const names = ["view", "status", "direction", "orgnr", "fromDateTime", "toDateTime", "messageId"];
const initial = new URLSearchParams(location.search);
for (const n of names) if (initial.has(n)) form.elements[n].value = initial.get(n);

function headers() {
  const h = {};
  const token = sessionStorage.getItem("budToken");
  if (token) h.Authorization = "Bearer " + token;
  return h;
}
async function getJson(path) {
  const res = await fetch(path, { headers: headers() });
  if (res.status === 401) {
    document.getElementById("tokenbox").hidden = false;
    throw new Error(t("needToken"));
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body.message || res.statusText);
  return body;
}

// One card of the overview: its key (data-key, for tests and scripts), title, main value,
// detail lines, and whether it is red.
function card(key, title, value, details, red, ok) {
  const c = document.createElement("div");
  c.className = "card" + (red ? " alert" : (ok ? " ok" : ""));
  c.dataset.key = key;
  c.dataset.alert = red ? "true" : "false";
  c.append(text("h3", title));
  const v = text("div", value, "value");
  v.dataset.value = "";
  c.append(v);
  for (const d of details) if (d) c.append(text("div", d, "detail"));
  return c;
}
function countsLine(counts) {
  const keys = Object.keys(counts || {}).sort();
  return keys.length ? keys.map((k) => `${k} ${counts[k]}`).join(", ") : t("none");
}
function sum(counts) { return Object.values(counts || {}).reduce((a, b) => a + b, 0); }

function drawChart(hourly) {
  const svg = document.getElementById("chartsvg");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const max = Math.max(1, ...hourly.map((h) => Math.max(h.out, h.in)));
  const w = 720 / hourly.length;
  hourly.forEach((h, i) => {
    for (const [k, dx] of [["out", 1], ["in", w / 2]]) {
      const r = document.createElementNS(ns, "rect");
      const hgt = Math.round(100 * h[k] / max);
      r.setAttribute("x", i * w + dx);
      r.setAttribute("y", 110 - hgt);
      r.setAttribute("width", w / 2 - 1.5);
      r.setAttribute("height", hgt);
      r.setAttribute("class", k);
      r.dataset.hour = h.hour;
      r.dataset.count = h[k];
      const title = document.createElementNS(ns, "title");
      title.textContent = `${local(h.hour)}: ${t(k)} ${h[k]}`;
      r.append(title);
      svg.append(r);
    }
    if (i % 3 === 0) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", i * w + 1);
      label.setAttribute("y", 125);
      label.textContent = local(h.hour).slice(11, 16);
      svg.append(label);
    }
  });
}

async function refreshOverview() {
  const o = await getJson("/api/overview");
  const red = new Set(o.alerts.map((a) => a.what));
  const cards = [];
  cards.push(card("broker", t("broker"), o.broker.connected ? t("connected") : t("disconnected"),
    [`${t("lastContact")}: ${o.broker.lastContact ? local(o.broker.lastContact) : t("never")}`],
    red.has("broker"), o.broker.connected));
  cards.push(card("registry", t("registry"), o.registry.reachable ? t("reachable") : t("unreachable"),
    [`${t("lastContact")}: ${o.registry.lastContact ? local(o.registry.lastContact) : t("never")}`,
     o.registry.unavailableSince ? `${t("since")} ${local(o.registry.unavailableSince)}` : ""],
    red.has("registry"), o.registry.reachable));
  cards.push(card("today", t("today"), String(sum(o.messages.today)),
    [countsLine(o.messages.today)], red.has("failed_today")));
  cards.push(card("total", t("total"), String(sum(o.messages.total)),
    [countsLine(o.messages.total)], false));
  for (const [key, w, alertKey] of [["oldestNotSent", o.oldestNotSent, "not_sent"],
                                    ["oldestNotReceived", o.oldestNotReceived, "not_received"]]) {
    cards.push(card(key, t(key), w ? age(w.ageSeconds) : t("none"),
      w ? [w.messageId, `${w.receiver}, ${local(w.created)}`] : [], red.has(alertKey)));
  }
  cards.push(card("certificates", t("certificates"),
    o.certificates.length ? Math.min(...o.certificates.map((c) => c.daysToExpiry)) + " " + t("days") : t("none"),
    o.certificates.map((c) => `${c.certificate}: ${c.daysToExpiry} ${t("days")}`), red.has("certificate")));
  cards.push(card("disk", t("disk"),
    o.disks.length ? Math.min(...o.disks.map((d) => d.freePercent ?? 0)) + " %" : "",
    o.disks.map((d) => d.error ? `${d.disk}: ${d.error}` :
      `${d.disk}: ${(d.freeBytes / 1073741824).toFixed(1)} GiB (${d.freePercent} %)`), red.has("disk")));
  cards.push(card("refusals", t("refusals"), String(o.refusals.open), [t("open")], red.has("refusals")));
  document.getElementById("overview").replaceChildren(...cards);
  const rc = document.getElementById("refusalCount");
  rc.textContent = t("refusedCount", o.refusals.open);
  rc.dataset.count = o.refusals.open;
  rc.className = o.refusals.open > 0 ? "alert" : "";
  drawChart(o.hourly);
}

async function refreshMessages() {
  const q = new URLSearchParams({ size: "200" });
  for (const n of names) {
    if (n === "view") continue;
    let v = form.elements[n].value.trim();
    if (!v) continue;
    if (n.endsWith("DateTime")) v = toIso(v);
    q.set(n, v);
  }
  const body = await getJson("/api/conversations?" + q);
  const rows = document.getElementById("rows");
  rows.replaceChildren();
  for (const c of body.content) {
    const tr = document.createElement("tr");
    tr.dataset.messageId = c.messageId;
    tr.dataset.status = c.status;
    tr.append(text("td", c.direction === "OUTGOING" ? t("out_short") : t("in_short")));
    tr.append(text("td", c.status, "status " + c.status));
    const id = document.createElement("td");
    id.append(text("code", c.messageId));
    tr.append(id);
    tr.append(text("td", c.senderIdentifier));
    tr.append(text("td", c.receiverIdentifier));
    tr.append(text("td", c.messageTitle));
    tr.append(text("td", local(c.lastUpdate)));
    const hist = document.createElement("td");
    hist.className = "history";
    hist.append(...c.messageStatuses.map((s, i) => {
      const span = text("span", (i ? " \u2192 " : "") + s.status, s.current === false ? "late" : "");
      span.title = local(s.lastUpdate) + ": " + s.description;
      return span;
    }));
    tr.append(hist);
    rows.append(tr);
  }
  document.getElementById("meta").textContent =
    t("messageCount", body.totalElements) +
    (body.totalElements > body.content.length ? t("newestShown", body.content.length) : "") +
    `; ${t("refreshed")} ${local(new Date().toISOString())}`;
}

async function refreshRefusals() {
  const body = await getJson("/api/refusals");
  const rows = document.getElementById("refusalRows");
  rows.replaceChildren();
  for (const r of body.content) {
    const tr = document.createElement("tr");
    tr.dataset.name = r.name;
    tr.dataset.class = r.class;
    tr.append(text("td", local(r.refused)));
    tr.append(text("td", r.class));
    const name = document.createElement("td");
    name.append(text("code", r.name));
    if (r.messageId) name.append(" ", text("code", r.messageId));
    tr.append(name);
    tr.append(text("td", r.movedTo || "-"));
    tr.append(text("td", r.reason));
    rows.append(tr);
  }
  document.getElementById("meta").textContent =
    t("refusalTotal", body.open) + `; ${t("refreshed")} ${local(new Date().toISOString())}`;
}

async function refresh() {
  const refused = form.elements.view.value === "refused";
  document.getElementById("messageTable").hidden = refused;
  document.getElementById("refusalTable").hidden = !refused;
  document.getElementById("listTitle").textContent = refused ? t("refusedTitle") : t("messages");
  for (const n of ["status", "direction", "orgnr", "fromDateTime", "toDateTime", "messageId"]) {
    form.elements[n].closest("label").hidden = refused;
  }
  const errors = [];
  try { await refreshOverview(); } catch (e) { errors.push(e.message); }
  try { await (refused ? refreshRefusals() : refreshMessages()); } catch (e) { errors.push(e.message); }
  document.getElementById("error").textContent =
    errors.length ? `${t("cannotLoad")}: ${errors.join("; ")}` : "";
  document.body.dataset.loaded = "true";
}
function applyFilters() {
  const q = new URLSearchParams();
  if (initial.has("lang")) q.set("lang", initial.get("lang"));
  for (const n of names) if (form.elements[n].value) q.set(n, form.elements[n].value);
  history.replaceState(null, "", "?" + q);
  refresh();
}
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const tok = form.elements.token.value.trim();
  if (tok) sessionStorage.setItem("budToken", tok);
  applyFilters();
});
form.elements.view.addEventListener("change", applyFilters);
document.getElementById("refusalCount").addEventListener("click", (e) => {
  e.preventDefault();
  form.elements.view.value = "refused";
  applyFilters();
});
refresh();
setInterval(refresh, 3000);
</script>
</body>
</html>
)HTML";

}  // namespace bud::ip
