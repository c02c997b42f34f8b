#!/usr/bin/env bash
# Stop what .ci/arm_target_up.sh started (sshd, fake adb server), by PID. The rootfs and caches stay for reuse.
set -u
BASE=${BASE:-/tmp/edgeport-arm}
stop() {  # stop PIDFILE NAME
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    echo "[arm_target_down] stopped $2 (pid $pid)"
  fi
  rm -f "$1"
}
stop "$BASE/ssh/sshd.pid" sshd
stop "$BASE/adb/server.pid" "fake adb server"
exit 0
