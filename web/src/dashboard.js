// The live dashboard served at `/`: made with EventGraph's own public API only (queries and
// mutations over HTTP, live views over graphql-ws). Staff see sales, stock and the orders
// feed; a customer sees a small shop. No framework: each panel renders from plain state.
import { createClient } from "graphql-ws";

const TOKEN_KEY = "eventgraph.token";
const HTTP_URL = new URL("/graphql", window.location.href).href;
const WS_URL = HTTP_URL.replace(/^http/, "ws");
const $ = (id) => document.getElementById(id);

// ---- the token: from the login URL's fragment (never sent to a server), kept per session

function takeToken() {
  const match = window.location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
    let offered = null;
    try {
      offered = decodeURIComponent(match[1]);
    } catch {
      offered = null; // a mangled link: ignore it
    }
    const held = sessionStorage.getItem(TOKEN_KEY);
    const heldClaims = held && claimsOf(held);
    const offeredClaims = offered && claimsOf(offered);
    // A link must not silently swap the account this tab is signed in as.
    const swaps = heldClaims && offeredClaims && heldClaims.sub !== offeredClaims.sub;
    if (offeredClaims && (!swaps || window.confirm(`Sign in as ${offeredClaims.sub} instead of ${heldClaims.sub}?`))) {
      sessionStorage.setItem(TOKEN_KEY, offered);
    }
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

// ---- small DOM helpers (text only: nothing from the server is parsed as HTML)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function money(value) {
  return Number(value).toLocaleString(undefined, { style: "currency", currency: "EUR" });
}

function setPosition(panel, position) {
  const badge = document.querySelector(`[data-position-of="${panel}"]`);
  if (badge) {
    const current = Number(badge.dataset.position || 0);
    if (position > current) {
      badge.dataset.position = String(position);
      badge.textContent = `position ${position}`;
    }
  }
}

let messageTimer = null;
function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.dataset.kind = kind;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { box.textContent = ""; }, 6000);
}

// ---- connection state

let connection = "connecting";
function setConnection(state) {
  connection = state;
  const badge = $("connection");
  badge.textContent = state;
  badge.dataset.state = state.replace(/\s+/g, "-");
}

// ---- the API

let token = null;

async function gql(query, variables = {}) {
  const response = await fetch(HTTP_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = body.errors[0];
    const code = (error.extensions && error.extensions.code) || "ERROR";
    if (code === "UNAUTHENTICATED") setConnection("token expired");
    throw new Error(`${code}: ${error.message}`);
  }
  return body.data;
}

let client = null;

function connect() {
  let connectedOnce = false;
  client = createClient({
    url: WS_URL,
    connectionParams: () => ({ Authorization: `Bearer ${token}` }),
    lazy: false,
    keepAlive: 10_000,
    retryAttempts: Infinity,
    // 4403: the token was refused (expired or bad); retrying with it cannot help.
    shouldRetry: (event) => !(event && event.code === 4403),
    retryWait: (retries) =>
      new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 4000))),
    on: {
      connecting: () => setConnection(connectedOnce ? "reconnecting" : "connecting"),
      connected: () => {
        connectedOnce = true;
        setConnection("connected");
      },
      closed: (event) => {
        if (event && event.code === 4403) setConnection("token expired");
        else if (connection !== "token expired") setConnection("reconnecting");
      },
    },
  });
}

function live(query, variables, onData) {
  return client.subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.data) onData(result.data);
        if (result.errors) say(result.errors.map((e) => e.message).join("; "), "error");
      },
      error: (error) => {
        if (error && error.code === 4403) setConnection("token expired");
        else say(`subscription ended: ${error && (error.reason || error.message || error)}`, "error");
      },
      complete: () => {},
    },
  );
}

// ---- documents

const PRODUCT = "id sku name unitPrice onHand reserved available position";
const ORDER = "id customerId status total amountPaid placedAt version position lines { sku quantity }";

// ---- products (both views): a table kept live per product

const products = new Map();
const watchedProducts = new Set();

function watchProduct(sku) {
  if (watchedProducts.has(sku)) return;
  watchedProducts.add(sku);
  live(`subscription ($sku: String!) { product(sku: $sku) { ${PRODUCT} } }`, { sku }, (data) => {
    const held = products.get(sku);
    if (!held || data.product.position > held.position) {
      products.set(sku, data.product);
      setPosition("products", data.product.position);
      renderProducts();
    }
  });
}

