#!/usr/bin/env bash
# The local service stack for inferfleet (development and CI).
#
#   scripts/stack.sh up       start every service that is not already answering, then make
#                             sure the Postgres role/databases and the S3 bucket exist
#   scripts/stack.sh status   one line per service (checked for real); exit 0 only if all answer
#   scripts/stack.sh down     stop the services that `up` started; never one that was
#                             already running before `up`
#
# Besides the shared stack, two private services for the fault suite (tests/faults), each
# in a folder of its own so that a test may kill or restart it without touching the
# shared one:
#   scripts/stack.sh kafka3 up|down|status|kill N|start N
#                             a three-node KRaft cluster (every node broker + controller),
#                             replication factor 3, min.insync.replicas=2; `kill N` sends
#                             node N (1-3) SIGKILL, `start N` starts it again and waits
#                             until it is back in the cluster
#   scripts/stack.sh pgtemp up|down|status|stop|start
#                             a Postgres cluster of its own (initdb into a folder) with the
#                             same role and databases; `stop` is an immediate shutdown (a
#                             crash: no checkpoint), `start` brings it back
#
# Services, all bound to 127.0.0.1:
#   postgres  5432  Debian's postgresql, run with pg_ctlcluster (no systemd needed);
#                   role inferfleet / password inferfleet, databases inferfleet, inferfleet_test
#   redis     6379  Debian's redis-server, no persistence
#   kafka     9092  Apache Kafka 4.x in KRaft mode, one node as broker + controller (9093);
#                   jars resolved by mvn from stack/kafka/pom.xml, config from
#                   stack/kafka/server.properties and stack/kafka/log4j2.properties
#   moto-s3   5000  moto_server from the project virtualenv; bucket inferfleet
#                   (access key testing / secret testing, region us-east-1)
#
# scripts/secure-kafka.sh starts a second broker beside these that takes only SASL_SSL
# (for the services' Kafka security settings); this script never starts or stops it.
#
# Runtime state lives in <repo>/.stack/: logs/ (service logs), run/ (pid files, plus a
# <service>.ours marker for each service this script started), kafka/ (jars, generated
# config, data), redis/. Missing Debian packages are installed with apt-get (run as root).
#
# Environment:
#   INFERFLEET_VENV      the project virtualenv (default <repo>/.venv): moto_server, boto3,
#                        and the `inferfleet` CLI (`inferfleet models restore` runs after up)
#   KAFKA_START_TIMEOUT  seconds to wait for the Kafka broker to serve metadata (default 90)
#   KAFKA3_DIR           the three-node cluster's folder: per node its config, data, logs and
#                        pid file (default <repo>/.stack/kafka3)
#   KAFKA3_PORT          client port of node 1; node N listens on KAFKA3_PORT+N-1 for
#                        clients and KAFKA3_PORT+100+N-1 for the controller quorum
#                        (default 29092: clients 29092-29094, quorum 29192-29194)
#   KAFKA3_HEAP          maximum heap of each node (default 512m)
#   PGTEMP_DIR           the private Postgres cluster's folder (default <repo>/.stack/pgtemp)
#   PGTEMP_PORT          its port (default 25432)
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
STACK_DIR=$REPO/.stack
LOG_DIR=$STACK_DIR/logs
RUN_DIR=$STACK_DIR/run
VENV=${INFERFLEET_VENV:-$REPO/.venv}

HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379
KAFKA_PORT=9092
MOTO_PORT=5000

DB_USER=inferfleet
DB_PASSWORD=inferfleet
DATABASES=(inferfleet inferfleet_test)
BUCKET=inferfleet

KAFKA_TEMPLATE_DIR=$REPO/stack/kafka
KAFKA_DIR=$STACK_DIR/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONFIG=$KAFKA_DIR/server.properties
KAFKA_TIMEOUT=${KAFKA_START_TIMEOUT:-90}

KAFKA3_DIR=${KAFKA3_DIR:-$STACK_DIR/kafka3}
KAFKA3_PORT=${KAFKA3_PORT:-29092}
KAFKA3_HEAP=${KAFKA3_HEAP:-512m}
KAFKA3_NODES=(1 2 3)

