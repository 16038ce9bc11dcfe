// Resumable feeds: how long a feed resumed after N changes takes to deliver them, from a
// light client in its own process (bench/feed_resume.py runs it against `eventgraph serve`).
//
// Prepares: one product with a large stock; then H orders of history (history=H, default 0)
// placed by OTHER customers (others=<jwt>,<jwt>,..., taking turns), all answered before P0
// is taken; then N orders placed by ONE customer over HTTP (C requests in flight), so every
// one of them is one change after P0 (the last position before them: the product's
// registration, or the last history order's). The history makes the tables larger without
// changing what happened after P0. Then, in each round, in an order that rotates between
// rounds:
//   staffFeed     subscription orders(after: P0)    (staff: every order)
//   customerFeed  subscription myOrders(after: P0)  (that customer: all N are theirs)
//   staffPaged    query orders(first: 100, after: cursor) over HTTP, page after page, until
//                 the N newest orders (those after P0; newest first, so the history is not
//                 read) (baseline)
//   customerPaged the same query as the customer, to its last page (only its N orders)
//   eventsFeed    subscription events(after: P0) until the head (2 events per order: the
//                 order's and the product's reservation; a second baseline)
// A feed is timed from the moment `subscribe` is sent (the socket is open and acknowledged
// before) until the N-th distinct order view arrives; also the first view. Views must be N
// distinct orders with strictly increasing positions. CPU seconds of the server process,
// of every `postgres` process and of this client are read from /proc around each figure.
// Prints one JSON line per phase. The driver runs mode=prepare against one server and
// mode=measure against a second one started on the same database: a feed resumed after a
// restart (bench/feed_resume.py).
//
//   node feed-resume.mjs mode=prepare url=http://127.0.0.1:8000 staff=<jwt> customer=<jwt> \
//        orders=10000 concurrency=32 history=50000 others=<jwt>,<jwt>
//   node feed-resume.mjs mode=measure url=... staff=... customer=... orders=10000 p0=<P0> \
//        head=<head> rounds=3 serverPid=1234
import WebSocket from "ws";
import { performance } from "node:perf_hooks";
import { readdirSync, readFileSync } from "node:fs";

const arg = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = arg.url;
const N = Number(arg.orders ?? 10000);
const concurrency = Number(arg.concurrency ?? 32);
const H = Number(arg.history ?? 0);
const others = (arg.others ?? "").split(",").filter(Boolean);
const rounds = Number(arg.rounds ?? 3);
const serverPid = Number(arg.serverPid ?? 0);
const wsUrl = base.replace(/^http/, "ws") + "/graphql";
const sku = `FEED-${Date.now()}`;
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// ---- CPU from /proc (Linux): the server, PostgreSQL's processes, this client
const TICK = 100; // USER_HZ
function cpuOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), s: (Number(fields[11]) + Number(fields[12])) / TICK };
  } catch {
    return null;
  }
}
function cpuNow() {
  let postgres = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const c = cpuOf(entry);
    if (c && c.comm === "postgres") postgres += c.s;
  }
  const usage = process.cpuUsage();
  return { server: serverPid ? cpuOf(serverPid)?.s ?? 0 : 0, postgres, client: (usage.user + usage.system) / 1e6 };
}
function cpuSince(before) {
  const now = cpuNow();
  return Object.fromEntries(Object.keys(now).map((k) => [k, Math.round((now[k] - before[k]) * 1000) / 1000]));
}

async function gql(token, query, variables) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

// ---- prepare (mode=prepare): print P0 and the head, and exit
if (arg.mode === "prepare") {
  const registered = await gql(
    arg.staff,
    `mutation($sku: String!) { registerProduct(sku: $sku, name: "Feed", unitPrice: "1.00", initialStock: 1000000000) { position } }`,
    { sku },
  );
  let head = registered.registerProduct.position;
  const PLACE = `mutation($lines: [OrderLineInput!]!) { placeOrder(lines: $lines) { position } }`;
  // n orders, `concurrency` in flight, the k-th by tokenOf(k); every one answered on return
  async function place(n, tokenOf) {
    let placed = 0;
    const started = performance.now();
    const cpu = cpuNow();
    async function placer() {
      while (placed < n) {
        const k = placed++;
        const data = await gql(tokenOf(k), PLACE, { lines: [{ sku, quantity: 1 }] });
        head = Math.max(head, data.placeOrder.position);
      }
    }
    await Promise.all(Array.from({ length: concurrency }, placer));
    const ms = performance.now() - started;
    return { ms: Math.round(ms), ordersPerSecond: Math.round(n / (ms / 1000)), cpu: cpuSince(cpu) };
  }
  if (H > 0) {
    if (others.length === 0) throw new Error("history=H needs others=<jwt>,...");
    const h = await place(H, (k) => others[k % others.length]);
    say({ phase: "history", orders: H, customers: others.length, concurrency, head, events: head, prepareMs: h.ms, ordersPerSecond: h.ordersPerSecond, cpu: h.cpu });
  }
  const p0 = head; // every earlier order has been answered: its appends are committed
  const m = await place(N, () => arg.customer);
  say({ phase: "prepared", orders: N, history: H, concurrency, p0, head, events: head - p0, prepareMs: m.ms, ordersPerSecond: m.ordersPerSecond, cpu: m.cpu });
  process.exit(0);
}

