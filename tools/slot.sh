#!/usr/bin/env bash
# Dev helper (not used by CI): run a long CPU job in one of two single-thread slots so that at
# most two training jobs share this 2-core machine. Usage: tools/slot.sh LOGFILE CMD...
log=$1; shift
while true; do
  for s in 0 1; do
    exec 9>/tmp/genzoo-slot$s.lock
    if flock -n 9; then
      echo "[slot $s] $(date +%T) $*" >> "$log"
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 GENZOO_THREADS=1 "$@" >> "$log" 2>&1
      rc=$?; echo "[slot $s] $(date +%T) exit $rc" >> "$log"; exit $rc
    fi
    exec 9>&-
  done
  sleep 10
done
