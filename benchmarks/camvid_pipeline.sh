#!/usr/bin/env bash
# End-to-end CamVid run on CPU: train -> CRF search on val -> evaluate on test (with/without CRF,
# boundary trimap) -> segment the bundled examples. Seeded: the same config reproduces the same weights.
#
#   bash benchmarks/camvid_pipeline.sh CONFIG RUN_DIR [DATA_ROOT]
#
#   issue 4 proof:   bash benchmarks/camvid_pipeline.sh configs/camvid_largefov_cpu.yaml runs/camvid_train
#   shipped model:   bash benchmarks/camvid_pipeline.sh configs/camvid_default.yaml runs/camvid_default
#                    cp runs/camvid_default/model.pt src/deeplab/weights/deeplab_camvid.pt
#
# Environment: CRF_IMAGES (held-out val images for the search, default 40), CRF_GRID (JSON coarse grid),
# CRF_SEARCH_ARGS (extra crf-search flags, e.g. --no-refine), SKIP_TRAIN=1 to reuse RUN_DIR/model.pt.
set -euo pipefail
CONFIG=$1
RUN=$2
DATA=${3:-../shared/data}
CRF_IMAGES=${CRF_IMAGES:-40}
CRF_GRID=${CRF_GRID:-'{"bi_w": [3, 4, 5], "bi_xy_std": [30, 60, 90], "bi_rgb_std": [3, 5, 7]}'}

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  deeplab train "$CONFIG" --out "$RUN" --no-progress
fi
deeplab crf-search --checkpoint "$RUN/model.pt" --dataset camvid --data "$DATA/camvid" --split val \
  --images "$CRF_IMAGES" --grid "$CRF_GRID" ${CRF_SEARCH_ARGS:-} --write --no-progress -o "$RUN/crf_search.json"
deeplab evaluate --checkpoint "$RUN/model.pt" --dataset camvid --data "$DATA/camvid" --split test \
  --crf --trimap 40 --no-progress -o "$RUN/test"   # scores DCNN and DCNN+CRF in one pass
deeplab segment examples/ -o "$RUN/examples" --model "$RUN/model.pt" --overlay
