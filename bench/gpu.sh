#!/usr/bin/env bash
# Every GPU figure of the project in one run: our webgpu backend against jax-js's WebGPU
# device and the machine's own PyTorch (CUDA), on one GPU.
#
#   1. matmul 4096^3: ours (webgpu) vs jax-js (webgpu)
#   2. the sCT training step (bench/sct-step.js): ours on webgpu (tiny batch 128, and nano /
#      tiny batch 32), jax-js on WebGPU (nano, tiny batch 32), PyTorch on CUDA (nano, tiny,
#      small at batch 32 and 128), same weights, one table with the ratios
#   3. 300 training steps of ours in a row (nano batch 32): live tensors, buffers, host RSS
#      and GPU memory (nvidia-smi) should not grow
#   4. (PARTS=memory) LONG_MEMORY_STEPS (default 1,000) training steps of ours in a row (nano
#      batch 8), the same counts
#   5. (PARTS=replaystep) the sCT training step again with its gradient replayed as one GPU.js
#      pipeline (`sct-step.js --replay`, as `scm train --replay`), PyTorch beside it in the same
#      call, then LONG_MEMORY_STEPS (default 1,000) replayed steps in a row (nano batch 8);
#      REPLAY_PRESETS and REPLAY_BATCHES narrow it. Both issues' GPU work in one call of
#      about 9 minutes: PARTS=replaystep,train REPLAY_PRESETS=tiny REPLAY_BATCHES=128
#      LONG_MEMORY_STEPS=0 TRAIN_MINUTES=6
#   7. (PARTS=train) not a measurement: `scm train` on the GPU, sCT of the tiny UNet on CIFAR-10
#      (16x16, batch 32) from the committed tiny teacher, whole steps replayed, for TRAIN_MINUTES
#      (default 7) or TRAIN_STEPS (default 2000) steps, whichever ends first; the stage
#      checkpoints (every 500 steps), metrics and config come back in $OUT/sct, to be judged
#      with `scm eval` here. Needs `bench/gpu.sh pack-data` (the training images, carried as
#      .bench/cifar) and TRAIN_RESUME=1 to continue a run whose checkpoint.safetensors is in
#      .bench/cifar/run (copy the returned files there), or TRAIN_RESUME_FROM=DIR to continue
#      the run directory DIR, e.g. the same sCT trained on a CPU (a resumed run takes its
#      backend and --replay from the command line).
#   6. (PARTS=replay) bench/replay.js on webgpu: the nano (batch 32) and tiny (batch 128) UNets'
#      forward + JVP and sCT gradient, eager against replayed as one GPU.js pipeline (one
#      command encoder, one submit per call)
#
# PARTS (default "matmul,sct") picks the parts: "memory" alone fits the 1,000-step run into one
# call of a few minutes, so that the parts can be run as separate calls under a time limit.
#
# The GPU machine has no Node.js and no package registry, so the JS is bundled here and
# carried with a packed Node binary and the Vulkan loader (../shared/tools/device-runtime.sh):
#
#   here:   npm install && bench/gpu.sh pack          # -> .bench/device (git-ignored), about 32 MiB
#   there:  bash bench/gpu.sh                         # from the repository root, .bench/device carried
#
# The device folder can be moved with DEVICE_DIR=...; results (JSON per part, and the
# printed tables in gpu.txt) go to $OUT when it is set, else .bench/gpu-results.
# `bash bench/gpu.sh --smoke` runs the same parts at toy sizes (matmul 256, 8x8 images,
# batch 2, one repetition): on a machine without a GPU it runs on a software Vulkan driver
# (llvmpipe), slowly (5 to 25 minutes here: jax-js's shaders take llvmpipe long to compile),
# to check the script end to end. The sCT part starts nothing new after DEADLINE seconds
# (default 360; 2400 with --smoke), so that a real run fits a 10-minute slot; BUDGET (default
# 45) is the seconds each implementation, preset and batch gets, MEMORY_STEPS (default 300)
# the length of the memory run. On an H200, `DEADLINE=250 BUDGET=30 MEMORY_STEPS=200` ran
# everything but ours on the small UNet in about 5 minutes (BENCHMARKS.md, GPU run A).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${DEVICE_DIR:-.bench/device}

