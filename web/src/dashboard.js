// The console served at `/`, made with EventGraph's own public API only, through the client
// core (web/clients/eventgraph.js): queries and mutations over HTTP with the session's
// position (reads include this tab's own writes), live views over graphql-ws. Staff get an
// operator's console (sales, stock with register and restock, every order with ship and
// cancel, the most wished products); a customer gets a shop with a wishlist
// (web/src/wishlist.js) and their orders. No framework: each panel renders from plain state,
// as text only (nothing from the server is ever parsed as HTML).
//
// Consistency across reconnects: the product and sales views are live views, so the server
// sends each one's current view first on every (re)subscription; the order feeds start
// after the position of the orders loaded by query and, through `subscribe`, resume after
// the last position they delivered, so after a restart they first re-send every order that
// changed while the page was away. Counters, stock and the orders list all catch up.
import {
  claimsOf,
  createRequester,
  createSession,
  createWsClient,
  subscribe,
  tokenSource,
} from "../clients/eventgraph.js";
import { createWishlist } from "./wishlist.js";

const TOKEN_KEY = "eventgraph.token";
const HTTP_URL = new URL("/graphql", window.location.href).href;
const WS_URL = HTTP_URL.replace(/^http/, "ws");
const SHOWN_ORDERS = 25;
const MAX_ORDER_PAGES = 100; // 10,000 orders: enough for the counters of this console
const $ = (id) => document.getElementById(id);

// ---- the token: kept per tab (sessionStorage), from a link only once the server and the
// person agreed. `eventgraph token --open` links carry a one-time code (#code=), exchanged
// once at /auth/exchange: the URL in the browser's history and command line is worth nothing
// after that. A link may also carry a token (#token=). Either way the token is first checked
// with the server (a link's claims are only text until then: an unsigned "staff" token reads
// like a real one), then the page asks, naming the account and role, before it signs in.

/** The link's fragment, taken off the address bar (and so off this history entry) first. */
function takeLink() {
  const found = window.location.hash.match(/(?:^#|&)(code|token)=([^&]*)/);
  if (!found) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  try {
    const value = decodeURIComponent(found[2]);
    return value ? { kind: found[1], value } : null;
  } catch {
    return null; // a mangled link: ignored
  }
}

const LINK_REFUSALS = {
  CODE_USED: "That sign-in link was used already: a link signs in once. Run eventgraph token --open again.",
  INVALID_CODE: "That sign-in link is not valid or has expired (a link lasts two minutes): run eventgraph token --open again.",
};

/** The token a one-time code stands for, or the reason there is none ({ text, code, message }). */
async function exchangeCode(oneTimeCode) {
  let response;
  let body = null;
  try {
    response = await fetch(new URL("/auth/exchange", window.location.href), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: oneTimeCode }),
      cache: "no-store",
    });
    body = await response.json();
  } catch (error) {
    if (!response) return { text: "The server could not be reached to use the sign-in link", code: "NETWORK", message: String(error?.message || error) };
  }
  if (response.ok && typeof body?.token === "string") return { token: body.token };
  const code = body?.error?.code || `HTTP_${response.status}`;
  const text = LINK_REFUSALS[code] || "The sign-in link could not be used: run eventgraph token --open again";
  return { text, code, message: body?.error?.message || "" };
}

/** null when the server takes `candidate` as a token; otherwise why not. An authenticated
 * query: an unsigned, forged or expired token fails it with UNAUTHENTICATED. */
