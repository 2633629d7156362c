#!/bin/bash
# The GPU runs of issue 16, part 4, for a device machine when one is lent:
#   bash benchmarks/gpu_suite.sh PART [SECONDS]
# NOT YET RUN ON A GPU: written in session 10, when the device tool first reported a
# machine and then refused the run ("no device machine is lent in this task"). The
# `sac` part's throughput command was checked on this repo's CPU VM with small sizes
# (RLAX_INF_BENCH_PLATFORM=cpu); nothing here has produced a GPU figure.
# PART: setup-only | sac | ppo | scaling | fkl (see the case below). The device
# machine has jax (with CUDA) but not brax / mujoco / distrax: they travel as wheels
# in .whl/ (git-ignored) and are installed into /tmp/site. Outputs go to $OUT
# as one all.tgz (logs, runs/time_to_solve records, results). Each job has its own time limit, and a job is skipped when
# less than its limit is left of SECONDS (default 560), so a call ends in time.
set -u
PART=${1:?part}; BUDGET=${2:-560}; T0=$(date +%s)
OUT=${OUT:-runs/gpu_suite_out}; W=runs/gpu_suite; mkdir -p "$OUT" "$W"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tail -2
  export PYTHONPATH=/tmp/site:$PWD
fi
# The package maps rlax_inf.agents / rlax_inf.envs onto agents/ and envs/ (pyproject).
[ -e rlax_inf/agents ] || ln -s ../agents rlax_inf/agents
[ -e rlax_inf/envs ] || ln -s ../envs rlax_inf/envs
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false MUJOCO_GL=egl \
  RLAX_INF_BENCH_PLATFORM=${RLAX_INF_BENCH_PLATFORM:-cuda}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, brax, mujoco, rlax_inf.agents.registry as r; \
print('jax', jax.__version__, jax.devices(), 'brax', brax.__version__, 'mujoco', mujoco.__version__)" 2>&1 | tail -3

job() {  # job LIMIT NAME command...
  local limit=$1 name=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  if [ "$left" -lt "$limit" ]; then echo "== $name: skipped ($left s left < $limit)"; return; fi
  echo "== $name: $*"; local t=$(date +%s)
  timeout "$limit" "$@" > "$W/$name.log" 2>&1; local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t )) s"; grep -vE "^(TTS|SCALING) " "$W/$name.log" | tail -4
}
TTS="python3 -m benchmarks.time_to_solve"
# Throughput settings: hopper (positional), 256x256 networks, batch 256, 16 updates
# per vector step, two evaluations after the first: env steps/s from the last interval.
thr() {  # thr SIDES ENVS EXTRA...
  local s=$1 n=$2; shift 2
  job 170 "thr_${s//,/_}_$n" $TTS --sides "$s" --out "thr_${s//,/_}_$n" --set seeds=1 \
    --set env='"hopper"' --set backend='"positional"' --set num_envs=$n \
    --set hidden='[256,256]' --set target=1e9 --set prefill=$((4 * n)) \
    --set max_steps=$((n * 96)) --set eval_every=$((n * 32)) --set num_eval_envs=128 "$@"
}
case "$PART" in
  setup-only) ;;
  sac)
    thr ours-sac,brax-sac 1024
    thr ours-sac,brax-sac 4096
    # Each side at its best CPU settings (time_to_solve.md, session 17).
    job 300 tts_sac $TTS --sides ours-sac,brax-sac --set polyak=0.02 \
      --set critic_layer_norm=true --set learning_rate=0.001 --set eval_stochastic=false \
      --set batch_size=64 --set grad_updates_per_step=32 \
      --side-set brax-sac:batch_size=128 --side-set brax-sac:grad_updates_per_step=16 \
      --out tts_sac_gpu
    ;;
  ppo)
    job 300 tts_ppo $TTS --sides ours-klpg,brax-ppo --out tts_ppo_gpu
    thr ours-klpg,brax-ppo 4096 --set ppo_batch_size=1024 --set unroll_length=32
    ;;
  scaling)
    job 400 scaling python3 -m benchmarks.seeds_scaling --seeds 1,4,16 --max-sequential 4 \
      --devices 1 --name seeds_scaling_gpu
    ;;
  fkl)
    job 540 fkl python3 -m benchmarks.fkl_vs_rkl --out "$W/fkl" --n 16
    ;;
  *) echo "unknown part $PART"; exit 2 ;;
esac
cp -r runs/time_to_solve "$W"/ 2>/dev/null
cp benchmarks/results/seeds_scaling_gpu.* "$W"/ 2>/dev/null
tar czf "$OUT/$PART.tgz" -C "$W" . 2>/dev/null
echo "done in $(( $(date +%s) - T0 )) s"
