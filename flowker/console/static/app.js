// The console's entry point: sign-in, the principal's permissions, client-side navigation
// (a provider's token lives in memory, so moving between pages must not reload them).
import { api, ApiError, hasCredential, signOut, useApiKey } from "./api.js";
import { message } from "./dom.js";
import { finishSignIn, startSignIn } from "./oidc.js";
import * as audit from "./view_audit.js";
import * as execution from "./view_execution.js";
import * as executions from "./view_executions.js";
import * as executors from "./view_executors.js";
import * as workflow from "./view_workflow.js";
import * as workflows from "./view_workflows.js";

const VIEWS = { workflows, workflow, executions, execution, audit, executors };
const TITLES = {
  workflows: "Workflows",
  workflow: "Workflow",
  executions: "Executions",
  execution: "Execution",
  audit: "Audit",
  executors: "Executors",
};
const body = document.body;
const issuer = body.dataset.oidcIssuer;
const clientId = body.dataset.oidcClientId;
let principal = null;
let leaving = [];

function route(pathname) {
  const parts = pathname.replace(/\/+$/, "").split("/").slice(2).map(decodeURIComponent);
  if (parts.length === 0) return { page: "workflows" };
  if (parts[0] === "workflows" && parts.length === 2) return { page: "workflow", id: parts[1] };
  if (parts[0] === "executions" && parts.length === 2) return { page: "execution", id: parts[1] };
  if (parts.length === 1 && VIEWS[parts[0]]) return { page: parts[0] };
  if (parts[0] === "signin-callback") return { page: "callback" };
  return { page: "missing" };
}

function can(permission) {
  return Boolean(principal && principal.permissions.includes(permission));
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  show();
}

function showSignIn(problem) {
  document.getElementById("sign-in").hidden = false;
  document.getElementById("view").replaceChildren();
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("oidc-sign-in").hidden = !(issuer && clientId);
  document.getElementById("sign-in-error").textContent = problem || "";
  document.getElementById("api-key").focus();
}

async function loadPrincipal() {
  try {
    principal = await api("/v1/me");
  } catch (error) {
    principal = null;
    if (error instanceof ApiError && error.status === 401) signOut();
    throw error;
  }
  document.getElementById("who").textContent = `${principal.name} (${principal.roles.join(", ")})`;
  document.getElementById("sign-out").hidden = false;
  for (const link of document.querySelectorAll("[data-needs]")) link.hidden = !can(link.dataset.needs);
}

async function show() {
  for (const stop of leaving) stop();
  leaving = [];
  const holder = document.getElementById("view");
  const where = route(location.pathname);
  if (where.page === "callback") {
    try {
      navigate(await finishSignIn(issuer, clientId), { replace: true });
    } catch (error) {
      showSignIn(error.message);
    }
    return;
  }
  if (!hasCredential()) return showSignIn();
  if (principal === null) {
    try {
      await loadPrincipal();
    } catch (error) {
      return showSignIn(error instanceof ApiError && error.status === 401 ? "That key was refused." : error.message);
    }
  }
  document.getElementById("sign-in").hidden = true;
  for (const link of document.querySelectorAll("#main-nav a")) {
    const section = { workflow: "workflows", execution: "executions" }[where.page] || where.page;
    const current = link.dataset.section === section;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[where.page] || "Not found"} · Flowker`;
  const module = VIEWS[where.page];
  if (!module) return holder.replaceChildren(message("No such page.", "error"));
  // Each visit draws into a fresh element: a slow answer for a page already left lands
  // in a detached element instead of over the page shown now.
  const view = document.createElement("div");
  holder.replaceChildren(view);
  const context = {
    view,
    id: where.id,
    params: new URLSearchParams(location.search),
    can,
    navigate,
    onLeave: (stop) => leaving.push(stop),
  };
  view.replaceChildren(message("Loading…"));
  try {
    await module.render(context);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      principal = null;
      signOut();
      return showSignIn("Your credential is no longer accepted: sign in again.");
    }
    view.replaceChildren(message(error.message, "error"));
  }
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  useApiKey(input.value.trim());
  input.value = "";
  principal = null;
  await show();
});

document.getElementById("oidc-button").addEventListener("click", () => {
  startSignIn(issuer, clientId, location.pathname + location.search).catch((error) => showSignIn(error.message));
});

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  principal = null;
  for (const link of document.querySelectorAll("[data-needs]")) link.hidden = true;
  showSignIn();
});

// Links inside the console move without a reload.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui") || url.pathname.startsWith("/ui/static")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
  document.getElementById("main").focus();
});

window.addEventListener("popstate", show);
show();