async function refusalOf(candidate) {
  try {
    const response = await fetch(HTTP_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${candidate}` },
      body: JSON.stringify({ query: "{ products(first: 1) { pageInfo { hasNextPage } } }" }),
      cache: "no-store",
    });
    const body = await response.json();
    if (response.ok && body?.data && !body.errors?.length) return null;
    const first = body?.errors?.[0];
    return { code: first?.extensions?.code || `HTTP_${response.status}`, message: first?.message || "" };
  } catch (error) {
    return { code: "NETWORK", message: String(error?.message || error) };
  }
}

const account = (claims) => `${claims.sub} (${claims.role})`;

/** Sign this tab in from the link, if there is one, it checks out and the person agrees.
 * Answers what went wrong ({ text, code, message }) or null. */
async function signInFromLink() {
  const link = takeLink();
  if (!link) return null;
  let offered = link.value;
  if (link.kind === "code") {
    const exchanged = await exchangeCode(link.value);
    if (!exchanged.token) return exchanged;
    offered = exchanged.token;
  }
  const held = sessionStorage.getItem(TOKEN_KEY);
  if (offered === held) return null;
  const refused = await refusalOf(offered);
  const offeredClaims = claimsOf(offered);
  if (refused || !offeredClaims?.sub) {
    const why = refused || { code: "UNAUTHENTICATED", message: "not a token" };
    return { text: "The server did not accept the sign-in link's token: nothing changed", ...why };
  }
  const heldClaims = held && claimsOf(held);
  const asked = heldClaims
    ? `This link signs this tab in as ${account(offeredClaims)} instead of ${account(heldClaims)}.`
    : `This link signs this tab in as ${account(offeredClaims)}.`;
  const agreed = await confirmDialog({
    title: "Sign in from a link?",
    text: `${asked} Continue only if you asked for it (eventgraph token --open).`,
    yes: `Sign in as ${offeredClaims.sub}`,
    no: heldClaims ? `Stay ${heldClaims.sub}` : "Do not sign in",
  });
  if (agreed) sessionStorage.setItem(TOKEN_KEY, offered);
  return null;
}

// ---- small helpers (text only)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

const euros = new Intl.NumberFormat("en-IE", { style: "currency", currency: "EUR" });
function money(value) {
  const number = Number(value);
  return Number.isFinite(number) ? euros.format(number) : String(value);
}

/** a - b on decimal strings, exactly (money is never a float). */
function decimalMinus(a, b) {
  const scale = Math.max(...[a, b].map((s) => (String(s).split(".")[1] || "").length));
  const units = (s) => {
    const text = String(s);
    const negative = text.startsWith("-");
    const [whole, fraction = ""] = text.replace(/^[-+]/, "").split(".");
    const value = BigInt(whole + fraction.padEnd(scale, "0"));
    return negative ? -value : value;
  };
  const difference = units(a) - units(b);
  const digits = (difference < 0n ? -difference : difference).toString().padStart(scale + 1, "0");
  const sign = difference < 0n ? "-" : "";
  return scale ? `${sign}${digits.slice(0, -scale)}.${digits.slice(-scale)}` : `${sign}${digits}`;
}

const shortId = (id) => `${id.slice(0, 8)}…`;

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
function ago(iso) {
  const seconds = Math.round((Date.parse(iso) - serverNow()) / 1000);
  if (Math.abs(seconds) < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) return relative.format(minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) return relative.format(hours, "hour");
  return relative.format(Math.round(hours / 24), "day");
}

function clock(iso) {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// ---- the server's clock: an order's deadline is the server's, and this computer's clock may
// be off. The Date header of a request to the server bounds the difference: the server's
// clock read between `date` and `date` + 3 s (whole seconds, and the server refreshes its
// header once a second, later when busy) while ours read between sending and receiving. A
// clock within those bounds is left alone; one outside them is moved to the latest time the
// server's clock may read: a countdown then errs on the side of less time, never more.

let clockOffset = 0; // ms to add to Date.now() to read the server's clock
const serverNow = () => Date.now() + clockOffset;

async function measureClock() {
  try {
    const sent = Date.now();
    const response = await fetch(new URL("/", window.location.href), { method: "HEAD", cache: "no-store" });
    const received = Date.now();
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isFinite(date)) return;
    const least = date - received;
    const most = date + 3000 - sent;
    clockOffset = least <= 0 && 0 <= most ? 0 : most;
  } catch {
    // unreachable: keep the last estimate
  }
}

/** "29:41", "1:02:03", "2 d 03:04:05": the time left, rounded up to the second. */
function timeLeft(ms) {
  let seconds = Math.ceil(ms / 1000);
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  const two = (n) => String(n).padStart(2, "0");
  if (days) return `${days} d ${two(hours)}:${two(minutes)}:${two(seconds)}`;
  if (hours) return `${hours}:${two(minutes)}:${two(seconds)}`;
  return `${minutes}:${two(seconds)}`;
}

/** An unpaid order's countdown; never below zero: once time is up the server expires it. */
function countdownText(expiresAt) {
  const left = Date.parse(expiresAt) - serverNow();
  if (!(left > 0)) return "expiring…";
  return role === "customer" ? `Pay within ${timeLeft(left)}` : `Expires in ${timeLeft(left)}`;
}

/** Every countdown on the page, in place (the rows are not rebuilt: a click is never lost). */
function tickCountdowns() {
  for (const node of document.querySelectorAll("[data-expires-at]")) {
    const text = countdownText(node.dataset.expiresAt);
    if (node.textContent !== text) {
      node.textContent = text;
      node.classList.toggle("due", text === "expiring…");
    }
  }
}

// ---- the header: connection state, messages, the last error

let connection = "connecting";
function setConnection(state) {
  connection = state;
  const badge = $("connection");
  badge.textContent = state;
  badge.dataset.state = state.replace(/\s+/g, "-");
}

let noticeTimer = null;
function notify(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

/** Show a failure in the sticky header until dismissed or replaced: a human sentence, and
 * the raw code and message under Details. */
function showError(text, code, message) {
  $("error-text").textContent = text;
  $("error-code").textContent = code;
  $("error-message").textContent = message || "";
  const now = new Date();
  $("error-time").dateTime = now.toISOString();
  $("error-time").textContent = now.toLocaleTimeString();
  $("error-details").open = false;
  $("last-error").hidden = false;
  $("notice").hidden = true;
}

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const STATUS_WORDS = {
  staff: { PLACED: "Awaiting payment", PAID: "Paid, to ship", SHIPPED: "Shipped", CANCELLED: "Cancelled", EXPIRED: "Expired" },
  customer: { PLACED: "Awaiting payment", PAID: "Paid, being prepared", SHIPPED: "Shipped", CANCELLED: "Cancelled", EXPIRED: "Expired" },
};
/** Said under a status that needs a reason. */
const STATUS_NOTES = { EXPIRED: "Not paid in time: the items went back on sale" };
const statusWord = (status) => STATUS_WORDS[role]?.[status] ?? status;

/** What a person reads for a failed action. `about`: { sku, order } the action was on. */
function humanError(error, about = {}) {
  const { code, message = "" } = error;
  const order = about.order ? `Order ${shortId(about.order.id)}` : "That order";
  const orderLower = about.order ? `order ${shortId(about.order.id)}` : "that order";
  switch (code) {
    case "INSUFFICIENT_STOCK": {
      const found = message.match(/only (\d+) of '([^']*)'/);
      const sku = found ? found[2] : about.sku;
      return `Not enough stock: only ${found ? found[1] : 0} of ${productLabel(sku)} left`;
    }
    case "ALREADY_EXISTS":
      return about.sku ? `A product with SKU ${about.sku} already exists` : "That already exists";
    case "INVALID_STATE": {
      // The server decides when time is up, by its own clock: at or after the deadline a
      // payment is refused before the order's EXPIRED view has reached this page.
      if (/payment deadline passed/.test(message)) {
        return `Too late to pay: the time to pay for ${orderLower} ran out, so its items go back on sale`;
      }
      const found = message.match(/that is (\w+) cannot be (\w+)/);
      if (found?.[1] === "EXPIRED") {
        if (found[2] === "paid") return `${order} was not paid in time: it has expired and its items went back on sale`;
        return `${order} has expired (it was not paid in time): it cannot be ${found[2]} any more`;
      }
      if (found) {
        const when = found[1] === "PLACED" ? "yet" : "any more";
        return `${order} is ${statusWord(found[1]).toLowerCase()}: it cannot be ${found[2]} ${when}`;
      }
      if (/stock would exceed/.test(message)) return "That is more stock than a product may hold";
      return "That is not possible in the current state";
    }
    case "NOT_FOUND":
      return about.order ? `${order} was not found` : `No product ${about.sku || ""} was found`.trim();
    case "BAD_USER_INPUT":
      return `Please check what you entered: ${message}`;
    case "FORBIDDEN":
      return "You are not allowed to do that";
    case "UNAUTHENTICATED":
      return "Your sign-in has expired: sign in again to carry on";
    case "CONFLICT":
      return "Someone changed this at the same moment: please try again";
    case "TIMEOUT":
    case "UNAVAILABLE":
      return "The server is busy: please try again in a moment";
    case "NETWORK":
      return "The server could not be reached: check the connection and try again";
    default:
      return "Something went wrong";
  }
}

function failed(error, about) {
  const apiError = error instanceof ApiError ? error : new ApiError("CLIENT_ERROR", String(error?.message || error));
  showError(humanError(apiError, about), apiError.code, apiError.message);
}

// ---- the session: token, position, HTTP, WebSocket

let token = null;
let claims = null;
let role = null;
let signedOut = false;
const session = createSession();
const tokens = tokenSource({ current: () => token });
const request = createRequester({ url: HTTP_URL, tokens, session });

async function gql(query, variables = {}) {
  let body;
  try {
    body = await request(query, variables);
  } catch (error) {
    throw new ApiError("NETWORK", String(error?.message || error));
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const code = first.extensions?.code || "ERROR";
    if (code === "UNAUTHENTICATED") signOut(first.message);
    throw new ApiError(code, first.message);
  }
  return body.data;
}

// Every live view, to subscribe again on a new client (a new token): feeds give their
// `after` from what they delivered, so nothing is missed while signed out either.
const views = [];
let client = null;
let generation = 0;
let connectedBefore = false;

function live(query, variables, onData) {
  const view = { query, variables, onData };
  views.push(view);
  if (client) open(view);
}

function open(view) {
  subscribe(client, { query: view.query, variables: view.variables(), session }, {
    next(result) {
      if (result.data) view.onData(result.data);
      if (result.errors?.length) failed(new ApiError(result.errors[0].extensions?.code || "ERROR", result.errors[0].message));
    },
    error(error) {
      if (signedOut) return; // the banner says it
      const list = Array.isArray(error) ? error : [error];
      const first = list[0] || {};
      if (first.code === 4403) return; // onStatus says signed out
      const code = first.extensions?.code || (first.code ? `CLOSED_${first.code}` : "ERROR");
      const message = first.message || first.reason || String(first);
      showError("Live updates of a panel stopped: reload the page", code, message);
    },
    complete() {},
  });
}

/** Close a client for good; a socket still connecting rejects its dispose(): nothing to do. */
function dispose(old) {
  if (old) Promise.resolve(old.dispose()).catch(() => {});
}

function connect() {
  const mine = ++generation;
  client = createWsClient({
    url: WS_URL,
    tokens,
    keepAlive: 10_000,
    onStatus: (state, detail) => {
      if (mine === generation) onStatus(state, detail);
    },
  });
  for (const view of views) open(view);
}

function onStatus(state, detail) {
  if (signedOut) return;
  if (state === "signed-out") signOut(detail);
  else if (state === "failed") {
    setConnection("disconnected");
    showError("Live updates stopped: reload the page", "CLOSED", detail || "the server closed the connection");
  } else if (state === "connected") {
    setConnection("connected");
    if (connectedBefore) {
      measureClock(); // maybe another server, with another clock
      loadProducts().catch(failed); // products registered while away
      wishlist.reconnected(role);
    }
    connectedBefore = true;
  } else setConnection(connectedBefore || state === "reconnecting" ? "reconnecting" : "connecting");
}

function signOut(reason) {
  if (signedOut) return;
  signedOut = true;
  generation++; // the old client's statuses no longer count
  const old = client;
  client = null;
  setTimeout(() => dispose(old), 0);
  setConnection("signed out");
  const expired = !claims?.exp || claims.exp * 1000 <= Date.now() + 1000;
  $("expired-title").textContent = expired ? "Your sign-in has expired" : "The server did not accept your sign-in";
  $("expired-reason").textContent = reason ? `The server said: ${reason}.` : "";
  $("expired-command").textContent = `eventgraph token --sub ${claims?.sub || "you"} --role ${role || "customer"} --open`;
  $("resign-error").textContent = "";
  $("expired").hidden = false;
  renderAll();
}

function resume(offered) {
  const offeredClaims = claimsOf(offered);
  if (!offeredClaims) {
    $("resign-error").textContent = "That is not a token: copy the whole token printed by eventgraph token.";
    return;
  }
  if (offeredClaims.exp && offeredClaims.exp * 1000 <= Date.now() + 1000) {
    $("resign-error").textContent = "That token has expired too: mint a new one.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, offered);
  if (offeredClaims.sub !== claims.sub || offeredClaims.role !== claims.role) {
    window.location.reload(); // another account: its own page
    return;
  }
  token = offered;
  claims = offeredClaims;
  signedOut = false;
  $("expired").hidden = true;
  $("resign-input").value = "";
  armExpiry();
  connect(); // every view again; the feeds resume after what they delivered
  renderAll();
  notify("Signed in again: carrying on");
}

let expiryTimer = null;
function armExpiry() {
  clearTimeout(expiryTimer);
  if (!claims.exp) return;
  const left = claims.exp * 1000 - Date.now();
  const held = token;
  if (left < 2 ** 31) {
    expiryTimer = setTimeout(() => {
      if (token === held) signOut("the token has expired");
    }, Math.max(left, 0));
  }
}

// ---- documents

const PRODUCT = "id sku name unitPrice onHand reserved available lowOnStock lowOnStockSince position";
const ORDER = "id customerId status total amountPaid placedAt expiresAt version position lines { sku quantity } shippingAddress { name line1 line2 city postalCode country } email";

// ---- products

const products = new Map();
const watchedProducts = new Set();
const soldBySku = new Map(); // units in PAID or SHIPPED orders, from every order seen

function productLabel(sku) {
  return products.get(sku)?.name || sku || "that product";
}

function keepProduct(product) {
  const held = products.get(product.sku);
  // A mutation's answer knows whether the product is low on stock, not since when: the
  // products read model does (its view at the same position may follow the answer).
  const knowsSince = (p) => Boolean(p?.lowOnStock && p.lowOnStockSince);
  if (held && held.position > product.position) return;
  if (held && held.position === product.position && (knowsSince(held) || !knowsSince(product))) return;
  if (product.lowOnStock && !product.lowOnStockSince && knowsSince(held)) {
    product = { ...product, lowOnStockSince: held.lowOnStockSince };
  }
  products.set(product.sku, product);
  setPosition("products", product.position);
  schedule();
}

function watchProduct(sku) {
  if (watchedProducts.has(sku)) return;
  watchedProducts.add(sku);
  live(`subscription ($sku: String!) { product(sku: $sku) { ${PRODUCT} } }`, () => ({ sku }), (data) =>
    keepProduct(data.product),
  );
}

async function loadProducts() {
  let after = null;
  let pages = 0;
  do {
    const data = await gql(
      `query ($after: String) { products(first: 100, after: $after) {
         edges { node { ${PRODUCT} } } pageInfo { hasNextPage endCursor } } }`,
      { after },
    );
    for (const { node } of data.products.edges) {
      keepProduct(node);
      watchProduct(node.sku);
    }
    after = data.products.pageInfo.hasNextPage ? data.products.pageInfo.endCursor : null;
  } while (after && ++pages < 10);
  productsLoaded = true;
  schedule();
}
let productsLoaded = false;

const wishlist = createWishlist({
  el, money, gql, live, failed, notify, act, showError, schedule, keepProduct, products, productLabel, PRODUCT,
  disabled: (extra) => actionDisabled(extra),
});

// ---- orders (staff: every order; customer: their own)

const orders = new Map();

function counts(order) {
  return order.status === "PAID" || order.status === "SHIPPED";
}

function keepOrder(order) {
  const held = orders.get(order.id);
  if (held && held.position >= order.position) return;
  if (held && counts(held)) for (const l of held.lines) soldBySku.set(l.sku, (soldBySku.get(l.sku) || 0) - l.quantity);
  if (counts(order)) for (const l of order.lines) soldBySku.set(l.sku, (soldBySku.get(l.sku) || 0) + l.quantity);
  if (!held) countPlaced(order.placedAt);
  orders.set(order.id, order);
  setPosition("orders", order.position);
  schedule();
}

/** Every order by query, a page at a time; answers the position a feed must start after:
 * the lowest of the pages' positions (each page is a view as of its own position). */
async function loadOrders() {
  let after = null;
  let from = null;
  let pages = 0;
  do {
    const data = await gql(
      `query ($after: String) { orders(first: 100, after: $after) {
         edges { node { ${ORDER} } } pageInfo { hasNextPage endCursor } position } }`,
      { after },
    );
    for (const { node } of data.orders.edges) keepOrder(node);
    // Each page reflects the log up to its position: the feed starts after the lowest.
    from = from === null ? data.orders.position : Math.min(from, data.orders.position);
    after = data.orders.pageInfo.hasNextPage ? data.orders.pageInfo.endCursor : null;
  } while (after && ++pages < MAX_ORDER_PAGES);
  ordersCapped = Boolean(after);
  ordersLoaded = true;
  schedule();
  return from ?? 0;
}
let ordersLoaded = false;
let ordersCapped = false;

/** A feed (myOrders or orders), from `after`: `subscribe` rewrites `after` to the last
 * position it delivered, so every reconnect resumes there; a new client (a new token)
 * resumes from `feed.after`, kept here. */
function liveFeed(field, after) {
  const feed = { after };
  live(
    `subscription ($after: Position) { ${field}(after: $after) { ${ORDER} } }`,
    () => ({ after: feed.after }),
    (data) => {
      const order = data[field];
      if (order.position > feed.after) feed.after = order.position;
      keepOrder(order);
    },
  );
}

// ---- actions

let busy = 0; // commands in flight: their buttons wait

async function act(run) {
  busy++;
  renderAll();
  try {
    await run();
  } finally {
    busy--;
    renderAll();
  }
}

const ORDER_COMMANDS = {
  payOrder: `mutation ($id: ID!, $amount: Decimal!, $key: String) { payOrder(orderId: $id, amount: $amount, idempotencyKey: $key) { position order { ${ORDER} } } }`,
  shipOrder: `mutation ($id: ID!) { shipOrder(orderId: $id) { position order { ${ORDER} } } }`,
  cancelOrder: `mutation ($id: ID!, $reason: String!) { cancelOrder(orderId: $id, reason: $reason) { position order { ${ORDER} } } }`,
};

async function orderCommand(name, order) {
  const due = decimalMinus(order.total, order.amountPaid);
  if (name === "cancelOrder") {
    const paid = Number(order.amountPaid) > 0;
    const mine = role === "customer";
    const agreed = await confirmDialog({
      title: mine ? `Cancel your order ${shortId(order.id)}?` : `Cancel order ${shortId(order.id)}?`,
      text: paid
        ? `It is paid: cancelling refunds ${money(order.amountPaid)}${mine ? " to you" : ` to ${order.customerId}`} and puts its items back in stock. This cannot be undone.`
        : "Cancelling releases the items it holds. This cannot be undone.",
      no: "Keep the order",
      yes: paid ? `Cancel and refund ${money(order.amountPaid)}` : "Cancel the order",
    });
    if (!agreed) return;
  }
  await act(async () => {
    try {
      const reason = role === "staff" ? "cancelled by staff from the console" : "cancelled by the customer";
      const data = await gql(ORDER_COMMANDS[name], { id: order.id, amount: due, reason, key: crypto.randomUUID() });
      const after = data[name].order;
      keepOrder(after);
      const label = `Order ${shortId(order.id)}`;
      if (name === "payOrder") notify(`${label} paid: ${money(due)}`);
      else if (name === "shipOrder") notify(`${label} shipped`);
      else notify(Number(order.amountPaid) > 0 ? `${label} cancelled, ${money(order.amountPaid)} refunded` : `${label} cancelled`);
    } catch (error) {
      failed(error, { order });
      // Refused for the order's state: this page's view of it is behind; read it again.
      if (error?.code === "INVALID_STATE") refreshOrder(order.id);
    }
  });
}

async function refreshOrder(id) {
  try {
    const data = await gql(`query ($id: ID!) { order(id: $id) { ${ORDER} } }`, { id });
    if (data.order) keepOrder(data.order);
  } catch {
    // the feed brings it anyway
  }
}

async function buy(sku) {
  await act(async () => {
    try {
      const data = await gql(
        `mutation ($sku: String!, $key: String) { placeOrder(lines: [{ sku: $sku, quantity: 1 }], idempotencyKey: $key) { position order { ${ORDER} } } }`,
        { sku, key: crypto.randomUUID() },
      );
      const order = data.placeOrder.order;
      keepOrder(order);
      notify(`Order placed: 1 × ${productLabel(sku)}, ${money(order.total)}. Pay for it under My orders.`);
    } catch (error) {
      failed(error, { sku });
    }
  });
}

async function register(form) {
  const fields = new FormData(form);
  const sku = String(fields.get("sku")).trim();
  const name = String(fields.get("name")).trim();
  const price = String(fields.get("price")).trim();
  const stock = Number(fields.get("stock"));
  await act(async () => {
    try {
      const data = await gql(
        `mutation ($sku: String!, $name: String!, $price: Decimal!, $stock: Int!) {
           registerProduct(sku: $sku, name: $name, unitPrice: $price, initialStock: $stock) { position product { ${PRODUCT} } } }`,
        { sku, name, price, stock },
      );
      keepProduct(data.registerProduct.product);
      watchProduct(sku);
      form.reset();
      notify(`Registered ${name} (${sku}) at ${money(price)}, ${stock} in stock`);
    } catch (error) {
      failed(error, { sku });
    }
  });
}

async function restock(sku, input) {
  const quantity = Number(input.value);
  await act(async () => {
    try {
      const data = await gql(
        `mutation ($sku: String!, $quantity: Int!) { restockProduct(sku: $sku, quantity: $quantity) { position product { ${PRODUCT} } } }`,
        { sku, quantity },
      );
      const product = data.restockProduct.product;
      keepProduct(product);
      notify(`Restocked ${product.name}: +${quantity}, ${product.onHand} on hand`);
    } catch (error) {
      failed(error, { sku });
    }
  });
}

async function copy(id) {
  try {
    await navigator.clipboard.writeText(id);
    notify(`Copied order id ${id}`);
  } catch {
    notify(`Order id: ${id}`);
  }
}

/** An in-page confirmation (a modal <dialog>): resolves true only for the "yes" button. */
function confirmDialog({ title, text, yes, no }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  $("confirm-no").textContent = no;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

// ---- rendering (batched: one frame renders whatever changed)

let pending = false;
function schedule() {
  if (!pending) {
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      renderAll();
    });
  }
}

function renderAll() {
  if (!role) return;
  if (role === "staff") renderStock();
  else renderShop();
  wishlist.render(role);
  renderOrders();
  renderChart();
  $("register-fields").disabled = signedOut;
}

const actionDisabled = (extra = false) => signedOut || busy > 0 || extra;

// Staff stock: rows kept per sku (a live update must not wipe a quantity being typed).
const stockRows = new Map();
function stockRow(sku) {
  let row = stockRows.get(sku);
  if (!row) {
    const quantity = el("input", { type: "number", min: "1", step: "1", value: "10", "aria-label": `Restock quantity for ${sku}`, class: "qty" });
    const button = el("button", { type: "submit", class: "action" }, "Restock");
    const cells = Object.fromEntries(
      ["name", "sku", "price", "onHand", "reserved", "available", "sold", "alerts"].map((field) => [
        field,
        el("td", { "data-field": field, class: ["name", "sku", "alerts"].includes(field) ? null : "num" }),
      ]),
    );
    const form = el("form", { class: "restock", onsubmit: (event) => {
      event.preventDefault();
      if (quantity.value && Number(quantity.value) > 0) restock(sku, quantity);
    } }, quantity, button);
    const tr = el("tr", { "data-sku": sku }, Object.values(cells), el("td", {}, form));
    row = { tr, cells, quantity, button };
    stockRows.set(sku, row);
  }
  return row;
}

function renderStock() {
  const rows = [...products.values()].sort((a, b) => a.sku.localeCompare(b.sku));
  for (const p of rows) {
    const row = stockRow(p.sku);
    const text = {
      name: p.name,
      sku: p.sku,
      price: money(p.unitPrice),
      onHand: p.onHand,
      reserved: p.reserved,
      available: p.available,
      sold: soldBySku.get(p.sku) || 0,
    };
    for (const [field, value] of Object.entries(text)) {
      if (row.cells[field].textContent !== String(value)) row.cells[field].textContent = String(value);
    }
    const alert = p.lowOnStock ? `low ${p.lowOnStockSince || ""}` : "";
    if (row.cells.alerts.dataset.shown !== alert) {
      row.cells.alerts.dataset.shown = alert;
      row.cells.alerts.replaceChildren(...lowStock(p, { since: true }));
    }
    row.quantity.setAttribute("aria-label", `Restock quantity for ${p.name}`);
    row.button.setAttribute("aria-label", `Restock ${p.name}`);
    row.button.disabled = actionDisabled();
  }
  const body = $("products-body");
  const wanted = rows.map((p) => stockRows.get(p.sku).tr);
  if (wanted.length !== body.children.length || wanted.some((tr, i) => body.children[i] !== tr)) {
    body.replaceChildren(...wanted);
  }
  $("products-empty").hidden = rows.length > 0 || !productsLoaded;
}

/** The low-stock badge (staff also read since when). */
function lowStock(p, { since = false } = {}) {
  if (!p.lowOnStock) return [];
  const badge = el("span", { class: "badge low", "data-field": "low-stock" }, "Low on stock");
  if (!since || !p.lowOnStockSince) return [badge];
  const at = el("time", { datetime: p.lowOnStockSince, title: new Date(p.lowOnStockSince).toLocaleString() }, clock(p.lowOnStockSince));
  return [badge, " ", el("span", { class: "muted", "data-field": "low-since" }, "since ", at)];
}

function renderShop() {
  const items = [...products.values()].sort((a, b) => a.name.localeCompare(b.name) || a.sku.localeCompare(b.sku));
  $("shop-list").replaceChildren(
    ...items.map((p) =>
      el(
        "li",
        { "data-sku": p.sku, class: "card" },
        el("h3", {}, p.name),
        el("p", { class: "price" }, money(p.unitPrice)),
        el(
          "p",
          { "data-field": "available", "data-available": p.available, class: p.available > 0 ? "stock" : "stock bad" },
          p.available > 5 ? `${p.available} in stock` : p.available > 0 ? `Only ${p.available} left` : "Sold out",
        ),
        p.available > 0 && p.lowOnStock ? el("p", {}, lowStock(p)) : null, // sold out says more
        el(
          "div",
          { class: "buttons" },
          el(
            "button",
            {
              type: "button",
              class: "action buy",
              disabled: actionDisabled(p.available < 1) ? "" : null,
              onclick: () => buy(p.sku),
              "aria-label": `Buy one ${p.name}`,
            },
            "Buy",
          ),
          wishlist.button(p),
        ),
      ),
    ),
  );
  $("shop-empty").hidden = items.length > 0 || !productsLoaded;
}

function orderActions(order) {
  const actions = [];
  const button = (label, name, extra = {}) =>
    el("button", {
      type: "button",
      class: `action${name === "cancelOrder" ? " danger" : ""}`,
      disabled: actionDisabled() ? "" : null,
      onclick: () => orderCommand(name, order),
      "aria-label": `${label} order ${order.id}`,
      ...extra,
    }, label);
  if (role === "staff" && order.status === "PAID") actions.push(button("Ship", "shipOrder"));
  if (role === "customer" && order.status === "PLACED") {
    actions.push(button(`Pay ${money(decimalMinus(order.total, order.amountPaid))}`, "payOrder", { "aria-label": `Pay order ${order.id}` }));
  }
  if (order.status === "PLACED" || order.status === "PAID") actions.push(button("Cancel", "cancelOrder"));
  return actions;
}

// Where a staff member ships the order: its address and email, as long as the customer has
// not been forgotten (then the API answers null for both, as when none was given).
function shipTo(order) {
  const a = order.shippingAddress;
  if (!a && !order.email) return null;
  const lines = a ? [a.name, a.line1, a.line2, `${a.postalCode} ${a.city}`, a.country].filter(Boolean) : [];
  return el(
    "div",
    { class: "ship-to", "data-field": "ship-to" },
    ...lines.map((line) => el("span", {}, line)),
    order.email ? el("span", { class: "muted" }, order.email) : null,
  );
}

function renderOrders() {
  const all = [...orders.values()].sort((a, b) => b.placedAt.localeCompare(a.placedAt) || b.id.localeCompare(a.id));
  const newest = all.slice(0, SHOWN_ORDERS);
  const staff = role === "staff";
  $("orders-body").replaceChildren(
    ...newest.map((o) =>
      el(
        "tr",
        { "data-order": o.id },
        el(
          "td",
          { class: "id" },
          el("code", { title: o.id }, shortId(o.id)),
          el("button", { type: "button", class: "copy", title: "Copy the full order id", "aria-label": `Copy order id ${o.id}`, onclick: () => copy(o.id) }, "Copy"),
        ),
        el("td", {}, el("time", { datetime: o.placedAt, title: new Date(o.placedAt).toLocaleString() }, clock(o.placedAt), el("span", { class: "muted" }, ` · ${ago(o.placedAt)}`))),
        staff ? el("td", { class: "customer" }, o.customerId, shipTo(o)) : null,
        el("td", {}, o.lines.map((l) => `${l.quantity} × ${productLabel(l.sku)}`).join(", ")),
        el("td", { class: "num" }, money(o.total)),
        el(
          "td",
          { class: "state" },
          el("span", { class: `status status-${o.status.toLowerCase()}`, "data-field": "status", "data-status": o.status }, statusWord(o.status)),
          o.status === "PLACED" && o.expiresAt
            ? el(
                "span",
                {
                  class: countdownText(o.expiresAt) === "expiring…" ? "countdown due" : "countdown",
                  "data-field": "countdown",
                  "data-expires-at": o.expiresAt,
                  title: `Unless paid, it expires at ${new Date(o.expiresAt).toLocaleString()}`,
                },
                countdownText(o.expiresAt),
              )
            : null,
          STATUS_NOTES[o.status] ? el("span", { class: "note", "data-field": "status-note" }, STATUS_NOTES[o.status]) : null,
        ),
        el("td", { class: "actions" }, orderActions(o)),
      ),
    ),
  );
  $("orders-empty").hidden = all.length > 0 || !ordersLoaded;
  $("orders-more").hidden = all.length <= SHOWN_ORDERS;
  $("orders-more").textContent = `Showing the latest ${SHOWN_ORDERS} of ${all.length}${ordersCapped ? "+" : ""} orders.`;
}

// ---- orders per minute, last 30 minutes (a small SVG bar chart)

const MINUTES = 30;
const perMinute = new Map();

function countPlaced(placedAt) {
  const minute = Math.floor(Date.parse(placedAt) / 60_000);
  perMinute.set(minute, (perMinute.get(minute) || 0) + 1);
}

function renderChart() {
  if (role !== "staff") return;
  const svg = $("chart");
  const now = Math.floor(serverNow() / 60_000);
  const counts = [];
  for (let m = now - MINUTES + 1; m <= now; m++) counts.push(perMinute.get(m) || 0);
  const total = counts.reduce((a, b) => a + b, 0);
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
  $("chart-summary").textContent =
    total === 0
      ? `No orders in the last ${MINUTES} minutes`
      : `${total} ${total === 1 ? "order" : "orders"} in the last ${MINUTES} minutes; ${counts[counts.length - 1]} this minute, peak ${top} per minute`;
}

// ---- the sales dashboard

let salesPosition = 0;
let lastSales = null;
function renderSales(d) {
  if (d.position <= salesPosition) return; // an older view never replaces a newer one
  salesPosition = d.position;
  lastSales = d;
  for (const field of ["ordersPlaced", "ordersPaid", "ordersShipped", "ordersCancelled", "ordersExpired"]) {
    $(field).textContent = d[field];
  }
  $("revenue").textContent = money(d.revenue);
  renderTop();
  setPosition("sales", d.position);
}

function renderTop() {
  const top = lastSales ? lastSales.topProducts : [];
  $("top-products").replaceChildren(
    ...top.map((p) =>
      el("li", { "data-sku": p.sku }, el("strong", { title: p.sku }, productLabel(p.sku)), ` ${p.unitsSold} ordered, ${money(p.revenue)}`),
    ),
  );
  $("top-empty").hidden = top.length > 0;
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

// ---- start

function showSignIn(reason) {
  $("signin").hidden = false;
  $("app").hidden = true;
  $("graphiql-link").hidden = true;
  $("signin-reason").textContent = reason || "";
  setConnection("signed out");
}

async function start() {
  const linkFailed = await signInFromLink();
  token = sessionStorage.getItem(TOKEN_KEY);
  claims = token && claimsOf(token);
  if (!claims) return showSignIn(linkFailed?.text || (token ? "That token could not be read." : ""));
  if (linkFailed) showError(linkFailed.text, linkFailed.code, linkFailed.message);
  if (claims.exp && claims.exp * 1000 < Date.now()) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn("Your sign-in has expired: mint a new token.");
  }
  role = claims.role === "staff" ? "staff" : "customer";
  document.body.dataset.role = role;
  document.title = role === "staff" ? "EventGraph console" : "EventGraph shop";
  $("title").textContent = document.title;
  $("who").textContent = role === "staff" ? `${claims.sub} (staff)` : `Signed in as ${claims.sub}`;
  $("signin").hidden = true;
  $("app").hidden = false;
  for (const node of document.querySelectorAll("[data-for]")) node.hidden = node.dataset.for !== role;
  if (role !== "staff") $("graphiql-link").remove(); // a shop, not a developer page
  $("orders-title").textContent = role === "staff" ? "Latest orders" : "My orders";
  armExpiry();
  measureClock();
  setInterval(tickCountdowns, 250); // shown by the second, checked often enough not to skip one
  connect();
  try {
    await loadProducts();
  } catch (error) {
    failed(error);
  }
  if (role === "staff") wishlist.startStaff(session.position);
  else wishlist.startCustomer();
  if (role === "staff") {
    live(
      `subscription { salesDashboard { id ordersPlaced ordersPaid ordersShipped ordersCancelled ordersExpired revenue position topProducts(limit: 5) { sku unitsSold revenue } } }`,
      () => ({}),
      (data) => renderSales(data.salesDashboard),
    );
    // Products registered after the list was read (every reconnect catches up from here).
    const from = Math.max(0, ...[...products.values()].map((p) => p.position));
    live(
      `subscription ($after: Position) { events(after: $after, types: ["ProductRegistered"]) { position data } }`,
      () => ({ after: from }),
      (data) => watchProduct(data.events.data.sku),
    );
  }
  setInterval(renderAll, 30_000); // the chart's minutes and the orders' "n min ago"
  const feed = role === "staff" ? "orders" : "myOrders";
  try {
    liveFeed(feed, await loadOrders());
  } catch (error) {
    failed(error);
    liveFeed(feed, 0); // the list could not be read: the feed sends every order instead
  }
}

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  dispose(client);
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

$("resign-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("resign-input").value.trim();
  if (value) resume(value);
});

$("register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  register(event.currentTarget);
});

$("error-dismiss").addEventListener("click", () => {
  $("last-error").hidden = true;
});

start();
