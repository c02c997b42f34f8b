#!/usr/bin/env bash
# Bring up the emulated ARM device stand-ins used by `pytest -m device` (see docs/devices.md).
#
#   BASE=/tmp/edgeport-arm .ci/arm_target_up.sh      # default BASE: /tmp/edgeport-arm
#   . $BASE/env.sh                                   # ARM_SSH_TARGET, ARM_SSH_CONFIG, ADB_SERVER_SOCKET, ...
#   .ci/arm_target_down.sh                           # stops what this started, by PID
#
# What it builds (every step measured on a Debian 12 x86_64 runner, see shared/reference/arm-emulation.md):
#  1. host tools from Debian: qemu-user-static, proot, openssh-server/client, adb;
#  2. an aarch64 Debian userland (python3.11, dash, busybox, arm64 sftp-server) from arm64 .debs (apt-get download +
#     dpkg -x), a fake Cortex-A72 /proc/cpuinfo (LiteRT and ORT segfault under qemu-user on the host's x86 one);
#  3. aarch64 wheels (numpy, ai-edge-litert, onnxruntime) via pip --platform --target; plus a second site with
#     numpy<2 + tflite-runtime for the `python3-np1` interpreter (tflite_runtime does not work with numpy 2), and
#     two deliberately incomplete ones: `python3-bare` (no numpy), `python3-numpy-only` (no interpreter);
#  4. bin/arm-dev: runs a shell command as aarch64 inside that userland (proot -q qemu-aarch64-static,
#     QEMU_CPU=cortex-a72 unless set);
#  5. a key-only OpenSSH server on 127.0.0.1:$SSH_PORT whose sessions run through arm-dev (a forced command per
#     key), with a 4 MiB tmpfs at /mnt/full inside the device (full-disk tests); ssh_config hosts: armpi (the
#     device), armpi-maxcpu (same, QEMU_CPU=max), armpi-badkey (unauthorized key), armpi-newhost (host key unknown);
#  6. the project's protocol-level fake adb server (tests/device/fake_adb_server.py) on 127.0.0.1:$ADB_PORT,
#     serial emu-1, backed by the same userland and mount namespace (the real Debian `adb` client talks to it).
# Idempotent: a second run reuses everything and restarts nothing unless sshd_config changed (~4 s). From nothing
# it takes about a minute plus apt/pip download time; apt waits for a dpkg lock held by another job.
# Downloads are cached under $CACHE (default ~/.cache/edgeport-arm) and reused; the cache is never required.
set -euo pipefail

