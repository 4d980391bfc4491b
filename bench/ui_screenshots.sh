#!/usr/bin/env bash
# Screenshots of what a person sees of a sweep in the MLflow UI, taken by headless Chromium in a fresh
# profile (so the UI's own remembered view cannot help): the runs table sorted by best_<metric> with the
# sweep's metrics and params as columns (and, for a multi-objective sweep, by its second objective, with the
# report's Pareto front), the
# compare view of three child runs, a child run's sample images, the parent run's report, and the
# champion's registered version with its model card.
#
#   bench/ui_screenshots.sh [OUT_DIR]           # a tiny ring8 sweep first (about 2 minutes on 2 CPUs)
#   STORE=path/to/mlflow.db bench/ui_screenshots.sh OUT_DIR   # an existing store instead
#
# Needs Debian's `chromium` (apt-get install -y chromium). PYTHON: the interpreter with gan_ray
# installed (default: .venv/bin/python, else python3). PORT: the UI's port (default: a free one).
set -euo pipefail

OUT=$(realpath -m "${1:-ui_screenshots}")
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
case "$PY" in */*) PY=$(realpath -s "$PY") ;; *) PY=$(command -v "$PY") ;; esac
# A free port unless one is given: another UI may hold the usual ones, and would answer in its place.
PORT=${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
CHROMIUM=${CHROMIUM:-chromium}
WORK=$(mktemp -d)
mkdir -p "$OUT"

cleanup() {
    [ -n "${UI_PID:-}" ] && kill "$UI_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${STORE:-}" ]; then
    cat > "$WORK/ui_demo.yaml" <<'EOF'
name: ui_demo
base:
  data: {name: ring8}
  model: {name: mlp, params: {hidden_dim: 64, hidden_layers: 2}}
  noise: {dim: 8}
  train: {steps: 900, eval_every: 300, batch_size: 128}
parameters:
  optim.lr_g: {log_uniform: [3.0e-4, 3.0e-3]}
  optim.lr_d: {log_uniform: [3.0e-4, 3.0e-3]}
  optim.beta1: {uniform: [0.0, 0.9]}
  loss.name: {choice: [non_saturating, hinge]}
budget: {num_samples: 4, max_concurrent_trials: 2}
scheduler: {type: none}
search: {final_eval: {top: 2, samples: 5000}}
EOF
    STORE="$WORK/mlflow.db"
    (cd "$WORK" && "$PY" -m gan_ray sweep ui_demo.yaml --tracking-uri "sqlite:///$STORE" \
        --storage-path "$WORK/ray_results" --study-storage "sqlite:///$WORK/optuna.db") >&2
fi
STORE=$(realpath "$STORE")

"$PY" -m mlflow ui --backend-store-uri "sqlite:///$STORE" --host 127.0.0.1 --port "$PORT" >"$WORK/ui.log" 2>&1 &
UI_PID=$!
for _ in $(seq 90); do
    kill -0 "$UI_PID" 2>/dev/null || { cat "$WORK/ui.log" >&2; echo "mlflow ui did not start" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    sleep 1
done

# The ids to open: the latest sweep's experiment, its parent run, three child runs (best first).
read -r EXP PARENT RUNS METRIC ASC SECOND SECOND_ASC VIEW IMAGE MODEL VERSION <<<"$("$PY" - "$STORE" <<'EOF'
import json, sys
from mlflow import MlflowClient

client = MlflowClient(f"sqlite:///{sys.argv[1]}")
parent = client.search_runs(
    [e.experiment_id for e in client.search_experiments()],
    filter_string="tags.`gan_ray.kind` = 'sweep'",
    order_by=["attributes.start_time DESC"],
    max_results=1,
)[0]
metric = "best_" + parent.data.params["sweep.metric"]
order = "ASC" if parent.data.params.get("sweep.mode", "min") == "min" else "DESC"
# A multi-objective sweep: the runs table sorted by its second objective too (the value at the last eval).
objectives = [o.split(":") for o in parent.data.params.get("sweep.objectives", "").split(",") if o]
second, second_asc = (objectives[1][0], str(objectives[1][1] == "min").lower()) if objectives else ("none", "true")
# The sweep's own views of the runs table (gan_ray/tracking/view.py): its metrics and params as columns.
tags = client.get_experiment(parent.info.experiment_id).tags
view = "yes" if "mlflow.sharedViewState.gan_ray" in tags else "no"
children = client.search_runs(
    [parent.info.experiment_id],
    filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    order_by=[f"metrics.`{metric}` {order}"],
    max_results=3,
)
ids = json.dumps([r.info.run_id for r in children], separators=(",", ":"))
images = sorted(a.path for a in client.list_artifacts(children[0].info.run_id, "images") if a.path.endswith(".png"))
# The champion's registered version (its description is the model card), if the sweep registered one.
model, version = "none", "none"
for registered in client.search_registered_models():
    if "champion" in registered.aliases:
        held = client.get_model_version_by_alias(registered.name, "champion")
        if held.run_id in {r.info.run_id for r in children} or model == "none":
            model, version = registered.name, held.version
print(
    parent.info.experiment_id, parent.info.run_id, ids, metric, str(order == "ASC").lower(), second, second_asc, view,
    images[-1] if images else "none", model, version,
)
EOF
)"
FIRST=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])[0])" "$RUNS")
BASE="http://127.0.0.1:$PORT/#"
ML="workflowType=machine_learning"

shot() {  # shot NAME URL [WIDTH,HEIGHT]
    "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --user-data-dir="$(mktemp -d -p "$WORK")" --window-size="${3:-1600,1000}" --virtual-time-budget=15000 \
        --hide-scrollbars --screenshot="$OUT/$1.png" "$2" >/dev/null 2>&1
    echo "$OUT/$1.png  <- $2"
}

if [ "$VIEW" = yes ]; then  # the sweep's views: sorted, with its metrics and params as columns
    shot 1_runs_sorted_by_best "$BASE/experiments/$EXP/runs?$ML&viewStateShareKey=gan_ray" 3000,900
    [ "$SECOND" != none ] && shot "1b_runs_sorted_by_$SECOND" \
        "$BASE/experiments/$EXP/runs?$ML&viewStateShareKey=gan_ray-$SECOND" 3000,900
else  # an older store: sorted, but the UI's default columns (no metric among them)
    shot 1_runs_sorted_by_best "$BASE/experiments/$EXP/runs?$ML&orderByKey=metrics.%60$METRIC%60&orderByAsc=$ASC"
fi
shot 2_compare_three_children "$BASE/compare-runs?runs=$RUNS&experiments=[\"$EXP\"]&$ML"
# The Model metrics tab holds the `samples` images under a step slider; headless Chromium leaves its
# charts loading (seen with MLflow 3.17), so the latest grid is also shot where Artifacts shows it.
shot 3_child_model_metrics "$BASE/experiments/$EXP/runs/$FIRST/model-metrics?$ML" 1600,2400
shot 3_child_latest_samples "$BASE/experiments/$EXP/runs/$FIRST/artifacts/$IMAGE?$ML"
shot 4_parent_report "$BASE/experiments/$EXP/runs/$PARENT/artifacts/report/README.md?$ML"
shot 5_parent_history "$BASE/experiments/$EXP/runs/$PARENT/artifacts/report/history.png?$ML"
[ "$SECOND" != none ] && shot 5b_parent_pareto_front "$BASE/experiments/$EXP/runs/$PARENT/artifacts/report/pareto_front.png?$ML"
shot 6_parent_overview "$BASE/experiments/$EXP/runs/$PARENT?$ML"
[ "$MODEL" != none ] && shot 7_champion_model_card "$BASE/models/$MODEL/versions/$VERSION?$ML" 1600,2600
exit 0
