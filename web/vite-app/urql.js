// The urql set-up of docs/frontend.md: Graphcache keyed by id, subscriptions over
// graphql-ws, the token read on every request and connection, the newest view winning.
import { Client, fetchExchange, mapExchange, subscriptionExchange, gql } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { createClient } from "graphql-ws";
import { newestViews } from "./newest.js";

const params = new URLSearchParams(window.location.search);
const api = params.get("api");
const sku = params.get("sku");
const getToken = () => window.EVENTGRAPH_TOKEN;

const ws = createClient({
  url: `${api.replace(/^http/, "ws")}/graphql`,
  connectionParams: () => ({ Authorization: `Bearer ${getToken()}` }),
  retryAttempts: Infinity,
  shouldRetry: (event) => event?.code !== 4403,
});
const keepNewest = newestViews();
const exchanges = [
  cacheExchange({ keys: { ProductSales: () => null, OrderLine: () => null, PageInfo: () => null } }),
  mapExchange({ onResult: (result) => ({ ...result, data: keepNewest(result.data) }) }),
  fetchExchange,
  subscriptionExchange({
    forwardSubscription: (request) => ({
      subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query || "" }, sink) }),
    }),
  }),
];
if (params.get("guard") === "off") exchanges.splice(1, 1);

const client = new Client({
  url: `${api}/graphql`,
  exchanges,
  fetchOptions: () => ({ headers: { Authorization: `Bearer ${getToken()}` } }),
});

const PRODUCT = gql`query Product($sku: String!) { product(sku: $sku) { id onHand position } }`;
const LIVE = gql`subscription LiveProduct($sku: String!) { product(sku: $sku) { id onHand position } }`;

const out = document.getElementById("watched");
client.query(PRODUCT, { sku }, { requestPolicy: "cache-and-network" }).subscribe(({ data }) => {
  if (data?.product) {
    out.dataset.state = "ok";
    out.textContent = JSON.stringify({ onHand: data.product.onHand, position: data.product.position });
  }
});
client.subscription(LIVE, { sku }).subscribe(() => {});
window.refetchProduct = () =>
  client.query(PRODUCT, { sku }, { requestPolicy: "network-only" }).toPromise();
