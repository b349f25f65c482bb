// The cluster as a picture: brokers x partitions, with each replica's role in colour. Reads
// /api/cluster every two seconds; every cell carries data-topic, data-partition, data-broker
// and data-role (leader, follower, lagging, offline) for tests and scripts.
"use strict";

const REFRESH_MS = 2000;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function role(p, broker) {
  if (p.offline.includes(broker)) return "offline";
  if (p.leader === broker) return "leader";
  return p.isr.includes(broker) ? "follower" : "lagging";
}

const LABEL = { leader: "L", follower: "F", lagging: "F", offline: "\u00d7" };

function renderBrokers(c) {
  const section = document.getElementById("brokers");
  section.replaceChildren(...c.brokers.map((b) => {
    const box = el("div", { class: "broker" + (b.live ? "" : " down"), "data-broker": b.id,
      "data-live": b.live },
      `broker ${b.id}`, el("br"), `${b.host}:${b.port}`, b.live ? "" : " (down)");
    if (c.controller === b.id) box.append(el("span", { class: "controller" }, "controller"));
    return box;
  }));
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function renderQuorum(c) {
  const q = c.quorum;
  const voters = q.voters.map((v) => `node ${v.id}${v.lag === null ? "" : ` (${v.lag} behind)`}`);
  document.getElementById("quorum").replaceChildren(
    el("span", { "data-term": q.term, "data-committed": q.committed },
      `metadata quorum: controller ${c.controller ?? "none"}, term ${q.term}, ` +
      `commit index ${q.committed}; voters ${voters.join(", ")}`));
}

function renderTopics(c) {
  const showInternal = document.getElementById("internal").checked;
  const brokers = c.brokers.map((b) => b.id);
  const blocks = c.topics.filter((t) => showInternal || !t.internal).map((t) => {
    const head = el("tr", {}, el("th", {}, "partition"),
      ...brokers.map((b) => el("th", {}, `broker ${b}`)));
    const rows = t.partitions.map((p) => el("tr", { "data-topic": t.name, "data-partition": p.partition,
      "data-leader": p.leader === null ? -1 : p.leader },
      el("th", { title: p.size === null ? "" : `${size(p.size)} on broker ${c.node_id}` },
        String(p.partition)),
      ...brokers.map((b) => {
        if (!p.replicas.includes(b)) return el("td", {});
        const r = role(p, b);
        return el("td", {}, el("span", { class: `cell ${r}`, "data-topic": t.name,
          "data-partition": p.partition, "data-broker": b, "data-role": r,
          title: `${t.name}-${p.partition} on broker ${b}: ${r}` }, LABEL[r]));
      }),
      p.leader === null ? el("td", { class: "none" }, "no leader") : el("td", {})));
    const configs = Object.entries(t.configs).map(([k, v]) => `${k}=${v}`).join(", ");
    const bytes = t.partitions.reduce((n, p) => n + (p.size ?? 0), 0);
    return el("section", { "data-topic": t.name }, el("h2", {}, t.name),
      el("p", { class: "configs" }, `${t.partitions.length} partitions, ${size(bytes)} here` +
        (configs ? ` \u00b7 ${configs}` : " \u00b7 broker defaults")),
      el("table", {}, head, ...rows));
  });
  document.getElementById("topics").replaceChildren(...blocks);
}

// Each group's total lag at each refresh, the last LAG_POINTS of them.
const LAG_POINTS = 90;
const lagHistory = new Map();
const SVG = "http://www.w3.org/2000/svg";

function lagChart(group, points) {
  const w = 360, h = 120, pad = 4;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "lag");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("data-group", group);
  svg.setAttribute("data-points", JSON.stringify(points));
  const max = Math.max(1, ...points);
  const step = (w - 2 * pad) / Math.max(1, LAG_POINTS - 1);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((v, i) =>
    `${pad + i * step},${h - pad - (v / max) * (h - 2 * pad - 12)}`).join(" "));
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", pad + 2);
  label.setAttribute("y", 11);
  label.textContent = `lag over time (max ${max})`;
  svg.append(label, line);
  return svg;
}

