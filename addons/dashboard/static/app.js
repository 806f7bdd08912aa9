// kubeling dashboard page. Mirrors kubernetes/dashboard's frontend views in plain JS:
// one Server-Sent Events stream (/api/stream) carries a list then watch events per resource,
// and the page patches table rows by object key instead of reloading. Every request carries
// the user's bearer token; the backend makes the apiserver call with it.
"use strict";

const WATCHED = ["namespaces", "nodes", "deployments", "replicasets", "pods", "services", "endpointslices", "events"];
const MAX_EVENTS = 200;      // rows kept in the events table
const MAX_SAMPLES = 60;      // metric points kept per pod / node
const MAX_LOG_CHARS = 200000;

const S = {
  token: null, settings: {skippable: false, metricsInterval: 5},
  stores: Object.fromEntries(WATCHED.map(r => [r, new Map()])),
  history: new Map(),        // "ns/name" (pods) or "node/name" -> [{t, cpu (millicores), mem (MiB)}]
  nodeUsage: new Map(),      // node name -> {cpu cores, mem bytes}
  namespace: "", selected: null,
  streamAbort: null, logAbort: null, metricsTimer: null, retryTimer: null,
};

const $ = sel => document.querySelector(sel);
const esc = v => String(v ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const keyOf = o => (o.metadata.namespace ? o.metadata.namespace + "/" : "") + o.metadata.name;
const authHeaders = () => (S.token ? {Authorization: "Bearer " + S.token} : {});

// ---------------------------------------------------------------- quantities and time

// A Kubernetes quantity ("100m", "2", "12345n", "64Mi", "1G") as a number of base units.
function quantity(q) {
  if (q === undefined || q === null || q === "") return 0;
  const m = String(q).match(/^([0-9.eE+-]+)([a-zA-Z]*)$/);
  if (!m) return 0;
  const mult = {n: 1e-9, u: 1e-6, m: 1e-3, "": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12,
                Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4}[m[2]];
  return parseFloat(m[1]) * (mult ?? 1);
}
const mib = b => (b / 1024 ** 2).toFixed(0) + "Mi";
const millis = c => (c * 1000).toFixed(0) + "m";

function age(ts) {
  if (!ts) return "";
  let s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

// ---------------------------------------------------------------- charts (inline SVG)

// A polyline of `field` over the samples (newest at the right, MAX_SAMPLES across), scaled to
// its own maximum; data-points counts the samples. Large charts label that maximum.
function chart(samples, field, w, h) {
  const pts = samples || [];
  const max = Math.max(1e-9, ...pts.map(p => p[field])) * 1.1;
  const last = pts.length ? pts[pts.length - 1][field] : null;
  const step = w / (MAX_SAMPLES - 1);
  const x0 = w - step * (pts.length - 1);
  const coords = pts.map((p, i) => `${(x0 + i * step).toFixed(1)},${(h - 2 - (p[field] / max) * (h - 4)).toFixed(1)}`);
  const line = pts.length > 1 ? `<polyline points="${coords.join(" ")}"/>`
    : pts.length === 1 ? `<circle cx="${w - 2}" cy="${coords[0].split(",")[1]}" r="2"/>` : "";
  const scale = h >= 50 && pts.length ? `<text x="3" y="11">max ${(max / 1.1).toFixed(1)}</text>` : "";
  const label = last === null ? "—" : last.toFixed(1);
  return `<span class="chart"><svg class="${field}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ` +
         `data-points="${pts.length}">${scale}${line}</svg><span class="val">${label}</span></span>`;
}

function bar(used, alloc, capacity, fmt) {
  const pct = alloc > 0 ? Math.min(100, (used / alloc) * 100) : 0;
  const usedText = used === null ? "?" : `${fmt(used)} (${pct.toFixed(0)}%)`;
  return `<div class="bar"><div style="width:${used === null ? 0 : pct}%"></div></div>` +
         `${esc(usedText)} / ${esc(fmt(alloc))} (${esc(fmt(capacity))})`;
}

// ---------------------------------------------------------------- rows per resource

function podStatus(p) {
  if (p.metadata.deletionTimestamp) return "Terminating";
  for (const c of (p.status?.containerStatuses || [])) {
    if (c.state?.waiting?.reason) return c.state.waiting.reason;
    if (c.state?.terminated?.reason && p.status.phase === "Running") return c.state.terminated.reason;
  }
  return p.status?.phase || "Pending";
}

// Mirrors kubectl rollout status (DeploymentStatusViewer).
function rollout(d) {
  const s = d.status || {}, want = d.spec?.replicas ?? 1;
  if ((s.observedGeneration || 0) < (d.metadata.generation || 0)) return "waiting for the controller";
  const prog = (s.conditions || []).find(c => c.type === "Progressing");
  if (prog && prog.reason === "ProgressDeadlineExceeded") return "failed: progress deadline exceeded";
  const updated = s.updatedReplicas || 0;
  if (updated < want) return `rolling out: ${updated} of ${want} updated`;
  if ((s.replicas || 0) > updated) return `rolling out: ${s.replicas - updated} old pending termination`;
  if ((s.availableReplicas || 0) < updated) return `rolling out: ${s.availableReplicas || 0} of ${updated} available`;
  return "complete";
}

function endpointsOf(svc) {
  const out = [];
  for (const sl of S.stores.endpointslices.values()) {
    if (sl.metadata.namespace !== svc.metadata.namespace) continue;
    if ((sl.metadata.labels || {})["kubernetes.io/service-name"] !== svc.metadata.name) continue;
    for (const ep of sl.endpoints || []) {
      const ready = ep.conditions?.ready !== false;
      for (const addr of ep.addresses || []) {
        for (const port of (sl.ports && sl.ports.length ? sl.ports : [{}])) {
          out.push(`<span class="${ready ? "ok" : "warn"}">${esc(addr)}${port.port ? ":" + esc(port.port) : ""}</span>`);
        }
      }
    }
  }
  return out.length ? out.join(" ") : '<span class="muted">&lt;none&gt;</span>';
}

const td = (v, cls) => `<td${cls ? ` class="${cls}"` : ""}>${v}</td>`;

const ROWS = {
  nodes(n) {
    const ready = (n.status?.conditions || []).find(c => c.type === "Ready");
    const state = (ready?.status === "True" ? "Ready" : "NotReady") + (n.spec?.unschedulable ? ",SchedulingDisabled" : "");
    const bad = (n.status?.conditions || []).filter(c => c.type !== "Ready" && c.status === "True").map(c => c.type);
    const cap = n.status?.capacity || {}, alloc = n.status?.allocatable || {};
    const use = S.nodeUsage.get(n.metadata.name);
    const ip = (n.status?.addresses || []).find(a => a.type === "InternalIP")?.address;
    const running = [...S.stores.pods.values()].filter(p => p.spec?.nodeName === n.metadata.name &&
      !["Succeeded", "Failed"].includes(p.status?.phase)).length;
    return [td(esc(n.metadata.name), "name"), td(esc(state), ready?.status === "True" ? "ok status" : "bad status"),
      td(bad.length ? `<span class="warn">${esc(bad.join(", "))}</span>` : '<span class="muted">no pressure</span>'),
      td(bar(use ? use.cpu : null, quantity(alloc.cpu), quantity(cap.cpu), millis)),
      td(bar(use ? use.mem : null, quantity(alloc.memory), quantity(cap.memory), mib)),
      td(`${running} / ${esc(alloc.pods || cap.pods || "?")}`), td(esc(ip)), td(esc(n.spec?.podCIDR)),
      td(age(n.metadata.creationTimestamp))];
  },
  deployments(d) {
    const s = d.status || {}, want = d.spec?.replicas ?? 1, state = rollout(d);
    const images = (d.spec?.template?.spec?.containers || []).map(c => c.image).join(", ");
    return [td(esc(d.metadata.namespace)), td(esc(d.metadata.name), "name"),
      td(`${s.readyReplicas || 0}/${want}`, (s.readyReplicas || 0) >= want ? "ready ok" : "ready warn"),
      td(s.updatedReplicas || 0, "updated"), td(s.availableReplicas || 0, "available"),
      td(esc(state), state === "complete" ? "rollout ok" : "rollout warn"), td(esc(images)),
      td(age(d.metadata.creationTimestamp))];
  },
  replicasets(rs) {
    const s = rs.status || {};
    const owner = (rs.metadata.ownerReferences || []).map(o => `${o.kind}/${o.name}`).join(", ");
    return [td(esc(rs.metadata.namespace)), td(esc(rs.metadata.name), "name"), td(esc(owner)),
      td(rs.spec?.replicas ?? 1), td(s.replicas || 0), td(s.readyReplicas || 0), td(age(rs.metadata.creationTimestamp))];
  },
  pods(p) {
    const cs = p.status?.containerStatuses || [];
    const total = (p.spec?.containers || []).length;
    const ready = cs.filter(c => c.ready).length;
    const restarts = cs.reduce((n, c) => n + (c.restartCount || 0), 0);
    const status = podStatus(p), k = keyOf(p), hist = S.history.get(k);
    const cls = status === "Running" && ready === total ? "ok" : ["Succeeded", "Completed"].includes(status) ? "muted" : "warn";
    return [td(esc(p.metadata.namespace)), td(esc(p.metadata.name), "name"), td(esc(status), "status " + cls),
      td(`${ready}/${total}`, "ready"), td(restarts, restarts ? "restarts warn" : "restarts"),
      td(esc(p.spec?.nodeName || "")), td(esc(p.status?.podIP || ""), "ip"), td(age(p.metadata.creationTimestamp)),
      td(chart(hist, "cpu", 90, 22)), td(chart(hist, "mem", 90, 22)),
      td(`<button type="button" class="logs" data-pod="${esc(k)}">logs</button>`)];
  },
  services(svc) {
    const ports = (svc.spec?.ports || []).map(p => `${p.port}${p.nodePort ? ":" + p.nodePort : ""}/${p.protocol || "TCP"}` +
      (p.targetPort !== undefined ? `→${p.targetPort}` : "")).join(", ");
    return [td(esc(svc.metadata.namespace)), td(esc(svc.metadata.name), "name"), td(esc(svc.spec?.type || "ClusterIP")),
      td(esc(svc.spec?.clusterIP)), td(esc(ports)), td(endpointsOf(svc), "endpoints"), td(age(svc.metadata.creationTimestamp))];
  },
  events(e) {
    const o = e.involvedObject || e.regarding || {};
    const when = e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp;
    return [td(age(when)), td(esc(e.type), e.type === "Warning" ? "warn" : ""), td(esc(e.reason), "reason"),
      td(esc(`${o.kind || ""}/${o.name || ""}`)), td(esc(e.message || e.note), "message"), td(e.count || 1)];
  },
};

const eventTime = e => Date.parse(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp || 0) || 0;
// Row order: events newest first, everything else by key.
function before(resource, a, b) {
  if (resource === "events") return eventTime(a) > eventTime(b);
  return keyOf(a) < keyOf(b);
}
const visible = o => !S.namespace || !o.metadata.namespace || o.metadata.namespace === S.namespace;

// ---------------------------------------------------------------- patching tables

const tbody = r => document.querySelector(`#${r} tbody`);

// Replace one cell with `html` (a whole <td>), remembering what it was rendered from.
function setCell(cell, html) {
  const tmp = document.createElement("tbody");
  tmp.innerHTML = `<tr>${html}</tr>`;
  const fresh = tmp.rows[0].cells[0];
  fresh.dataset.html = html;
  cell.replaceWith(fresh);
}

// Bring the row of `key` in line with the store: insert it in order, update or remove it.
function patchRow(resource, key) {
  const body = tbody(resource);
  if (!body) return;
  const obj = S.stores[resource].get(key);
  let row = [...body.rows].find(r => r.dataset.key === key);
  if (!obj || !visible(obj)) {
    if (row) row.remove();
    return updateCount(resource);
  }
  const cells = ROWS[resource](obj);
  // Only changed cells are replaced (a button the user is about to click stays the same element);
  // an event seen again moves to the top instead.
  if (row && row.cells.length === cells.length && resource !== "events") {
    cells.forEach((html, i) => {
      if (row.cells[i].dataset.html !== html) setCell(row.cells[i], html);
    });
    return;
  }
  if (row) row.remove();
  row = document.createElement("tr");
  row.dataset.key = key;
  row.innerHTML = cells.join("");
  [...row.cells].forEach((c, i) => { c.dataset.html = cells[i]; });
  const next = [...body.rows].find(r => {
    const other = S.stores[resource].get(r.dataset.key);
    return other && before(resource, obj, other);
  });
  body.insertBefore(row, next || null);
  if (resource === "events") while (body.rows.length > MAX_EVENTS) body.deleteRow(-1);
  updateCount(resource);
}

function renderTable(resource) {
  const body = tbody(resource);
  if (!body) return;
  const objs = [...S.stores[resource].values()].filter(visible);
  objs.sort((a, b) => (before(resource, a, b) ? -1 : before(resource, b, a) ? 1 : 0));
  body.innerHTML = "";
  for (const o of objs.slice(0, resource === "events" ? MAX_EVENTS : undefined)) {
    const row = body.insertRow(-1), cells = ROWS[resource](o);
    row.dataset.key = keyOf(o);
    row.innerHTML = cells.join("");
    [...row.cells].forEach((c, i) => { c.dataset.html = cells[i]; });
  }
  updateCount(resource);
}

function updateCount(resource) {
  const el = document.querySelector(`#${resource} .count`);
  if (el) el.textContent = `(${tbody(resource).rows.length})`;
}

function refreshNamespaces() {
  const names = new Set(S.stores.namespaces.keys());
  for (const r of WATCHED) for (const o of S.stores[r].values()) if (o.metadata.namespace) names.add(o.metadata.namespace);
  const list = $("#namespace-list"), have = new Set([...list.options].map(o => o.value));
  for (const n of [...names].sort()) if (!have.has(n)) list.append(new Option(n, n));
}

// What else a change shows in: services list their slices, nodes count their pods.
function afterChange(resource, obj) {
  if (resource === "endpointslices") {
    const svc = (obj.metadata.labels || {})["kubernetes.io/service-name"];
    if (svc) patchRow("services", `${obj.metadata.namespace}/${svc}`);
  } else if (resource === "pods") {
    if (obj.spec?.nodeName) patchRow("nodes", obj.spec.nodeName);
    if (S.selected === keyOf(obj)) renderDetail();
  }
}

function onSync(resource, items) {
  const store = S.stores[resource];
  store.clear();
  for (const o of items) store.set(keyOf(o), o);
  renderTable(resource);
  if (resource === "endpointslices") renderTable("services");
  if (resource === "pods") { renderTable("nodes"); if (S.selected) renderDetail(); }
  refreshNamespaces();
}

function onWatch(resource, type, obj) {
  const k = keyOf(obj);
  if (type === "DELETED") S.stores[resource].delete(k);
  else S.stores[resource].set(k, obj);
  patchRow(resource, k);
  afterChange(resource, obj);
  if (type === "ADDED") refreshNamespaces();
}

// ---------------------------------------------------------------- the live stream

function setStatus(text, cls) {
  const el = $("#status");
  el.textContent = text;
  el.className = "status " + cls;
}

function handleMessage(msg) {
  let event = "message", data = "";
  for (const line of msg.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  const d = JSON.parse(data);
  if (event === "sync") {
    onSync(d.resource, d.items);
    setStatus("live", "on");
  } else if (event === "unreachable") setStatus("apiserver unreachable", "off");
  else if (event === "watch") onWatch(d.resource, d.type, d.object);
  else if (event === "denied") {
    if (d.code === 401) return showLogin(d.message);  // the token stopped working mid-stream
    const body = tbody(d.resource);
    if (body) body.innerHTML = `<tr><td colspan="12" class="error">${esc(d.code)}: ${esc(d.message)}</td></tr>`;
  }
}

// Read /api/stream with fetch (EventSource cannot send the Authorization header) and parse its SSE.
async function stream() {
  clearTimeout(S.retryTimer);
  if (S.streamAbort) S.streamAbort.abort();
  const abort = S.streamAbort = new AbortController();
  try {
    const query = S.namespace ? "?namespace=" + encodeURIComponent(S.namespace) : "";
    const resp = await fetch("/api/stream" + query, {headers: authHeaders(), signal: abort.signal});
    if (resp.status === 401) return showLogin((await resp.json()).message);
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    setStatus("live", "on");
    const reader = resp.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        handleMessage(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
    console.warn("stream:", e);
  }
  if (abort.signal.aborted) return;
  setStatus("reconnecting", "off");
  S.retryTimer = setTimeout(stream, 2000);
}

// ---------------------------------------------------------------- metrics.k8s.io samples

async function api(path) {
  const resp = await fetch("/api/proxy/" + path, {headers: authHeaders()});
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function push(key, point) {
  const h = S.history.get(key) || [];
  h.push(point);
  if (h.length > MAX_SAMPLES) h.shift();
  S.history.set(key, h);
}

async function sampleMetrics() {
  const t = Date.now();
  try {
    const podsPath = S.namespace ? `namespaces/${encodeURIComponent(S.namespace)}/pods` : "pods";
    const [pods, nodes] = await Promise.all([api("apis/metrics.k8s.io/v1beta1/" + podsPath),
                                             api("apis/metrics.k8s.io/v1beta1/nodes")]);
    for (const m of pods.items || []) {
      const cpu = (m.containers || []).reduce((s, c) => s + quantity(c.usage?.cpu), 0);
      const mem = (m.containers || []).reduce((s, c) => s + quantity(c.usage?.memory), 0);
      push(`${m.metadata.namespace}/${m.metadata.name}`, {t, cpu: cpu * 1000, mem: mem / 1024 ** 2});
    }
    for (const m of nodes.items || []) {
      S.nodeUsage.set(m.metadata.name, {cpu: quantity(m.usage?.cpu), mem: quantity(m.usage?.memory)});
    }
    for (const k of S.history.keys()) if (!S.stores.pods.has(k)) S.history.delete(k);
    $("#metrics-note").textContent = "";
  } catch (e) {
    $("#metrics-note").textContent = "metrics unavailable";
  }
  for (const k of S.stores.pods.keys()) patchRow("pods", k);
  for (const k of S.stores.nodes.keys()) patchRow("nodes", k);
  if (S.selected) renderCharts();
}

// ---------------------------------------------------------------- pod detail: charts and logs

function renderCharts() {
  const h = S.history.get(S.selected);
  $("#cpu-chart").innerHTML = chart(h, "cpu", 300, 70);
  $("#mem-chart").innerHTML = chart(h, "mem", 300, 70);
}

function renderDetail() {
  const p = S.stores.pods.get(S.selected);
  $("#detail-name").textContent = S.selected + (p ? "" : " (deleted)");
  $("#detail-info").innerHTML = p ? `<span>${esc(podStatus(p))}</span> on <span>${esc(p.spec?.nodeName || "—")}</span>` +
    ` IP <span>${esc(p.status?.podIP || "—")}</span>` : "";
  renderCharts();
}

async function openLogs() {
  if (S.logAbort) S.logAbort.abort();
  const abort = S.logAbort = new AbortController();
  const pre = $("#logs"), [ns, name] = S.selected.split("/");
  pre.textContent = "";
  const params = new URLSearchParams({tailLines: "500", follow: $("#follow").checked ? "true" : "false"});
  if ($("#container").value) params.set("container", $("#container").value);
  try {
    const resp = await fetch(`/api/proxy/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}/log?${params}`,
                             {headers: authHeaders(), signal: abort.signal});
    if (!resp.ok) {
      let msg = `HTTP ${resp.status}`;
      try { msg = (await resp.json()).message || msg; } catch (_) { /* not a Status */ }
      pre.textContent = `error: ${msg}`;
      return;
    }
    const reader = resp.body.getReader(), dec = new TextDecoder();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      pre.textContent = (pre.textContent + dec.decode(value, {stream: true})).slice(-MAX_LOG_CHARS);
      pre.scrollTop = pre.scrollHeight;
    }
    if ($("#follow").checked) pre.textContent += "\n— log stream ended —\n";
  } catch (e) {
    if (!abort.signal.aborted) pre.textContent += `\nerror: ${e}`;
  }
}

function selectPod(key) {
  S.selected = key;
  const p = S.stores.pods.get(key);
  const sel = $("#container");
  sel.innerHTML = (p?.spec?.containers || []).map(c => `<option>${esc(c.name)}</option>`).join("");
  for (const r of tbody("pods").rows) r.classList.toggle("selected", r.dataset.key === key);
  renderDetail();
  openLogs();
}

// ---------------------------------------------------------------- login and start

function showLogin(message) {
  if (S.streamAbort) S.streamAbort.abort();
  clearInterval(S.metricsTimer);
  setStatus("signed out", "off");
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#skip").hidden = !S.settings.skippable;
  $("#login-error").textContent = message || "";
}

async function connect() {
  const resp = await fetch("/api/v1/login/status", {headers: authHeaders()});
  if (resp.status === 401) return showLogin((await resp.json()).message);
  const who = resp.ok ? await resp.json() : {};
  $("#user").textContent = who.user ? `signed in as ${who.user}` : (S.token ? "signed in with a token" : "skip-login identity");
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  stream();
  clearInterval(S.metricsTimer);
  sampleMetrics();
  S.metricsTimer = setInterval(sampleMetrics, S.settings.metricsInterval * 1000);
}

async function start() {
  try { S.settings = await (await fetch("/api/v1/settings")).json(); } catch (_) { /* keep defaults */ }
  // A token in the URL fragment (#token=...) never reaches a server log; keep it for this tab only.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  S.token = sessionStorage.getItem("token");
  if (!S.token && !S.settings.skippable) return showLogin("");
  connect();
}

$("#login-form").addEventListener("submit", ev => {
  ev.preventDefault();
  S.token = $("#token").value.trim() || null;
  if (S.token) sessionStorage.setItem("token", S.token);
  connect();
});
$("#skip").addEventListener("click", () => { S.token = null; sessionStorage.removeItem("token"); connect(); });
$("#logout").addEventListener("click", () => { S.token = null; sessionStorage.removeItem("token"); showLogin(""); });
// A namespace is watched on its own (a user allowed only there still sees it, and may type
// its name when listing namespaces is denied), all of them when the field is empty.
$("#namespace").addEventListener("change", ev => {
  S.namespace = ev.target.value.trim();
  WATCHED.forEach(renderTable);
  setStatus("connecting", "off");
  stream();
});
$("#follow").addEventListener("change", () => S.selected && openLogs());
$("#container").addEventListener("change", () => S.selected && openLogs());
document.addEventListener("click", ev => {
  const b = ev.target.closest("button.logs");
  if (b) selectPod(b.dataset.pod);
});
setInterval(() => { if (!$("#app").hidden) renderTable("events"); }, 30000);  // refresh the "last seen" ages
start();
