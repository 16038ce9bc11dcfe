// The wishlist in the console. A customer's shop cards get a "Wish" toggle and the Wishlist
// panel lists what they wished, live: `myWishlist` is a live view over the dashboard's own
// graphql-ws client (so it reconnects, and is sent first again, with every other panel),
// pushed when the list changes or when a wished product's name, price or stock does. Staff
// get "Most wished", read again whenever a wishlist event is appended.
//
// Which view wins: the list's membership comes from the newest wishlist view (its position
// is the wishlist read model's; a push for a product's stock keeps that position, so a view
// at the same position replaces the one held). Each item's details go through the shop's
// `keepProduct`, which keeps the newest view of each product by the products' own position:
// a mutation's answer that arrives after a push can never show older stock.

/** The wishlist part of the console. `ui`: the dashboard's helpers (see dashboard.js). */
export function createWishlist(ui) {
  const { el, money, gql, live, failed, notify, act, disabled, keepProduct, products, productLabel, PRODUCT } = ui;
  const $ = (id) => document.getElementById(id);
  const VIEW = `position items { ${PRODUCT} }`;

  let held = null; // { position, skus: [...] }: the newest view of the customer's wishlist
  const wished = () => new Set(held ? held.skus : []);

  function keepWishlist(view) {
    if (held && view.position < held.position) return; // an older view never replaces a newer one
    for (const item of view.items) keepProduct(item); // schedules a render
    held = { position: view.position, skus: view.items.map((p) => p.sku) };
    ui.schedule();
  }

  /** The sentence for a refused wishlist command; the dashboard's for anything else. */
  function sentence(error, name, adding) {
    const { code, message = "" } = error;
    if (code === "ALREADY_EXISTS") return `${name} is already on your wishlist`;
    if (code === "NOT_FOUND") {
      return adding ? `${name} is no longer in the shop: it cannot go on your wishlist` : `${name} was not on your wishlist any more`;
    }
    if (code === "BAD_USER_INPUT" && /at most (\d+)/.test(message)) {
      const most = message.match(/at most (\d+)/)[1];
      return `Your wishlist is full: it holds at most ${most} products. Remove one to make room for ${name}`;
    }
    if (code === "FORBIDDEN") return "Only customers have a wishlist";
    return null;
  }

  async function toggle(sku) {
    const adding = !wished().has(sku);
    const name = productLabel(sku);
    await act(async () => {
      try {
        const field = adding ? "addToWishlist" : "removeFromWishlist";
        const data = await gql(`mutation ($sku: String!) { ${field}(sku: $sku) { position wishlist { ${VIEW} } } }`, { sku });
        keepWishlist(data[field].wishlist);
        notify(adding ? `Added ${name} to your wishlist` : `Removed ${name} from your wishlist`);
      } catch (error) {
        const text = sentence(error, name, adding);
        if (text) ui.showError(text, error.code, error.message);
        else failed(error, { sku });
        // Refused because this page's list is behind (changed in another tab): read it again.
        if (error?.code === "ALREADY_EXISTS" || (!adding && error?.code === "NOT_FOUND")) reread();
      }
    });
  }

  async function reread() {
    try {
      keepWishlist((await gql(`query { myWishlist { ${VIEW} } }`)).myWishlist);
    } catch {
      // the live view brings it anyway
    }
  }

  /** The toggle on a shop card. */
  function button(p) {
    const on = wished().has(p.sku);
    return el(
      "button",
      {
        type: "button",
        class: on ? "wish on" : "wish",
        "aria-pressed": on ? "true" : "false",
        "aria-label": `Wish for ${p.name}`,
        title: on ? "On your wishlist: click to remove it" : "Keep it on your wishlist",
        disabled: disabled(!held) ? "" : null, // not before the list is known
        onclick: () => toggle(p.sku),
      },
      on ? "♥ Wished" : "♡ Wish",
    );
  }

  function stockText(p) {
    return p.available > 5 ? `${p.available} in stock` : p.available > 0 ? `Only ${p.available} left` : "Sold out";
  }

  function renderWishlist() {
    const items = (held ? held.skus : []).map((sku) => products.get(sku)).filter(Boolean);
    $("wishlist-list").replaceChildren(
      ...items.map((p) =>
        el(
          "li",
          { "data-sku": p.sku },
          el("span", { class: "name", "data-field": "name" }, p.name),
          el("span", { class: "price", "data-field": "price" }, money(p.unitPrice)),
          el("span", { class: p.available > 0 ? "stock" : "stock bad", "data-field": "available", "data-available": p.available }, stockText(p)),
          el(
            "button",
            { type: "button", class: "remove", disabled: disabled() ? "" : null, onclick: () => toggle(p.sku), "aria-label": `Remove ${p.name} from my wishlist` },
            "Remove",
          ),
        ),
      ),
    );
    $("wishlist-count").textContent = items.length ? `${items.length} ${items.length === 1 ? "product" : "products"}` : "";
    $("wishlist-empty").hidden = !held || items.length > 0;
  }

  // ---- staff: the most wished products, read again (at least as of the newest event seen)
  // whenever a wishlist event is appended; a burst of them is one read.

  let mostWished = null;
  let wantedAt = 0; // the newest wishlist event's position: the next read is at least as new
  let reading = null;
  let again = false;

  function refreshMostWished() {
    if (reading) {
      again = true;
      return;
    }
    reading = (async () => {
      try {
        const data = await gql(`query ($at: Position) { mostWished(first: 10, atLeast: $at) { sku wishes } }`, { at: wantedAt || null });
        mostWished = data.mostWished;
        ui.schedule();
      } catch (error) {
        failed(error);
      } finally {
        reading = null;
        if (again) {
          again = false;
          setTimeout(refreshMostWished, 250);
        }
      }
    })();
  }

  function renderMostWished() {
    const rows = mostWished || [];
    $("most-wished-list").replaceChildren(
      ...rows.map((w) =>
        el(
          "li",
          { "data-sku": w.sku },
          el("strong", { title: w.sku }, productLabel(w.sku)),
          " ",
          el("span", { "data-field": "wishes", "data-wishes": w.wishes }, `${w.wishes} ${w.wishes === 1 ? "wish" : "wishes"}`),
        ),
      ),
    );
    $("most-wished-empty").hidden = !mostWished || rows.length > 0;
  }

  return {
    button,
    /** A customer: the live wishlist (its first view, then every change). */
    startCustomer() {
      live(`subscription { myWishlist { ${VIEW} } }`, () => ({}), (data) => keepWishlist(data.myWishlist));
    },
    /** Staff: the most wished now, then again after every wishlist event from `after`. */
    startStaff(after) {
      wantedAt = after;
      refreshMostWished();
      live(
        `subscription ($after: Position) { events(after: $after, types: ["WishlistItemAdded", "WishlistItemRemoved"]) { position } }`,
        () => ({ after: wantedAt }),
        (data) => {
          wantedAt = Math.max(wantedAt, data.events.position);
          refreshMostWished();
        },
      );
    },
    /** Back after a reconnect: staff read the counts again (pushes may have been missed). */
    reconnected(role) {
      if (role === "staff") refreshMostWished();
    },
    render(role) {
      if (role === "staff") renderMostWished();
      else renderWishlist();
    },
  };
}
