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

function renderTopics(c) {
  const showInternal = document.getElementById("internal").checked;
  const brokers = c.brokers.map((b) => b.id);
  const blocks = c.topics.filter((t) => showInternal || !t.internal).map((t) => {
    const head = el("tr", {}, el("th", {}, "partition"),
      ...brokers.map((b) => el("th", {}, `broker ${b}`)));
    const rows = t.partitions.map((p) => el("tr", { "data-topic": t.name, "data-partition": p.partition,
      "data-leader": p.leader === null ? -1 : p.leader },
      el("th", {}, String(p.partition)),
      ...brokers.map((b) => {
        if (!p.replicas.includes(b)) return el("td", {});
        const r = role(p, b);
        return el("td", {}, el("span", { class: `cell ${r}`, "data-topic": t.name,
          "data-partition": p.partition, "data-broker": b, "data-role": r,
          title: `${t.name}-${p.partition} on broker ${b}: ${r}` }, LABEL[r]));
      }),
      p.leader === null ? el("td", { class: "none" }, "no leader") : el("td", {})));
    return el("section", { "data-topic": t.name }, el("h2", {}, t.name), el("table", {}, head, ...rows));
  });
  document.getElementById("topics").replaceChildren(...blocks);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/cluster", { cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
    const c = await r.json();
    document.getElementById("cluster").textContent =
      `cluster ${c.cluster_id ?? "?"} \u00b7 seen from broker ${c.node_id}`;
    renderBrokers(c);
    renderTopics(c);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.textContent = `cannot reach the broker: ${e.message}`;
  }
}

document.getElementById("internal").addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
