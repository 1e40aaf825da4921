// A workflow's graph as SVG: nodes in layers by their longest path from a trigger, edges
// as curves; a conditional's true and false handles are labelled on their edges. Each
// node carries data-node-id and data-status (completed, failed, skipped, running, pending).
import { s } from "./dom.js";

const NODE_W = 168;
const NODE_H = 48;
const GAP_X = 104;
const GAP_Y = 22;
const PAD = 16;

function layers(nodes, edges) {
  const incoming = new Map(nodes.map((node) => [node.id, []]));
  for (const edge of edges) if (incoming.has(edge.target) && incoming.has(edge.source)) incoming.get(edge.target).push(edge.source);
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle (refused by validation): draw it anyway
    visiting.add(id);
    let deepest = -1;
    for (const source of incoming.get(id)) deepest = Math.max(deepest, depthOf(source));
    visiting.delete(id);
    depth.set(id, deepest + 1);
    return deepest + 1;
  };
  for (const node of nodes) depthOf(node.id);
  return depth;
}

function clip(text, size) {
  return text.length > size ? `${text.slice(0, size - 1)}…` : text;
}

export function drawGraph(workflow, statusByNode = null, errorByNode = {}) {
  const nodes = workflow.nodes || [];
  const edges = workflow.edges || [];
  const depth = layers(nodes, edges);
  const rows = new Map();
  const position = new Map();
  for (const node of nodes) {
    const column = depth.get(node.id);
    const row = rows.get(column) || 0;
    rows.set(column, row + 1);
    position.set(node.id, { x: PAD + column * (NODE_W + GAP_X), y: PAD + row * (NODE_H + GAP_Y) });
  }
  const columns = Math.max(1, ...[...depth.values()].map((d) => d + 1));
  const tallest = Math.max(1, ...rows.values());
  const width = PAD * 2 + columns * NODE_W + (columns - 1) * GAP_X;
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const edgeLayer = s("g", { class: "edges" });
  for (const edge of edges) {
    const from = position.get(edge.source);
    const to = position.get(edge.target);
    if (!from || !to) continue;
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x;
    const y2 = to.y + NODE_H / 2;
    const bend = Math.max(24, (x2 - x1) / 2);
    const handle = edge.sourceHandle || "";
    edgeLayer.append(
      s("path", {
        class: `edge ${handle ? `edge-${handle}` : ""}`,
        d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": "url(#arrow)",
        "data-source": edge.source,
        "data-target": edge.target,
      }),
    );
    if (handle || edge.label) {
      const text = [handle, edge.label].filter(Boolean).join(": ");
      edgeLayer.append(
        s("text", { class: `edge-label ${handle ? `edge-${handle}` : ""}`, x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 5, "text-anchor": "middle" }, text),
      );
    }
  }
  const nodeLayer = s("g", { class: "nodes" });
  for (const node of nodes) {
    const { x, y } = position.get(node.id);
    const status = statusByNode ? statusByNode[node.id] || "pending" : "none";
    const label = `${node.name || node.id} (${node.type}${statusByNode ? `, ${status}` : ""})`;
    nodeLayer.append(
      s(
        "g",
        { class: `node node-${node.type}`, "data-node-id": node.id, "data-status": status, transform: `translate(${x},${y})`, role: "listitem", "aria-label": label },
        s("title", {}, errorByNode[node.id] ? `${label}: ${errorByNode[node.id]}` : label),
        s("rect", { width: NODE_W, height: NODE_H, rx: 8 }),
        s("text", { class: "node-name", x: 10, y: 20 }, clip(node.name || node.id, 22)),
        s("text", { class: "node-type", x: 10, y: 37 }, clip(`${node.type} · ${node.id}`, 26)),
      ),
    );
  }
  return s(
    "svg",
    { class: "graph", width, height, "data-width": width, "data-height": height, viewBox: `0 0 ${width} ${height}`, role: "list", "aria-label": "Workflow graph" },
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { class: "arrow", d: "M0,0 L10,5 L0,10 z" }),
      ),
    ),
    edgeLayer,
    nodeLayer,
  );
}

// A graph a little wider than its box is scaled down to fit (never below minimumScale, so
// labels stay legible); a larger one keeps its size and its box scrolls.
export function fitGraphs(root, minimumScale = 0.7) {
  for (const svg of root.querySelectorAll("svg.graph")) {
    const room = svg.parentElement ? svg.parentElement.clientWidth : 0;
    const width = Number(svg.dataset.width);
    if (!room || width <= room) continue;
    const scale = Math.max(minimumScale, room / width);
    svg.setAttribute("width", String(Math.floor(width * scale)));
    svg.setAttribute("height", String(Math.floor(Number(svg.dataset.height) * scale)));
  }
}
