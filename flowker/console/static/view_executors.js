// Executors with their configuration as the API shows it (secrets masked or references),
// and a Test button (editors) showing the probe's stages.
import { api } from "./api.js";
import { badge, duration, h, json, table, fill } from "./dom.js";

function testButton(executor) {
  const output = h("div", { class: "probe", role: "status", "data-executor": executor.name });
  const button = h("button", {
    type: "button",
    class: "secondary",
    "data-test": executor.name,
    "aria-label": `Test ${executor.name}`,
    async onclick() {
      output.textContent = "Testing…";
      try {
        const probe = await api(`/v1/executors/${encodeURIComponent(executor.id)}/test`, { method: "POST" });
        const rows = probe.stages.map((stage) => h("tr", { "data-stage": stage.name }, h("td", {}, stage.name), h("td", {}, badge(stage.status)), h("td", {}, stage.message || ""), h("td", {}, duration(stage.durationMs))));
        output.replaceChildren(h("p", {}, `${probe.overallStatus}: ${probe.summary || ""}`), table("Probe stages", ["Stage", "Status", "Message", "Duration"], rows));
      } catch (error) {
        output.textContent = error.message;
      }
    },
  }, "Test");
  return [button, output];
}

export async function render({ view, can }) {
  const page = await api("/v1/executors?limit=100");
  const cards = page.items.map((executor) =>
    h(
      "section",
      { class: "card executor", "data-executor": executor.name, "aria-labelledby": `executor-${executor.id}` },
      h("h2", { id: `executor-${executor.id}` }, executor.name, " ", badge(executor.status)),
      h("dl", { class: "facts" }, h("dt", {}, "Base URL"), h("dd", { class: "url" }, executor.baseUrl), h("dt", {}, "Authentication"), h("dd", {}, executor.authentication ? executor.authentication.type : "none"), h("dt", {}, "Version"), h("dd", {}, `v${executor.version}`)),
      h("details", {}, h("summary", {}, "Configuration"), json({ endpoints: executor.endpoints, authentication: executor.authentication })),
      can("edit") ? testButton(executor) : null,
    ),
  );
  fill(view, h("h1", {}, "Executors"), ...(cards.length ? cards : [h("p", {}, "No executors yet.")]));
}
