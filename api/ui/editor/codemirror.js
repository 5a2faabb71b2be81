// The spec editor's CodeMirror 6, bundled by esbuild (`npm run build`, make ui) into
// dist/codemirror/codemirror.js, served at /ui/vendor/codemirror/codemirror.js: one ES
// module with what static/js/spec-editor.js uses, from the packages package-lock.json pins.
export { basicSetup, EditorView } from "codemirror";
export { Compartment, EditorState } from "@codemirror/state";
export { hoverTooltip, keymap } from "@codemirror/view";
export { yaml } from "@codemirror/lang-yaml";
export { json } from "@codemirror/lang-json";
export { forceLinting, lintGutter, linter, setDiagnostics } from "@codemirror/lint";
export { autocompletion, completionStatus, startCompletion } from "@codemirror/autocomplete";
