// Apollo Client 4 set up as docs/frontend.md says (web/clients/apollo.js), on a page of
// another origin: a watched product, a feed, and what the browser tests call.
import { gql } from "@apollo/client";
import { createApolloClient } from "../clients/apollo.js";
import { FEED, FEED_DOCUMENT, api, firstAfter, onStatus, params, received, show, sku, tokens } from "./page.js";

const { client } = createApolloClient({ url: api, tokens, onStatus, keepNewest: params.get("guard") !== "off" });

const PRODUCT = gql`query Product($sku: String!) { product(sku: $sku) { id onHand position } }`;
const LIVE = gql`subscription LiveProduct($sku: String!) { product(sku: $sku) { id onHand position } }`;
const REGISTER = gql`mutation Register($sku: String!) {
  registerProduct(sku: $sku, name: "Fresh", unitPrice: "1.00", initialStock: 3) { position } }`;

client.watchQuery({ query: PRODUCT, variables: { sku } }).subscribe(({ data }) => {
  if (data?.product) show("watched", { onHand: data.product.onHand, position: data.product.position });
  else if (data) show("watched", "null", "null");
});
client.subscribe({ query: LIVE, variables: { sku } }).subscribe({});
client.subscribe({ query: gql(FEED_DOCUMENT), variables: { after: firstAfter } }).subscribe({
  next: ({ data }) => data?.[FEED] && received(data[FEED]),
  error: (error) => show("feed-error", String(error?.message || error), "error"),
});

window.refetchProduct = () => client.query({ query: PRODUCT, variables: { sku }, fetchPolicy: "network-only" });
// A write, then at once a read of what it wrote: the session's position makes the read wait.
window.registerThenRead = async (fresh) => {
  await client.mutate({ mutation: REGISTER, variables: { sku: fresh } });
  const { data } = await client.query({ query: PRODUCT, variables: { sku: fresh }, fetchPolicy: "network-only" });
  return data.product;
};