pack() {
  local tool=../shared/tools/device-runtime.sh
  [ -x "$tool" ] || { echo "gpu.sh pack: $tool not found (it packs Node and the Vulkan loader)" >&2; exit 1; }
  npx tsc -b
  mkdir -p "$dir"
  "$tool" "$dir" >/dev/null
  rm -rf "$dir/js"
  # One ESM bundle per entry (shared chunks beside them); webgpu (a native addon) stays
  # outside and is copied with only its linux-x64 binary; gl is gpu.js's optional headless GL.
  npx rolldown bench/sct-step.js bench/jaxjs-sct.js bench/replay.js packages/consistency/dist/cli.js -d "$dir/js" --platform node --format esm -e webgpu -e gl --logLevel warn
  mkdir -p "$dir/js/node_modules/webgpu/dist" "$dir/assets"
  cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$dir/js/node_modules/webgpu/"
  # Dawn compressed (18 MiB -> a few): what travels is limited; run() unpacks it.
  xz -T2 -6 -c node_modules/webgpu/dist/linux-x64.dawn.node > "$dir/js/node_modules/webgpu/dist/linux-x64.dawn.node.xz"
  # The CLI finds its committed models beside its bundle (../assets).
  cp packages/consistency/assets/*.safetensors "$dir/assets/"
  git check-ignore -q "$dir" || echo "gpu.sh pack: $dir is not git-ignored; ignore it before carrying it" >&2
  du -sh "$dir"
}

# The training images (data_batch_1.bin, 10,000 of them) for PARTS=train, compressed; the test
# images stay here (the judging is done here).
pack_data() {
  local src=../shared/data/cifar-10-binary-subset.tar.gz
  [ -f "$src" ] || { echo "gpu.sh pack-data: $src not found" >&2; exit 1; }
  mkdir -p .bench/cifar
  tar xzf "$src" -O cifar-10-batches-bin/data_batch_1.bin | xz -T2 -6 > .bench/cifar/data_batch_1.bin.xz
  du -sh .bench/cifar
}

# sCT of the tiny UNet on the GPU (see the header); the run lives in .bench/cifar/run and its
# stage checkpoints, metrics and config are copied to $out/sct.
train_part() {
  local out=$1 node=("${@:2}")
  [ -f .bench/cifar/data_batch_1.bin.xz ] || { echo "gpu.sh train: no .bench/cifar/data_batch_1.bin.xz (run 'bench/gpu.sh pack-data', carry .bench/cifar)"; return 1; }
  # The same data string as the teacher's run here, so that --init accepts it and `scm eval`
  # here finds the test images: an archive holding the training batch at that path.
  local data=../shared/data/cifar-10-binary-subset.tar.gz tmp
  if [ ! -f "$data" ]; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp/cifar-10-batches-bin" "$(dirname "$data")"
    xz -dc .bench/cifar/data_batch_1.bin.xz > "$tmp/cifar-10-batches-bin/data_batch_1.bin"
    tar czf "$data" -C "$tmp" cifar-10-batches-bin
    rm -rf "$tmp"
  fi
  local run=.bench/cifar/run
  # TRAIN_BATCH, TRAIN_WARMUP and TRAIN_INIT only to check the script on a slow device.
  local args=(train --method sct --data "cifar10@16:$data" --model tiny --batch "${TRAIN_BATCH:-32}" --warmup "${TRAIN_WARMUP:-100}"
    --init "${TRAIN_INIT:-packages/consistency/assets/cifar10-tiny-teacher.safetensors}" --backend webgpu --replay
    --steps "${TRAIN_STEPS:-2000}" --minutes "${TRAIN_MINUTES:-7}" --keep-every 500 --log-every 5
    --sample-every 100000 --checkpoint-every 100 --eval-samples 64 --heun-steps 16 --out "$run")
  # TRAIN_RESUME_FROM=DIR: continue the run directory DIR (e.g. one trained on a CPU and
  # committed), copied into $run first.
  if [ -n "${TRAIN_RESUME_FROM:-}" ]; then
    [ -f "$TRAIN_RESUME_FROM/checkpoint.safetensors" ] || { echo "gpu.sh train: no checkpoint.safetensors in $TRAIN_RESUME_FROM"; return 1; }
    rm -rf "$run"; mkdir -p "$run"; cp -r "$TRAIN_RESUME_FROM"/. "$run"/
    TRAIN_RESUME=1
  fi
  if [ "${TRAIN_RESUME:-0}" = 1 ]; then args+=(--resume); else rm -rf "$run"; fi
  "${node[@]}" "$dir/js/cli.js" "${args[@]}" 2>&1 | tr '\r' '\n' | awk 'NR % 50 == 1 || !/^step /'
  # What comes back is limited (8 files, 64 MiB): the latest checkpoint and the last three
  # stage checkpoints before it (12.8 MiB each for tiny), the metrics and the config.
  mkdir -p "$out/sct"
  cp "$run/checkpoint.safetensors" "$run/metrics.jsonl" "$run/config.json" "$out/sct/" 2>/dev/null || true
  local last stages
  last=$(tail -1 "$run/metrics.jsonl" 2>/dev/null | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
  stages=$(ls "$run" | sed -n 's/^checkpoint-\([0-9]*\)\.safetensors$/\1/p' | sort -n | grep -vx "${last:-x}" | tail -3)
  for k in $stages; do cp "$run/checkpoint-$k.safetensors" "$out/sct/"; done
  ls -la "$out/sct"
}

run() {
  local smoke=${1:-}
  [ -f "$dir/enter.sh" ] && [ -f "$dir/js/sct-step.js" ] || { echo "gpu.sh: no packed runtime in $dir (run 'bench/gpu.sh pack' first)" >&2; exit 1; }
  local dawn=$dir/js/node_modules/webgpu/dist/linux-x64.dawn.node
  [ -f "$dawn" ] || xz -dc "$dawn.xz" > "$dawn"
  local out=${OUT:-.bench/gpu-results}
  mkdir -p "$out"
  local node=(bash "$dir/enter.sh" node)
  # The first Python that has PyTorch (the GPU machine's own; Debian's python3-torch here).
  local py="" candidate
  for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$candidate" -c 'import torch' 2>/dev/null; then py=$candidate; break; fi
  done
  local torch_device=cpu
  if [ -n "$py" ] && "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then torch_device=cuda; fi
  local with_py=()
  [ -n "$py" ] && with_py=(--python "$py")
  local deadline=${DEADLINE:-360}
  local matmul=4096
  local sct=(--backend webgpu --presets nano,tiny,small --batches 32,128
    --ours-presets nano,tiny,small --ours-batches 32,128 --jax-presets nano,tiny --jax-batches 32
    --torch-device "$torch_device" --config-budget-s "${BUDGET:-45}" --deadline-s "$deadline" --peer-timeout-s 150)
  local memory=(--memory-steps "${MEMORY_STEPS:-300}" --memory-config nano:32)
  local parts=${PARTS:-matmul,sct}
  local long_memory=(--memory-steps "${LONG_MEMORY_STEPS:-1000}" --memory-config nano:8)
  local replay=("nano 32 3" "tiny 128 3")
  # REPLAY_PRESETS / REPLAY_BATCHES narrow the replayed-step part (e.g. tiny and 128 only, so
  # that it and PARTS=train fit into one call); LONG_MEMORY_STEPS=0 leaves its memory run out.
  local replaystep=(--backend webgpu --replay --impls ours,torch --presets "${REPLAY_PRESETS:-nano,tiny,small}"
    --batches "${REPLAY_BATCHES:-32,128}" --torch-device "$torch_device" --config-budget-s "${BUDGET:-45}" --deadline-s "$deadline" --peer-timeout-s 150)
  if [ "$smoke" = --smoke ]; then
    matmul=256
    sct=(--backend webgpu --image-size 8 --presets nano --batches 2 --jax-batches 2 --reps 1
      --torch-device "$torch_device" --torch-threads 1 --deadline-s "${DEADLINE:-2400}" --peer-timeout-s 1500)
    memory=(--memory-steps 5 --memory-config nano:2)
    long_memory=(--memory-steps 5 --memory-config nano:2 --image-size 8)
    replay=("nano 2 1")
    replaystep=(--backend webgpu --replay --impls ours,torch --image-size 8 --presets nano --batches 2 --reps 1
      --torch-device "$torch_device" --torch-threads 1 --deadline-s "${DEADLINE:-2400}" --peer-timeout-s 1500)
  fi
  {
    echo "== $(date -u +%FT%TZ) $(uname -n)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || echo "no nvidia-smi"
    if [ -n "$py" ]; then "$py" -c 'import torch; print("PyTorch", torch.__version__, "with CUDA" if torch.cuda.is_available() else "(no CUDA)")'; else echo "no PyTorch"; fi
    if [[ ",$parts," == *,matmul,* ]]; then
      echo "== matmul ${matmul}^3"
      "${node[@]}" "$dir/js/sct-step.js" --matmul "$matmul" --backend webgpu --jax-device webgpu --json "$out/matmul.json" || echo "gpu.sh: the matmul part failed ($?)"
    fi
    if [[ ",$parts," == *,sct,* ]]; then
      echo "== sCT training step"
      "${node[@]}" "$dir/js/sct-step.js" "${sct[@]}" "${memory[@]}" "${with_py[@]}" --json "$out/sct-step.json" || echo "gpu.sh: the sCT part failed ($?)"
    fi
    if [[ ",$parts," == *,memory,* ]]; then
      echo "== ${long_memory[*]}"
      "${node[@]}" "$dir/js/sct-step.js" --backend webgpu --impls ours --presets nano --batches "${long_memory[3]#nano:}" --reps 1 "${long_memory[@]}" --json "$out/memory.json" || echo "gpu.sh: the memory part failed ($?)"
    fi
    if [[ ",$parts," == *,replaystep,* ]]; then
      echo "== sCT training step, gradient replayed"
      "${node[@]}" "$dir/js/sct-step.js" "${replaystep[@]}" "${long_memory[@]}" "${with_py[@]}" --json "$out/sct-replay.json" || echo "gpu.sh: the replayed-step part failed ($?)"
    fi
    if [[ ",$parts," == *,train,* ]]; then
      echo "== training: sCT, tiny UNet, CIFAR-10 16x16, whole steps replayed"
      train_part "$out" "${node[@]}" || echo "gpu.sh: the training part failed ($?)"
    fi
    if [[ ",$parts," == *,replay,* ]]; then
      local r preset batch reps
      for r in "${replay[@]}"; do
        read -r preset batch reps <<<"$r"
        echo "== replay: $preset UNet, batch $batch"
        "${node[@]}" "$dir/js/replay.js" --backend webgpu --only unet --unet "$preset" --batch "$batch" --reps "$reps" || echo "gpu.sh: the replay part failed ($?)"
      done
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv,noheader || true
  } 2>&1 | grep --line-buffered -v '^Warning: maxDynamic' | tee "$out/gpu.txt"
}

case "${1:-}" in
  pack) pack ;;
  pack-data) pack_data ;;
  ""|--smoke) run "${1:-}" ;;
  *) echo "usage: bench/gpu.sh [pack | pack-data | --smoke]" >&2; exit 2 ;;
esac
