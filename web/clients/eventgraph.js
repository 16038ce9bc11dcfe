// EventGraph's client core, for any framework: the dashboard uses it as it is, and
// apollo.js and urql.js build on it. What it keeps for you:
//   - the session's position: the highest log position seen (extensions.position of a
//     write, or any view's `position`), sent with every query as EventGraph-At-Least, so a
//     read right after a write already includes it (read your own writes, no null);
//   - feeds that resume: a feed's subscribe message carries `after` = the last position it
//     delivered, rewritten in place, so every reconnect (graphql-ws resends the same
//     message) and every UNAVAILABLE (a subscriber that fell behind) resumes from there;
//   - tokens that expire: the server closes the socket with 4403 at expiry; the client
//     reconnects at once with a fresh token from your token source, feeds resume, views
//     come first again. Why not re-authenticate in band: graphql-transport-ws has no
//     message for it, and a private one would break every standard client; a reconnect
//     costs one handshake per token lifetime and, with `after`, loses nothing;
//   - the newest view per entity (an older answer never overwrites a newer pushed view).
import { createClient } from "graphql-ws";

export const FEEDS = new Set(["myOrders", "orders"]);
export const AT_LEAST_HEADER = "EventGraph-At-Least";

// ---- the session's position

export function createSession() {
  let highest = 0;
  const listeners = new Set();
  const see = (position) => {
    if (typeof position === "number" && Number.isSafeInteger(position) && position > highest) {
      highest = position;
      for (const listener of listeners) listener(highest);
    }
  };
  const walk = (value) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value !== null && typeof value === "object") {
      for (const [key, field] of Object.entries(value)) {
        if (key === "position") see(field);
        else walk(field);
      }
    }
  };
  return {
    get position() {
      return highest;
    },
    see,
    /** Every position in a GraphQL result: extensions.position and the views' positions. */
    observe(result) {
      if (!result) return result;
      see(result.extensions?.position);
      walk(result.data);
      return result;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

// ---- tokens

export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/**
 * `current()` gives the token held now (or null); `refresh()`, if given, a new one (or null
 * when the user must sign in again). `fresh()` answers a token valid for at least `leeway`
 * seconds more by this browser's clock and not refused by the server, refreshing once for
 * any number of concurrent callers.
 */
export function tokenSource({ current, refresh = null, leeway = 1 }) {
  let refreshing = null;
  let refused = null;
  const expiresAt = (token) => (claimsOf(token)?.exp ?? 0) * 1000;
  const valid = (token) =>
    Boolean(token) && token !== refused && expiresAt(token) - leeway * 1000 > Date.now();
  return {
    current,
    expired: (token) => !valid(token),
    canRefresh: () => refresh !== null,
    /** The server refused `token` (4403): never offer it again. Its clock decides, not ours. */
    refuse(token) {
      refused = token;
    },
    async fresh() {
      const held = current();
      if (valid(held)) return held;
      if (refresh === null) return held === refused ? null : held;
      refreshing ??= Promise.resolve()
        .then(refresh)
        .finally(() => {
          refreshing = null;
        });
      return refreshing;
    },
  };
}

// ---- HTTP

/** A fetch that adds the token and the session's position: give it to any GraphQL HTTP
 * client, and pass its results through `session.observe` before they reach your cache. */
export function sessionFetch({ tokens, session, fetch: base = globalThis.fetch.bind(globalThis) }) {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers || {});
    const token = await tokens.fresh();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    if (session.position > 0) headers.set(AT_LEAST_HEADER, String(session.position));
    return base(input, { ...init, headers });
  };
}

