// A workflow's saved versions (newest first) on its page; selecting one draws that
// version's graph below the list, read-only. Nothing is drawn until a version is chosen,
// so the page's own graph stays the only one at first.
import { api } from "./api.js";
import { badge, h, message, table, when, fill } from "./dom.js";
import { drawGraph, fitGraphs } from "./graph.js";

const PAGE_SIZE = 100;

async function showVersion(workflowId, item, shown, buttons) {
  for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.version === String(item.version)));
  fill(shown, message(`Loading v${item.version}…`));
  try {
    const version = await api(`/v1/workflows/${encodeURIComponent(workflowId)}/versions/${item.version}`);
    fill(
      shown,
      h("h3", { id: "version-graph-title" }, `Graph of v${version.version}`, version.current ? " (current)" : ""),
      h("p", { class: "hint" }, `${version.nodes.length} node(s); saved ${when(version.createdAt)}; read-only.`),
      h(
        "div",
        { class: "graph-wrap", id: "version-graph", "data-version": String(version.version), tabindex: "0", role: "region", "aria-labelledby": "version-graph-title" },
        drawGraph(version),
      ),
    );
    fitGraphs(shown);
  } catch (error) {
    fill(shown, message(error.message, "error"));
  }
}

export async function versionsCard(workflowId) {
  const card = h("section", { class: "card", id: "versions", "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"));
  let page;
  try {
    page = await api(`/v1/workflows/${encodeURIComponent(workflowId)}/versions?limit=${PAGE_SIZE}`);
  } catch (error) {
    card.append(message(error.message, "error"));
    return card;
  }
  const shown = h("div", { class: "version-shown" });
  const buttons = [];
  const rows = page.items.map((item) => {
    const button = h(
      "button",
      {
        type: "button",
        class: "secondary",
        "data-version": String(item.version),
        "aria-pressed": "false",
        onclick: () => showVersion(workflowId, item, shown, buttons),
      },
      `Show v${item.version}`,
    );
    buttons.push(button);
    return h(
      "tr",
      { "data-version": String(item.version), "data-current": String(item.current) },
      h("td", {}, `v${item.version}`, item.current ? [" ", badge("current")] : null),
      h("td", {}, when(item.createdAt)),
      h("td", {}, String(item.nodeCount)),
      h("td", {}, button),
    );
  });
  const caption = `${page.items.length} version(s)${page.hasMore ? ` (newest ${PAGE_SIZE})` : ""}`;
  card.append(table(caption, ["Version", "Saved", "Nodes", "Graph"], rows), shown);
  return card;
}
