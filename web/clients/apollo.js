// Apollo Client 4 on EventGraph, from the client core (./eventgraph.js): queries and
// mutations over HTTP with the token and the session's position (EventGraph-At-Least),
// subscriptions over graphql-ws with feeds that resume and tokens that refresh, the newest
// view winning, and cache policies that let a pushed view fill a query that answered null.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { map } from "rxjs";
import { createSession, createWsClient, newestViews, resuming, sessionFetch } from "./eventgraph.js";

// `product(sku)` and `order(id)` read the entity a subscription (or any query) put in the
// cache, so a query that answered null (asked before its read model had the entity) shows
// the entity as soon as a view of it arrives. `canRead` keeps a dangling reference out.
export function eventGraphCache() {
  const entity = (typename, id) => ({
    read(existing, { toReference, canRead }) {
      const ref = id === undefined ? undefined : toReference({ __typename: typename, id });
      return ref && canRead(ref) ? ref : existing;
    },
  });
  return new InMemoryCache({
    typePolicies: {
      Query: {
        fields: {
          product: {
            read: (existing, options) => entity("Product", options.args?.sku).read(existing, options),
          },
          order: {
            read: (existing, options) => entity("Order", options.args?.id).read(existing, options),
          },
        },
      },
    },
  });
}

export function createApolloClient({
  url, // "https://api.example.com/graphql"
  tokens, // tokenSource({ current, refresh })
  session = createSession(),
  onStatus, // (state, detail): connecting, connected, reconnecting, signed-out
  keepNewest = true,
}) {
  const socket = createWsClient({ url: url.replace(/^http/, "ws"), tokens, onStatus });
  const http = new HttpLink({ uri: url, fetch: sessionFetch({ tokens, session }) });
  const transport = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    new GraphQLWsLink(resuming(socket, session)),
    http,
  );
  // Before any result reaches the cache: note its positions (so the next request already
  // waits for this write), and give an older view the newer fields.
  const newest = keepNewest ? newestViews() : (data) => data;
  const observe = new ApolloLink((operation, forward) =>
    forward(operation).pipe(map((result) => ({ ...session.observe(result), data: newest(result.data) }))),
  );
  const client = new ApolloClient({ link: ApolloLink.from([observe, transport]), cache: eventGraphCache() });
  return { client, session, socket };
}
