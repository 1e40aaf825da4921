// One execution: the graph coloured by each node's status, the timeline, each step's
// input, output, error and call details as the API shows them (redacted there), links to
// its audit events and, once the server offers it, a Retry button on failed executions.
// A retry links to its original and marks the steps it reused from it; the original links
// to its retry. Queued and running executions refresh by themselves.
import { api, ApiError, offers } from "./api.js";
import { badge, duration, h, json, message, table, when, fill } from "./dom.js";
import { drawGantt } from "./gantt.js";
import { drawGraph, fitGraphs } from "./graph.js";

const POLL_MS = 1000;
const UNSETTLED = ["queued", "running"];
const RETRY_PATH = "/v1/executions/{execution_id}/retry";
const STEPS_PATH = "/v1/executions/{execution_id}/steps";
const STEP_PAGES = 20; // at most 2000 recorded steps are drawn while a run goes on

// The steps a running execution has on record, and the node of the step in flight.
async function stepsSoFar(id) {
  const steps = [];
  let runningNode = null;
  for (let page = 0, after = 0; page < STEP_PAGES; page += 1) {
    const answer = await api(`${STEPS_PATH.replace("{execution_id}", encodeURIComponent(id))}?after=${after}&limit=100`);
    steps.push(...answer.items);
    runningNode = answer.runningStep ? answer.runningStep.nodeId : null;
    if (!answer.hasMore || answer.items.length === 0) break;
    after = answer.items[answer.items.length - 1].stepNumber;
  }
  return { steps, runningNode };
}

function callDetails(details) {
  if (!details) return null;
  const attempts = (details.attemptLog || []).map((attempt) =>
    h("tr", {}, h("td", {}, attempt.attempt), h("td", {}, when(attempt.startedAt)), h("td", {}, attempt.statusCode ?? "—"), h("td", {}, attempt.outcome || "—"), h("td", {}, duration(attempt.durationMs))),
  );
  return h(
    "div",
    { class: "call" },
    h("h4", {}, "Call"),
    h("dl", { class: "facts" }, h("dt", {}, "Method"), h("dd", {}, details.method || "—"), h("dt", {}, "URL"), h("dd", { class: "url" }, details.url || "—"), h("dt", {}, "Status"), h("dd", {}, details.statusCode ?? "—"), h("dt", {}, "Attempts"), h("dd", {}, details.attempts ?? attempts.length)),
    attempts.length ? table("Attempts", ["#", "Started", "Status", "Outcome", "Duration"], attempts) : null,
  );
}

function stepDetails(step, reused) {
  const body = h("div", { class: "step-body" });
  const build = () => {
    if (body.childElementCount) return;
    fill(
      body,
      step.errorMessage ? h("div", { class: "step-error", role: "note" }, h("h4", {}, "Error"), h("p", {}, step.errorMessage)) : null,
      h("h4", {}, "Input"),
      json(step.input),
      h("h4", {}, "Output"),
      json(step.output),
      callDetails(step.callDetails),
    );
  };
  // Filled when opened, so a large execution draws its list at once.
  const item = h(
    "details",
    { class: "step", "data-node-id": step.nodeId, "data-status": step.status, "data-reused": reused ? "true" : null, ontoggle: build },
    h("summary", {}, `${step.stepNumber}. ${step.stepName || step.nodeId} `, badge(step.status), ` ${duration(step.durationMs)}`, step.attempts > 1 ? ` · ${step.attempts} attempts` : "", reused ? h("span", { class: "reused" }, " · reused from the original") : null),
    body,
  );
  if (step.status === "failed") {
    item.open = true;
    build();
  }
  return item;
}

// A retry's first steps are copies of its original's (their times are the original's,
// before the retry was queued): the page marks them as reused.
function reusedStep(execution, step) {
  const queued = Date.parse(execution.queuedAt || execution.startedAt);
  return Boolean(execution.retryOf) && Date.parse(step.executedAt) < queued;
}

async function retryButton(execution, context) {
  // One retry per failed execution (the API answers 409 FLK-0531 to a second): an
  // execution already retried links to its retry instead.
  if (execution.status !== "failed" || execution.retriedBy || !context.can("run") || !(await offers("POST", RETRY_PATH))) return null;
  const problem = h("p", { class: "error", role: "alert" });
  const button = h("button", {
    type: "button",
    id: "retry-button",
    async onclick() {
      try {
        const started = await api(RETRY_PATH.replace("{execution_id}", encodeURIComponent(execution.executionId)), { method: "POST" });
        context.navigate(`/ui/executions/${encodeURIComponent(started.executionId)}`);
      } catch (error) {
        problem.textContent = error.message;
      }
    },
  }, "Retry");
  return h("div", { class: "buttons" }, button, problem);
}

