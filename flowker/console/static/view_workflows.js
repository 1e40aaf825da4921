// The workflows list: name, status, version, last change.
import { api, query } from "./api.js";
import { badge, h, table, when, fill } from "./dom.js";

export async function render({ view }) {
  const page = await api(`/v1/workflows${query({ limit: "100", sortBy: "name", sortOrder: "ASC" })}`);
  const rows = page.items.map((workflow) =>
    h(
      "tr",
      { "data-workflow": workflow.name },
      h("th", { scope: "row" }, h("a", { href: `/ui/workflows/${encodeURIComponent(workflow.id)}` }, workflow.name)),
      h("td", {}, badge(workflow.status)),
      h("td", {}, `v${workflow.version}`),
      h("td", {}, when(workflow.updatedAt)),
    ),
  );
  fill(view, 
    h("h1", {}, "Workflows"),
    page.items.length ? table(`${page.items.length} workflow(s)${page.hasMore ? " (first 100)" : ""}`, ["Name", "Status", "Version", "Updated"], rows) : h("p", {}, "No workflows yet: flowker apply a folder of specs."),
  );
}