let buying = false;
function renderProducts() {
  const body = $("products-body");
  const customer = role === "customer";
  const rows = [...products.values()].sort((a, b) => a.sku.localeCompare(b.sku));
  body.replaceChildren(
    ...rows.map((p) =>
      el(
        "tr",
        { "data-sku": p.sku },
        el("td", {}, p.sku),
        el("td", {}, p.name),
        el("td", { class: "num" }, money(p.unitPrice)),
        customer ? null : el("td", { class: "num" }, p.onHand),
        customer ? null : el("td", { class: "num" }, p.reserved),
        el("td", { class: "num", "data-field": "available" }, p.available),
        customer
          ? el("td", {}, el("button", {
              type: "button",
              disabled: p.available < 1 || buying ? "" : null,
              onclick: () => buy(p.sku),
              "aria-label": `Buy one ${p.name}`,
            }, "Buy 1"))
          : null,
      ),
    ),
  );
  $("products-empty").hidden = rows.length > 0;
}

async function loadProducts() {
  let after = null;
  do {
    const data = await gql(
      `query ($after: String) { products(first: 100, after: $after) {
         edges { node { ${PRODUCT} } } pageInfo { hasNextPage endCursor } } }`,
      { after },
    );
    for (const { node } of data.products.edges) {
      products.set(node.sku, node);
      setPosition("products", node.position);
      watchProduct(node.sku);
    }
    after = data.products.pageInfo.hasNextPage ? data.products.pageInfo.endCursor : null;
  } while (after && products.size < 1000);
  renderProducts();
}

// ---- orders (staff: every order; customer: their own), newest first

const orders = new Map();

function keepOrder(order) {
  const held = orders.get(order.id);
  if (held && held.position >= order.position) return false;
  if (!held) countPlaced(order.placedAt);
  orders.set(order.id, order);
  setPosition("orders", order.position);
  return true;
}

function orderActions(order) {
  const actions = [];
  const act = (label, run) =>
    el("button", { type: "button", onclick: run, "aria-label": `${label} order ${order.id}` }, label);
  if (role === "staff" && order.status === "PAID") actions.push(act("Ship", () => orderCommand("shipOrder", order)));
  if (role === "customer" && order.status === "PLACED") actions.push(act("Pay", () => orderCommand("payOrder", order)));
  if (order.status === "PLACED" || order.status === "PAID") actions.push(act("Cancel", () => orderCommand("cancelOrder", order)));
  return actions;
}

function renderOrders() {
  const newest = [...orders.values()].sort((a, b) => b.placedAt.localeCompare(a.placedAt)).slice(0, 20);
  $("orders-body").replaceChildren(
    ...newest.map((o) =>
      el(
        "tr",
        { "data-order": o.id },
        el("td", {}, el("code", { title: o.id }, o.id.slice(0, 8))),
        role === "staff" ? el("td", {}, o.customerId) : null,
        el("td", {}, o.lines.map((l) => `${l.quantity}× ${l.sku}`).join(", ")),
        el("td", { class: "num" }, money(o.total)),
        el("td", {}, el("span", { class: `status status-${o.status.toLowerCase()}`, "data-field": "status" }, o.status)),
        el("td", { class: "actions" }, orderActions(o)),
      ),
    ),
  );
  $("orders-empty").hidden = newest.length > 0;
}

async function loadOrders() {
  const data = await gql(`query { orders(first: 100) { edges { node { ${ORDER} } } } }`);
  for (const { node } of data.orders.edges) keepOrder(node);
  renderOrders();
  renderChart();
}

async function orderCommand(name, order) {
  const documents = {
    payOrder: `mutation ($id: ID!, $amount: Decimal!) { payOrder(orderId: $id, amount: $amount) { position order { ${ORDER} } } }`,
    shipOrder: `mutation ($id: ID!) { shipOrder(orderId: $id) { position order { ${ORDER} } } }`,
    cancelOrder: `mutation ($id: ID!) { cancelOrder(orderId: $id, reason: "cancelled from the dashboard") { position order { ${ORDER} } } }`,
  };
  const amount = (Number(order.total) - Number(order.amountPaid)).toFixed(2);
  try {
    const data = await gql(documents[name], { id: order.id, amount });
    if (keepOrder(data[name].order)) renderOrders();
    say(`${name} done at position ${data[name].position}`);
  } catch (error) {
    say(error.message, "error");
  }
}

async function buy(sku) {
  buying = true;
  renderProducts();
  try {
    const data = await gql(
      `mutation ($sku: String!, $key: String) { placeOrder(lines: [{ sku: $sku, quantity: 1 }], idempotencyKey: $key) { position order { ${ORDER} } } }`,
      { sku, key: crypto.randomUUID() },
    );
    if (keepOrder(data.placeOrder.order)) renderOrders();
    say(`order placed at position ${data.placeOrder.position}`);
  } catch (error) {
    say(error.message, "error");
  } finally {
    buying = false;
    renderProducts();
  }
}

