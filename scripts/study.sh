#!/usr/bin/env bash
# A top-tagging study with jetace, end to end:
#   1. generate top and QCD jets with Pythia 8 + FastJet (training and test samples,
#      independent seeds),
#   2. compute boost-invariant polynomial (BIP) features of the training jets,
#   3. train a linear tagger and a small MLP on the raw training jets,
#   4. evaluate both on the held-out test jets: metrics as JSON and ROC curves.
#
# Needs the generation extra: pip install 'jetace[generate]'
# Usage:  scripts/study.sh                     (defaults run in a few minutes on 2 cores)
#         N_TRAIN=20000 N_TEST=20000 WORKERS=8 ORDER=4 DEGREE=8 OUT=big scripts/study.sh
set -euo pipefail

N_TRAIN=${N_TRAIN:-3000}   # jets per class for training
N_TEST=${N_TEST:-3000}     # jets per class for testing
WORKERS=${WORKERS:-2}      # Pythia worker processes
SEED=${SEED:-1000}         # base seed; the four samples use SEED+1 .. SEED+4
ORDER=${ORDER:-3}          # BIP body order
DEGREE=${DEGREE:-6}        # BIP polynomial degree
DEVICE=${DEVICE:-auto}     # torch device for features: auto, cpu, cuda ...
OUT=${OUT:-study}          # output directory

mkdir -p "$OUT"
gen() {  # gen PROCESS N SEED FILE: generate once, reuse the file on a re-run
    if [[ -f "$4" ]]; then echo "keeping $4"; return; fi
    jetace generate "$1" -n "$2" --seed "$3" --workers "$WORKERS" -o "$4"
}

echo "== 1. generate (pT 550-650 GeV, |eta| < 2, anti-kT R = 0.8, 14 TeV)"
gen top "$N_TRAIN" $((SEED + 1)) "$OUT/top_train.root"
gen qcd "$N_TRAIN" $((SEED + 2)) "$OUT/qcd_train.root"
gen top "$N_TEST" $((SEED + 3)) "$OUT/top_test.root"
gen qcd "$N_TEST" $((SEED + 4)) "$OUT/qcd_test.root"

FEATURES=(--family bip --order "$ORDER" --degree "$DEGREE")
echo "== 2. features (written for inspection; training recomputes them from the jets)"
jetace features "$OUT/top_train.root" "$OUT/qcd_train.root" -o "$OUT/features_train.parquet" \
    "${FEATURES[@]}" --device "$DEVICE"

for model in linear mlp; do
    echo "== 3. train $model"
    jetace train --signal "$OUT/top_train.root" --background "$OUT/qcd_train.root" \
        -o "$OUT/$model.model" --model "$model" "${FEATURES[@]}" --device "$DEVICE"
    echo "== 4. evaluate $model on the test samples"
    jetace evaluate "$OUT/$model.model" --signal "$OUT/top_test.root" \
        --background "$OUT/qcd_test.root" --device "$DEVICE" --json --plot "$OUT/roc_$model.png" \
        | tee "$OUT/metrics_$model.json"
done

echo "== results in $OUT/: metrics_{linear,mlp}.json, roc_{linear,mlp}.png, *.model"