PGTEMP_DIR=${PGTEMP_DIR:-$STACK_DIR/pgtemp}
PGTEMP_PORT=${PGTEMP_PORT:-25432}

export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Markers: which services this script started (so `down` stops only those).
marker() { printf '%s/%s.ours' "$RUN_DIR" "$1"; }
is_ours() { [[ -f $(marker "$1") ]]; }
mark_ours() { printf '%s\n' "${2:-yes}" >"$(marker "$1")"; }
unmark() { rm -f "$(marker "$1")"; }
origin() { if is_ours "$1"; then printf 'started by stack.sh'; else printf 'external'; fi; }

APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install these packages by hand: $*"
    if [[ -z $APT_UPDATED ]]; then
        say "apt: updating package lists"
        apt-get update -q </dev/null >>"$LOG_DIR/apt.log" 2>&1 || {
            show_log "$LOG_DIR/apt.log" 30
            die "apt-get update failed"
        }
        APT_UPDATED=1
    fi
    say "apt: installing $*"
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "$@" \
        </dev/null >>"$LOG_DIR/apt.log" 2>&1 || {
        show_log "$LOG_DIR/apt.log" 30
        die "apt-get install $* failed"
    }
}

# A TCP connect to $HOST:<port>.
tcp_open() {
    # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
    timeout 3 bash -c ': <>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Send <request> (a printf format) to $HOST:<port>; succeed if the reply's first line
# starts with <prefix>. For machines without redis-cli, and for HTTP.
tcp_exchange() {
    # shellcheck disable=SC2016  # $0..$3 are expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "$2" >&3 && IFS= read -r line <&3 &&
        [[ $line == "$3"* ]]' "$HOST" "$@" 2>/dev/null
}

# The pid in <pidfile> if that process is alive and its command line contains <pattern>.
live_pid() {
    local pidfile=$1 pattern=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
    printf '%s' "$pid"
}

# SIGTERM the process from <pidfile> (checked against <pattern>), SIGKILL after <seconds>.
stop_pid() {
    local name=$1 pidfile=$2 pattern=$3 seconds=$4 pid i
    if ! pid=$(live_pid "$pidfile" "$pattern"); then
        say "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < seconds * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name: still running after ${seconds}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    say "$name: stopped"
}

# Poll <command...> every half second until it succeeds or <seconds> pass.
wait_until() {
    local seconds=$1 deadline
    shift
    deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# For wait_until: <check...> succeeds, or process <pid> has exited (no point waiting on).
answers_or_exited() {
    local pid=$1
    shift
    "$@" || ! kill -0 "$pid" 2>/dev/null
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

show_log() {
    local file=$1 lines=${2:-50}
    [[ -s $file ]] || return 0
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '-----\n' >&2
}

# --------------------------------------------------------------------------- postgres

pg_answers() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 3
    else
        tcp_open "$PG_PORT"
    fi
}

# Newest installed server version, e.g. "15".
pg_version() {
    local d versions=()
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x $d ]] && versions+=("$(basename "$(dirname "$(dirname "$d")")")")
    done
    ((${#versions[@]})) || return 1
    printf '%s\n' "${versions[@]}" | sort -V | tail -n 1
}

# "<version> <name>" of the cluster configured for $PG_PORT (creating <version>/main if none).
pg_cluster() {
    local found ver
    found=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2 }' |
        sort -V | tail -n 1)
    if [[ -n $found ]]; then
        printf '%s' "$found"
        return 0
    fi
    ver=$(pg_version) || die "postgres: no server binaries under /usr/lib/postgresql"
    if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" { f = 1 } END { exit !f }'; then
        die "postgres: cluster $ver/main exists but is not configured for port $PG_PORT (see pg_lsclusters)"
    fi
    say "postgres: creating cluster $ver/main on port $PG_PORT" >&2
    pg_createcluster --locale=C.UTF-8 -p "$PG_PORT" "$ver" main \
        >>"$LOG_DIR/postgres.log" 2>&1 || {
        show_log "$LOG_DIR/postgres.log" 20
        die "postgres: pg_createcluster $ver main failed"
    }
    printf '%s main' "$ver"
}

pg_start() {
    local cluster ver name
    if ! command -v pg_ctlcluster >/dev/null || ! pg_version >/dev/null; then
        apt_install postgresql
    fi
    # The package's own start script may just have brought a cluster up.
    if pg_answers; then
        say "postgres: already running on $HOST:$PG_PORT"
        return 0
    fi
    cluster=$(pg_cluster)
    read -r ver name <<<"$cluster"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    # -o also keeps pg_ctlcluster from handing the start to systemctl on machines with systemd.
    if ! pg_ctlcluster -o "-c listen_addresses=$HOST" "$ver" "$name" start \
        </dev/null >>"$LOG_DIR/postgres.log" 2>&1 9>&-; then
        show_log "$LOG_DIR/postgres.log" 20
        show_log "/var/log/postgresql/postgresql-$ver-$name.log" 30
        die "postgres: pg_ctlcluster $ver $name start failed"
    fi
    mark_ours postgres "$ver $name"
    wait_until 30 pg_answers || die "postgres: cluster $ver/$name started but $HOST:$PG_PORT does not answer"
    say "postgres: started cluster $ver/$name on $HOST:$PG_PORT"
}

# The SQL that creates or corrects the role and databases, for psql with -v user, password.
pg_role_sql() {
    local db
    printf '%s\n' \
        "SELECT format('CREATE ROLE %I', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \\gexec" \
        "ALTER ROLE :\"user\" WITH LOGIN CREATEDB PASSWORD :'password';"
    for db in "${DATABASES[@]}"; do
        printf '%s\n' \
            "SELECT format('CREATE DATABASE %I OWNER %I', '$db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \\gexec" \
            "ALTER DATABASE \"$db\" OWNER TO :\"user\";"
    done
}

# Whoever runs the server on <port>, the application's login must work over TCP.
pg_check_login() {
    local port=$1 db
    for db in "${DATABASES[@]}"; do
        PGPASSWORD=$DB_PASSWORD psql -X -h "$HOST" -p "$port" -U "$DB_USER" -d "$db" \
            -Atqc 'select 1' >/dev/null ||
            die "postgres: cannot log in as $DB_USER to database $db on $HOST:$port (pg_hba.conf?)"
    done
}

# Role and databases, created or corrected as the postgres superuser (over the Unix socket).
pg_ensure_db() {
    if id postgres >/dev/null 2>&1 &&
        (cd / && runuser -u postgres -- psql -X -p "$PG_PORT" -Atqc 'select 1' >/dev/null 2>&1); then
        pg_role_sql | (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" \
            -v user="$DB_USER" -v password="$DB_PASSWORD" >/dev/null) ||
            die "postgres: creating role/databases failed"
    fi
    pg_check_login "$PG_PORT"
    say "postgres: role $DB_USER and databases ${DATABASES[*]} ready"
}

pg_stop() {
    local ver name
    read -r ver name <"$(marker postgres)"
    if pg_ctlcluster "$ver" "$name" status >/dev/null 2>&1; then
        pg_ctlcluster -m fast "$ver" "$name" stop </dev/null >>"$LOG_DIR/postgres.log" 2>&1 ||
            die "postgres: pg_ctlcluster $ver $name stop failed"
        say "postgres: stopped cluster $ver/$name"
    else
        say "postgres: not running"
    fi
}

# ------------------------------------------------------------------------------ redis

redis_answers() {
    local reply
    if command -v redis-cli >/dev/null; then
        reply=$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) || return 1
        [[ $reply == PONG ]]
    else
        tcp_exchange "$REDIS_PORT" 'PING\r\n' +PONG
    fi
}

redis_start() {
    # Debian's package may start its own server on install; that one is then reused.
    command -v redis-server >/dev/null || apt_install redis-server
    if redis_answers; then
        say "redis: already running on $HOST:$REDIS_PORT"
        return 0
    fi
    mkdir -p "$STACK_DIR/redis"
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$STACK_DIR/redis" --pidfile "$RUN_DIR/redis.pid" --logfile "$LOG_DIR/redis.log" \
        </dev/null >>"$LOG_DIR/redis.out" 2>&1 9>&- || {
        show_log "$LOG_DIR/redis.out" 20
        die "redis: redis-server failed to start"
    }
    mark_ours redis
    wait_until 15 redis_answers || {
        show_log "$LOG_DIR/redis.log" 20
        die "redis: started but $HOST:$REDIS_PORT does not answer PING"
    }
    say "redis: started on $HOST:$REDIS_PORT"
}

