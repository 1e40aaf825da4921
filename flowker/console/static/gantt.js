// The timeline of an execution's steps: one row per step from its start to its end, and
// inside it one segment per executor call attempt (callDetails.attemptLog).
import { duration, s } from "./dom.js";

const LABEL_W = 200;
const CHART_W = 640;
const ROW_H = 22;

function time(iso) {
  const value = Date.parse(iso);
  return Number.isNaN(value) ? null : value;
}

export function drawGantt(steps) {
  const timed = steps.filter((step) => time(step.executedAt) !== null);
  const start = Math.min(...timed.map((step) => time(step.executedAt)));
  const end = Math.max(...timed.map((step) => time(step.completedAt) ?? time(step.executedAt)), start + 1);
  const scale = CHART_W / (end - start);
  const height = ROW_H * (timed.length + 1) + 8;
  const width = LABEL_W + CHART_W + 90;
  const rows = timed.map((step, index) => {
    const y = ROW_H * index + 4;
    const from = time(step.executedAt);
    const to = time(step.completedAt) ?? from;
    const x = LABEL_W + (from - start) * scale;
    const barWidth = Math.max(2, (to - from) * scale);
    const attempts = (step.callDetails && step.callDetails.attemptLog) || [];
    const attemptCount = step.attempts || attempts.length || 1;
    return s(
      "g",
      { class: "gantt-row", "data-node-id": step.nodeId, "data-status": step.status },
      s("title", {}, `${step.stepName}: ${step.status}, ${duration(step.durationMs)}, ${attemptCount} attempt(s)`),
      s("text", { class: "gantt-label", x: 4, y: y + 14 }, (step.stepName || step.nodeId).slice(0, 26)),
      s("rect", { class: "gantt-bar", x, y: y + 3, width: barWidth, height: ROW_H - 6, rx: 3 }),
      attempts.map((attempt) => {
        const at = time(attempt.startedAt);
        if (at === null) return null;
        return s("rect", {
          class: `gantt-attempt outcome-${attempt.outcome || "unknown"}`,
          x: LABEL_W + (at - start) * scale,
          y: y + 6,
          width: Math.max(1.5, (attempt.durationMs || 0) * scale),
          height: ROW_H - 12,
        });
      }),
      s("text", { class: "gantt-time", x: Math.min(x + barWidth + 4, LABEL_W + CHART_W + 4), y: y + 14 }, `${duration(step.durationMs)}${attemptCount > 1 ? ` ×${attemptCount}` : ""}`),
    );
  });
  const axisY = ROW_H * timed.length + 18;
  return s(
    "svg",
    { class: "gantt", width, height: height + 10, viewBox: `0 0 ${width} ${height + 10}`, role: "img", "aria-label": `Timeline of ${timed.length} steps over ${duration(end - start)}` },
    rows,
    s("text", { class: "gantt-axis", x: LABEL_W, y: axisY }, "0"),
    s("text", { class: "gantt-axis", x: LABEL_W + CHART_W, y: axisY, "text-anchor": "end" }, duration(end - start)),
  );
}
