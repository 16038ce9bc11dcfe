// GraphiQL for EventGraph, served by the API itself at GET /graphql. Queries and mutations go
// over HTTP with the header editor's headers; subscriptions over graphql-ws, whose
// connection_init carries the same Authorization header. Authorization goes out only when it
// holds a real token (this tab's, from the dashboard's sessionStorage, or one typed in the
// Headers tab): never a placeholder. A subscription the server refuses (close 4403: no
// token, a bad one, an expired one) ends at once with that error as its result.
import React from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";
import { getOperationAST, parse } from "graphql";
import "graphiql/graphiql.css";

const url = new URL("/graphql", window.location.href).href;
const wsUrl = url.replace(/^http/, "ws");
const http = createGraphiQLFetcher({ url });

let socket = null;
let socketAuth = null;

function socketFor(authorization) {
  if (socket === null || authorization !== socketAuth) {
    if (socket !== null) Promise.resolve(socket.dispose()).catch(() => {});
    socketAuth = authorization;
    socket = createClient({
      url: wsUrl,
      lazy: true,
      retryAttempts: 3,
      // 4403: the token was refused; the same token again cannot help, so say it at once.
      shouldRetry: (event) => !(event && event.code === 4403),
      connectionParams: authorization ? { Authorization: authorization } : {},
    });
  }
  return socket;
}

/** The result GraphiQL shows for a subscription that ended on an error instead of data. */
function errorsOf(error, authorization) {
  if (Array.isArray(error)) return error; // the server's `error` message: GraphQL errors
  if (error && typeof error.code === "number") {
    // a close of the socket
    if (error.code === 4403) {
      const why = authorization
        ? "the server refused the token (not valid, or expired): mint a new one with `eventgraph token`"
        : 'no token: put {"Authorization": "Bearer <token>"} in the Headers tab (eventgraph token --sub alice --role staff)';
      return [{ message: `Not signed in: ${why}`, extensions: { code: "UNAUTHENTICATED", closeCode: 4403, reason: error.reason || "" } }];
    }
    return [{ message: `The connection closed (${error.code}${error.reason ? `: ${error.reason}` : ""})`, extensions: { code: "CONNECTION_CLOSED", closeCode: error.code, reason: error.reason || "" } }];
  }
  return [{ message: String((error && error.message) || error || "the subscription failed"), extensions: { code: "CONNECTION_ERROR" } }];
}

async function* subscription(params, authorization) {
  try {
    yield* socketFor(authorization).iterate(params);
  } catch (error) {
    yield { errors: errorsOf(error, authorization) };
  }
}

function isSubscription(params) {
  try {
    const op = getOperationAST(parse(params.query), params.operationName || undefined);
    return op !== null && op !== undefined && op.operation === "subscription";
  } catch {
    return false; // let the server answer the parse error
  }
}

// A bearer token as RFC 6750 spells it: a placeholder such as "Bearer <token>" is not one.
const BEARER = /^Bearer [A-Za-z0-9\-._~+/]+=*$/;

/** The headers to send: Authorization only when it holds a real token. */
function realHeaders(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers || {})) {
    if (name.toLowerCase() === "authorization" && !BEARER.test(String(value).trim())) continue;
    out[name] = name.toLowerCase() === "authorization" ? String(value).trim() : value;
  }
  return out;
}

function authorizationOf(headers) {
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() === "authorization") return String(value);
  }
  return undefined;
}

function fetcher(params, options = {}) {
  const headers = realHeaders(options.headers);
  if (isSubscription(params)) return subscription(params, authorizationOf(headers));
  return http(params, { ...options, headers });
}

// GraphiQL keeps its tabs, history and (when asked to) headers in the storage it is given,
// localStorage by default, where every later tab and visit reads them: a token in a history
// entry's headers outlived its tab. This storage keeps everything for this tab in
// sessionStorage, as the dashboard keeps its token, and gives localStorage only a copy with
// every credential taken out, so other tabs still get the queries and the history.
const CREDENTIAL = /(Bearer\s+)[A-Za-z0-9\-._~+/]+=*|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/gi;
const withoutCredentials = (value) => String(value).replace(CREDENTIAL, (_, bearer) => (bearer ? bearer : ""));
const ownKeys = (store) => Object.keys(store).filter((key) => key.startsWith("graphiql:"));

const tabStorage = {
  getItem: (key) => sessionStorage.getItem(key) ?? localStorage.getItem(key),
  setItem(key, value) {
    sessionStorage.setItem(key, value);
    try {
      localStorage.setItem(key, withoutCredentials(value));
    } catch {
      // full: this tab has it all the same
    }
  },
  removeItem(key) {
    sessionStorage.removeItem(key);
    localStorage.removeItem(key);
  },
  clear() {
    for (const store of [sessionStorage, localStorage]) for (const key of ownKeys(store)) store.removeItem(key);
  },
  get length() {
    return new Set([...ownKeys(sessionStorage), ...ownKeys(localStorage)]).size;
  },
};

// What an earlier version left in localStorage: taken out once.
for (const key of ownKeys(localStorage)) {
  const value = localStorage.getItem(key);
  const clean = withoutCredentials(value);
  if (clean !== value) localStorage.setItem(key, clean);
}

const token = sessionStorage.getItem("eventgraph.token");
const headers = token ? JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2) : "{}";

const defaultQuery = `# EventGraph: queries and mutations over HTTP, subscriptions over graphql-ws.
# Sign in: run  eventgraph token --sub alice --role staff  and put
#   {"Authorization": "Bearer <the token>"}
# in the Headers tab below (signed in on the dashboard in this tab, it is there already).

query Products {
  products(first: 10) {
    edges { node { id sku name available position } }
  }
}

subscription Dashboard {
  salesDashboard { id ordersPlaced revenue position }
}
`;

createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    headers,
    defaultEditorToolsVisibility: "headers",
    shouldPersistHeaders: false,
    storage: tabStorage,
    isHeadersEditorEnabled: true,
  }),
);
