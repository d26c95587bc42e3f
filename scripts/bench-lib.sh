# What the bench-* scripts share: installing their tools, free ports, waiting, and a Redis of their
# own that runs as production should (AOF on, fsync every second) and is stopped on exit.
# Source it; it sets `work` (a temp dir removed on exit) and `pids` (stopped on exit).

need() { command -v "$1" >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo;
  $sudo apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null; }; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 200); do if eval "$1" >/dev/null 2>&1; then return 0; fi; sleep 0.05; done; echo "timed out: $1" >&2; exit 1; }

# Starts Redis on a free port; sets redis_port and redis_pid.
start_redis() {
  need redis-server redis-server
  need redis-cli redis-tools
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" \
    --appendonly yes --appendfsync everysec --logfile "$work/redis.log" ${REDIS_ARGS:-} &
  redis_pid=$!
  pids+=("$redis_pid")
  wait_for "redis-cli -p $redis_port ping"
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system clock ticks

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(redis-server --version | cut -d' ' -f1-3)"
}
