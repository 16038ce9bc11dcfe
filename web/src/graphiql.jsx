// GraphiQL for EventGraph, served by the API itself at GET /graphql. Queries and mutations go
// over HTTP with the header editor's headers; subscriptions over graphql-ws, whose
// connection_init carries the same Authorization header.
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
    if (socket !== null) socket.dispose();
    socketAuth = authorization;
    socket = createClient({
      url: wsUrl,
      lazy: true,
      retryAttempts: 3,
      connectionParams: authorization ? { Authorization: authorization } : {},
    });
  }
  return socket;
}

function isSubscription(params) {
  try {
    const op = getOperationAST(parse(params.query), params.operationName || undefined);
    return op !== null && op !== undefined && op.operation === "subscription";
  } catch {
    return false; // let the server answer the parse error
  }
}

function authorizationOf(headers) {
  if (!headers) return undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() === "authorization") return String(value);
  }
  return undefined;
}

function fetcher(params, options) {
  if (isSubscription(params)) {
    return socketFor(authorizationOf(options && options.headers)).iterate(params);
  }
  return http(params, options);
}

const token = sessionStorage.getItem("eventgraph.token");
const headers = JSON.stringify(token ? { Authorization: `Bearer ${token}` } : { Authorization: "Bearer <token from `eventgraph token`>" }, null, 2);

const defaultQuery = `# EventGraph: queries and mutations over HTTP, subscriptions over graphql-ws.
# Put a token in the Headers tab (eventgraph token --sub alice --role staff).

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
    isHeadersEditorEnabled: true,
  }),
);
