// Executions with filters (workflow, status, day) and a count per status; the list
// refreshes by itself while any shown execution is queued or running.
import { api, query } from "./api.js";
import { badge, duration, field, h, table, when, fill } from "./dom.js";

const REFRESH_MS = 1500;

export async function render(context) {
  const { view, params, onLeave } = context;
  const workflows = (await api("/v1/workflows?limit=100")).items;
  const names = Object.fromEntries(workflows.map((w) => [w.id, w.name]));
  const workflowSelect = h("select", { name: "workflowId" }, h("option", { value: "" }, "any"), workflows.map((w) => h("option", { value: w.id, selected: w.id === params.get("workflowId") }, w.name)));
  const statusSelect = h("select", { name: "status" }, ["", "queued", "running", "completed", "failed"].map((value) => h("option", { value, selected: value === (params.get("status") || "") }, value || "any")));
  const dayInput = h("input", { type: "date", name: "day", value: params.get("day") || "" });
  const listHolder = h("div", { id: "execution-list" });
  const refreshNote = h("p", { class: "hint", role: "status" });
  let timer = null;
  let stopped = false;
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });

  async function load() {
    // The day is the browser's local day, sent as its UTC bounds.
    const range = {};
    if (dayInput.value) {
      const start = new Date(`${dayInput.value}T00:00:00`);
      range.dateFrom = start.toISOString();
      const next = new Date(start);
      next.setDate(next.getDate() + 1); // the next local midnight (a DST day is 23 or 25 hours)
      range.dateTo = new Date(next.getTime() - 1).toISOString();
    }
    const page = await api(`/v1/executions${query({ workflowId: workflowSelect.value, status: statusSelect.value, ...range, limit: "100" })}`);
    const items = page.items;
    const rows = items.map((execution) =>
      h(
        "tr",
        { "data-execution-id": execution.executionId, "data-status": execution.status },
        h("th", { scope: "row" }, h("a", { href: `/ui/executions/${encodeURIComponent(execution.executionId)}` }, execution.executionId.slice(-12))),
        h("td", {}, names[execution.workflowId] || execution.workflowId),
        h("td", {}, badge(execution.status)),
        h("td", {}, when(execution.startedAt)),
        h("td", {}, execution.completedAt ? duration(Date.parse(execution.completedAt) - Date.parse(execution.startedAt)) : "—"),
      ),
    );
    const counts = {};
    for (const execution of items) counts[execution.status] = (counts[execution.status] || 0) + 1;
    const countList = h("ul", { class: "counts", id: "status-counts", "aria-label": "Executions shown, by status" }, Object.entries(counts).map(([status, count]) => h("li", { "data-status": status, "data-count": count }, badge(status), ` ${count}`)));
    fill(listHolder, items.length ? [countList, table(`${items.length} execution(s)`, ["Execution", "Workflow", "Status", "Started", "Duration"], rows)] : h("p", {}, "No executions match."));
    const running = items.some((e) => e.status === "running" || e.status === "queued");
    refreshNote.textContent = running ? "Refreshing while executions wait or run…" : "";
    if (running && !stopped) timer = setTimeout(() => load().catch(() => {}), REFRESH_MS);
  }

  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filter executions",
      async onsubmit(event) {
        event.preventDefault();
        clearTimeout(timer);
        const search = query({ workflowId: workflowSelect.value, status: statusSelect.value, day: dayInput.value });
        history.replaceState(null, "", `/ui/executions${search}`);
        await load();
      },
    },
    field("Workflow", workflowSelect, "filter-workflow"),
    field("Status", statusSelect, "filter-status"),
    field("Started on", dayInput, "filter-day"),
    h("button", { type: "submit" }, "Filter"),
  );
  fill(view, h("h1", {}, "Executions"), form, refreshNote, listHolder);
  await load();
}
