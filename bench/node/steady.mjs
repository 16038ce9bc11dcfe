// Live delivery through a window of time, from a light client in its own process
// (bench/deadlines.py runs it). Like live.mjs: N WebSockets (graphql-transport-ws, spoken
// directly on `ws`), each subscribed to the view of one of V products, and orders placed on
// random ones of those products over HTTP at R/s. Unlike live.mjs, the stream runs until a
// line "stop" arrives on standard input (or `maxSeconds` pass), and every delivery is
// reported with the wall-clock time its mutation was SENT, so that the orchestrator can cut
// the run into windows (before, during and after something it does to the server).
//
//   node steady.mjs url=http://127.0.0.1:8000 staff=<jwt> customer=<jwt> subscribers=300 \
//        views=30 rate=50 prefix=STEADY maxSeconds=600
//
// Prints {"phase":"subscribed",...}, {"phase":"streaming","at":<epoch ms>} and, after the
// stop and 3 s for stragglers, {"phase":"done","orders":[[sentEpochMs, mutationMs | null,
// missed, [deliveryMs, ...]], ...], ...}: a delivery is the time from the mutation being
// sent to one subscriber of its product holding a view at or past the order's position.
import { client, registerProducts, subscribeProducts } from "./products.mjs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";

const arg = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = arg.url;
const subscribers = Number(arg.subscribers ?? 300);
const views = Number(arg.views ?? 30);
const rate = Number(arg.rate ?? 50);
const maxSeconds = Number(arg.maxSeconds ?? 600);
const prefix = arg.prefix ?? "STEADY";
const skus = Array.from({ length: views }, (_, i) => `${prefix}-${i}`);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const epoch = (t) => performance.timeOrigin + t;

const gql = client(base);

// ---- products, and the subscribers: per subscriber, the (time, position) of every view
await registerProducts(gql, arg.staff, skus);
const subscribed = await subscribeProducts(base, arg.customer, skus, subscribers);
const { receipts, sockets, failed, connectSeconds } = subscribed;
say({ phase: "subscribed", subscribers, failed, connectSeconds });

// ---- the stream: orders at `rate` per second on random products, until "stop"
let stopped = false;
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stop") stopped = true;
});
const orders = [];
const PLACE = `mutation($sku: String!) { placeOrder(lines: [{ sku: $sku, quantity: 1 }]) { position } }`;
const started = performance.now();
say({ phase: "streaming", at: epoch(started) });
const inFlight = [];
for (let k = 0; !stopped && performance.now() - started < maxSeconds * 1000; k++) {
  const wait = started + (k * 1000) / rate - performance.now();
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
await new Promise((r) => setTimeout(r, 3000)); // stragglers

// ---- every order's deliveries
const rows = [];
for (const order of orders) {
  const deliveries = [];
  let missed = 0;
  if (order.position !== null) {
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
      else deliveries.push(Math.round(Math.max(0, times[lo] - order.sent) * 100) / 100);
    }
  }
  rows.push([
    Math.round(epoch(order.sent) * 10) / 10,
    order.answered === null ? null : Math.round((order.answered - order.sent) * 100) / 100,
    missed,
    deliveries,
  ]);
}
let outOfOrder = 0;
for (const { positions } of receipts) for (let i = 1; i < positions.length; i++) if (positions[i] <= positions[i - 1]) outOfOrder += 1;
for (const ws of sockets) ws.terminate();
// A long line to a pipe: exit only once it is written (process.exit would cut it short).
process.stdout.write(
  JSON.stringify({ phase: "done", subscribers, views, rate, failedConnections: failed, closedEarly: subscribed.closedEarly, outOfOrder, orders: rows }) + "\n",
  () => process.exit(0),
);
