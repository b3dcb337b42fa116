#!/usr/bin/env bash
# Joins the shard folders of slurm_array.sh (or of the Indexed Job) into $OUT/joined; refuses,
# naming it, any shard that is missing, unfinished, of another model or of other settings.
#SBATCH --job-name=fmfp-report
#SBATCH --time=00:10:00
set -euo pipefail
OUT=${OUT:-eval}
fmfp-tf report "$OUT"/shard-*-of-* --out "$OUT/joined"
