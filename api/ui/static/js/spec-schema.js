// The job spec's JSON Schema (GET /v1/schemas/job-spec) as the editor uses it: the schema
// at a path of keys ($ref followed; a union's branch chosen by its `kind`), the keys an
// object offers, a field's help text; and the path of keys at a position in YAML or JSON.

// The schema node at `path` (keys and indices) of a spec; `valueAt(path)` reads the spec's
// value there (to pick a discriminated union's branch), or is null.
export function schemaAt(root, path, valueAt) {
  let node = resolve(root, root, [], valueAt);
  for (let i = 0; i < path.length && node; i++) {
    const step = path[i];
    const here = path.slice(0, i + 1);
    if (typeof step === "number" || node.type === "array" || node.items) {
      node = resolve(root, node.items || null, here, valueAt);
      if (typeof step !== "number" && node) node = resolve(root, propertyOf(root, node, step, here, valueAt), here, valueAt);
    } else {
      node = resolve(root, propertyOf(root, node, step, here, valueAt), here, valueAt);
    }
  }
  return node;
}

function propertyOf(root, node, key, path, valueAt) {
  if (node.properties && key in node.properties) return node.properties[key];
  if (node.additionalProperties && typeof node.additionalProperties === "object") return node.additionalProperties;
  return null;
}

// $ref followed; anyOf/oneOf: the branch whose `kind` matches the spec's (else all
// branches' properties together, each key's first schema), and `null` dropped.
function resolve(root, node, path, valueAt, depth = 0) {
  if (!node || depth > 20) return node;
  if (node.$ref) {
    const target = node.$ref.replace(/^#\//, "").split("/").reduce((n, k) => n?.[k], root);
    const merged = { ...target, ...node };
    delete merged.$ref;
    return resolve(root, merged, path, valueAt, depth + 1);
  }
  const branches = node.oneOf || node.anyOf;
  if (!branches) return node;
  const options = branches.map((b) => resolve(root, b, path, valueAt, depth + 1)).filter((b) => b && b.type !== "null");
  if (options.length === 1) return { ...options[0], description: node.description || options[0].description };
  const tag = node.discriminator?.propertyName || "kind";
  const kind = valueAt ? valueAt([...path, tag]) : undefined;
  const chosen = options.find((b) => b.properties?.[tag] && (b.properties[tag].const === kind || b.properties[tag].default === kind));
  if (chosen) return { ...chosen, description: node.description || chosen.description };
  const objects = options.filter((b) => b.properties);
  if (!objects.length) return { ...node, oneOf: undefined, anyOf: undefined, options };
  const properties = {};
  for (const b of objects) for (const [k, v] of Object.entries(b.properties)) properties[k] ??= v;
  const kinds = objects.map((b) => b.properties.kind?.const).filter(Boolean);
  if (kinds.length && properties.kind) properties.kind = { ...properties.kind, const: undefined, enum: kinds };
  return { type: "object", description: node.description, title: node.title, properties };
}

// The keys an object schema offers, each with its help (for completion).
export function keysOf(node) {
  return Object.entries(node?.properties || {}).map(([key, schema]) => ({ key, schema }));
}

// One line of help for a field: its description (or title), type, default, bounds, choices.
export function helpOf(root, schema) {
  const node = resolve(root, schema, [], null) || {};
  const parts = [];
  const type = node.type || (node.enum ? "one of" : node.options ? node.options.map((o) => o.type || o.title).filter(Boolean).join(" | ") : node.properties ? "object" : "");
  if (type) parts.push(type);
  const choices = node.enum || (node.const !== undefined ? [node.const] : null);
  if (choices) parts.push(choices.map((c) => JSON.stringify(c)).join(", "));
  if (node.default !== undefined && typeof node.default !== "object") parts.push(`default ${JSON.stringify(node.default)}`);
  const bounds = [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"]]
    .filter(([k]) => node[k] !== undefined).map(([k, s]) => `${s} ${node[k]}`);
  if (bounds.length) parts.push(bounds.join(", "));
  return { text: node.description || schema?.description || node.title || "", detail: parts.join(" · ") };
}

// ---- where the cursor is: the path of keys of the line (YAML) or the open objects (JSON)

const KEY_LINE = /^(\s*)(-\s+)?([A-Za-z_][\w.-]*)\s*:/;
const DASH = /^(\s*)-(\s+|$)/;

// YAML in block style: the enclosing keys of line `lineNo` (0-based) by indentation (list
// items as index 0), and the key written on that line, if any, with its column span.
export function yamlPathAt(lines, lineNo) {
  const line = lines[lineNo] ?? "";
  const own = KEY_LINE.exec(line);
  const dash = DASH.exec(line);
  const path = [];
  let indent = line.length - line.trimStart().length;
  if (dash) { path.unshift(0); indent = dash[1].length; }
  for (let i = lineNo - 1; i >= 0 && indent > 0; i--) {
    const text = lines[i];
    if (!text.trim() || text.trim().startsWith("#")) continue;
    const m = KEY_LINE.exec(text);
    const d = DASH.exec(text);
    const keyCol = m ? m[1].length + (m[2] ? m[2].length : 0) : Infinity;
    if (m && keyCol < indent) { path.unshift(m[3]); indent = keyCol; }
    if (d && d[1].length < indent) { path.unshift(0); indent = d[1].length; }
  }
  let key = null;
  if (own) {
    const from = own[1].length + (own[2] ? own[2].length : 0);
    key = { name: own[3], from, to: from + own[3].length };
  }
  return { path, key };
}

// JSON: the keys of the objects open at offset `pos` (arrays as index 0), and whether the
// cursor is where a key goes.
export function jsonPathAt(text, pos) {
  const stack = [];
  let key = null, inString = false, start = 0, expectKey = false;
  for (let i = 0; i < pos; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') { inString = false; key = text.slice(start, i); }
      continue;
    }
    if (c === '"') { inString = true; start = i + 1; }
    else if (c === "{") { stack.push({ kind: "object", key: null }); expectKey = true; }
    else if (c === "[") { stack.push({ kind: "array", key: 0 }); expectKey = false; }
    else if (c === "}" || c === "]") { stack.pop(); expectKey = false; }
    else if (c === ":") { if (stack.length) stack.at(-1).key = key; expectKey = false; }
    else if (c === ",") expectKey = stack.at(-1)?.kind === "object";
  }
  const path = stack.slice(0, -1).map((s) => s.key);
  return { path: path.filter((k) => k !== null), inKey: expectKey || inString, inString };
}
