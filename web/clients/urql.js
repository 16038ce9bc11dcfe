// urql with Graphcache on EventGraph, from the client core (./eventgraph.js): the same
// guarantees as apollo.js (session position, resuming feeds, refreshing tokens, newest
// view wins, null filled by a pushed view).
import { Client, fetchExchange, mapExchange, subscriptionExchange } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { createSession, createWsClient, newestViews, resuming, sessionFetch } from "./eventgraph.js";

// `product(sku)` and `order(id)` resolve to the cached entity once any view of it arrived
// (a pushed view fills a query that answered null); until then, to what the server said.
const entity = (typename, idArg) => (_parent, args, cache, info) => {
  const key = cache.keyOfEntity({ __typename: typename, id: args[idArg] });
  if (key && cache.resolve(key, "id") != null) return key;
  return cache.resolve(info.parentKey, info.fieldName, args);
};

export const graphcache = () =>
  cacheExchange({
    keys: { ProductSales: () => null, OrderLine: () => null, PageInfo: () => null },
    resolvers: { Query: { product: entity("Product", "sku"), order: entity("Order", "id") } },
  });

export function createUrqlClient({ url, tokens, session = createSession(), onStatus, keepNewest = true }) {
  const socket = resuming(createWsClient({ url: url.replace(/^http/, "ws"), tokens, onStatus }), session);
  // Before any result reaches the cache: note its positions (so the next request already
  // waits for this write), and give an older view the newer fields.
  const newest = keepNewest ? newestViews() : (data) => data;
  const exchanges = [
    graphcache(),
    mapExchange({ onResult: (result) => ({ ...session.observe(result), data: newest(result.data) }) }),
    fetchExchange,
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: socket.subscribe({ ...request, query: request.query || "" }, sink) }),
      }),
    }),
  ];
  const client = new Client({ url, exchanges, fetch: sessionFetch({ tokens, session }) });
  return { client, session, socket };
}
