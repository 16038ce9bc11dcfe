// The Apollo Client set-up of docs/frontend.md, as a frontend team would write it: HTTP for
// queries and mutations, graphql-ws for subscriptions, a token read on every request and
// every (re)connection, and the newest view winning in the cache. ?guard=off leaves the guard
// out (the browser test shows what goes wrong without it).
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { SetContextLink } from "@apollo/client/link/context";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import { map } from "rxjs";
import { newestViews } from "./newest.js";

const params = new URLSearchParams(window.location.search);
const api = params.get("api");
const sku = params.get("sku");
const getToken = () => window.EVENTGRAPH_TOKEN; // e.g. from your auth library, refreshed

const http = ApolloLink.from([
  new SetContextLink(({ headers }) => ({
    headers: { ...headers, Authorization: `Bearer ${getToken()}` },
  })),
  new HttpLink({ uri: `${api}/graphql` }),
]);
const ws = new GraphQLWsLink(
  createClient({
    url: `${api.replace(/^http/, "ws")}/graphql`,
    connectionParams: () => ({ Authorization: `Bearer ${getToken()}` }), // read at each connect
    retryAttempts: Infinity,
    shouldRetry: (event) => event?.code !== 4403, // 4403: sign in again instead
  }),
);
const keepNewest = newestViews();
const newest = new ApolloLink((operation, forward) =>
  forward(operation).pipe(map((result) => ({ ...result, data: keepNewest(result.data) }))),
);
const transport = ApolloLink.split(
  ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === "OperationDefinition" && definition.operation === "subscription";
  },
  ws,
  http,
);

const client = new ApolloClient({
  link: params.get("guard") === "off" ? transport : ApolloLink.from([newest, transport]),
  cache: new InMemoryCache(), // Product, Order, SalesDashboard, DomainEvent: keyed by id
});

const PRODUCT = gql`
  query Product($sku: String!) { product(sku: $sku) { id onHand position } }
`;
const LIVE = gql`
  subscription LiveProduct($sku: String!) { product(sku: $sku) { id onHand position } }
`;

const out = document.getElementById("watched");
client.watchQuery({ query: PRODUCT, variables: { sku } }).subscribe(({ data }) => {
  if (data?.product) {
    out.dataset.state = "ok";
    out.textContent = JSON.stringify({ onHand: data.product.onHand, position: data.product.position });
  }
});
client.subscribe({ query: LIVE, variables: { sku } }).subscribe({});
window.refetchProduct = () =>
  client.query({ query: PRODUCT, variables: { sku }, fetchPolicy: "network-only" });
