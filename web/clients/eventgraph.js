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
 * seconds more, refreshing once for any number of concurrent callers.
 */
export function tokenSource({ current, refresh = null, leeway = 1 }) {
  let refreshing = null;
  const expiresAt = (token) => (claimsOf(token)?.exp ?? 0) * 1000;
  const valid = (token) => Boolean(token) && expiresAt(token) - leeway * 1000 > Date.now();
  return {
    current,
    expired: (token) => !valid(token),
    canRefresh: () => refresh !== null,
    async fresh() {
      const held = current();
      if (valid(held) || refresh === null) return held;
      refreshing ??= Promise.resolve(refresh()).finally(() => {
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

/**
 * A graphql-ws client that reconnects for ever (1012 restarts, lost networks) and, when the
 * token expired (4403), reconnects at once with a fresh one. A token the server refuses
 * for another reason, or none at all, stops it: `onStatus("signed-out")`.
 * `onStatus(state, detail)`: "connecting" | "connected" | "reconnecting" | "signed-out".
 */
export function createWsClient({ url, tokens, onStatus = () => {}, ...options }) {
  let used = null;
  let lastClose = null;
  return createClient({
    url,
    lazy: false,
    retryAttempts: Infinity,
    connectionParams: async () => {
      used = await tokens.fresh();
      if (!used || tokens.expired(used)) {
        onStatus("signed-out", "your sign-in has expired");
        throw new Error("signed out: no valid token");
      }
      return { Authorization: `Bearer ${used}` };
    },
    shouldRetry: (event) => {
      if (event?.code !== 4403) return true;
      const again = tokens.canRefresh() && tokens.expired(used);
      if (!again) onStatus("signed-out", event.reason || "the server refused the token");
      return again;
    },
    retryWait: async (retries) => {
      if (lastClose === 4403) return; // a fresh token is ready: no reason to wait
      const seconds = Math.min(2 ** retries, 8);
      await new Promise((resolve) => setTimeout(resolve, seconds * 500 + Math.random() * 500));
    },
    on: {
      connecting: (retrying) => onStatus(retrying ? "reconnecting" : "connecting"),
      connected: () => {
        lastClose = null;
        onStatus("connected");
      },
      closed: (event) => {
        lastClose = event?.code ?? null;
        if (lastClose !== 4403) onStatus("reconnecting", event?.reason);
      },
    },
    ...options,
  });
}

function rootField(query) {
  // The first root field (alias or name) of a subscription's text: feeds are found by name.
  const body = query.slice(query.indexOf("{") + 1);
  const match = body.match(/^\s*(?:([_A-Za-z]\w*)\s*:\s*)?([_A-Za-z]\w*)/);
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
  const run = () => {
    stop = client.subscribe(payload, {
      next(result) {
        session?.observe(result);
        const position = feed ? result.data?.[root.key]?.position : undefined;
        if (typeof position === "number" && position > (payload.variables.after ?? 0)) {
          payload.variables.after = position; // what a resend (a reconnect) resumes after
        }
        sink.next(result);
      },
      error(errors) {
        const list = Array.isArray(errors) ? errors : [errors];
        const behind = list.find((e) => e?.extensions?.code === "UNAVAILABLE");
        if (feed && behind && !stopped) {
          const at = behind.extensions.position;
          if (typeof at === "number" && at > (payload.variables.after ?? 0)) payload.variables.after = at;
          setTimeout(() => !stopped && run(), 200);
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
  const newest = new Map();

  function keep(value) {
    if (Array.isArray(value)) return value.map(keep);
    if (value === null || typeof value !== "object") return value;
    const out = {};
    for (const [key, field] of Object.entries(value)) out[key] = keep(field);
    if (typeof out.position !== "number" || out.id == null || !out.__typename) return out;
    const entity = `${out.__typename}:${out.id}`;
    const held = newest.get(entity);
    if (held && held.position > out.position) {
      for (const key of Object.keys(out)) if (key in held) out[key] = held[key];
      return out;
    }
    newest.set(entity, held ? { ...held, ...out } : out);
    return out;
  }

  return (data) => (data == null ? data : keep(data));
}