redis_stop() { stop_pid redis "$RUN_DIR/redis.pid" redis-server 15; }

# ------------------------------------------------------------------------------ kafka

# Proves the broker serves metadata: kafka-python's admin client (from the project
# virtualenv, which `up` needs anyway for moto) must see at least one broker.
kafka_answers() { kafka_serves "$HOST:$KAFKA_PORT" 1; }

# <bootstrap> serves metadata that lists at least <brokers> brokers. The admin client
# asks any broker it has learnt of, which may be one still starting or just killed, so
# one refusal is asked again.
kafka_serves() {
    [[ -x $VENV/bin/python ]] || return 1
    timeout 15 "$VENV/bin/python" - "$1" "$2" >/dev/null 2>&1 <<'PY'
import sys
from kafka.admin import KafkaAdminClient

admin = KafkaAdminClient(
    bootstrap_servers=sys.argv[1], request_timeout_ms=3000, bootstrap_timeout_ms=3000
)
try:
    for _ in range(3):
        try:
            if len(admin.describe_cluster()["brokers"]) >= int(sys.argv[2]):
                sys.exit(0)
        except Exception:
            pass
    sys.exit(1)
finally:
    admin.close()
PY
}

kafka_fetch_libs() {
    local pom=$KAFKA_TEMPLATE_DIR/pom.xml stamp=$KAFKA_DIR/libs.sha256 want
    want=$(sha256sum "$pom" | cut -d' ' -f1)
    if [[ -d $KAFKA_LIBS && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || apt_install maven
    say "kafka: resolving jars from $pom with mvn"
    rm -rf "$KAFKA_LIBS.tmp"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$KAFKA_LIBS.tmp" </dev/null >"$LOG_DIR/mvn.log" 2>&1; then
        show_log "$LOG_DIR/mvn.log" 40
        die "kafka: mvn dependency:copy-dependencies failed (log: $LOG_DIR/mvn.log)"
    fi
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    printf '%s\n' "$want" >"$stamp"
}

kafka_check_java() {
    local major
    command -v java >/dev/null || apt_install default-jre-headless
    major=$(java -version 2>&1 | sed -nE '1s/.*version "([0-9]+)(\.[0-9]+)*.*/\1/p')
    if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 17)); then
        die "kafka: Kafka 4.x needs Java 17 or newer; found: $(java -version 2>&1 | head -n 1)"
    fi
}