// ---- measure (mode=measure p0=.. head=..): first, the read model holds every order
const p0 = Number(arg.p0);
const head = Number(arg.head);
{
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      await gql(arg.staff, `query($at: Position) { orders(first: 1, atLeast: $at) { edges { cursor } } }`, { at: head });
      break;
    } catch (e) {
      if (attempt === 60) throw e;
    }
  }
  say({ phase: "caughtUp", ms: Math.round(performance.now() - started) });
}

// ---- a feed over graphql-transport-ws, spoken directly on `ws`
function feed(token, query, variables, field, expected, distinctOf) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, "graphql-transport-ws", { perMessageDeflate: false });
    let sent = 0;
    let first = null;
    let views = 0;
    let last = -Infinity;
    let increasing = true;
    const seen = new Set();
    let cpu = null;
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`${field}: timed out with ${seen.size} of ${expected}`)); }, 120_000);
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } })));
    ws.on("message", (data) => {
      const message = JSON.parse(data);
      if (message.type === "connection_ack") {
        cpu = cpuNow();
        sent = performance.now();
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables } }));
      } else if (message.type === "next") {
        const now = performance.now();
        if (message.payload.errors) { clearTimeout(timer); ws.terminate(); reject(new Error(JSON.stringify(message.payload.errors))); return; }
        const view = message.payload.data[field];
        if (first === null) first = now - sent;
        views += 1;
        if (!(view.position > last)) increasing = false;
        last = view.position;
        seen.add(distinctOf(view));
        if (seen.size === expected) {
          const total = now - sent;
          const used = cpuSince(cpu);
          clearTimeout(timer);
          ws.send(JSON.stringify({ id: "1", type: "complete" }));
          ws.close();
          resolve({ firstMs: round1(first), totalMs: round1(total), views, distinct: seen.size, increasing, lastPosition: last, cpu: used });
        }
      } else if (message.type === "ping") {
        ws.send('{"type":"pong"}');
      } else if (message.type === "error" || message.type === "complete") {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(`${field}: ${data}`));
      }
    });
    ws.on("error", (e) => { clearTimeout(timer); reject(e); });
  });
}
const round1 = (x) => Math.round(x * 10) / 10;

const ORDER_FIELDS = "id status position";
const PAGED = `query($after: String) { orders(first: 100, after: $after) { edges { cursor node { ${ORDER_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;

async function paged(token, wanted) {
  const cpu = cpuNow();
  const sent = performance.now();
  const seen = new Set();
  let after = null;
  let first = null;
  let pages = 0;
  const afterP0 = new Set();
  for (;;) {
    const data = await gql(token, PAGED, { after });
    pages += 1;
    if (first === null) first = performance.now() - sent;
    for (const edge of data.orders.edges) {
      seen.add(edge.node.id);
      if (edge.node.position > p0) afterP0.add(edge.node.id);
    }
    if (!data.orders.pageInfo.hasNextPage || seen.size >= wanted) break;
    after = data.orders.pageInfo.endCursor;
  }
  const total = performance.now() - sent;
  return { firstMs: round1(first), totalMs: round1(total), pages, distinct: seen.size, afterP0: afterP0.size, cpu: cpuSince(cpu) };
}

const phases = {
  staffFeed: () => feed(arg.staff, `subscription($after: Position) { orders(after: $after) { ${ORDER_FIELDS} } }`, { after: p0 }, "orders", N, (v) => v.id),
  customerFeed: () => feed(arg.customer, `subscription($after: Position) { myOrders(after: $after) { ${ORDER_FIELDS} } }`, { after: p0 }, "myOrders", N, (v) => v.id),
  staffPaged: () => paged(arg.staff, N), // the N newest: those after P0
  customerPaged: () => paged(arg.customer, Infinity), // to the end: only its N orders
  eventsFeed: () => feed(arg.staff, `subscription($after: Position) { events(after: $after) { position type } }`, { after: p0 }, "events", head - p0, (v) => v.position),
};
const names = Object.keys(phases);
for (let r = 0; r < rounds; r++) {
  const order = names.map((_, i) => names[(i + r) % names.length]);
  for (const name of order) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const result = await phases[name]();
    say({ phase: name, round: r + 1, ...result });
  }
}
process.exit(0);
