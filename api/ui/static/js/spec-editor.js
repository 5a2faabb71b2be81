// The New-job spec editor: CodeMirror 6 (the bundle /ui/vendor/codemirror/, pinned by
// api/ui/package-lock.json) with YAML or JSON highlighting, completion and hover help from
// the spec's JSON Schema (GET /v1/schemas/job-spec), and problems marked at their line.
import {
  autocompletion, basicSetup, Compartment, EditorState, EditorView, hoverTooltip, json,
  lintGutter, setDiagnostics, yaml,
} from "/ui/vendor/codemirror/codemirror.js";
import { isMap, isSeq, LineCounter, parseDocument } from "/ui/vendor/yaml/index.js";
import { h } from "./dom.js";
import { helpOf, jsonPathAt, keysOf, schemaAt, yamlPathAt } from "./spec-schema.js";

const looksJson = (text) => text.trimStart().startsWith("{");

// `loc` of a 422 ("spec.optimizer.lr", "spec.model.layers[2].units") as a path of keys.
export function locPath(loc) {
  const parts = [];
  for (const m of String(loc).replace(/^spec\.?/, "").matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    parts.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  }
  return parts;
}

export class SpecEditor {
  // `parent`: where it goes; `text`: the first content; `onChange(text)` after each edit;
  // `schema`: a promise of the JSON Schema (null: no completion or hover).
  constructor(parent, { text, label, onChange, schema }) {
    this.schema = null;
    schema?.then((s) => { this.schema = s; }).catch(() => {});
    this.language = new Compartment();
    this.json = looksJson(text);
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: text,
        extensions: [
          basicSetup,
          this.language.of(this.json ? json() : yaml()),
          lintGutter(),
          autocompletion({ override: [(ctx) => this.complete(ctx)], activateOnTyping: true }),
          hoverTooltip((view, pos) => this.hover(view, pos), { hoverTime: 250 }),
          EditorView.contentAttributes.of({ "aria-label": label, "data-testid": "spec-editor" }),
          EditorView.updateListener.of((u) => {
            if (!u.docChanged) return;
            const now = looksJson(this.text);
            if (now !== this.json) {
              this.json = now;
              this.view.dispatch({ effects: this.language.reconfigure(now ? json() : yaml()) });
              this.view.dom.dataset.language = now ? "json" : "yaml";
            }
            onChange(this.text);
          }),
        ],
      }),
    });
    this.view.dom.dataset.language = this.json ? "json" : "yaml";
  }

  get text() { return this.view.state.doc.toString(); }

  destroy() { this.view.destroy(); }

  // The spec's value at a path (to pick a union's branch by its `kind`), from the last
  // text that parsed (the one being typed often does not).
  valueAt(path) {
    try {
      const doc = parseDocument(this.text);
      if (!doc.errors.length) this.lastGood = doc;
    } catch { /* keep the last good one */ }
    return this.lastGood?.getIn(path);
  }

  // Where the cursor is: the keys above it, and the key it is on (YAML or JSON).
  pathAt(state, pos) {
    const line = state.doc.lineAt(pos);
    if (this.json) {
      const { path, inKey } = jsonPathAt(state.doc.toString(), pos);
      const typed = /("?)([\w.-]*)$/.exec(state.sliceDoc(line.from, pos));
      return { path, key: null, inKey, quoted: Boolean(typed[1]), word: typed[2], wordFrom: pos - typed[2].length };
    }
    const lines = state.doc.toString().split("\n");
    const { path, key } = yamlPathAt(lines, line.number - 1);
    const before = state.sliceDoc(line.from, pos);
    const typing = /^(\s*(?:-\s+)?)([\w.-]*)$/.exec(before);
    return { path, key, line, inKey: Boolean(typing), word: typing?.[2] ?? "", wordFrom: pos - (typing?.[2].length ?? 0) };
  }

  complete(ctx) {
    if (!this.schema) return null;
    const at = this.pathAt(ctx.state, ctx.pos);
    if (!at.inKey || (!at.word && !ctx.explicit)) return null;
    const node = schemaAt(this.schema, at.path, (p) => this.valueAt(p));
    const keys = keysOf(node);
    if (!keys.length) return null;
    return {
      from: at.wordFrom,
      options: keys.map(({ key, schema }) => {
        const help = helpOf(this.schema, schema);
        return {
          label: key,
          type: "property",
          detail: help.detail,
          info: help.text || undefined,
          apply: this.json ? `${at.quoted ? "" : '"'}${key}": ` : `${key}: `,
        };
      }),
      validFor: /^[\w.-]*$/,
    };
  }

  hover(view, pos) {
    if (!this.schema) return null;
    const line = view.state.doc.lineAt(pos);
    let name, from, to, path;
    if (this.json) {
      const text = line.text;
      for (const m of text.matchAll(/"([\w.-]+)"\s*:/g)) {
        const start = line.from + m.index + 1;
        if (pos >= start && pos <= start + m[1].length) { name = m[1]; from = start; to = start + m[1].length; }
      }
      if (!name) return null;
      path = jsonPathAt(view.state.doc.toString(), from).path;
    } else {
      const at = yamlPathAt(view.state.doc.toString().split("\n"), line.number - 1);
      if (!at.key || pos < line.from + at.key.from || pos > line.from + at.key.to) return null;
      ({ name } = at.key);
      from = line.from + at.key.from;
      to = line.from + at.key.to;
      path = at.path;
    }
    const schema = schemaAt(this.schema, [...path, name], (p) => this.valueAt(p));
    if (!schema) return null;
    const help = helpOf(this.schema, schema);
    return {
      pos: from, end: to, above: true,
      create: () => ({
        dom: h("div", { class: "spec-help", "data-testid": "spec-help" },
          h("strong", {}, [...path, name].join(".")), help.detail ? h("span", { class: "muted" }, ` ${help.detail}`) : null,
          help.text ? h("p", {}, help.text) : null),
      }),
    };
  }

  // Problems marked at their line: a YAML/JSON syntax error, or the 422's locations
  // (each at the deepest part of its path that the text has).
  mark(problems) {
    const doc = this.view.state.doc;
    const diagnostics = [];
    for (const p of problems) {
      const range = p.offset !== undefined ? [p.offset, p.offset] : this.rangeOf(locPath(p.loc));
      const [a, b] = range.map((o) => Math.max(0, Math.min(o, doc.length)));
      const line = doc.lineAt(a);
      // the node on its first line; to the line's end when the range is empty
      let [from, to] = [a, Math.min(Math.max(a, b), line.to)];
      if (to <= from) [from, to] = [line.from, line.to];
      diagnostics.push({ from, to, severity: "error", message: p.loc ? `${p.loc}: ${p.msg}` : p.msg });
    }
    this.view.dispatch(setDiagnostics(this.view.state, diagnostics));
    this.view.dom.dataset.problems = String(diagnostics.length);
  }

  // The text range of the value at `path` (its parent's when the text lacks it).
  rangeOf(path) {
    let doc;
    try { doc = parseDocument(this.text, { keepSourceTokens: true }); } catch { return [0, 0]; }
    for (let n = path.length; n > 0; n--) {
      const prefix = path.slice(0, n);
      const parent = n > 1 ? doc.getIn(prefix.slice(0, -1), true) : doc.contents;
      if (isMap(parent)) {
        const pair = parent.items.find((it) => String(it.key?.value ?? it.key) === String(prefix.at(-1)));
        if (pair?.key?.range) return [pair.key.range[0], (pair.value?.range ?? pair.key.range)[1]];
      } else if (isSeq(parent)) {
        const item = parent.items[prefix.at(-1)];
        if (item?.range) return [item.range[0], item.range[1]];
      }
    }
    return [0, 0];
  }
}

// A YAML/JSON parse of the text: { spec } or { error, offset } (the first syntax error).
export function parseSpecText(text) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: true, lineCounter });
  if (doc.errors.length) {
    const err = doc.errors[0];
    return { error: err.message.split("\n")[0], offset: err.pos?.[0] ?? 0 };
  }
  return { spec: doc.toJS() };
}