# The committed template with this checkout's data directory filled in.
kafka_render_config() {
    local line
    mkdir -p "$KAFKA_DATA"
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s\n' "${line//@KAFKA_DATA_DIR@/$KAFKA_DATA}"
    done <"$KAFKA_TEMPLATE_DIR/server.properties" >"$KAFKA_CONFIG"
}

# Format the storage once: StorageTool writes meta.properties into the data directory.
kafka_format() {
    local cluster_id
    [[ -f $KAFKA_DATA/meta.properties ]] && return 0
    cluster_id=$(kafka_random_id)
    kafka_format_node "$KAFKA_DATA" "$KAFKA_CONFIG" "$cluster_id" "$LOG_DIR"
    say "kafka: formatted $KAFKA_DATA (cluster id $cluster_id)"
}

kafka_random_id() {
    local id
    id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    [[ -n $id ]] || die "kafka: StorageTool random-uuid printed nothing"
    printf '%s' "$id"
}

# Format <data> for <config> with <cluster id>; the tool's output goes to <logs>.
kafka_format_node() {
    local data=$1 config=$2 cluster_id=$3 logs=$4
    if ! java -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$logs" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$config" >"$logs/kafka-format.log" 2>&1; then
        show_log "$logs/kafka-format.log" 30
        die "kafka: formatting $data failed"
    fi
}

# Start a broker with <config> in the background, logging into <logs> (kafka.log, and
# the JVM's own output in kafka.out), with at most <heap> of heap (<initial heap> at
# first); $! is its pid.
kafka_launch() {
    local config=$1 logs=$2 heap=$3
    nohup setsid java -Xms"$4" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dkafka.logs.dir="$logs" \
        -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$config" \
        </dev/null >>"$logs/kafka.out" 2>&1 9>&- &
}

