#!/usr/bin/env bash
# shopcall vs Janus, side by side, same machine, same load, same pinning.
#
#   bash benches/compare.sh                 # full ramps (~15-30 min)
#   SCHED=fifo bash benches/compare.sh      # as run for docs/benchmarks.md (shared machine)
#   STEPS=10,20 STEP_SECS=5 bash benches/compare.sh   # a quick look
#   SHOPCALLD=/path/to/shopcalld ONLY=shopcall bash benches/compare.sh   # another build
#
# What it does (as root, on a machine with Debian's apt):
#  1. installs Janus from Debian (`apt-get install -y janus`) if it is missing, and builds
#     shopcalld and shopcall-load in release mode;
#  2. generates a minimal Janus config: only the videoroom plugin and the HTTP transport are
#     loaded (each from a folder holding just that .so), no STUN/TURN, no event handlers;
#  3. makes two network namespaces joined by a veth pair: the SFUs run in one (10.200.0.1),
#     the load tester in the other (10.200.0.2, plus the any-IP block 10.200.128.0/17 for its
#     peer connections). Janus gathers no loopback candidates, hence the veth; shopcall runs
#     behind the same veth so both see the same network path;
#     Janus gets the kernel's default socket buffers (net.core.rmem_default; these sysctls
#     cannot be changed inside a namespace, and the script changes nothing outside its
#     namespaces); shopcalld asks for 8 MiB on its one socket (`--udp-socket-buffer`, its
#     default, as a user gets it). The tester forces 32 MiB on its own socket;
#  4. starts Janus pinned to SFU_CPU, then runs `shopcall-load --compare janus` pinned to
#     CLIENT_CPU: the tester starts shopcalld pinned to SFU_CPU in the SFU namespace, ramps
#     it, stops it, then ramps Janus with the same clients, media and steps;
#  5. writes $OUT/report.{json,md} and $OUT/chart.svg, prints the table, and removes the
#     namespaces and stops Janus on exit.
#
# Traffic never leaves the two namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."

SFU_CPU=${SFU_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-target/compare}
STEPS=${STEPS:-25,50,75,100,125,150,200,250,300,350,400,450,500,600,700,800,900,1000}
STEP_SECS=${STEP_SECS:-10}
CAMERA=${CAMERA:-on}
TIME_LIMIT=${TIME_LIMIT:-1500}
NS_SFU=${NS_SFU:-ldsfu}
NS_CLI=${NS_CLI:-ldcli}
WORK=$(mktemp -d /tmp/shopcall-compare.XXXXXX)
PROFILE_DIR=${PROFILE_DIR:-release}
# Scheduling of both SFUs and the tester (the same for all): NICE (e.g. -15), or SCHED=fifo
# (SCHED_FIFO priority 10, via chrt; children inherit it) on a machine shared with other
# work, so the measured processes are not kept waiting. The kernel keeps 5% of each core
# for everything else (sched_rt_runtime_us), and every run is bounded in time.
NICE=${NICE:-0}
if [ "${SCHED:-}" = fifo ]; then PRIO=(chrt -f 10); else PRIO=(nice -n "$NICE"); fi

if [ "$(id -u)" != 0 ]; then
    echo "compare.sh needs root (network namespaces, apt-get)" >&2
    exit 2
fi

if ! command -v janus >/dev/null; then
    echo "== installing Janus from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null
fi
janus --version 2>/dev/null | head -1 || true

if [ -z "${NO_BUILD:-}" ]; then
    echo "== building shopcalld and shopcall-load (release)"
    cargo build --release -p shopcalld -p shopcall-benches --bin shopcalld --bin shopcall-load
fi
BIN=$(pwd)/target/$PROFILE_DIR