export function drawExecution(execution, workflow, results, runningNode = null) {
  const steps = results ? results.stepResults : [];
  const statusByNode = {};
  const errorByNode = {};
  for (const step of steps) {
    statusByNode[step.nodeId] = step.status;
    if (step.errorMessage) errorByNode[step.nodeId] = step.errorMessage;
  }
  // While it runs: the steps on record so far and the step in flight (GET .../steps);
  // the nodes after it show "pending" until the next refresh.
  if (runningNode && !statusByNode[runningNode]) statusByNode[runningNode] = "running";
  return [
    h("section", { class: "card", "aria-labelledby": "graph-title" }, h("h2", { id: "graph-title" }, "Graph"), h("div", { class: "graph-wrap", tabindex: "0", role: "region", "aria-label": "Graph (scrolls)" }, drawGraph(workflow, statusByNode, errorByNode))),
    steps.length ? h("section", { class: "card", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), h("div", { class: "graph-wrap", tabindex: "0", role: "region", "aria-label": "Timeline (scrolls)" }, drawGantt(steps))) : null,
    steps.length ? h("section", { class: "card", "aria-labelledby": "steps-title" }, h("h2", { id: "steps-title" }, "Steps"), h("div", { class: "steps" }, steps.map((step) => stepDetails(step, reusedStep(execution, step))))) : null,
    results && results.finalOutput !== undefined ? h("section", { class: "card" }, h("h2", {}, "Final output"), json(results.finalOutput)) : null,
  ];
}

export async function render(context) {
  const { view, id, can, onLeave } = context;
  const execution = await api(`/v1/executions/${encodeURIComponent(id)}`);
  const workflow = await api(`/v1/workflows/${encodeURIComponent(execution.workflowId)}`);
  let results = null;
  let runningNode = null;
  if (execution.status === "running" && (await offers("GET", STEPS_PATH))) {
    const progress = await stepsSoFar(id);
    results = { stepResults: progress.steps };
    runningNode = progress.runningNode;
  }
  if (!UNSETTLED.includes(execution.status)) {
    try {
      results = await api(`/v1/executions/${encodeURIComponent(id)}/results`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 422)) throw error;
    }
  }
  const started = performance.now();
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Workflow"),
    h("dd", {}, h("a", { href: `/ui/workflows/${encodeURIComponent(workflow.id)}` }, workflow.name)),
    h("dt", {}, "Started"),
    h("dd", {}, when(execution.startedAt)),
    h("dt", {}, "Completed"),
    h("dd", {}, when(execution.completedAt)),
    execution.status === "running" && execution.totalSteps ? [h("dt", {}, "Progress"), h("dd", {}, `step ${execution.currentStepNumber} of ${execution.totalSteps}`)] : null,
    h("dt", {}, "Duration"),
    h("dd", {}, execution.completedAt ? duration(Date.parse(execution.completedAt) - Date.parse(execution.startedAt)) : "—"),
    execution.retryOf ? [h("dt", {}, "Retry of"), h("dd", {}, h("a", { href: `/ui/executions/${encodeURIComponent(execution.retryOf)}`, id: "retry-of-link" }, execution.retryOf))] : null,
    execution.retriedBy ? [h("dt", {}, "Retried by"), h("dd", {}, h("a", { href: `/ui/executions/${encodeURIComponent(execution.retriedBy)}`, id: "retried-by-link" }, execution.retriedBy))] : null,
    can("audit") ? [h("dt", {}, "Audit"), h("dd", {}, h("a", { href: `/ui/audit?resourceId=${encodeURIComponent(id)}`, id: "audit-link" }, "this execution's audit events"))] : null,
  );
  fill(view, 
    h("h1", {}, "Execution ", h("span", { class: "mono" }, id.slice(-12)), " ", h("span", { id: "execution-status" }, badge(execution.status))),
    facts,
    execution.status === "running" ? message("Running: this page refreshes by itself.") : null,
    execution.status === "queued" ? message("Queued: waiting for a worker to start it; this page refreshes by itself.") : null,
    await retryButton(execution, context),
    ...drawExecution(execution, workflow, results, runningNode),
  );
  fitGraphs(view); // reads the layout, so the measured time includes it
  view.dataset.renderMs = (performance.now() - started).toFixed(1);
  if (UNSETTLED.includes(execution.status)) {
    const timer = setTimeout(() => render(context).catch((error) => fill(view, message(error.message, "error"))), POLL_MS);
    onLeave(() => clearTimeout(timer));
  }
}
