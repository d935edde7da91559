#!/usr/bin/env bash
# The GPU benchmarks in one go, on a machine with one CUDA GPU, JAX and PyTorch
# (TensorFlow is not needed). Run from the repository root:
#
#     benchmarks/gpu.sh /path/to/OLTR-checkout [log_dir] [part ...]
#
# Parts (default: all, in this order):
#   precisions  keras_oltr under JAX: stage-1 and stage-2 train steps and stage-2
#               inference (also with the test resize in the call, as evaluation
#               feeds it), ResNet-10 at 224 px, 1000 classes, batch 256, float32 vs
#               mixed_bfloat16 (JAX's default float32 precision on GPU: TF32 matrix
#               units for convolutions and dots);
#   highest     the same in float32 with JAX_DEFAULT_MATMUL_PRECISION=highest (true
#               float32), so that bfloat16 can be read against both;
#   reference   keras_oltr (JAX) vs the reference PyTorch code on the same GPU,
#               float32 (PyTorch's default: TF32 in cuDNN convolutions), batch 256;
#   batch512    part "precisions" at batch 512;
#   reference_bf16  part "reference" with bfloat16 on both sides (torch.autocast vs
#               the mixed_bfloat16 policy);
#   batch_sweep part "precisions" at batch 8 (where the fixed cost of a Keras step
#               shows) and 1024;
#   fit         part "precisions" with the train steps driven by model.fit (10 steps a
#               call, as the trainer runs them), plus the steps with the flip + colour
#               jitter inside them (the trainer's batches when there is a GPU);
#   fit512      part "fit" at batch 512, without the jitter steps;
#   reference_fit  part "reference" with both sides' train steps as their trainers run
#               them (keras_oltr's fit, the reference's loop; 10 steps, then a sync);
#   reference_fit_bf16  part "reference_fit" in bfloat16 (one round).
set -uo pipefail  # each part runs even if one before it failed
ref_src=${1:?usage: benchmarks/gpu.sh /path/to/OLTR-checkout [log_dir] [part ...]}
log_dir=${2:-gpu_logs}
shift $(($# < 2 ? $# : 2))
parts=${*:-precisions highest reference batch512 reference_bf16 batch_sweep}
mkdir -p "$log_dir"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv | tee "$log_dir/gpu.txt"
python3 -c 'import jax, keras, torch; print("jax", jax.__version__, jax.devices(),
"| keras", keras.__version__, "| torch", torch.__version__)' | tee -a "$log_dir/gpu.txt"

step() {  # step LOG_NAME [ENV=VALUE ...] COMMAND...: runs it, logs to LOG_NAME
    local log=$1
    shift
    env "$@" 2>&1 | grep -v "libtpu" | tee "$log_dir/$log"
}
for part in $parts; do
    case $part in
    precisions)
        step model_step.txt python3 benchmarks/model_step.py --configs=resnet10_224 \
            --batch=256 --warmup=3 --steps=20 --precisions=float32,mixed_bfloat16 \
            --deferred_resize ;;
    highest)
        step model_step_highest.txt JAX_DEFAULT_MATMUL_PRECISION=highest python3 \
            benchmarks/model_step.py --configs=resnet10_224 --batch=256 --warmup=3 \
            --steps=20 --precisions=float32 ;;
    reference)
        step vs_reference.txt python3 benchmarks/vs_reference.py --reference_src="$ref_src" \
            --device=gpu --batch=256 --warmup=3 --steps=20 --rounds=2 ;;
    batch512)
        step model_step_b512.txt python3 benchmarks/model_step.py --configs=resnet10_224 \
            --batch=512 --warmup=3 --steps=10 --precisions=float32,mixed_bfloat16 ;;
    reference_bf16)
        step vs_reference_bf16.txt python3 benchmarks/vs_reference.py \
            --reference_src="$ref_src" --device=gpu --batch=256 --warmup=3 --steps=20 \
            --rounds=1 --precision=bfloat16 ;;
    batch_sweep)
        for batch in 8 1024; do
            step "model_step_b$batch.txt" python3 benchmarks/model_step.py \
                --configs=resnet10_224 --batch=$batch --warmup=3 --steps=10 \
                --precisions=float32,mixed_bfloat16
        done ;;
    fit)
        step model_step_fit.txt python3 benchmarks/model_step.py --configs=resnet10_224 \
            --batch=256 --warmup=2 --steps=5 --loop=fit --fit_steps=10 \
            --precisions=float32,mixed_bfloat16 --deferred_jitter ;;
    fit512)
        step model_step_fit_b512.txt python3 benchmarks/model_step.py \
            --configs=resnet10_224 --batch=512 --warmup=2 --steps=5 --loop=fit \
            --fit_steps=10 --precisions=float32,mixed_bfloat16 ;;
    reference_fit)
        step vs_reference_fit.txt python3 benchmarks/vs_reference.py \
            --reference_src="$ref_src" --device=gpu --batch=256 --warmup=2 --steps=5 \
            --rounds=2 --loop=fit --fit_steps=10 ;;
    reference_fit_bf16)
        step vs_reference_fit_bf16.txt python3 benchmarks/vs_reference.py \
            --reference_src="$ref_src" --device=gpu --batch=256 --warmup=2 --steps=5 \
            --rounds=1 --loop=fit --fit_steps=10 --precision=bfloat16 ;;
    *) echo "gpu.sh: unknown part $part" >&2 ;;
    esac
done
