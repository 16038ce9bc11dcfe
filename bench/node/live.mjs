// Live delivery under load, from a light client in its own process (bench/live.py runs it).
// Opens N WebSockets (graphql-transport-ws, spoken directly on `ws`), each subscribed to the
// view of one of V products, then places orders at R/s over HTTP on random products and
// records, for each order and each subscriber of its product, the time from the moment the
// mutation was SENT to the moment that subscriber held a view at or past the order's
// position. Prints one JSON object with the figures.
//
//   node live.mjs url=http://127.0.0.1:8000 staff=<jwt> customer=<jwt> subscribers=1000 \
//        views=100 rate=100 seconds=20 prefix=LIVE
import { client, registerProducts, subscribeProducts } from "./products.mjs";
import { performance } from "node:perf_hooks";

const arg = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = arg.url;
const subscribers = Number(arg.subscribers ?? 1000);
const views = Number(arg.views ?? 100);
const rate = Number(arg.rate ?? 100);
const seconds = Number(arg.seconds ?? 20);
const prefix = arg.prefix ?? "LIVE";
const skus = Array.from({ length: views }, (_, i) => `${prefix}-${i}`);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const gql = client(base);

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// ---- products, and the subscribers: per subscriber, the (time, position) of every view
await registerProducts(gql, arg.staff, skus);
const subscribed = await subscribeProducts(base, arg.customer, skus, subscribers);
const { receipts, sockets, failed, connectSeconds } = subscribed;
say({ phase: "subscribed", subscribers, failed, connectSeconds });
await new Promise((r) => setTimeout(r, Number(arg.settle ?? 3000))); // the orchestrator reads memory now

// ---- load: orders at `rate` per second on random products
const orders = [];
const PLACE = `mutation($sku: String!) { placeOrder(lines: [{ sku: $sku, quantity: 1 }]) { position } }`;
const started = performance.now();
const total = Math.round(rate * seconds);
const inFlight = [];
for (let k = 0; k < total; k++) {
  const due = started + (k * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const product = Math.floor(Math.random() * views);
  const order = { product, sent: performance.now(), answered: null, position: null };
  orders.push(order);
  inFlight.push(
    gql(arg.customer, PLACE, { sku: skus[product] }).then(
      (data) => {
        order.answered = performance.now();
        order.position = data.placeOrder.position;
      },
      () => {},
    ),
  );
}
await Promise.all(inFlight);
const loadSeconds = (performance.now() - started) / 1000;
await new Promise((r) => setTimeout(r, 3000)); // stragglers

// ---- figures
const delivery = [];
const bySecond = [];
let missed = 0;
for (const order of orders) {
  if (order.position === null) continue;
  for (let s = order.product; s < subscribers; s += views) {
    const { times, positions } = receipts[s];
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (positions[mid] >= order.position) hi = mid;
      else lo = mid + 1;
    }
    if (lo === positions.length) missed += 1;
    else {
      const ms = Math.max(0, times[lo] - order.sent);
      delivery.push(ms);
      const second = Math.floor((order.sent - started) / 1000);
      (bySecond[second] ??= []).push(ms);
    }
  }
}
delivery.sort((a, b) => a - b);
const mutation = orders.filter((o) => o.answered !== null).map((o) => o.answered - o.sent).sort((a, b) => a - b);
let outOfOrder = 0;
for (const { positions } of receipts) for (let i = 1; i < positions.length; i++) if (positions[i] <= positions[i - 1]) outOfOrder += 1;
say({
  phase: "done",
  subscribers,
  views,
  rate,
  seconds,
  connectSeconds,
  failedConnections: failed,
  closedEarly: subscribed.closedEarly,
  ordersSent: orders.length,
  ordersAnswered: mutation.length,
  achievedRate: mutation.length / loadSeconds,
  mutationMs: { p50: quantile(mutation, 0.5), p99: quantile(mutation, 0.99) },
  deliveryMs: { p50: quantile(delivery, 0.5), p99: quantile(delivery, 0.99), max: delivery.at(-1) ?? null },
  deliveries: delivery.length,
  missed,
  outOfOrder,
  // the worst delivery of the orders sent in each second of the load: when stalls happen
  maxMsBySecond: bySecond.map((ms) => Math.round(Math.max(...ms))),
});
for (const ws of sockets) ws.terminate();
process.exit(0);