kafka_start() {
    local pid started
    if tcp_open "$KAFKA_PORT" && ! live_pid "$RUN_DIR/kafka.pid" kafka.Kafka >/dev/null; then
        wait_until "$KAFKA_TIMEOUT" kafka_answers ||
            die "kafka: something listens on $HOST:$KAFKA_PORT but serves no Kafka metadata"
        say "kafka: already running on $HOST:$KAFKA_PORT"
        return 0
    fi
    if pid=$(live_pid "$RUN_DIR/kafka.pid" kafka.Kafka); then
        # Ours, from an earlier `up`: running already, or still starting.
        if kafka_answers; then
            say "kafka: already running on $HOST:$KAFKA_PORT"
            return 0
        fi
        say "kafka: waiting for the broker started earlier (pid $pid)"
    else
        kafka_check_java
        kafka_fetch_libs
        kafka_render_config
        kafka_format
        kafka_launch "$KAFKA_CONFIG" "$LOG_DIR" 1g 256m
        pid=$!
        printf '%s\n' "$pid" >"$RUN_DIR/kafka.pid"
        mark_ours kafka
        say "kafka: starting (pid $pid), waiting up to ${KAFKA_TIMEOUT}s for metadata"
    fi
    started=$SECONDS
    if ! wait_until "$KAFKA_TIMEOUT" answers_or_exited "$pid" kafka_answers || ! kafka_answers; then
        show_log "$LOG_DIR/kafka.log" 50
        show_log "$LOG_DIR/kafka.out" 20
        if kill -0 "$pid" 2>/dev/null; then
            die "kafka: no metadata from $HOST:$KAFKA_PORT after ${KAFKA_TIMEOUT}s (pid $pid still running; \`$0 down\` stops it)"
        fi
        die "kafka: the broker exited during startup"
    fi
    say "kafka: started on $HOST:$KAFKA_PORT (serving metadata after $((SECONDS - started))s)"
}

kafka_stop() { stop_pid kafka "$RUN_DIR/kafka.pid" kafka.Kafka 30; }

# ------------------------------------------------- kafka3 (three-node cluster, private)

kafka3_port() { printf '%s' $((KAFKA3_PORT + $1 - 1)); }
kafka3_controller_port() { printf '%s' $((KAFKA3_PORT + 100 + $1 - 1)); }
kafka3_bootstrap() {
    local n out=()
    for n in "${KAFKA3_NODES[@]}"; do out+=("$HOST:$(kafka3_port "$n")"); done
    (IFS=,; printf '%s' "${out[*]}")
}
kafka3_pidfile() { printf '%s/%s/kafka.pid' "$KAFKA3_DIR" "$1"; }

kafka3_node() {
    [[ ${1:-} =~ ^[1-3]$ ]] || die "kafka3: a node is 1, 2 or 3, not '${1:-}'"
}

