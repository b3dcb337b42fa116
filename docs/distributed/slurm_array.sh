#!/usr/bin/env bash
# One evaluation split over a Slurm job array: array task i evaluates shard i+1 of the array's
# size, each into its own folder; `report.sh` joins them once every task has finished.
#
#   MODEL=runs/dnn3 OUT=eval N=12630 sbatch --array=0-7 docs/distributed/slurm_array.sh
#   sbatch --dependency=afterok:<array job id> docs/distributed/report.sh
#
# A task that is killed or preempted resumes where it stopped when run again (its finished
# cells, and the finished stages of an AutoAttack cell, are kept in its folder).
#SBATCH --job-name=fmfp-evaluate
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
: "${MODEL:?set MODEL to a run directory or model file}"
OUT=${OUT:-eval}
N=${N:-12630}
ATTACKS=${ATTACKS:-autoattack}
COUNT=${SLURM_ARRAY_TASK_COUNT:?submit as an array: sbatch --array=0-7 ...}
INDEX=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} + 1))
# shellcheck disable=SC2086  # EXTRA holds further evaluate options, split on purpose
fmfp-tf evaluate --model "$MODEL" --attacks "$ATTACKS" --n "$N" --shard "$INDEX/$COUNT" \
  --out "$OUT/shard-$INDEX-of-$COUNT" ${EXTRA:-}
