#!/usr/bin/env bash
# The GPU benchmarks of issues 3-6 (BENCHMARKS.md), one device command (<= 10 minutes) per stage.
#
# Once, on the development machine (ignored paths; the device tool carries them, 64 MiB at most):
#   mkdir -p .data .whl && cp ../shared/data/cifar10-jpeg.npz ../shared/data/cifar10.py .data/ \
#     && cp ../shared/wheels-device/*.whl .whl/
# Then one device call per stage, carrying [".data/cifar10-jpeg.npz", ".data/cifar10.py", ".whl"]:
#   bash scripts/gpu_benchmarks.sh env                       # GPU, torch, and the wheels import
#   bash scripts/gpu_benchmarks.sh step                      # one 224 px training step, fp32 and bf16
#   bash scripts/gpu_benchmarks.sh train delayed EPOCHS      # a supernet + its test figures (also sandwich, progressive)
#   bash scripts/gpu_benchmarks.sh alone largest EPOCHS      # the same arch trained alone (also smallest)
#   bash scripts/gpu_benchmarks.sh latency                   # the gpu target's table, validated on 100 subnets
#   bash scripts/gpu_benchmarks.sh predictor RUN             # measurements + tau/RMSE at 250/500/1000 (RUN carried back)
#   bash scripts/gpu_benchmarks.sh search RUN                # engines vs random on RUN's predictor + the gpu table
# Everything lands under $OUT (the device tool's folder; ./gpu-bench elsewhere). Knobs (environment):
# DEVICE, SPACE, DATA (ImageFolder tree), BATCH, TRAIN_LIMIT, ALONE_CONFIG, SIZES, HOLDOUT, TARGET, VALIDATE,
# STEP_SPACE, QUICK. The same stages run on a CPU for a dry run, e.g.
#   DEVICE=cpu SPACE=mobilenetv3-tiny TRAIN_LIMIT=512 bash scripts/gpu_benchmarks.sh train delayed 1
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-bench}
DEVICE=${DEVICE:-cuda}
SPACE=${SPACE:-mobilenetv3-ofa-cifar}
DATA=${DATA:-/tmp/cifar10}
mkdir -p "$OUT"

if [ -d .whl ] && ! python3 -c "import pymoo, optuna" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:.${PYTHONPATH:+:$PYTHONPATH}"
NASFORGE=(python3 -m nasforge)

cifar10() {  # the ImageFolder tree, written once per machine from the carried JPEG pack
    if [ ! -d "$DATA/train" ]; then
        [ -f .data/cifar10-jpeg.npz ] || { echo "carry .data/cifar10-jpeg.npz (see the header)" >&2; exit 2; }
        python3 .data/cifar10.py --pack .data/cifar10-jpeg.npz --imagefolder "$DATA" >/dev/null
    fi
}

extra_args() {  # optional overrides shared by the training stages
    if [ -n "${TRAIN_LIMIT:-}" ]; then echo "--train-limit $TRAIN_LIMIT"; fi
    if [ -n "${BATCH:-}" ]; then echo "--batch-size $BATCH"; fi
}

stage=${1:-}
shift || true
case "$stage" in
env)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv" || true
    python3 -c "import torch, onnxruntime, pymoo, optuna; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ort', onnxruntime.__version__, 'pymoo', pymoo.__version__, 'optuna', optuna.__version__)" | tee "$OUT/env.txt"
    ;;
step)
    python3 scripts/bench_train_step.py --space "${STEP_SPACE:-mobilenetv3-ofa}" --batch 128 --device "$DEVICE" \
        --json "$OUT/train_step.json"
    ;;
train)
    schedule=${1:?schedule: progressive, sandwich or delayed}; epochs=${2:?epochs}
    cifar10
    # shellcheck disable=SC2046
    "${NASFORGE[@]}" train-supernet --config "configs/train/$schedule.yaml" --space "$SPACE" --dataset imagefolder \
        --data-dir "$DATA" --device "$DEVICE" --epochs "$epochs" --out "$OUT/$schedule" --quiet $(extra_args)
    python3 scripts/bench_schedules.py --runs "$OUT/$schedule" --device "$DEVICE" --json "$OUT/$schedule.json"
    rm -rf "$OUT/$schedule/checkpoints"  # supernet.pt is the result; the resumable state stays on the machine
    ;;
alone)
    which=${1:?largest or smallest}; epochs=${2:?epochs}
    cifar10
    arch=$(python3 -c "from nasforge.space import load_space; print(load_space('$SPACE').$which().to_json())")
    # shellcheck disable=SC2046
    # The optimiser settings of the supernet it is compared with (ALONE_CONFIG), schedule replaced by standalone.
    "${NASFORGE[@]}" train-subnet --arch "$arch" --config "${ALONE_CONFIG:-configs/train/delayed.yaml}" --space "$SPACE" \
        --dataset imagefolder --data-dir "$DATA" --device "$DEVICE" --epochs "$epochs" --out "$OUT/alone-$which" \
        --quiet $(extra_args)
    python3 scripts/bench_schedules.py --alone "$OUT/alone-$which" --device "$DEVICE" --json "$OUT/alone-$which.json"
    rm -rf "$OUT/alone-$which/checkpoints"
    ;;
latency)
    "${NASFORGE[@]}" profile --target "${TARGET:-gpu}" --space "$SPACE" --validate "${VALIDATE:-100}" \
        --out "$OUT/${TARGET:-gpu}__$SPACE.json"
    ;;
predictor)
    run=${1:?RUN folder from a train stage, carried back}
    cifar10
    # shellcheck disable=SC2086
    python3 scripts/bench_predictor.py --run "$run" --train-sizes ${SIZES:-250 500 1000} --holdout "${HOLDOUT:-200}" \
        --threads 8 --out "$OUT/predictor.json"
    # The run's own predictor (for the search stage) from the same, now cached, measurements.
    sizes=(${SIZES:-250 500 1000})
    total=$(( $(printf '%s\n' "${sizes[@]}" | sort -n | tail -1) + ${HOLDOUT:-200} ))
    "${NASFORGE[@]}" build-predictor --run "$run" --samples "$total" --holdout "${HOLDOUT:-200}" --model mlp \
        --device "$DEVICE" | tee "$OUT/build_predictor.txt"
    mkdir -p "$OUT/run-extras" && cp -r "$run/measurements" "$run/predictor" "$OUT/run-extras/"
    ;;
search)
    run=${1:?RUN folder with measurements}
    python3 scripts/bench_search.py --run "$run" --target "${TARGET:-gpu}" --json "$OUT/search.json" ${QUICK:+--quick}
    ;;
*)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
