// Newest view wins: a view's `position` is its read model's position when it was read, so of
// two views of one entity the higher position is the newer. A query answered before a
// subscription pushed a newer view can still arrive after it; this keeps, per entity
// (`__typename` + `id`), the newest view seen, and answers an older one with the newer
// fields instead. Library-agnostic: docs/frontend.md wraps it in an Apollo link and an urql
// exchange. Memory: one entry per entity seen (bound it with an LRU for very large sets).
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
      // older than what we hold: the same fields, from the newer view
      for (const key of Object.keys(out)) if (key in held) out[key] = held[key];
      return out;
    }
    newest.set(entity, held ? { ...held, ...out } : out);
    return out;
  }

  return (data) => (data == null ? data : keep(data));
}
