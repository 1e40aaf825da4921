// One workflow: its graph, version, saved versions (view_workflow_versions.js), lifecycle buttons (editors) and the trigger form
// built from the trigger's inputSchema (operators, active workflows only). A schedule
// trigger's cron, timezone and catchUp are shown; the API also runs such a workflow on
// request, so the form stays (its input must hold what the schedule would give).
import { api } from "./api.js";
import { badge, h, json, message, when, fill } from "./dom.js";
import { inputForm } from "./form.js";
import { drawGraph, fitGraphs } from "./graph.js";
import { versionsCard } from "./view_workflow_versions.js";

const TRANSITIONS = { draft: [["activate", "Activate"]], active: [["deactivate", "Deactivate"]], inactive: [["draft", "Move to draft"]] };

function lifecycle(workflow, context) {
  const status = h("p", { class: "action-status", role: "status" });
  const buttons = (TRANSITIONS[workflow.status] || []).map(([action, label]) =>
    h("button", {
      type: "button",
      class: "secondary",
      "data-action": action,
      async onclick() {
        try {
          await api(`/v1/workflows/${encodeURIComponent(workflow.id)}/${action}`, { method: "POST" });
          await render(context);
        } catch (error) {
          status.textContent = error.message;
        }
      },
    }, label),
  );
  return h("section", { class: "card", "aria-labelledby": "lifecycle-title" }, h("h2", { id: "lifecycle-title" }, "Lifecycle"), h("div", { class: "buttons" }, buttons), status);
}

function triggerForm(workflow, context) {
  const trigger = (workflow.nodes || []).find((node) => node.type === "trigger");
  const schema = trigger && trigger.data ? trigger.data.inputSchema : null;
  const inputs = inputForm(schema, "input");
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      id: "trigger-form",
      "aria-labelledby": "trigger-title",
      async onsubmit(event) {
        event.preventDefault();
        problem.textContent = "";
        try {
          const started = await api(`/v1/workflows/${encodeURIComponent(workflow.id)}/executions`, {
            method: "POST",
            body: { inputData: inputs.read() },
            headers: { Prefer: "respond-async" },
          });
          context.navigate(`/ui/executions/${encodeURIComponent(started.executionId)}`);
        } catch (error) {
          problem.textContent = error.message;
        }
      },
    },
    h("h2", { id: "trigger-title" }, "Run this workflow"),
    scheduleOf(workflow) ? h("p", { class: "hint" }, "Runs now, besides its schedule: give the input a scheduled run gets (scheduledAt included).") : null,
    schema ? h("p", { class: "hint" }, "Fields from the trigger's inputSchema.") : h("p", { class: "hint" }, "The trigger declares no inputSchema: any JSON object."),
    inputs.element,
    h("button", { type: "submit", id: "trigger-button" }, "Run"),
    problem,
  );
  return h("section", { class: "card" }, form);
}

function scheduleOf(workflow) {
  const trigger = (workflow.nodes || []).find((node) => node.type === "trigger");
  return trigger && trigger.data && trigger.data.triggerType === "schedule" ? trigger.data : null;
}

function scheduleCard(schedule) {
  return h(
    "section",
    { class: "card", id: "schedule", "aria-labelledby": "schedule-title" },
    h("h2", { id: "schedule-title" }, "Schedule"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Cron"),
      h("dd", { class: "mono", "data-schedule": "cron" }, schedule.cron || "—"),
      h("dt", {}, "Time zone"),
      h("dd", { "data-schedule": "timezone" }, schedule.timezone || "UTC"),
      h("dt", {}, "Catch-up"),
      h("dd", { "data-schedule": "catchUp" }, schedule.catchUp || "latest"),
      schedule.input !== undefined ? [h("dt", {}, "Fixed input"), h("dd", {}, json(schedule.input))] : null,
    ),
    h("p", { class: "hint" }, "An active workflow runs on this schedule, queued for a worker; each run's input also holds scheduledAt."),
  );
}

export async function render(context) {
  const { view, id, can } = context;
  const workflow = await api(`/v1/workflows/${encodeURIComponent(id)}`);
  const versions = await versionsCard(workflow.id);
  const schedule = scheduleOf(workflow);
  const parts = [
    h("h1", {}, workflow.name, " ", badge(workflow.status)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Version"),
      h("dd", {}, `v${workflow.version}`),
      h("dt", {}, "Created"),
      h("dd", {}, when(workflow.createdAt)),
      h("dt", {}, "Updated"),
      h("dd", {}, when(workflow.updatedAt)),
      h("dt", {}, "Executions"),
      h("dd", {}, h("a", { href: `/ui/executions?workflowId=${encodeURIComponent(workflow.id)}` }, "this workflow's executions")),
    ),
    workflow.description ? h("p", {}, workflow.description) : null,
    h("section", { class: "card", "aria-labelledby": "graph-title" }, h("h2", { id: "graph-title" }, "Graph"), h("div", { class: "graph-wrap", tabindex: "0", role: "region", "aria-label": "Graph (scrolls)" }, drawGraph(workflow))),
    versions,
    schedule ? scheduleCard(schedule) : null,
  ];
  if (can("edit")) parts.push(lifecycle(workflow, context));
  if (can("run")) {
    parts.push(workflow.status === "active" ? triggerForm(workflow, context) : message("Only an active workflow runs: activate it first."));
  }
  fill(view, ...parts.filter(Boolean));
  fitGraphs(view);
}
