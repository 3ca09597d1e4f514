#!/usr/bin/env bash
# End-to-end CamVid run on CPU: train -> CRF search on val (never trained on) -> evaluate on test (with and
# without the CRF, boundary trimap) -> segment the bundled examples. Seeded: the same config reproduces the
# same weights.
#
#   bash benchmarks/camvid_pipeline.sh CONFIG RUN_DIR [DATA_ROOT]
#
#   shipped model:   taskset -c 0 bash benchmarks/camvid_pipeline.sh configs/camvid_default.yaml runs/camvid_default
#                    cp runs/camvid_default/model.pt src/deeplab/weights/deeplab_camvid.pt
#
# Environment: CRF_IMAGES (val images for the search, default 40, as for the shipped model; 101 is all of val),
# CRF_GRID (a --grid name or JSON, default 'default'; 'paper' is the paper's 288-setting protocol, ~7x the
# time), SKIP_TRAIN=1 to reuse RUN_DIR/model.pt.
set -euo pipefail
CONFIG=$1
RUN=$2
DATA=${3:-../shared/data}
CRF_IMAGES=${CRF_IMAGES:-40}
CRF_GRID=${CRF_GRID:-default}

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  deeplab train "$CONFIG" --out "$RUN" --no-progress
fi
deeplab crf-search --model "$RUN/model.pt" --dataset camvid --data "$DATA/camvid" --split val \
  --images "$CRF_IMAGES" --grid "$CRF_GRID" --max-extend 2 --write --no-progress -o "$RUN/crf_search.json"
deeplab evaluate --model "$RUN/model.pt" --dataset camvid --data "$DATA/camvid" --split test \
  --crf --trimap 40 --no-progress -o "$RUN/test"   # scores DCNN and DCNN+CRF in one pass
deeplab segment examples/ -o "$RUN/examples" --model "$RUN/model.pt" --overlay --no-progress
