#!/usr/bin/env bash
# The GPU benchmarks in one go, on a machine with one CUDA GPU, JAX and PyTorch
# (TensorFlow is not needed). Run from the repository root:
#
#     benchmarks/gpu.sh /path/to/OLTR-checkout [log_dir]
#
# 1. keras_oltr under JAX: stage-1 and stage-2 train steps and stage-2 inference,
#    ResNet-10 at 224 px, 1000 classes, batch 256, float32 vs mixed_bfloat16
#    (JAX's default float32 precision on GPU: TF32 matrix units for convolutions
#    and dots).
# 2. The same in float32 with JAX_DEFAULT_MATMUL_PRECISION=highest (true float32),
#    so that bfloat16 can be read against both.
# 3. keras_oltr (JAX) vs the reference PyTorch code on the same GPU, float32
#    (PyTorch's default: TF32 in cuDNN convolutions), batch 256.
set -uo pipefail  # each part runs even if one before it failed
ref_src=${1:?usage: benchmarks/gpu.sh /path/to/OLTR-checkout [log_dir]}
log_dir=${2:-gpu_logs}
mkdir -p "$log_dir"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv | tee "$log_dir/gpu.txt"
python3 -c 'import jax, keras, torch; print("jax", jax.__version__, jax.devices(),
"| keras", keras.__version__, "| torch", torch.__version__)' | tee -a "$log_dir/gpu.txt"

python3 benchmarks/model_step.py --configs=resnet10_224 --batch=256 --warmup=3 \
    --steps=20 --precisions=float32,mixed_bfloat16 2>&1 | grep -v "libtpu" \
    | tee "$log_dir/model_step.txt"
JAX_DEFAULT_MATMUL_PRECISION=highest python3 benchmarks/model_step.py \
    --configs=resnet10_224 --batch=256 --warmup=3 --steps=20 --precisions=float32 2>&1 \
    | grep -v "libtpu" | tee "$log_dir/model_step_highest.txt"
python3 benchmarks/vs_reference.py --reference_src="$ref_src" --device=gpu --batch=256 \
    --warmup=3 --steps=20 --rounds=2 2>&1 | tee "$log_dir/vs_reference.txt"