// ---- orders per minute, last 30 minutes (a small SVG bar chart)

const MINUTES = 30;
const perMinute = new Map();

function countPlaced(placedAt) {
  const minute = Math.floor(Date.parse(placedAt) / 60_000);
  perMinute.set(minute, (perMinute.get(minute) || 0) + 1);
  scheduleChart();
}

let chartPending = false;
function scheduleChart() {
  if (!chartPending) {
    chartPending = true;
    requestAnimationFrame(() => {
      chartPending = false;
      renderChart();
    });
  }
}

function renderChart() {
  const svg = $("chart");
  if (!svg) return;
  const now = Math.floor(Date.now() / 60_000);
  const counts = [];
  for (let m = now - MINUTES + 1; m <= now; m++) counts.push(perMinute.get(m) || 0);
  const top = Math.max(1, ...counts);
  const ns = "http://www.w3.org/2000/svg";
  const width = 300;
  const height = 80;
  const bar = width / MINUTES;
  const bars = counts.map((count, i) => {
    const rect = document.createElementNS(ns, "rect");
    const h = (count / top) * (height - 12);
    rect.setAttribute("x", String(i * bar + 1));
    rect.setAttribute("y", String(height - h));
    rect.setAttribute("width", String(bar - 2));
    rect.setAttribute("height", String(h));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${count} orders, ${MINUTES - 1 - i} min ago`;
    rect.append(title);
    return rect;
  });
  svg.replaceChildren(...bars);
  $("chart-summary").textContent = `${counts[counts.length - 1]} orders this minute, peak ${top} per minute over the last ${MINUTES} minutes`;
}

// ---- the sales dashboard

let salesPosition = 0;
function renderSales(d) {
  if (d.position <= salesPosition) return; // an older view never replaces a newer one
  salesPosition = d.position;
  for (const field of ["ordersPlaced", "ordersPaid", "ordersShipped", "ordersCancelled"]) {
    $(field).textContent = d[field];
  }
  $("revenue").textContent = money(d.revenue);
  $("top-products").replaceChildren(
    ...d.topProducts.map((p) => el("li", {}, el("strong", {}, p.sku), ` ${p.unitsSold} sold, ${money(p.revenue)}`)),
  );
  setPosition("sales", d.position);
}

// ---- start

let role = null;

function showSignIn(reason) {
  $("signin").hidden = false;
  $("app").hidden = true;
  $("signin-reason").textContent = reason || "";
  setConnection("signed out");
}

function start() {
  token = takeToken();
  const claims = token && claimsOf(token);
  if (!claims) return showSignIn(token ? "That token could not be read." : "");
  if (claims.exp && claims.exp * 1000 < Date.now()) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn("Your token has expired: mint a new one.");
  }
  role = claims.role;
  document.body.dataset.role = role;
  $("who").textContent = `${claims.sub} (${role})`;
  $("signin").hidden = true;
  $("app").hidden = false;
  for (const node of document.querySelectorAll("[data-for]")) node.hidden = node.dataset.for !== role;
  if (claims.exp) {
    const left = claims.exp * 1000 - Date.now();
    if (left < 2 ** 31) setTimeout(() => setConnection("token expired"), left);
  }
  connect();
  const failed = (error) => say(error.message, "error");
  loadProducts().catch(failed);
  if (role === "staff") {
    $("orders-title").textContent = "Latest orders";
    live(`subscription { salesDashboard { id ordersPlaced ordersPaid ordersShipped ordersCancelled revenue position topProducts(limit: 5) { sku unitsSold revenue } } }`, {}, (data) => renderSales(data.salesDashboard));
    live(`subscription { orders { ${ORDER} } }`, {}, (data) => {
      if (keepOrder(data.orders)) renderOrders();
    });
    live(`subscription { events(after: 0, types: ["ProductRegistered"]) { data } }`, {}, (data) => {
      const sku = data.events.data.sku;
      if (!products.has(sku)) watchProduct(sku);
    });
    setInterval(renderChart, 10_000);
  } else {
    $("orders-title").textContent = "My orders";
    live(`subscription { myOrders { ${ORDER} } }`, {}, (data) => {
      if (keepOrder(data.myOrders)) renderOrders();
    });
  }
  loadOrders().catch(failed);
}

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (client) client.dispose();
  window.location.reload();
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token-input").value.trim();
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    window.location.reload();
  }
});

start();