/** `request(query, variables)`: `{ data, errors, extensions }` over POST, with the session. */
export function createRequester({ url, tokens, session }) {
  const post = sessionFetch({ tokens, session });
  return async (query, variables = {}) => {
    const response = await post(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    session.observe(body);
    return body;
  };
}

// ---- WebSocket

// Close codes after which graphql-ws never reconnects.
const FATAL = new Set([4004, 4005, 4400, 4401, 4406, 4409, 4429, 4500]);
const fatal = (code) =>
  FATAL.has(code) || (code >= 1000 && code <= 1999 && ![1000, 1001, 1005, 1006, 1012, 1013, 1014].includes(code));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A graphql-ws client that reconnects for ever (1012 restarts, lost networks) and, when the
 * server refuses the token (4403: it expired, by the server's clock), reconnects at once
 * with a fresh one. A fresh token refused again, or a token source that answers null, stops
 * it: `onStatus("signed-out")`. A refresh that fails (the network) is tried again.
 * `onStatus(state, detail)`: "connecting" | "connected" | "reconnecting" | "signed-out" |
 * "failed" (a close graphql-ws does not retry, e.g. 4400: a bug to report).
 */
export function createWsClient({ url, tokens, onStatus = () => {}, ...options }) {
  let used = null;
  let lastClose = null;
  let refusals = 0; // 4403s since the last successful connection
  let refusal = null; // the close they were counted for
  let unreachable = false; // no token could be fetched: the server will refuse the socket
  let ended = false;
  const end = (state, detail) => {
    ended = true;
    onStatus(state, detail);
  };
  return createClient({
    url,
    lazy: false,
    retryAttempts: Infinity,
    connectionParams: async () => {
      unreachable = false;
      for (let attempt = 0; ; attempt++) {
        try {
          used = await tokens.fresh();
          break;
        } catch {
          // Refreshing failed (offline?): try again, within the server's 10 s to init;
          // then connect without a token, be refused, and try again after a pause.
          if (attempt === 3) {
            unreachable = true;
            used = null;
            return {};
          }
          await sleep(500 * 2 ** attempt);
        }
      }
      if (!used) {
        end("signed-out", "your sign-in has expired");
        throw new Error("signed out: no valid token");
      }
      return { Authorization: `Bearer ${used}` };
    },
    // Asked once per waiting subscription for the same close: decide once per close.
    shouldRetry: (event) => {
      if (event?.code !== 4403) return !ended;
      if (unreachable) return true;
      if (event !== refusal) {
        refusal = event;
        refusals += 1;
        tokens.refuse(used);
        if (!tokens.canRefresh() || refusals > 1) {
          end("signed-out", event.reason || "the server refused the token");
        }
      }
      return !ended;
    },
    retryWait: async (retries) => {
      if (lastClose === 4403 && !unreachable && refusals === 1) return; // a fresh token: now
      await sleep(Math.min(2 ** retries, 8) * 500 + Math.random() * 500);
    },
    on: {
      connecting: (retrying) => ended || onStatus(retrying ? "reconnecting" : "connecting"),
      connected: () => {
        refusals = 0;
        lastClose = null;
        onStatus("connected");
      },
      closed: (event) => {
        lastClose = event?.code ?? null;
        if (ended) return;
        if (fatal(lastClose)) end("failed", `${lastClose} ${event?.reason || ""}`.trim());
        else onStatus("reconnecting", event?.reason);
      },
    },
    ...options,
  });
}

function rootField(query) {
  // The first root field (alias or name) of the subscription operation: feeds are found by
  // name. Skips what comes before the operation (fragments) and its variable definitions
  // (whose default values may hold braces).
  const start = query.search(/\bsubscription\b/);
  if (start < 0) return null;
  let depth = 0;
  let at = start;
  for (; at < query.length; at++) {
    const c = query[at];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "{" && depth === 0) break;
  }
  const match = query.slice(at + 1).match(/^\s*(?:([_A-Za-z]\w*)\s*:\s*)?([_A-Za-z]\w*)/);
  return match ? { key: match[1] || match[2], name: match[2] } : null;
}

/**
 * Subscribe through `client` (graphql-ws). A feed (myOrders, orders; its document must take
 * `$after: Position`) resumes after the last position it delivered: on every reconnect, and
 * when the server ends it with UNAVAILABLE. Every result is observed by `session`.
 * `sink`: { next(result), error(errors), complete() }. Returns the unsubscribe function.
 */
export function subscribe(client, { query, variables, operationName, extensions, session }, sink) {
  const root = rootField(query);
  const feed = root !== null && FEEDS.has(root.name);
  const payload = { query, variables: { ...(variables || {}) }, operationName, extensions };
  let stop = () => {};
  let stopped = false;
  let behind = 0; // UNAVAILABLE in a row: resume after a growing pause, report after 5
  const run = () => {
    stop = client.subscribe(payload, {
      next(result) {
        session?.observe(result);
        const position = feed ? result.data?.[root.key]?.position : undefined;
        if (typeof position === "number" && position > (payload.variables.after ?? 0)) {
          payload.variables.after = position; // what a resend (a reconnect) resumes after
          behind = 0;
        }
        sink.next(result);
      },
      error(errors) {
        const list = Array.isArray(errors) ? errors : [errors];
        const unavailable = list.find((e) => e?.extensions?.code === "UNAVAILABLE");
        if (feed && unavailable && !stopped && behind < 5) {
          const at = unavailable.extensions.position;
          if (typeof at === "number" && at > (payload.variables.after ?? 0)) payload.variables.after = at;
          setTimeout(() => !stopped && run(), 200 * 2 ** behind++);
          return;
        }
        sink.error(errors);
      },
      complete() {
        if (!stopped) sink.complete?.();
      },
    });
  };
  run();
  return () => {
    stopped = true;
    stop();
  };
}

/** `client` (graphql-ws) with feeds that resume and positions observed: give it to any
 * library that takes a graphql-ws client (Apollo's GraphQLWsLink, urql's
 * subscriptionExchange). */
export function resuming(client, session) {
  return {
    ...client,
    subscribe: (payload, sink) => subscribe(client, { ...payload, session }, sink),
  };
}

// ---- the newest view per entity

/**
 * Newest view wins: a view's `position` is its read model's position when it was read, so
 * of two views of one entity the higher position is the newer. A query answered before a
 * subscription pushed a newer view can still arrive after it; this keeps, per entity
 * (`__typename` + `id`), the newest view seen, and answers an older one with the newer
 * fields instead. Memory: one entry per entity seen.
 */
export function newestViews() {
  // Per entity, each field's newest value and the position of the view it came from: a
  // newer view that does not select a field says nothing about it.
  const newest = new Map();

  function keep(value) {
    if (Array.isArray(value)) return value.map(keep);
    if (value === null || typeof value !== "object") return value;
    const out = {};
    for (const [key, field] of Object.entries(value)) out[key] = keep(field);
    if (typeof out.position !== "number" || out.id == null || !out.__typename) return out;
    const entity = `${out.__typename}:${out.id}`;
    let fields = newest.get(entity);
    if (!fields) newest.set(entity, (fields = new Map()));
    const at = out.position;
    for (const key of Object.keys(out)) {
      const held = fields.get(key);
      if (held && held.position > at) out[key] = held.value;
      else fields.set(key, { value: out[key], position: at });
    }
    return out;
  }

  return (data) => (data == null ? data : keep(data));
}