function renderGroups(groups, tick) {
  const section = document.getElementById("groups");
  // Groups that went away take their history with them.
  const present = new Set(groups.map((g) => g.group_id));
  for (const id of lagHistory.keys()) if (!present.has(id)) lagHistory.delete(id);
  if (groups.length === 0) {
    section.replaceChildren(el("p", {}, "none"));
    return;
  }
  section.replaceChildren(...groups.map((g) => {
    const history = lagHistory.get(g.group_id) ?? [];
    // One point per timed refresh, where the whole lag is known.
    if (tick && g.lag !== null) history.push(g.lag);
    if (history.length > LAG_POINTS) history.shift();
    lagHistory.set(g.group_id, history);
    const lag = g.lag === null ? "?" : String(g.lag);
    const rows = g.offsets.map((o) => el("tr", { "data-topic": o.topic, "data-partition": o.partition },
      el("td", {}, o.topic), el("td", {}, String(o.partition)), el("td", {}, String(o.committed)),
      el("td", {}, o.high_watermark === null ? "?" : String(o.high_watermark)),
      el("td", { "data-lag": o.lag ?? "" }, o.lag === null ? "?" : String(o.lag))));
    const assigned = (m) => Object.entries(m.assignment)
      .map(([t, ps]) => `${t} [${ps.join(", ")}]`).join("; ") || "nothing assigned";
    const members = g.members.length === 0 ? [el("li", {}, "no members")] :
      g.members.map((m) => el("li", { "data-member": m.member_id },
        `${m.client_id} (${m.host}): ${assigned(m)}`));
    return el("section", { class: "group", "data-group": g.group_id, "data-lag": g.lag ?? "" },
      el("div", {}, el("h3", {}, `${g.group_id} `, el("small", {}, `${g.state}, ${g.protocol}, lag ${lag}`)),
        el("ul", { class: "members" }, ...members),
        el("table", {}, el("tr", {}, ...["topic", "partition", "committed", "end", "lag"].map((h) => el("th", {}, h))),
          ...rows)),
      lagChart(g.group_id, history));
  }));
}

async function refresh(tick = false) {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/cluster", { cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
    const c = await r.json();
    document.getElementById("cluster").textContent =
      `cluster ${c.cluster_id ?? "?"} \u00b7 seen from broker ${c.node_id}`;
    renderBrokers(c);
    renderQuorum(c);
    renderTopics(c);
    fillTopics(c);
    const g = await fetch("/api/groups", { cache: "no-store" });
    if (!g.ok) throw new Error(`${g.status} ${g.statusText}`);
    renderGroups(await g.json(), tick);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.textContent = `cannot reach the broker: ${e.message}`;
  }
}

// Message browsing: the records of one partition from an offset, or from a time.
let topicsKnown = "";

function fillTopics(c) {
  const names = c.topics.map((t) => t.name);
  if (names.join("\n") === topicsKnown) return;
  topicsKnown = names.join("\n");
  const select = document.getElementById("b-topic");
  const chosen = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n, textContent: n })));
  if (names.includes(chosen)) select.value = chosen;
}

function localTime(ms) {
  const d = new Date(ms);
  if (!Number.isFinite(d.getTime())) return String(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

async function browse(event) {
  event?.preventDefault();
  const status = document.getElementById("b-status");
  try {
    await browseOnce(status);
  } catch (e) {
    status.textContent = `cannot read: ${e.message}`;
  }
}

async function browseOnce(status) {
  const params = new URLSearchParams({
    topic: document.getElementById("b-topic").value,
    partition: document.getElementById("b-partition").value || "0",
    limit: document.getElementById("b-limit").value || "20",
  });
  const time = document.getElementById("b-time").value;
  if (time) params.set("timestamp", String(new Date(time).getTime()));
  else params.set("offset", document.getElementById("b-offset").value || "0");
  const r = await fetch(`/api/messages?${params}`, { cache: "no-store" });
  const body = await r.json();
  const table = document.getElementById("messages");
  if (!r.ok) {
    status.textContent = body.error;
    table.replaceChildren();
    return;
  }
  status.textContent = `${body.records.length} records from offset ${body.from}, next ${body.next} ` +
    `(committed up to ${body.last_stable_offset}, end ${body.high_watermark})`;
  table.replaceChildren(el("tr", {}, ...["offset", "local time", "key", "value"].map((h) => el("th", {}, h))),
    ...body.records.map((m) => el("tr", { "data-offset": m.offset },
      el("td", {}, String(m.offset)), el("td", {}, localTime(m.timestamp)),
      el("td", { "data-key": "" }, m.key ?? "null"), el("td", { "data-value": "" }, m.value ?? "null"))));
  table.dataset.loaded = params.toString();
}

async function sendMessage(event) {
  event.preventDefault();
  const status = document.getElementById("s-status");
  try {
    await sendOnce(status);
  } catch (e) {
    status.textContent = `not sent: ${e.message}`;
    status.dataset.sent = "error";
  }
}

async function sendOnce(status) {
  const partition = document.getElementById("s-partition").value;
  const record = {
    topic: document.getElementById("b-topic").value,
    key: document.getElementById("s-key").value || null,
    value: document.getElementById("s-value").value,
  };
  if (partition !== "") record.partition = Number(partition);
  const r = await fetch("/api/messages", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(record),
  });
  const body = await r.json();
  status.textContent = r.ok ? `written to ${body.topic}-${body.partition} at offset ${body.offset}`
    : `not sent: ${body.error}`;
  status.dataset.sent = r.ok ? `${body.partition}:${body.offset}` : "error";
}

document.getElementById("browse").addEventListener("submit", browse);
document.getElementById("send").addEventListener("submit", sendMessage);
document.getElementById("internal").addEventListener("change", () => refresh(false));

// The next refresh is timed from the end of the last, so they never overlap.
async function tick() {
  await refresh(true);
  setTimeout(tick, REFRESH_MS);
}
tick();
