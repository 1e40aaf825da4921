// Audit events with filters; each entry's canonical content (what its hash covers, per
// docs/audit-chain.md) and hash; Verify checks the chain up to the newest entry.
import { api, query } from "./api.js";
import { field, h, message, when, fill } from "./dom.js";

const FILTERS = [
  ["eventType", "Event type", "text"],
  ["action", "Action", "text"],
  ["result", "Result", "select"],
  ["resourceType", "Resource type", "text"],
  ["resourceId", "Resource id", "text"],
  ["actor", "Actor", "text"],
  ["dateFrom", "From", "datetime-local"],
  ["dateTo", "To", "datetime-local"],
];

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]));
  return value;
}

export function canonical(event) {
  const entry = { action: event.action, actor: { id: event.actor.id, ipAddress: event.actor.ipAddress, type: event.actor.type }, eventId: event.eventId, eventType: event.eventType, resourceId: event.resourceId, resourceType: event.resourceType, result: event.result, sequence: event.sequence, timestamp: event.timestamp };
  return JSON.stringify(sortKeys({ entry, payload: { context: event.context ?? null, metadata: event.metadata ?? null }, v: 1 }));
}

function entry(event) {
  return h(
    "details",
    { class: "audit-entry", "data-event-id": event.eventId, "data-sequence": event.sequence },
    h("summary", {}, `#${event.sequence} ${event.eventType} · ${event.result} · ${event.resourceType} ${event.resourceId || ""} · ${event.actor.id} · ${when(event.timestamp)}`),
    h("h4", {}, "Canonical content"),
    h("pre", { class: "json" }, canonical(event)),
    h("dl", { class: "facts" }, h("dt", {}, "Hash"), h("dd", { class: "mono hash" }, event.hash), h("dt", {}, "Previous hash"), h("dd", { class: "mono hash" }, event.previousHash)),
  );
}

function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

export async function render({ view, params }) {
  const controls = {};
  const fields = FILTERS.map(([name, label, type]) => {
    const control = type === "select" ? h("select", { name }, ["", "SUCCESS", "FAILED"].map((v) => h("option", { value: v, selected: v === (params.get(name) || "") }, v || "any"))) : h("input", { name, type, value: type === "text" ? params.get(name) || "" : "" });
    controls[name] = control;
    return field(label, control, `audit-${name}`);
  });
  const list = h("div", { id: "audit-list" });
  const verdict = h("div", { id: "verify-result", role: "status" });

  async function load() {
    const filters = Object.fromEntries(FILTERS.map(([name, , type]) => [name, type === "datetime-local" ? toIso(controls[name].value) : controls[name].value.trim()]));
    const page = await api(`/v1/audit-events${query({ ...filters, limit: "100" })}`);
    fill(list, page.items.length ? h("div", {}, h("p", {}, `${page.items.length} entr${page.items.length === 1 ? "y" : "ies"}${page.hasMore ? " (newest 100)" : ""}`), page.items.map(entry)) : h("p", {}, "No entries match."));
  }

  async function verify() {
    fill(verdict, message("Verifying…"));
    const newest = (await api("/v1/audit-events?limit=1")).items[0];
    if (!newest) return fill(verdict, message("The chain is empty."));
    const result = await api(`/v1/audit-events/${encodeURIComponent(newest.eventId)}/verify`);
    const parts = [
      h("p", { class: result.isValid ? "valid" : "invalid", "data-valid": String(result.isValid) }, result.isValid ? "Valid" : "Invalid", `: ${result.totalChecked} entries checked.`),
      h("p", {}, result.message || ""),
    ];
    if (!result.isValid && result.firstInvalidId) {
      let named = result.firstInvalidId;
      try {
        const bad = await api(`/v1/audit-events/${encodeURIComponent(result.firstInvalidId)}`);
        named = `#${bad.sequence} ${bad.eventType} (${bad.eventId})`;
      } catch {
        /* the id alone names it */
      }
      parts.push(h("p", { id: "first-invalid", "data-event-id": result.firstInvalidId }, `First invalid entry: ${named}`));
    }
    fill(verdict, h("div", { class: `card verdict ${result.isValid ? "valid" : "invalid"}` }, parts));
  }

  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filter audit events",
      async onsubmit(event) {
        event.preventDefault();
        await load();
      },
    },
    fields,
    h("button", { type: "submit" }, "Filter"),
  );
  const verifyButton = h("button", { type: "button", id: "verify-button", onclick: () => verify().catch((error) => fill(verdict, message(error.message, "error"))) }, "Verify chain");
  fill(view, h("h1", {}, "Audit"), h("div", { class: "buttons" }, verifyButton), verdict, form, list);
  await load();
}
