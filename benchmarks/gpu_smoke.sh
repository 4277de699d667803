#!/usr/bin/env bash
# A few steps of SPIRAL and GRPO and one eval on a GPU with a local real model; prints throughput.
#
#   benchmarks/gpu_smoke.sh MODEL_DIR [OUT_DIR]          # e.g. a local copy of Qwen3-0.6B-Base
#
# MODEL_DIR is any `save_pretrained` directory (safetensors). Without a CUDA device it prints one
# line and exits 0. SPKIT_SMOKE_DEVICE=cpu runs the same commands on the CPU (how the test suite
# checks this script, with spkit-tiny); SPKIT_SMOKE_BACKEND=vllm samples with vLLM.
set -euo pipefail

MODEL="${1:?usage: benchmarks/gpu_smoke.sh MODEL_DIR [OUT_DIR]}"
OUT="${2:-runs/gpu_smoke}"
DEVICE="${SPKIT_SMOKE_DEVICE:-cuda}"
BACKEND="${SPKIT_SMOKE_BACKEND:-hf}"
PY="${PYTHON:-python}"

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_smoke: no CUDA device here; skipped (SPKIT_SMOKE_DEVICE=cpu runs it on the CPU)"
    exit 0
fi
mkdir -p "$OUT"
common=(--model "$MODEL" --backend "$BACKEND" --eval-every 0 --overwrite --no-tensorboard --no-plot)

echo "== SPIRAL: 3 steps, reasoning mode, Kuhn Poker, 8 games per step"
"$PY" -m spkit train spiral "${common[@]}" --device "$DEVICE" --mode reasoning --games kuhn_poker \
    --steps 3 --episodes 8 --min-turns 8 --eval-games 2 --kuhn-samples 2 --out "$OUT/spiral"
echo "== GRPO: 3 steps, 8 problems x 4 samples"
"$PY" -m spkit train grpo "${common[@]}" --steps 3 --problems 8 --k 4 --eval-limit 2 --out "$OUT/grpo"
echo "== eval: spkit_arith, 50 problems per level"
"$PY" -m spkit eval --model "$MODEL" --tasks spkit_arith --limit 50 --backend "$BACKEND" --out "$OUT/eval"

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from spkit.run.metrics import read_metrics

out = Path(sys.argv[1])
for algo in ("spiral", "grpo"):
    rows = [r for r in read_metrics(out / algo / "metrics.csv") if r.get("train/seconds_per_step", 0) > 0]
    secs = [r["train/seconds_per_step"] for r in rows]
    tok = [r["train/tokens_per_s"] for r in rows if r.get("train/tokens_per_s", 0) > 0]
    extra = f", {sum(tok) / len(tok):.0f} rollout tokens/s" if tok else ""
    print(f"{algo}: {len(secs)} steps, {sum(secs) / max(len(secs), 1):.2f} s/step{extra}")
info = json.loads((out / "eval" / "results.json").read_text())["spkit"]
print(f"eval: {info['samples']} samples in {info['seconds']} s ({info['samples_per_s']} samples/s)")
PY
