#!/usr/bin/env bash
# The first run on a lent GPU (issue 30), in under 8 minutes, everything under $OUT:
#   needs.txt           what this machine has and lacks (Python, torch, CUDA, packages)
#   gpu_tests.log       pytest tests/ml/test_gpu.py + the GPU gauge test (device, dtype,
#                       no host syncs, exact fp16 resume, OOM, several jobs, a worker job)
#   gpu_checks.jsonl    bench/gpu_checks.py: fp16/fp32 exact resume, host syncs per step
#                       with and without augmentation, the OOM mapping
#   engine_overhead.txt bench/engine_overhead.py --device cuda (engine vs a hand loop)
#   summary.txt         one line per part: ok / FAILED / skipped, and why
#
#   OUT=/tmp/gpu-run bash bench/gpu_first_run.sh            # on the GPU machine
#   bash bench/gpu_first_run.sh --fetch-wheels              # here, before: see below
#
# The lent machine reaches no package registry and its Python (3.12) and torch (2.11+cu13)
# differ from ours (3.11, 2.13.0+cpu): the engine needs only torch, numpy, scikit-learn,
# safetensors and pydantic; the tests also need the service stack (fastapi, SQLAlchemy,
# Alembic, Celery ...), which that image lacks. `--fetch-wheels`, run on a machine with pip
# and a registry, downloads those as Python 3.12 manylinux wheels into .whl/ (ignored by
# git: carry it, `carry: [".whl"]`); this script installs whatever is in .whl/ into
# /tmp/site first. A part whose needs are missing is skipped and says which.
# Without a GPU it runs its CPU-side parts (needs, the resume check on CPU, the CPU tests
# of the same defects) and says what it skipped.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-./gpu-first-run}

# Not on the device machine: its image has these already, with its own torch.
# (What tests.conftest, api.app and worker.runner import, less KINDS.md's package list.)
WHEELS="pydantic pydantic-core pydantic-settings annotated-types typing-inspection
  python-dotenv fastapi starlette sqlalchemy alembic mako greenlet celery kombu billiard
  vine amqp click-didyoumean click-plugins click-repl prompt-toolkit wcwidth tzdata tzlocal
  redis python-multipart optuna colorlog uvicorn"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for name in $WHEELS; do
    pattern=$(echo "$name" | sed 's/[-_]/[-_]/g')
    pin=$(grep -i -E "^${pattern}==" constraints.txt || echo "$name")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$pin" || echo "could not fetch $pin"
  done
  du -sh .whl
  exit 0
fi

mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
started=$(date +%s)

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# 1. What is here.
"$PY" - > "$OUT/needs.txt" 2>&1 <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "uuid", p.uuid,
              "bf16", torch.cuda.is_bf16_supported())
except ImportError:
    print("torch MISSING")
engine = ["numpy", "sklearn", "safetensors", "pydantic"]
service = ["pytest", "fastapi", "sqlalchemy", "alembic", "pydantic_settings", "celery",
           "kombu", "httpx", "prometheus_client", "yaml", "optuna", "multipart", "pynvml"]
for group, names in (("engine", engine), ("tests", service)):
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    print(group, "needs", "nothing more" if not missing else "MISSING " + " ".join(missing))
EOF
cat "$OUT/needs.txt"
has_cuda=$(grep -c "available True" "$OUT/needs.txt")
engine_ok=$(grep -c "engine needs nothing more" "$OUT/needs.txt")
tests_ok=$(grep -c "tests needs nothing more" "$OUT/needs.txt")

# 2. The GPU tests (skipped by pytest without CUDA) and the CPU tests of the same defects.
if [ "$tests_ok" = 1 ]; then
  export TRAINFORGE_TEST_REDIS=${TRAINFORGE_TEST_REDIS:-redis://127.0.0.1:6379/3}
  if [ "$has_cuda" = 1 ]; then
    tests="tests/ml/test_gpu.py tests/worker/test_sidecars.py::test_cuda_gauges_read_the_real_device"
  else
    tests="tests/ml/test_cuda_path.py"
  fi
  # shellcheck disable=SC2086
  timeout 240 "$PY" -m pytest -q -ra -p no:cacheprovider $tests > "$OUT/gpu_tests.log" 2>&1
  rc=$?
  note "tests ($tests): $([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc") $(tail -1 "$OUT/gpu_tests.log")"
else
  note "tests: skipped: $(grep '^tests needs' "$OUT/needs.txt") (bash bench/gpu_first_run.sh --fetch-wheels, carry .whl)"
fi

# 3. Exact resume, host syncs per step, the OOM mapping.
if [ "$engine_ok" = 1 ]; then
  device=$([ "$has_cuda" = 1 ] && echo cuda || echo cpu)
  timeout 120 "$PY" bench/gpu_checks.py --device "$device" > "$OUT/gpu_checks.jsonl" 2>&1
  rc=$?
  bad=$(grep -c -E '"exact": false|"mapped": false|"max_after_first": [1-9]' "$OUT/gpu_checks.jsonl")
  note "checks on $device: $([ $rc = 0 ] && [ "$bad" = 0 ] && echo ok || echo "FAILED rc=$rc, $bad bad line(s)") (gpu_checks.jsonl)"
else
  note "checks: skipped: $(grep '^engine needs' "$OUT/needs.txt")"
fi

# 4. The engine's overhead against a hand-written loop, on the GPU.
if [ "$has_cuda" = 1 ] && [ "$engine_ok" = 1 ]; then
  timeout 110 "$PY" bench/engine_overhead.py --device cuda --repeats 3 \
    > "$OUT/engine_overhead.txt" 2>&1
  rc=$?
  note "engine_overhead --device cuda: $([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc") (engine_overhead.txt)"
else
  note "engine_overhead --device cuda: skipped (no CUDA device)"
fi

note "done in $(( $(date +%s) - started )) s; results in $OUT"
