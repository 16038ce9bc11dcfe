// A frontend team's app on its own dev server (another origin): it queries, mutates and
// subscribes against `eventgraph serve` directly, with no proxy. The browser tests load it
// with ?api=<server>&sku=<product> and a token in window.EVENTGRAPH_TOKEN.
import { createClient } from "graphql-ws";

const params = new URLSearchParams(window.location.search);
const api = params.get("api");
const sku = params.get("sku");
const token = window.EVENTGRAPH_TOKEN;

function show(id, state, value) {
  const node = document.getElementById(id);
  node.dataset.state = state;
  node.textContent = typeof value === "string" ? value : JSON.stringify(value);
}

async function gql(query, variables = {}) {
  const response = await fetch(`${api}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors[0].message);
  return body.data;
}

async function run(id, work) {
  try {
    show(id, "ok", await work());
  } catch (error) {
    show(id, "error", String(error));
  }
}

await run("query", async () => (await gql("query ($sku: String!) { product(sku: $sku) { id onHand position } }", { sku })).product);

const client = createClient({
  url: `${api.replace(/^http/, "ws")}/graphql`,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
});
const views = [];
const restock = () =>
  run("mutation", async () => (await gql("mutation ($sku: String!) { restockProduct(sku: $sku, quantity: 5) { position } }", { sku })).restockProduct);
client.subscribe(
  { query: "subscription ($sku: String!) { product(sku: $sku) { onHand position } }", variables: { sku } },
  {
    next: ({ data }) => {
      views.push(data.product);
      if (views.length === 1) {
        restock();
      } else {
        show("subscription", "ok", views);
      }
    },
    error: (error) => {
      show("subscription", "error", `closed: ${error && (error.code || error.message || error.type)}`);
      restock();
    },
    complete: () => {},
  },
);
