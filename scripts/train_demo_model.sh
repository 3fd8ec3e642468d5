#!/usr/bin/env bash
# Reproduce the bundled demo model (fdrl_core/demo_model): synthesise the corpus, cache the backbone
# features, train FDRL, and publish the run with its model card. About 30-40 minutes on a 2-core CPU,
# most of it the Whisper encoder over 2720 utterances (cached: a rerun skips it). Ends by re-exporting
# the bundled ONNX (python -m export demo); commit fdrl_core/demo_model/ afterwards.
#   scripts/train_demo_model.sh [--ablation] [--cross-engine]
#     --ablation      also run the ablation table (6 variants) and put it in the model card
#     --cross-engine  also train on espeak-ng only, test on festival, and put the result in the card
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
SEED=${SEED:-0}
ablation=0; cross=0
for a in "$@"; do
  case "$a" in
    --ablation) ablation=1 ;;
    --cross-engine) cross=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "train_demo_model: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

[[ -f "$DATA/synth/manifest.jsonl" ]] || "$PY" -m train.synth --out "$DATA/synth" --seed "$SEED"
"$PY" -m train fit --corpus "$DATA/synth" --out "$RUNS/demo" --seed "$SEED" --threads 1

extra=()
if ((ablation)); then
  "$PY" -m train ablate --corpus "$DATA/synth" --out "$RUNS/demo-ablation" --seeds 2 --threads 1 \
    --set d_model=128 --epochs 12
  extra+=(--append "$RUNS/demo-ablation/ablation.md")
fi
if ((cross)); then
  [[ -f "$DATA/synth-xengine/manifest.jsonl" ]] || \
    "$PY" -m train.synth --out "$DATA/synth-xengine" --seed "$SEED" --test-engine festival --n-utterances 1000
  for variant in full speech_only; do
    set_mod=()
    [[ $variant == speech_only ]] && set_mod=(--set modalities=speech)
    "$PY" -m train fit --corpus "$DATA/synth-xengine" --out "$RUNS/xengine-$variant" --seed "$SEED" \
      --threads 1 --epochs 15 "${set_mod[@]}"
  done
  "$PY" -m train.cross_engine "$RUNS/xengine-full" "$RUNS/xengine-speech_only" > "$RUNS/xengine.md"
  extra+=(--append "$RUNS/xengine.md")
fi
"$PY" -m train.model_card "$RUNS/demo" --corpus "$DATA/synth" --into fdrl_core/demo_model "${extra[@]}"
# the bundled ONNX (what the default, torch-free run-time loads) must match the new checkpoint
"$PY" -m export demo
