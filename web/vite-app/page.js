// What the example pages share: the API's address, the token (and how the page gets a new
// one), and rendering what a client holds. The browser tests load each page with
// ?api=<server>&sku=<product>[&after=<position>][&feed=orders|myOrders][&guard=off] and a token in
// window.EVENTGRAPH_TOKEN; window.refreshToken(), when defined, mints a fresh one.
import { tokenSource } from "../clients/eventgraph.js";

export const params = new URLSearchParams(window.location.search);
export const api = `${params.get("api")}/graphql`;
export const sku = params.get("sku");

let token = window.EVENTGRAPH_TOKEN;
export const tokens = tokenSource({
  current: () => token,
  refresh: window.refreshToken ? async () => (token = await window.refreshToken()) : null,
});

export const FEED = params.get("feed") === "orders" ? "orders" : "myOrders";
export const FEED_DOCUMENT = `subscription Feed($after: Position) {
  ${FEED}(after: $after) { id status position } }`;
export const firstAfter = Number(params.get("after") || 0);

export function show(id, value, state = "ok") {
  const node = document.getElementById(id);
  node.dataset.state = state;
  node.textContent = typeof value === "string" ? value : JSON.stringify(value);
}

// The feed as the page holds it: the newest view of each order, and every position seen.
const feed = new Map();
const positions = [];
export function received(order) {
  positions.push(order.position);
  const held = feed.get(order.id);
  if (!held || held.position < order.position) feed.set(order.id, order);
  show("feed", [...feed.values()].map((o) => `${o.id}:${o.status}`).join(" "));
  document.getElementById("feed").dataset.count = String(feed.size);
}
window.feedState = () => ({ orders: Object.fromEntries([...feed].map(([id, o]) => [id, o.status])), positions });
export const onStatus = (state, detail) => {
  console.log("status", state, detail ?? "");
  show("status", state, state);
};
