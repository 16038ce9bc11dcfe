// urql with Graphcache set up as docs/frontend.md says (web/clients/urql.js), on a page of
// another origin: a watched product, a feed, and what the browser tests call.
import { gql } from "@urql/core";
import { createUrqlClient } from "../clients/urql.js";
import { FEED, FEED_DOCUMENT, api, firstAfter, onStatus, params, received, show, sku, tokens } from "./page.js";

const { client } = createUrqlClient({ url: api, tokens, onStatus, keepNewest: params.get("guard") !== "off" });

const PRODUCT = gql`query Product($sku: String!) { product(sku: $sku) { id onHand position } }`;
const LIVE = gql`subscription LiveProduct($sku: String!) { product(sku: $sku) { id onHand position } }`;
const REGISTER = gql`mutation Register($sku: String!) {
  registerProduct(sku: $sku, name: "Fresh", unitPrice: "1.00", initialStock: 3) { position } }`;

client.query(PRODUCT, { sku }, { requestPolicy: "cache-and-network" }).subscribe(({ data }) => {
  if (data?.product) show("watched", { onHand: data.product.onHand, position: data.product.position });
  else if (data) show("watched", "null", "null");
});
client.subscription(LIVE, { sku }).subscribe(() => {});
client.subscription(gql(FEED_DOCUMENT), { after: firstAfter }).subscribe(({ data, error }) => {
  if (data?.[FEED]) received(data[FEED]);
  if (error) show("feed-error", String(error.message), "error");
});

window.refetchProduct = () => client.query(PRODUCT, { sku }, { requestPolicy: "network-only" }).toPromise();
// A write, then at once a read of what it wrote: the session's position makes the read wait.
window.registerThenRead = async (fresh) => {
  const written = await client.mutation(REGISTER, { sku: fresh }).toPromise();
  if (written.error) throw written.error;
  const { data, error } = await client.query(PRODUCT, { sku: fresh }, { requestPolicy: "network-only" }).toPromise();
  if (error) throw error;
  return data.product;
};