JANUS_PID=
cleanup() {
    if [ -n "$JANUS_PID" ]; then kill "$JANUS_PID" 2>/dev/null || true; wait "$JANUS_PID" 2>/dev/null || true; fi
    ip netns del "$NS_SFU" 2>/dev/null || true
    ip netns del "$NS_CLI" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== network namespaces $NS_SFU (10.200.0.1) and $NS_CLI (10.200.0.2, 10.200.128.0/17)"
ip netns del "$NS_SFU" 2>/dev/null || true
ip netns del "$NS_CLI" 2>/dev/null || true
ip netns add "$NS_SFU"
ip netns add "$NS_CLI"
ip link add ld-s netns "$NS_SFU" type veth peer name ld-c netns "$NS_CLI"
ip -n "$NS_SFU" addr add 10.200.0.1/24 dev ld-s
ip -n "$NS_CLI" addr add 10.200.0.2/24 dev ld-c
for ns in "$NS_SFU" "$NS_CLI"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SFU" link set ld-s up
ip -n "$NS_CLI" link set ld-c up
# Every address of the client block is local in the client namespace (any-IP), and routed
# there from the SFU namespace.
ip -n "$NS_CLI" route add local 10.200.128.0/17 dev lo
ip -n "$NS_SFU" route add 10.200.128.0/17 via 10.200.0.2

echo "== minimal Janus config in $WORK/janus"
LIB=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/janus
mkdir -p "$WORK/janus/plugins" "$WORK/janus/transports" "$WORK/janus/empty"
ln -s "$LIB/plugins/libjanus_videoroom.so" "$WORK/janus/plugins/"
ln -s "$LIB/transports/libjanus_http.so" "$WORK/janus/transports/"
cat > "$WORK/janus/janus.jcfg" <<JCFG
general: {
    configs_folder = "$WORK/janus"
    plugins_folder = "$WORK/janus/plugins"
    transports_folder = "$WORK/janus/transports"
    events_folder = "$WORK/janus/empty"
    loggers_folder = "$WORK/janus/empty"
    debug_level = 3
    session_timeout = 120
}
certificates: {
}
media: {
    rtp_port_range = "20000-60000"
}
nat: {
    nice_debug = false
    ice_ignore_list = "lo"
}
plugins: {
}
transports: {
}
loggers: {
}
events: {
    broadcast = false
}
JCFG
cat > "$WORK/janus/janus.plugin.videoroom.jcfg" <<JCFG
general: {
}
JCFG
cat > "$WORK/janus/janus.transport.http.jcfg" <<JCFG
general: {
    json = "compact"
    base_path = "/janus"
    http = true
    port = 8088
    ip = "10.200.0.1"
    https = false
}
admin: {
    admin_base_path = "/admin"
    admin_http = false
    admin_https = false
}
cors: {
}
JCFG

echo "== starting Janus on core $SFU_CPU"
ip netns exec "$NS_SFU" "${PRIO[@]}" taskset -c "$SFU_CPU" janus -F "$WORK/janus" -C "$WORK/janus/janus.jcfg" \
    -L "$WORK/janus.log" >/dev/null 2>&1 &
JANUS_PID=$!
for _ in $(seq 1 100); do
    if ip netns exec "$NS_CLI" bash -c 'exec 3<>/dev/tcp/10.200.0.1/8088' 2>/dev/null; then break; fi
    sleep 0.1
done
ip netns exec "$NS_CLI" bash -c 'exec 3<>/dev/tcp/10.200.0.1/8088' || {
    echo "Janus did not start; its log:" >&2; tail -30 "$WORK/janus.log" >&2; exit 1; }

# ONLY=shopcall or ONLY=janus runs one ramp instead of both.
if [ -n "${ONLY:-}" ]; then MODE=(--target "$ONLY"); else MODE=(--compare janus); fi
echo "== load: ${ONLY:-shopcall, then Janus} (SFU on core $SFU_CPU, tester on core $CLIENT_CPU)"
ip netns exec "$NS_CLI" "${PRIO[@]}" "$BIN/shopcall-load" "${MODE[@]}" \
    --shopcalld "${SHOPCALLD:-$BIN/shopcalld}" --sfu-netns "$NS_SFU" --sfu-ip 10.200.0.1 \
    --janus-url http://10.200.0.1:8088/janus --janus-pid "$JANUS_PID" \
    --sfu-cpu "$SFU_CPU" --client-cpu "$CLIENT_CPU" \
    --client-ips 10.200.128.0/17 --bind-device ld-c \
    --customer-camera "$CAMERA" --steps "$STEPS" --step-secs "$STEP_SECS" \
    --time-limit "$TIME_LIMIT" --out "$OUT" "$@"
