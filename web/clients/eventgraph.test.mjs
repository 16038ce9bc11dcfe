// The client core against a scripted server (a fake WebSocket): token expiry by the
// server's clock, refreshes that fail or answer null, feeds resent with `after`, the newest
// view per field. Run by tests/unit/test_client_core.py: node --test web/clients/
import assert from "node:assert/strict";
import { test } from "node:test";
import { createWsClient, newestViews, subscribe, tokenSource } from "./eventgraph.js";

globalThis.atob ??= (s) => Buffer.from(s, "base64").toString("binary");
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const jwt = (exp, sub = "a") => `${b64({ alg: "HS256" })}.${b64({ sub, role: "customer", exp })}.sig`;
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// `behave(socket, initPayload, connection)` decides what the server does after connection_init.
function fakeServer(behave, wire) {
  let connections = 0;
  return class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    constructor(_url, protocol) {
      this.readyState = 0;
      this.protocol = protocol;
      this.connection = ++connections;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.();
      }, 2);
    }
    send(data) {
      const message = JSON.parse(data);
      wire.push(message);
      if (message.type === "connection_init") behave(this, message.payload, this.connection);
    }
    serverClose(code, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason, wasClean: true }), 1);
    }
    close(code, reason) {
      this.serverClose(code, reason);
    }
    deliver(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
  };
}

async function run({ current, refresh, behave, ms }) {
  const wire = [];
  const statuses = [];
  const client = createWsClient({
    url: "ws://server",
    tokens: tokenSource({ current, refresh }),
    onStatus: (state) => statuses.push(state),
    webSocketImpl: fakeServer(behave, wire),
  });
  // Subscriptions waiting on the socket: graphql-ws asks shouldRetry once for each of them.
  const sink = { next() {}, error() {}, complete() {} };
  const stops = [1, 2, 3].map(() => client.subscribe({ query: "subscription { a }" }, sink));
  await sleep(ms);
  for (const stop of stops) stop();
  await Promise.resolve(client.dispose()).catch(() => {});
  return { statuses, inits: wire.filter((m) => m.type === "connection_init") };
}

// The server closes with 4403 once its own clock reaches the token's exp; `ahead`: how
// far its clock runs ahead of the browser's.
function expiring(ahead) {
  return (socket, payload) => {
    socket.deliver({ type: "connection_ack" });
    const token = payload.Authorization.split(" ")[1];
    const exp = JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp;
    const close = () => socket.serverClose(4403, "Forbidden: the token has expired");
    setTimeout(close, exp * 1000 - ahead * 1000 - Date.now()).unref(); // an hour's token: not awaited
  };
}

for (const ahead of [0, 3]) {
  test(`an expired token is refreshed and the socket reconnects (server clock ${ahead} s ahead)`, async () => {
    let token = jwt(now() + 4);
    const { statuses, inits } = await run({
      current: () => token,
      refresh: async () => (token = jwt(now() + 3600)),
      behave: expiring(ahead),
      ms: 4500 - ahead * 1000,
    });
    assert.equal(statuses.at(-1), "connected");
    assert.equal(inits.length, 2); // one reconnect for the socket, whatever it carries
    assert.notEqual(inits[0].payload.Authorization, inits[1].payload.Authorization);
    assert.ok(!statuses.includes("signed-out"));
  });
}

test("a refresh that fails for a while is tried again", async () => {
  let token = jwt(now() + 1);
  let failures = 0;
  const { statuses } = await run({
    current: () => token,
    refresh: async () => {
      if (failures++ < 2) throw new Error("fetch failed");
      return (token = jwt(now() + 3600));
    },
    behave: expiring(0),
    ms: 4500,
  });
  assert.equal(statuses.at(-1), "connected");
  assert.ok(!statuses.includes("signed-out") && !statuses.includes("failed"));
});

test("a token source that answers null signs out, and nothing says reconnecting after", async () => {
  const { statuses } = await run({
    current: () => jwt(now() + 1),
    refresh: async () => null,
    behave: expiring(0),
    ms: 2500,
  });
  assert.equal(statuses.at(-1), "signed-out");
});

test("a fresh token refused again signs out instead of looping", async () => {
  let refreshes = 0;
  const { statuses, inits } = await run({
    current: () => jwt(now() + 3600),
    refresh: async () => {
      refreshes++;
      return jwt(now() + 3600, `r${refreshes}`);
    },
    behave: (socket) => socket.serverClose(4403, "Forbidden"),
    ms: 1500,
  });
  assert.equal(statuses.at(-1), "signed-out");
  assert.equal(inits.length, 2);
  assert.equal(refreshes, 1);
  assert.equal(statuses.filter((s) => s === "signed-out").length, 1);
});

test("a feed resends its subscribe with after = the last position it delivered", async () => {
  const wire = [];
  const client = createWsClient({
    url: "ws://server",
    tokens: tokenSource({ current: () => jwt(now() + 600) }),
    webSocketImpl: fakeServer((socket, _payload, connection) => {
      socket.deliver({ type: "connection_ack" });
      if (connection === 1) {
        setTimeout(() => {
          const id = wire.find((m) => m.type === "subscribe").id;
          socket.deliver({ id, type: "next", payload: { data: { feed: { id: "o1", position: 41 } } } });
          socket.serverClose(1012, "restart");
        }, 20);
      }
    }, wire),
  });
  const query = `fragment F on Order { id position }
    subscription Mine($after: Position, $x: JSON = { a: { b: 1 } }) { feed: myOrders(after: $after) { ...F } }`;
  const got = [];
  const stop = subscribe(client, { query, variables: { after: 7 } }, { next: (r) => got.push(r), error() {}, complete() {} });
  await sleep(2500);
  stop();
  await Promise.resolve(client.dispose()).catch(() => {});
  const sent = wire.filter((m) => m.type === "subscribe").map((m) => m.payload.variables.after);
  assert.deepEqual(sent, [7, 41]);
  assert.equal(got.length, 1);
});

test("the newest view wins field by field", () => {
  const keep = newestViews();
  keep({ o: { __typename: "Order", id: "1", position: 10, amountPaid: "0.00", status: "PLACED" } });
  keep({ o: { __typename: "Order", id: "1", position: 20, status: "PAID" } });
  const late = keep({ o: { __typename: "Order", id: "1", position: 15, amountPaid: "5.00", status: "PLACED" } });
  assert.deepEqual(late.o, { __typename: "Order", id: "1", position: 20, amountPaid: "5.00", status: "PAID" });
});