BASE=${BASE:-/tmp/edgeport-arm}
CACHE=${CACHE:-$HOME/.cache/edgeport-arm}
SSH_PORT=${SSH_PORT:-22022}
ADB_PORT=${ADB_PORT:-15037}
HOST_PYTHON=${HOST_PYTHON:-$(command -v python3)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[arm_target_up %4d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
# Other jobs on the machine may hold the dpkg lock (e.g. a browser install): wait for it instead of failing.
APT=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

mkdir -p "$BASE" "$CACHE/debs" "$CACHE/wheels"

# ---- 1. host tools -------------------------------------------------------------------------------------------
need=()
for pair in qemu-aarch64-static:qemu-user-static proot:proot sshd:openssh-server ssh:openssh-client adb:adb; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  APT_UPDATE=1
fi
if [ ${#need[@]} -gt 0 ] || [ "${APT_UPDATE:-0}" = 1 ]; then
  "${APT[@]}" update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
log "host tools ready"

# ---- 2. aarch64 userland -------------------------------------------------------------------------------------
ROOTFS=$BASE/rootfs
ARM_DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libstdc++6 libgcc-s1 zlib1g libexpat1
  libssl3 libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libnsl2 libtirpc3
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libdb5.3 libcrypt1 libgdbm6
  libzstd1 dash busybox openssh-sftp-server)
ALL_DEBS=(media-types libtirpc-common)   # Architecture: all -> no :arm64 suffix
if [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
  (
    cd "$CACHE/debs"
    missing=()
    for p in "${ARM_DEBS[@]}"; do ls "${p}"_*_arm64.deb >/dev/null 2>&1 || missing+=("$p:arm64"); done
    for p in "${ALL_DEBS[@]}"; do ls "${p}"_*_all.deb >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
      "${APT[@]}" download -qq "${missing[@]}" 2>/dev/null || { "${APT[@]}" update -qq; "${APT[@]}" download -qq "${missing[@]}"; }
    fi
  )
  rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"
  for p in "${ARM_DEBS[@]}"; do dpkg -x "$(ls -t "$CACHE/debs/${p}"_*_arm64.deb | head -1)" "$ROOTFS"; done
  for p in "${ALL_DEBS[@]}"; do dpkg -x "$(ls -t "$CACHE/debs/${p}"_*_all.deb | head -1)" "$ROOTFS"; done
fi
# Merged-/usr symlinks, shells, coreutils as busybox applets (proot 5.1 does not translate statx for coreutils).
for d in bin sbin lib; do
  mkdir -p "$ROOTFS/usr/$d"
  if [ -d "$ROOTFS/$d" ] && [ ! -L "$ROOTFS/$d" ]; then cp -a "$ROOTFS/$d/." "$ROOTFS/usr/$d/"; rm -rf "${ROOTFS:?}/$d"; fi
  [ -e "$ROOTFS/$d" ] || ln -s "usr/$d" "$ROOTFS/$d"
done
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/tmp" "$ROOTFS/root" "$ROOTFS/data/local/tmp" "$ROOTFS/etc" \
  "$ROOTFS/proc" "$ROOTFS/dev" "$ROOTFS/sys" "$ROOTFS/mnt/full" "$ROOTFS/system" "$ROOTFS/opt"
chmod 1777 "$ROOTFS/tmp" "$ROOTFS/data/local/tmp"
ln -sf dash "$ROOTFS/usr/bin/sh"
ln -sf python3.11 "$ROOTFS/usr/bin/python3"
for applet in $(qemu-aarch64-static -L "$ROOTFS" "$ROOTFS/usr/bin/busybox" --list); do
  case $applet in sh|busybox) continue;; esac
  [ -e "$ROOTFS/usr/bin/$applet" ] || [ -e "$ROOTFS/usr/sbin/$applet" ] || ln -s busybox "$ROOTFS/usr/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOTFS/etc/passwd"
echo 'root:x:0:' > "$ROOTFS/etc/group"
cat > "$ROOTFS/system/build.prop" <<'EOF'
ro.product.model=edgeport-emulated-a72
ro.product.cpu.abi=arm64-v8a
ro.build.version.sdk=34
EOF
cat > "$ROOTFS/usr/local/bin/getprop" <<'EOF'
#!/bin/sh
if [ $# -eq 0 ]; then sed 's/^\(.*\)=\(.*\)$/[\1]: [\2]/' /system/build.prop; exit 0; fi
v=$(grep "^$1=" /system/build.prop | cut -d= -f2-); echo "$v"
EOF
chmod +x "$ROOTFS/usr/local/bin/getprop"
# A Cortex-A72-style cpuinfo, 4 cores (qemu-user passes the host's x86 one through otherwise).
CPUINFO=$BASE/cpuinfo
: > "$CPUINFO"
for i in 0 1 2 3; do
  cat >> "$CPUINFO" <<EOF
processor	: $i
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
done
printf 'Hardware\t: BCM2835\nModel\t\t: edgeport emulated Cortex-A72 (qemu-user)\n' >> "$CPUINFO"
log "aarch64 userland ready ($(du -sm "$ROOTFS" | cut -f1) MB)"

# ---- 3. aarch64 wheels -----------------------------------------------------------------------------------------
PLAT=(--platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64
      --platform manylinux_2_31_aarch64 --platform manylinux_2_34_aarch64 --platform manylinux_2_35_aarch64
      --platform manylinux_2_36_aarch64 --platform manylinux2014_aarch64)
PIPX=(--only-binary=:all: --python-version 3.11 --implementation cp --quiet --disable-pip-version-check)
export PIP_ROOT_USER_ACTION=ignore
SITE=$BASE/site
if [ ! -d "$SITE/onnxruntime" ] || [ ! -d "$SITE/ai_edge_litert" ]; then
  "$HOST_PYTHON" -m pip download "${PLAT[@]}" "${PIPX[@]}" -d "$CACHE/wheels/np2" numpy ai-edge-litert onnxruntime
  rm -rf "$SITE"
  "$HOST_PYTHON" -m pip install "${PLAT[@]}" "${PIPX[@]}" --no-warn-conflicts --no-index --find-links "$CACHE/wheels/np2" \
    --target "$SITE" numpy ai-edge-litert onnxruntime
fi
SITE1=$ROOTFS/opt/np1-site
if [ ! -d "$SITE1/tflite_runtime" ]; then
  "$HOST_PYTHON" -m pip download "${PLAT[@]}" "${PIPX[@]}" -d "$CACHE/wheels/np1" "numpy<2" "tflite-runtime==2.14.0"
  rm -rf "$SITE1"
  "$HOST_PYTHON" -m pip install "${PLAT[@]}" "${PIPX[@]}" --no-warn-conflicts --no-index --find-links "$CACHE/wheels/np1" \
    --target "$SITE1" "numpy<2" "tflite-runtime==2.14.0"
fi
# A second interpreter on the device whose site has numpy<2 + tflite_runtime only (like a Pi with the old wheel).
cat > "$ROOTFS/usr/local/bin/python3-np1" <<'EOF'
#!/bin/sh
PYTHONPATH=/opt/np1-site PYTHONNOUSERSITE=1 exec /usr/bin/python3.11 -S "$@"
EOF
chmod +x "$ROOTFS/usr/local/bin/python3-np1"
# Two deliberately incomplete Pythons for the "device without numpy / without an interpreter" tests.
mkdir -p "$ROOTFS/opt/numpy-only"
for m in numpy numpy.libs; do
  [ -e "$SITE/$m" ] && ln -sfn "/usr/lib/python3/dist-packages/$m" "$ROOTFS/opt/numpy-only/$m"
done
printf '#!/bin/sh\nPYTHONPATH=/opt/numpy-only PYTHONNOUSERSITE=1 exec /usr/bin/python3.11 -S "$@"\n' \
  > "$ROOTFS/usr/local/bin/python3-numpy-only"
printf '#!/bin/sh\nexec /usr/bin/python3.11 -S "$@"\n' > "$ROOTFS/usr/local/bin/python3-bare"
chmod +x "$ROOTFS/usr/local/bin/python3-numpy-only" "$ROOTFS/usr/local/bin/python3-bare"
log "aarch64 wheels ready"

# ---- 4. the aarch64 shell ------------------------------------------------------------------------------------------
# QEMU_CPU defaults to cortex-a72 (a Raspberry Pi 4's core). qemu's `max` model advertises dotprod/i8mm/SVE, and
# under it XNNPACK's INT8 kernels disagree with x86 by up to ~100 LSB (builtin kernels stay bit-exact): the
# `armpi-maxcpu` ssh host keeps that device around on purpose, for the test that device parity catches it.
mkdir -p "$BASE/bin"
cat > "$BASE/bin/arm-dev" <<EOF
#!/bin/sh
# Run "\$1" (or \$SSH_ORIGINAL_COMMAND, or a login shell) as aarch64 inside $ROOTFS.
cmd=\${1:-\${SSH_ORIGINAL_COMMAND:-}}
set -- env -i QEMU_CPU=\${QEMU_CPU:-cortex-a72} HOME=/root PATH=/usr/local/bin:/usr/bin:/usr/sbin TMPDIR=/tmp \\
  proot -q qemu-aarch64-static -r "$ROOTFS" -b "$CPUINFO:/proc/cpuinfo" -b "$SITE:/usr/lib/python3/dist-packages" \\
  -b /dev -b /proc -b /sys -w /root
if [ -z "\$cmd" ]; then exec "\$@" /bin/sh; fi
exec "\$@" /bin/sh -c "\$cmd"
EOF
chmod +x "$BASE/bin/arm-dev"
out=$("$BASE/bin/arm-dev" 'uname -m && python3 -c "import numpy, ai_edge_litert, onnxruntime; print(numpy.__version__)"')
log "arm-dev check: $(echo "$out" | tr '\n' ' ')"
echo "$out" | grep -q aarch64

# ---- 5. sshd on 127.0.0.1 --------------------------------------------------------------------------------------------
SSHD=$BASE/ssh
mkdir -p "$SSHD"; chmod 700 "$SSHD"
[ -f "$SSHD/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/ssh_host_ed25519_key"
[ -f "$SSHD/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/client_key"
[ -f "$SSHD/maxcpu_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/maxcpu_key"
[ -f "$SSHD/other_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD/other_key"   # never authorized
# Per-key forced commands (sshd also forces them for the sftp subsystem, so scp runs the arm64 sftp-server).
{ printf 'command="%s",no-pty,no-port-forwarding %s\n' "$BASE/bin/arm-dev" "$(cat "$SSHD/client_key.pub")"
  printf 'command="env QEMU_CPU=max %s",no-pty,no-port-forwarding %s\n' "$BASE/bin/arm-dev" "$(cat "$SSHD/maxcpu_key.pub")"
} > "$SSHD/authorized_keys"
cat > "$SSHD/sshd_config.new" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD/ssh_host_ed25519_key
PidFile $SSHD/sshd.pid
AuthorizedKeysFile $SSHD/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
# The client side: a config file + known_hosts the tests pass with `ssh -F` (the user's own ~/.ssh/config in real use).
: > "$SSHD/empty_known_hosts"
printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSHD/ssh_host_ed25519_key.pub")" > "$SSHD/known_hosts"
host_block() {  # host_block ALIAS KEY
  printf 'Host %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n' \
    "$1" "$SSH_PORT" "$2"
  printf '  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n' "$SSHD/known_hosts"
}
{ host_block armpi "$SSHD/client_key"
  host_block armpi-maxcpu "$SSHD/maxcpu_key"
  host_block armpi-badkey "$SSHD/other_key"
  # the right key, but this client has never seen the host key: must fail, never be accepted silently
  host_block armpi-newhost "$SSHD/client_key" | sed "s#UserKnownHostsFile .*#UserKnownHostsFile $SSHD/empty_known_hosts#"
  # ssh://root@127.0.0.1:PORT also works. Not `Host *`: IdentityFile accumulates over matching blocks, and the
  # badkey host must offer only its own (unauthorized) key.
  printf 'Host 127.0.0.1\n  UserKnownHostsFile %s\n  IdentityFile %s\n  IdentitiesOnly yes\n' "$SSHD/known_hosts" "$SSHD/client_key"
} > "$SSHD/ssh_config"
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running "$SSHD/sshd.pid" && ! cmp -s "$SSHD/sshd_config.new" "$SSHD/sshd_config"; then
  log "sshd config changed: restarting sshd and the fake adb server (they share a mount namespace)"
  BASE=$BASE bash "$REPO/.ci/arm_target_down.sh"
fi
mv "$SSHD/sshd_config.new" "$SSHD/sshd_config"
if running "$SSHD/sshd.pid"; then
  log "sshd already running (pid $(cat "$SSHD/sshd.pid"))"
else
  rm -f "$SSHD/sshd.pid"
  if running "$BASE/adb/server.pid"; then  # it must join the new sshd's mount namespace (the same /mnt/full)
    log "restarting the fake adb server with sshd"
    kill "$(cat "$BASE/adb/server.pid")"; rm -f "$BASE/adb/server.pid"; sleep 0.5
  fi
  # A private mount namespace: /run for sshd's privsep dir, and a 4 MiB tmpfs at the device's /mnt/full (the
  # full-disk tests). The fake adb server joins the same namespace below, so both transports see the same device.
  START_SSHD="mount -t tmpfs -o size=4m,mode=1777 edgeport-full '$ROOTFS/mnt/full' && \
    mount -t tmpfs -o mode=755 edgeport-run /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f '$SSHD/sshd_config'"
  if unshare --mount --propagation private true 2>/dev/null; then
    nohup unshare --mount --propagation private sh -c "$START_SSHD" > "$SSHD/sshd.log" 2>&1 &
  else   # no CAP_SYS_ADMIN: no private /run, no tmpfs (the full-disk tests then fail, saying why)
    log "WARNING: unshare is not permitted: no 4 MiB tmpfs at /mnt/full, the full-disk tests will fail"
    mkdir -p /run/sshd
    nohup /usr/sbin/sshd -D -e -f "$SSHD/sshd_config" > "$SSHD/sshd.log" 2>&1 &
  fi
  for _ in $(seq 50); do [ -s "$SSHD/sshd.pid" ] && break; sleep 0.1; done
  [ -s "$SSHD/sshd.pid" ] || { cat "$SSHD/sshd.log"; echo "sshd did not start" >&2; exit 1; }
fi
out=$(ssh -F "$SSHD/ssh_config" -o BatchMode=yes -o ConnectTimeout=10 armpi 'uname -m')
log "ssh check: $out"
[ "$out" = aarch64 ]

# ---- 6. fake adb server ------------------------------------------------------------------------------------------------
ADBD=$BASE/adb
mkdir -p "$ADBD"
if running "$ADBD/server.pid"; then
  log "fake adb server already running (pid $(cat "$ADBD/server.pid"))"
else
  NS=()
  if nsenter --mount="/proc/$(cat "$SSHD/sshd.pid")/ns/mnt" true 2>/dev/null; then
    NS=(nsenter --mount="/proc/$(cat "$SSHD/sshd.pid")/ns/mnt" --)
  fi
  nohup "${NS[@]}" "$HOST_PYTHON" "$REPO/tests/device/fake_adb_server.py" --port "$ADB_PORT" --serial emu-1 \
    --devroot "$ROOTFS" --shell-runner "$BASE/bin/arm-dev" > "$ADBD/server.log" 2>&1 &
  echo $! > "$ADBD/server.pid"
fi
# Wait until the fake server listens: on a closed local port the adb client would start a real server there.
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$ADB_PORT") 2>/dev/null && break; sleep 0.1; done
export ADB_SERVER_SOCKET=tcp:127.0.0.1:$ADB_PORT
out=$(adb -s emu-1 shell uname -m)
log "adb check: $out"
[ "$out" = aarch64 ]

cat > "$BASE/env.sh" <<EOF
export EDGEPORT_ARM_BASE=$BASE
export ARM_ROOTFS=$ROOTFS
export ARM_SSH_CONFIG=$SSHD/ssh_config
export ARM_SSH_TARGET=ssh://root@armpi
export ARM_SSH_BADKEY_TARGET=ssh://root@armpi-badkey
export ARM_SSH_MAXCPU_TARGET=ssh://root@armpi-maxcpu
export ARM_SSH_NEWHOST_TARGET=ssh://root@armpi-newhost
export ARM_FULL_DIR=/mnt/full
export ARM_SSH_PORT=$SSH_PORT
export ADB_SERVER_SOCKET=tcp:127.0.0.1:$ADB_PORT
export ARM_ADB_TARGET=adb://emu-1
EOF
log "up; source $BASE/env.sh"
