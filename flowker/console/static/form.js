// A trigger's input form built from its inputSchema (a JSON Schema object): one labelled
// control per property; objects, arrays and unknown types take JSON. Without a schema,
// a single JSON editor.
import { field, h } from "./dom.js";

function control(name, schema, required, id) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  const common = { name, "data-field": name, "data-kind": type || "json", required: required || null, "aria-describedby": schema.description ? `${id}-help` : null };
  if (Array.isArray(schema.enum)) {
    return h("select", { ...common, "data-kind": "enum" }, required ? null : h("option", { value: "" }, "—"), schema.enum.map((value) => h("option", { value: JSON.stringify(value) }, String(value))));
  }
  if (type === "boolean") return h("input", { ...common, type: "checkbox", required: null });
  if (type === "number" || type === "integer") {
    return h("input", { ...common, type: "number", step: type === "integer" ? "1" : "any", min: schema.minimum ?? null, max: schema.maximum ?? null, inputmode: "decimal" });
  }
  if (type === "string") {
    return h("input", { ...common, type: schema.format === "email" ? "email" : "text", minlength: schema.minLength ?? null, maxlength: schema.maxLength ?? null, pattern: schema.pattern ?? null, autocomplete: "off" });
  }
  return h("textarea", { ...common, rows: 3, spellcheck: "false" }, schema.default !== undefined ? JSON.stringify(schema.default) : "");
}

function readControl(element) {
  const kind = element.dataset.kind;
  if (kind === "boolean") return element.checked;
  const text = element.value;
  if (text === "") return undefined;
  if (kind === "enum") return JSON.parse(text);
  if (kind === "number" || kind === "integer") return Number(text);
  if (kind === "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${element.name}: not valid JSON`);
  }
}

export function inputForm(schema, prefix) {
  const properties = schema && schema.type === "object" && schema.properties;
  if (!properties || Object.keys(properties).length === 0) {
    const editor = h("textarea", { rows: 8, spellcheck: "false", "data-kind": "json-all" }, "{}");
    return {
      element: field("Input (JSON object)", editor, `${prefix}-json`),
      read() {
        let value;
        try {
          value = JSON.parse(editor.value || "{}");
        } catch {
          throw new Error("the input is not valid JSON");
        }
        if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("the input must be a JSON object");
        return value;
      },
    };
  }
  const required = new Set(schema.required || []);
  const controls = [];
  const rows = Object.entries(properties).map(([name, property]) => {
    const id = `${prefix}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const element = control(name, property || {}, required.has(name), id);
    controls.push(element);
    const label = `${name}${required.has(name) ? " (required)" : ""}`;
    const wrapper = field(label, element, id);
    if (property && property.description) wrapper.append(h("p", { class: "hint", id: `${id}-help` }, property.description));
    return wrapper;
  });
  return {
    element: h("div", { class: "schema-form" }, rows),
    read() {
      const value = {};
      for (const element of controls) {
        const read = readControl(element);
        if (read !== undefined) value[element.name] = read;
      }
      return value;
    },
  };
}
