// Type-checked (tsc --strict) against types generated from openapi.json by
// tests/contract/test_typescript_types.py; `./api` is the generated api.d.ts.
import type { components, operations } from "./api";

type Schemas = components["schemas"];
type JobCreate = Schemas["JobCreate"];
type Optimizer = NonNullable<Schemas["JobSpec"]["optimizer"]>;

// A job built against the generated types: every variant part picked by `kind`.
export const job: JobCreate = {
  name: "iris-sgd",
  priority: 3,
  spec: {
    dataset: { source: { kind: "builtin", name: "iris" }, batch_size: 16 },
    model: { kind: "mlp", hidden_units: [16], activation: "relu" },
    init: { kind: "he_normal", bias: "zeros" },
    optimizer: { kind: "sgd", lr: 0.1, momentum: 0.9 },
    schedule: { kind: "cosine", warmup: { epochs: 1 } },
    clipping: { kind: "global_norm", max_norm: 1.0 },
    early_stopping: { monitor: "val_loss", mode: "min", patience: 3 },
    epochs: 5,
    seed: 0,
  },
};

// The union narrows on `kind`: after the check, only SGD's fields are there.
export function momentumOf(optimizer: Optimizer): number | undefined {
  if (optimizer.kind === "sgd") {
    return optimizer.momentum;
  }
  // @ts-expect-error -- `momentum` is not on every remaining variant (Adam has none)
  return optimizer.momentum;
}

// The body of `create_job` is JobCreate, and its 201 answer is JobRead.
type CreateBody = operations["create_job"]["requestBody"];
export const body: NonNullable<CreateBody>["content"]["application/json"] = job;
export type Created = operations["create_job"]["responses"][201]["content"]["application/json"];
export const status: Created["status"] = "succeeded";
export type Invalid = operations["create_job"]["responses"][422]["content"]["application/problem+json"];
export const problemLocation = (p: Invalid): string[] => (p.errors ?? []).map((e) => e.loc);

// Wrong variants must not compile: each line below is an error tsc has to report.
export const adamWithMomentum: Optimizer = {
  kind: "adam",
  lr: 0.001,
  // @ts-expect-error -- momentum belongs to sgd/rmsprop, not to adam
  momentum: 0.9,
};
// @ts-expect-error -- there is no optimizer of kind "lion"
export const unknownKind: Optimizer = { kind: "lion", lr: 0.1 };
// @ts-expect-error -- a variant without its `kind` tag is not a variant
export const untagged: Optimizer = { lr: 0.1, momentum: 0.9 };
export const uploadedByName: Schemas["DatasetSpec"] = {
  // @ts-expect-error -- an uploaded source has a dataset_id, not a builtin name
  source: { kind: "uploaded", name: "iris" },
};
// @ts-expect-error -- "succeded" is not a JobStatus
export const typo: Schemas["JobStatus"] = "succeded";

// A graph: layers discriminated on `op`, each op with its own parameters.
type Model = NonNullable<Schemas["JobSpec"]["model"]>;
export const residual: Model = {
  kind: "graph",
  layers: [
    { op: "conv2d", filters: 16, kernel_size: 3, padding: "same", id: "stem" },
    { op: "batch_norm" },
    { op: "activation", fn: "relu" },
    { op: "conv2d", filters: 16, kernel_size: [3, 3], padding: "same", l2: 0.0001 },
    { op: "add", inputs: ["stem", -1] },
    { op: "global_avg_pool" },
    { op: "dense", units: 32, activation: "gelu", trainable: false },
  ],
};
type GraphLayer = Schemas["GraphModel"]["layers"][number];
export function filtersOf(layer: GraphLayer): number | undefined {
  if (layer.op === "conv2d") {
    return layer.filters;
  }
  return undefined;
}
// @ts-expect-error -- a dense layer has units, not filters
export const denseWithFilters: GraphLayer = { op: "dense", filters: 3 };
// @ts-expect-error -- there is no op "conv3d"
export const unknownOp: GraphLayer = { op: "conv3d", filters: 3 };