# Node <n>'s config from the committed template, its folders made.
kafka3_render() {
    local n=$1 dir=$KAFKA3_DIR/$1 voters=() m line
    for m in "${KAFKA3_NODES[@]}"; do voters+=("$m@$HOST:$(kafka3_controller_port "$m")"); done
    mkdir -p "$dir/data" "$dir/logs"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line//@NODE_ID@/$n}
        line=${line//@PORT@/$(kafka3_port "$n")}
        line=${line//@CONTROLLER_PORT@/$(kafka3_controller_port "$n")}
        line=${line//@VOTERS@/$(IFS=,; printf '%s' "${voters[*]}")}
        printf '%s\n' "${line//@KAFKA_DATA_DIR@/$dir/data}"
    done <"$KAFKA_TEMPLATE_DIR/cluster.properties" >"$dir/server.properties"
}

# Start node <n> unless it runs already (formatting its storage the first time).
kafka3_launch() {
    local n=$1 dir=$KAFKA3_DIR/$1 cluster_id pid
    if pid=$(live_pid "$(kafka3_pidfile "$n")" kafka.Kafka); then
        say "kafka3: node $n already running (pid $pid)"
        return 0
    fi
    kafka3_render "$n"
    if [[ ! -f $dir/data/meta.properties ]]; then
        [[ -f $KAFKA3_DIR/cluster.id ]] || kafka_random_id >"$KAFKA3_DIR/cluster.id"
        cluster_id=$(<"$KAFKA3_DIR/cluster.id")
        kafka_format_node "$dir/data" "$dir/server.properties" "$cluster_id" "$dir/logs"
    fi
    kafka_launch "$dir/server.properties" "$dir/logs" "$KAFKA3_HEAP" 128m
    printf '%s\n' "$!" >"$(kafka3_pidfile "$n")"
    say "kafka3: node $n starting (pid $!) on $HOST:$(kafka3_port "$n")"
}

# Wait until node <n> serves metadata that lists all three nodes.
kafka3_wait() {
    local n=$1 pid started=$SECONDS
    pid=$(<"$(kafka3_pidfile "$n")")
    if ! wait_until "$KAFKA_TIMEOUT" answers_or_exited "$pid" \
        kafka_serves "$HOST:$(kafka3_port "$n")" "${#KAFKA3_NODES[@]}" || pid_gone "$pid"; then
        show_log "$KAFKA3_DIR/$n/logs/kafka.log" 40
        show_log "$KAFKA3_DIR/$n/logs/kafka.out" 20
        die "kafka3: node $n does not serve the cluster's metadata after ${KAFKA_TIMEOUT}s"
    fi
    say "kafka3: node $n in the cluster after $((SECONDS - started))s"
}

kafka3_up() {
    local n
    kafka_check_java
    kafka_fetch_libs
    mkdir -p "$KAFKA3_DIR"
    # All three at once: a KRaft quorum elects no controller until a majority is up.
    for n in "${KAFKA3_NODES[@]}"; do kafka3_launch "$n"; done
    for n in "${KAFKA3_NODES[@]}"; do kafka3_wait "$n"; done
    say "kafka3: bootstrap $(kafka3_bootstrap)"
}

# SIGTERM to all nodes at once (a node stopped after the others would wait for a
# controller quorum that is gone), SIGKILL to any still running after 30 s.
kafka3_down() {
    local n pid pids=()
    for n in "${KAFKA3_NODES[@]}"; do
        if pid=$(live_pid "$(kafka3_pidfile "$n")" kafka.Kafka); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$(kafka3_pidfile "$n")"
    done
    for pid in "${pids[@]}"; do
        if ! wait_until 30 pid_gone "$pid"; then
            warn "kafka3: pid $pid still running after 30s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    say "kafka3: stopped ${#pids[@]} node(s)"
}

kafka3_kill() {
    local n=$1 pid
    if ! pid=$(live_pid "$(kafka3_pidfile "$n")" kafka.Kafka); then
        die "kafka3: node $n is not running"
    fi
    kill -KILL "$pid"
    wait_until 10 pid_gone "$pid" || die "kafka3: node $n outlived SIGKILL"
    say "kafka3: node $n killed (pid $pid)"
}

kafka3_status() {
    local n all=0 state
    for n in "${KAFKA3_NODES[@]}"; do
        if live_pid "$(kafka3_pidfile "$n")" kafka.Kafka >/dev/null &&
            kafka_serves "$HOST:$(kafka3_port "$n")" 1; then
            state=up
        else
            state=down all=1
        fi
        printf 'kafka3-%s  %-16s %s\n' "$n" "$HOST:$(kafka3_port "$n")" "$state"
    done
    return "$all"
}

cmd_kafka3() {
    local action=${1:-} n=${2:-}
    case $action in
        up) kafka3_up ;;
        down) kafka3_down ;;
        status) kafka3_status ;;
        kill) kafka3_node "$n" && kafka3_kill "$n" ;;
        start)
            kafka3_node "$n"
            kafka3_launch "$n"
            kafka3_wait "$n"
            ;;
        *) die "usage: $0 kafka3 up|down|status|kill N|start N" ;;
    esac
}

# ------------------------------------------------ pgtemp (a Postgres cluster, private)

# Runs a Postgres program as the owner of the cluster: the server refuses to run as root.
pgtemp_as_owner() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pgtemp_bin() {
    local ver
    ver=$(pg_version) || die "pgtemp: no server binaries under /usr/lib/postgresql"
    printf '/usr/lib/postgresql/%s/bin' "$ver"
}

