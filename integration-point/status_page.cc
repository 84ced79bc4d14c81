// The status page. See status_page.h. Plain HTML + JavaScript, no external resources (it is
// served on premise, often without internet access).
#include "integration-point/status_page.h"

namespace bud::ip {

const std::string_view kStatusPageHtml = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Budstikke integration point: messages</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
  h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
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
</style>
</head>
<body>
<h1>Messages of this integration point</h1>
<form id="filters">
  <label>Status
    <select name="status">
      <option value="">any</option>
      <option>OPPRETTET</option><option>SENDT</option><option>MOTTATT</option>
      <option>LEVERT</option><option>LEST</option><option>FEIL</option>
      <option>LEVETID_UTLOPT</option><option>INNKOMMENDE_MOTTATT</option>
      <option>INNKOMMENDE_LEVERT</option>
    </select></label>
  <label>Direction
    <select name="direction">
      <option value="">both</option><option value="OUTGOING">outgoing</option>
      <option value="INCOMING">incoming</option>
    </select></label>
  <label>Organisation <input name="orgnr" placeholder="910075918" size="12"></label>
  <label>Updated from <input name="fromDateTime" type="datetime-local"></label>
  <label>Updated to <input name="toDateTime" type="datetime-local"></label>
  <label>Message id <input name="messageId" size="36"></label>
  <label id="tokenbox" hidden>API token <input name="token" type="password" size="20"></label>
  <button type="submit">Apply</button>
</form>
<div id="meta">loading...</div>
<div id="error"></div>
<table>
  <thead><tr><th>Direction</th><th>Status</th><th>Message</th><th>From</th><th>To</th>
  <th>Title</th><th>Last update</th><th>History</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<script>
"use strict";
const form = document.getElementById("filters");
const names = ["status", "direction", "orgnr", "fromDateTime", "toDateTime", "messageId"];
const initial = new URLSearchParams(location.search);
for (const n of names) if (initial.has(n)) form.elements[n].value = initial.get(n);

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}
function local(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function toIso(v) { return v ? new Date(v).toISOString() : ""; }

async function refresh() {
  const q = new URLSearchParams({ size: "200" });
  for (const n of names) {
    let v = form.elements[n].value.trim();
    if (!v) continue;
    if (n.endsWith("DateTime")) v = toIso(v);
    q.set(n, v);
  }
  const headers = {};
  const token = sessionStorage.getItem("budToken");
  if (token) headers.Authorization = "Bearer " + token;
  try {
    const res = await fetch("/api/conversations?" + q, { headers });
    if (res.status === 401) {
      document.getElementById("tokenbox").hidden = false;
      throw new Error("this integration point needs its API token (see http.token_file)");
    }
    const body = await res.json();
    if (!res.ok) throw new Error(body.message || res.statusText);
    const rows = document.getElementById("rows");
    rows.replaceChildren();
    for (const c of body.content) {
      const tr = document.createElement("tr");
      tr.dataset.messageId = c.messageId;
      tr.dataset.status = c.status;
      tr.append(text("td", c.direction === "OUTGOING" ? "out" : "in"));
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
        const span = text("span", (i ? " \u2192 " : "") + s.status, s.current ? "" : "late");
        span.title = local(s.lastUpdate) + ": " + s.description;
        return span;
      }));
      tr.append(hist);
      rows.append(tr);
    }
    document.getElementById("meta").textContent =
      `${body.totalElements} message(s)` +
      (body.totalElements > body.content.length ? `, newest ${body.content.length} shown` : "") +
      `; refreshed ${new Date().toLocaleTimeString()}`;
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "Cannot load messages: " + e.message;
  }
}
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const t = form.elements.token.value.trim();
  if (t) sessionStorage.setItem("budToken", t);
  const q = new URLSearchParams();
  for (const n of names) if (form.elements[n].value) q.set(n, form.elements[n].value);
  history.replaceState(null, "", "?" + q);
  refresh();
});
refresh();
setInterval(refresh, 3000);
</script>
</body>
</html>
)HTML";

}  // namespace bud::ip
