// Fan-out of one change to N subscribers of ONE view, until the last holds it, beside the
// floor: a plain Starlette WebSocket broadcast of a message of the same size to N sockets on
// the same server (bench/app.py's /bench/ws). Both timed from the moment the request that
// causes them is sent; rounds alternate between the two. bench/fanout.py runs it.
//
//   node fanout.mjs url=http://127.0.0.1:8000 staff=<jwt> viewer=<jwt> clients=5000 rounds=10
import WebSocket from "ws";
import { performance } from "node:perf_hooks";

const arg = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = arg.url;
const clients = Number(arg.clients ?? 5000);
const rounds = Number(arg.rounds ?? 10);
const wsBase = base.replace(/^http/, "ws");
const sku = `FAN-${Date.now()}`;
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function post(path, token, body, type = "application/json") {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "Content-Type": type, Authorization: `Bearer ${token}` },
    body,
  });
  return response.json();
}
const gql = (token, query, variables) => post("/graphql", token, JSON.stringify({ query, variables }));

await gql(arg.staff, `mutation($sku: String!) { registerProduct(sku: $sku, name: "Fan", unitPrice: "1.00", initialStock: 10) { position } }`, { sku });

// One arrival counter per kind; each round waits for all N.
let expected = 0;
let arrived = 0;
let done = null;
function arrive() {
  arrived += 1;
  if (arrived === expected && done) done(performance.now());
}

const plain = [];
const live = [];
let lastPayload = "";
function openPlain() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/bench/ws`, { perMessageDeflate: false });
    ws.on("open", () => resolve(ws));
    ws.on("message", arrive);
    ws.on("error", reject);
    plain.push(ws);
  });
}
function openLive() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/graphql`, "graphql-transport-ws", { perMessageDeflate: false });
    let subscribed = false;
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${arg.viewer}` } })));
    ws.on("message", (data) => {
      const text = data.toString();
      if (text.includes('"connection_ack"')) {
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: "subscription($sku: String!) { product(sku: $sku) { sku onHand reserved available position } }", variables: { sku } } }));
      } else if (text.includes('"next"')) {
        lastPayload = text;
        if (!subscribed) {
          subscribed = true;
          resolve(ws);
        } else arrive();
      }
    });
    ws.on("error", reject);
    live.push(ws);
  });
}
for (let i = 0; i < clients; i += 250) {
  const batch = [];
  for (let j = i; j < Math.min(clients, i + 250); j++) batch.push(openPlain(), openLive());
  await Promise.all(batch);
}
await new Promise((r) => setTimeout(r, 2000));

async function round(kind) {
  expected = clients;
  arrived = 0;
  const finished = new Promise((resolve) => { done = resolve; });
  const sent = performance.now();
  if (kind === "plain") await post("/bench/broadcast", arg.staff, lastPayload, "text/plain");
  else await gql(arg.staff, `mutation($sku: String!) { restockProduct(sku: $sku, quantity: 1) { position } }`, { sku });
  const last = await Promise.race([finished, new Promise((r) => setTimeout(() => r(null), 20000))]);
  done = null;
  await new Promise((r) => setTimeout(r, 300));
  return last === null ? null : last - sent;
}

const times = { plain: [], live: [] };
for (let r = 0; r < rounds; r++) {
  for (const kind of r % 2 ? ["live", "plain"] : ["plain", "live"]) times[kind].push(await round(kind));
}
const median = (xs) => { const s = xs.filter((x) => x !== null).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };
say({ clients, rounds, payloadBytes: lastPayload.length, plainMs: times.plain, liveMs: times.live, plainMedianMs: median(times.plain), liveMedianMs: median(times.live), ratio: median(times.live) / median(times.plain) });
for (const ws of [...plain, ...live]) ws.terminate();
process.exit(0);