pgtemp_answers() { pg_isready -q -h "$HOST" -p "$PGTEMP_PORT" -t 3; }

pgtemp_start() {
    local bin
    bin=$(pgtemp_bin)
    # fsync=off: a killed server keeps what it wrote (the OS still holds it), which is
    # all a process fault needs; only a machine crash would lose it.
    pgtemp_as_owner "$bin/pg_ctl" -D "$PGTEMP_DIR/data" -l "$PGTEMP_DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=$HOST -p $PGTEMP_PORT -k $PGTEMP_DIR/run -c max_connections=300 -c fsync=off" \
        start </dev/null >/dev/null 9>&- || {
        show_log "$PGTEMP_DIR/postgres.log" 30
        die "pgtemp: pg_ctl start failed"
    }
    wait_until 30 pgtemp_answers || die "pgtemp: started but $HOST:$PGTEMP_PORT does not answer"
    say "pgtemp: running on $HOST:$PGTEMP_PORT"
}

pgtemp_stop() {
    local mode=$1 bin
    bin=$(pgtemp_bin)
    if [[ ! -f $PGTEMP_DIR/data/postmaster.pid ]]; then
        say "pgtemp: not running"
        return 0
    fi
    pgtemp_as_owner "$bin/pg_ctl" -D "$PGTEMP_DIR/data" -m "$mode" -w -t 60 stop \
        </dev/null >/dev/null || die "pgtemp: pg_ctl stop -m $mode failed"
    say "pgtemp: stopped ($mode)"
}

pgtemp_up() {
    local bin
    if ! command -v pg_isready >/dev/null || ! pg_version >/dev/null; then
        apt_install postgresql
    fi
    bin=$(pgtemp_bin)
    if [[ ! -f $PGTEMP_DIR/data/PG_VERSION ]]; then
        mkdir -p "$PGTEMP_DIR/data" "$PGTEMP_DIR/run"
        if ((EUID == 0)); then
            chown -R postgres:postgres "$PGTEMP_DIR"
            pgtemp_as_owner test -w "$PGTEMP_DIR/data" ||
                die "pgtemp: the postgres user cannot reach $PGTEMP_DIR (a folder above it is closed to it); set PGTEMP_DIR to one under /tmp"
        fi
        pgtemp_as_owner "$bin/initdb" -D "$PGTEMP_DIR/data" -U postgres --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$PGTEMP_DIR/initdb.log" 2>&1 || {
            show_log "$PGTEMP_DIR/initdb.log" 30
            die "pgtemp: initdb into $PGTEMP_DIR/data failed"
        }
    fi
    if pgtemp_answers; then
        say "pgtemp: already running on $HOST:$PGTEMP_PORT"
    else
        pgtemp_start
    fi
    pg_role_sql | pgtemp_as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$PGTEMP_DIR/run" \
        -p "$PGTEMP_PORT" -U postgres -d postgres -v user="$DB_USER" -v password="$DB_PASSWORD" \
        >/dev/null || die "pgtemp: creating role/databases failed"
    pg_check_login "$PGTEMP_PORT"
    say "pgtemp: role $DB_USER and databases ${DATABASES[*]} ready on $HOST:$PGTEMP_PORT"
}

cmd_pgtemp() {
    case ${1:-} in
        up) pgtemp_up ;;
        down) pgtemp_stop fast ;;
        stop) pgtemp_stop immediate ;;
        start) pgtemp_start ;;
        status)
            if pgtemp_answers; then
                printf 'pgtemp    %-16s up\n' "$HOST:$PGTEMP_PORT"
            else
                printf 'pgtemp    %-16s down\n' "$HOST:$PGTEMP_PORT"
                return 1
            fi
            ;;
        *) die "usage: $0 pgtemp up|down|status|stop|start" ;;
    esac
}

# ---------------------------------------------------------------------------- moto-s3

moto_answers() {
    tcp_exchange "$MOTO_PORT" "GET / HTTP/1.0\r\nHost: $HOST\r\n\r\n" HTTP/
}

# The virtualenv runs moto and the Kafka and S3 checks.
require_venv() {
    [[ -x $VENV/bin/moto_server && -x $VENV/bin/python ]] ||
        die "$VENV/bin/moto_server not found; create the virtualenv first (scripts/install.sh, or set INFERFLEET_VENV)"
}

