#!/usr/bin/env bash
# What the GPU half of the speed work needs from a GPU machine, in as few calls as possible:
#
#   bash bench/gpu_session.sh tests        # the `gpu`-marked tests: graphed vs eager training (~1 min)
#   bash bench/gpu_session.sh throughput   # bench/throughput.py on CUDA: DCGAN-64/28 at 64 and 256, ring8
#   bash bench/gpu_session.sh packing      # bench/packing.py on CUDA: 1, 2, 4 trials sharing the GPU
#   bash bench/gpu_session.sh all          # the three, in that order
#
# Only the training core runs here (torch, pydantic, pyyaml): no Ray, MLflow or Optuna. Where pydantic
# is not installed, put its wheels in .whl/ (bench/README.md says which and how) and they are installed
# into /tmp/site. Logs and JSON lines go to $OUT when it is set (the device tool's folder), else to
# bench/gpu_out/.
set -uo pipefail
what=${1:-all}
case $what in tests | throughput | packing | all) ;; *)
    echo "usage: bash bench/gpu_session.sh [tests|throughput|packing|all]" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."
out=${OUT:-bench/gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! python3 -c "import pydantic" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    else
        echo "pydantic is not installed and .whl/ holds no wheels: see bench/README.md" >&2
        exit 2
    fi
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee "$out/device.txt" || exit 1

status=0
run() {  # name, command...: tee the output to $out/name; remember a failure, go on with the rest
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$@" 2>"$out/$name.err" | tee "$out/$name"
    local rc=${PIPESTATUS[0]}
    tail -n 5 "$out/$name.err" >&2
    [ "$rc" -eq 0 ] || { echo "== $name failed with $rc" >&2; status=1; }
}

if [ "$what" = tests ] || [ "$what" = all ]; then
    run gpu_tests.log python3 -m pytest -q -p no:cacheprovider -m gpu tests/training/test_cuda_graphs.py
fi
if [ "$what" = throughput ] || [ "$what" = all ]; then
    run throughput_cuda.jsonl python3 bench/throughput.py --device cuda --no-ray
fi
if [ "$what" = packing ] || [ "$what" = all ]; then
    run packing_cuda.jsonl python3 bench/packing.py --device cuda --models dcgan28,dcgan64 --repeats 2 --seconds 5
fi
exit $status
