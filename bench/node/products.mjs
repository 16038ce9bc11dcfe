// What live.mjs and steady.mjs share: the API over HTTP, the products they order from, and N
// WebSockets (graphql-transport-ws, spoken directly on `ws`), each subscribed to the live view
// of one of those products, recording the (time, position) of every view it receives.
import WebSocket from "ws";
import { performance } from "node:perf_hooks";

export function client(base) {
  return async function gql(token, query, variables) {
    const response = await fetch(`${base}/graphql`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors) throw new Error(JSON.stringify(body.errors));
    return body.data;
  };
}

export async function registerProducts(gql, staff, skus) {
  for (let i = 0; i < skus.length; i += 50) {
    await Promise.all(
      skus.slice(i, i + 50).map((sku) =>
        gql(staff, `mutation($sku: String!) { registerProduct(sku: $sku, name: "Bench", unitPrice: "1.00", initialStock: 100000000) { position } }`, { sku }),
      ),
    );
  }
}

const SUBSCRIBE = JSON.stringify({
  id: "1",
  type: "subscribe",
  payload: { query: "subscription($sku: String!) { product(sku: $sku) { position } }", variables: {} },
});

// `subscribers` sockets, subscriber i on skus[i % skus.length], opened 250 at a time. Returns
// { receipts, sockets, failed, closedEarly, connectSeconds }; closedEarly counts on as sockets
// close later (read it at the end).
export async function subscribeProducts(base, token, skus, subscribers) {
  const wsUrl = base.replace(/^http/, "ws") + "/graphql";
  const state = {
    receipts: Array.from({ length: subscribers }, () => ({ times: [], positions: [] })),
    sockets: [],
    failed: 0,
    closedEarly: 0,
    connectSeconds: 0,
  };

  function open(index) {
    return new Promise((resolve) => {
      const sku = skus[index % skus.length];
      const ws = new WebSocket(wsUrl, "graphql-transport-ws", { perMessageDeflate: false });
      let ready = false;
      ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } })));
      ws.on("message", (data) => {
        const message = JSON.parse(data);
        if (message.type === "connection_ack") {
          ws.send(SUBSCRIBE.replace('"variables":{}', `"variables":{"sku":"${sku}"}`));
        } else if (message.type === "next") {
          const r = state.receipts[index];
          r.times.push(performance.now());
          r.positions.push(message.payload.data.product.position);
          if (!ready) {
            ready = true;
            resolve(true);
          }
        } else if (message.type === "ping") {
          ws.send('{"type":"pong"}');
        }
      });
      ws.on("error", () => {
        if (!ready) {
          state.failed += 1;
          ready = true;
          resolve(false);
        }
      });
      ws.on("close", () => {
        if (ready) state.closedEarly += 1;
        else {
          state.failed += 1;
          ready = true;
          resolve(false);
        }
      });
      state.sockets.push(ws);
    });
  }

  const started = performance.now();
  for (let i = 0; i < subscribers; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(subscribers, i + 250); j++) batch.push(open(j));
    await Promise.all(batch);
  }
  state.connectSeconds = (performance.now() - started) / 1000;
  return state;
}