moto_start() {
    local pid
    if moto_answers; then
        say "moto-s3: already running on $HOST:$MOTO_PORT"
    else
        nohup setsid "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT" \
            </dev/null >>"$LOG_DIR/moto.log" 2>&1 9>&- &
        pid=$!
        printf '%s\n' "$pid" >"$RUN_DIR/moto.pid"
        mark_ours moto
        if ! wait_until 30 answers_or_exited "$pid" moto_answers || ! moto_answers; then
            show_log "$LOG_DIR/moto.log" 30
            die "moto-s3: $HOST:$MOTO_PORT does not answer HTTP"
        fi
        say "moto-s3: started on $HOST:$MOTO_PORT"
    fi
    moto_ensure_bucket
}

moto_ensure_bucket() {
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE "$VENV/bin/python" - "http://$HOST:$MOTO_PORT" "$BUCKET" <<'PY' ||
import sys
import boto3
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
try:
    s3.head_bucket(Bucket=bucket)
except ClientError:
    s3.create_bucket(Bucket=bucket)
PY
        die "moto-s3: could not create bucket $BUCKET"
    say "moto-s3: bucket $BUCKET ready"
}

moto_stop() { stop_pid moto-s3 "$RUN_DIR/moto.pid" moto_server 15; }

# --------------------------------------------------------------------------- commands

# moto keeps S3 in memory: put back the model artifacts registered in Postgres.
restore_models() {
    if [[ ! -x $VENV/bin/inferfleet ]]; then
        warn "models: $VENV/bin/inferfleet not found; skipped \`inferfleet models restore\`"
        return 0
    fi
    (cd "$REPO" && timeout 300 "$VENV/bin/inferfleet" models restore </dev/null) ||
        warn "models: \`inferfleet models restore\` failed; S3 may lack model artifacts"
}

cmd_up() {
    # Fail before starting anything if the checks and moto cannot run.
    require_venv
    pg_start
    pg_ensure_db
    redis_start
    kafka_start
    moto_start
    restore_models
}

cmd_down() {
    local svc
    for svc in moto kafka redis postgres; do
        if is_ours "$svc"; then
            case $svc in
                moto) moto_stop ;;
                kafka) kafka_stop ;;
                redis) redis_stop ;;
                postgres) pg_stop ;;
            esac
            unmark "$svc"
        elif "${svc}_answers"; then
            say "${svc/moto/moto-s3}: not started by stack.sh, left running"
        else
            say "${svc/moto/moto-s3}: not running"
        fi
    done
}

cmd_status() {
    local all=0 name port state svc
    for svc in postgres redis kafka moto; do
        case $svc in
            postgres) name=postgres port=$PG_PORT ;;
            redis) name=redis port=$REDIS_PORT ;;
            kafka) name=kafka port=$KAFKA_PORT ;;
            moto) name=moto-s3 port=$MOTO_PORT ;;
        esac
        if "${svc}_answers"; then state=up; else state=down all=1; fi
        printf '%-9s %-16s %-5s %s\n' "$name" "$HOST:$port" "$state" \
            "$(if is_ours "$svc" || [[ $state == up ]]; then origin "$svc"; fi)"
    done
    return "$all"
}

# Function names for status: <service>_answers.
postgres_answers() { pg_answers; }

main() {
    local cmd=${1:-}
    case $cmd in
        up | down | status) ;;
        kafka3 | pgtemp)
            mkdir -p "$LOG_DIR"
            "cmd_$cmd" "${@:2}"
            return
            ;;
        *)
            printf 'usage: %s up|down|status, or kafka3|pgtemp <action> (see the top of this file)\n' "$0" >&2
            exit 2
            ;;
    esac
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    if [[ $cmd == status ]]; then
        cmd_status
        return
    fi
    # One `up`/`down` at a time. Every service is started with `9>&-` so that no daemon
    # inherits (and keeps holding) this lock.
    exec 9>"$RUN_DIR/stack.lock"
    flock -w 300 9 || die "another scripts/stack.sh up/down holds $RUN_DIR/stack.lock"
    "cmd_$cmd"
}

# Run as a command; sourced (scripts/secure-kafka.sh), only the functions are defined.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
