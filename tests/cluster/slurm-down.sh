#!/usr/bin/env bash
# Stop the one-node cluster of slurm-up.sh (the packages stay installed).
set -u
scancel --user="$(id -un)" 2>/dev/null || true
pkill -x slurmd || true
pkill -x slurmctld || true
pkill -x munged || true
