#!/usr/bin/env bash
# A second local Kafka broker whose clients must use SASL_SSL, beside the plaintext one
# of scripts/stack.sh (which it never touches): for trying and testing the services'
# Kafka security settings.
#
#   scripts/secure-kafka.sh up      make the CA, certificates and users if missing, start
#                                   the broker unless it answers already
#   scripts/secure-kafka.sh status  exit 0 if it answers an authenticated client
#   scripts/secure-kafka.sh env     the INFERFLEET_KAFKA_* settings of a client, one
#                                   NAME=value a line (`set -a; . <(... env)` uses them)
#   scripts/secure-kafka.sh down    stop the broker if `up` started it
#
# Broker: Apache Kafka 4.x in KRaft mode, one node, the jars of scripts/stack.sh; clients
# on 127.0.0.1:19094 (SASL_SSL: SCRAM-SHA-512 or PLAIN, and a client certificate), its
# controller on 19095. Config from stack/kafka/secure-server.properties.
#
# State lives in <repo>/.stack/secure-kafka/: certs/ (a CA, the broker's and a client's
# certificate and key, made with openssl), data/ (formatted with the SCRAM users by
# Kafka's StorageTool), server.properties. Logs in .stack/logs/secure-kafka/.
#
# Environment:
#   SECURE_KAFKA_PORT, SECURE_KAFKA_CONTROLLER_PORT  the ports (default 19094, 19095)
#   INFERFLEET_VENV, KAFKA_START_TIMEOUT             as for scripts/stack.sh
set -euo pipefail

# shellcheck source=scripts/stack.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/stack.sh"

SECURE_PORT=${SECURE_KAFKA_PORT:-19094}
SECURE_CONTROLLER_PORT=${SECURE_KAFKA_CONTROLLER_PORT:-19095}
SECURE_DIR=$STACK_DIR/secure-kafka
SECURE_CERTS=$SECURE_DIR/certs
SECURE_DATA=$SECURE_DIR/data
SECURE_CONFIG=$SECURE_DIR/server.properties
SECURE_LOGS=$LOG_DIR/secure-kafka
SECURE_PID=$RUN_DIR/secure-kafka.pid
# Local, throwaway credentials, like the stack's Postgres password.
SECURE_ADMIN_PASSWORD=admin-secret
SECURE_USER=inferfleet
SECURE_PASSWORD=inferfleet-secret

# What a client of this broker sets (NAME=value lines).
secure_client_env() {
    printf '%s\n' \
        "INFERFLEET_KAFKA_BOOTSTRAP=$HOST:$SECURE_PORT" \
        "INFERFLEET_KAFKA_SECURITY_PROTOCOL=SASL_SSL" \
        "INFERFLEET_KAFKA_SASL_MECHANISM=SCRAM-SHA-512" \
        "INFERFLEET_KAFKA_SASL_USERNAME=$SECURE_USER" \
        "INFERFLEET_KAFKA_SASL_PASSWORD=$SECURE_PASSWORD" \
        "INFERFLEET_KAFKA_SSL_CA=$SECURE_CERTS/ca.pem" \
        "INFERFLEET_KAFKA_SSL_CERT=$SECURE_CERTS/client.pem" \
        "INFERFLEET_KAFKA_SSL_KEY=$SECURE_CERTS/client.key"
}

# An authenticated client (kafka-python from the virtualenv) sees at least one broker.
secure_kafka_answers() {
    [[ -x $VENV/bin/python && -f $SECURE_CERTS/client.key ]] || return 1
    timeout 15 "$VENV/bin/python" - "$HOST:$SECURE_PORT" "$SECURE_CERTS" "$SECURE_USER" \
        "$SECURE_PASSWORD" >/dev/null 2>&1 <<'PY'
import sys
from kafka.admin import KafkaAdminClient

bootstrap, certs, user, password = sys.argv[1:]
admin = KafkaAdminClient(
    bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000,
    security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    sasl_plain_username=user, sasl_plain_password=password,
    ssl_cafile=f"{certs}/ca.pem", ssl_certfile=f"{certs}/client.pem",
    ssl_keyfile=f"{certs}/client.key",
)
try:
    sys.exit(0 if admin.describe_cluster()["brokers"] else 1)
finally:
    admin.close()
PY
}

# openssl <args...>, its output kept in the log; stops the script on failure.
secure_openssl() {
    openssl "$@" >>"$SECURE_LOGS/openssl.log" 2>&1 || {
        show_log "$SECURE_LOGS/openssl.log" 20
        die "secure-kafka: openssl $1 failed"
    }
}

# A key and a certificate <name>.key/<name>.pem signed by the CA, with <extensions>.
secure_issue() {
    local name=$1 subject=$2 extensions=$3
    secure_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$SECURE_CERTS/$name.key"
    secure_openssl req -new -key "$SECURE_CERTS/$name.key" -subj "$subject" \
        -out "$SECURE_CERTS/$name.csr"
    printf '%s\n' "$extensions" >"$SECURE_CERTS/$name.ext"
    secure_openssl x509 -req -in "$SECURE_CERTS/$name.csr" -CA "$SECURE_CERTS/ca.pem" \
        -CAkey "$SECURE_CERTS/ca.key" -CAcreateserial -days 825 -sha256 \
        -extfile "$SECURE_CERTS/$name.ext" -out "$SECURE_CERTS/$name.pem"
    rm -f "$SECURE_CERTS/$name.csr" "$SECURE_CERTS/$name.ext"
}

# The CA, the broker's certificate (for 127.0.0.1 and localhost) and a client's, once.
secure_make_certs() {
    [[ -f $SECURE_CERTS/broker-keystore.pem && -f $SECURE_CERTS/client.key ]] && return 0
    command -v openssl >/dev/null || apt_install openssl
    rm -rf "$SECURE_CERTS"
    mkdir -p "$SECURE_CERTS"
    chmod 700 "$SECURE_CERTS"
    secure_openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=inferfleet local CA" -keyout "$SECURE_CERTS/ca.key" \
        -out "$SECURE_CERTS/ca.pem" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    secure_issue broker "/CN=localhost" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth"
    secure_issue client "/CN=$SECURE_USER" "extendedKeyUsage=clientAuth"
    # Kafka's PEM keystore: the private key (PKCS#8) followed by its certificate.
    cat "$SECURE_CERTS/broker.key" "$SECURE_CERTS/broker.pem" >"$SECURE_CERTS/broker-keystore.pem"
    say "secure-kafka: made a CA and certificates in $SECURE_CERTS"
}

secure_render_config() {
    local line
    mkdir -p "$SECURE_DATA"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line//@PORT@/$SECURE_PORT}
        line=${line//@CONTROLLER_PORT@/$SECURE_CONTROLLER_PORT}
        line=${line//@DATA_DIR@/$SECURE_DATA}
        line=${line//@CERTS_DIR@/$SECURE_CERTS}
        line=${line//@ADMIN_PASSWORD@/$SECURE_ADMIN_PASSWORD}
        line=${line//@USER@/$SECURE_USER}
        line=${line//@PASSWORD@/$SECURE_PASSWORD}
        printf '%s\n' "$line"
    done <"$KAFKA_TEMPLATE_DIR/secure-server.properties" >"$SECURE_CONFIG"
    chmod 600 "$SECURE_CONFIG"
}

# Format the storage once, with the SCRAM users in the cluster's first metadata.
secure_format() {
    local cluster_id
    [[ -f $SECURE_DATA/meta.properties ]] && return 0
    cluster_id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    [[ -n $cluster_id ]] || die "secure-kafka: StorageTool random-uuid printed nothing"
    if ! java -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$SECURE_LOGS" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$SECURE_CONFIG" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$SECURE_ADMIN_PASSWORD]" \
        --add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$SECURE_PASSWORD]" \
        >"$SECURE_LOGS/format.log" 2>&1; then
        show_log "$SECURE_LOGS/format.log" 30
        die "secure-kafka: formatting $SECURE_DATA failed"
    fi
    say "secure-kafka: formatted $SECURE_DATA with SCRAM users admin and $SECURE_USER"
}

secure_up() {
    local pid started
    require_venv
    if pid=$(live_pid "$SECURE_PID" kafka.Kafka); then
        say "secure-kafka: waiting for the broker started earlier (pid $pid)"
    elif tcp_open "$SECURE_PORT"; then
        die "secure-kafka: $HOST:$SECURE_PORT is taken by a process this script did not start"
    else
        kafka_check_java
        kafka_fetch_libs
        secure_make_certs
        secure_render_config
        secure_format
        nohup setsid java -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
            -Dkafka.logs.dir="$SECURE_LOGS" \
            -Dlog4j2.configurationFile="$KAFKA_TEMPLATE_DIR/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$SECURE_CONFIG" \
            </dev/null >>"$SECURE_LOGS/kafka.out" 2>&1 9>&- &
        pid=$!
        printf '%s\n' "$pid" >"$SECURE_PID"
        mark_ours secure-kafka
        say "secure-kafka: starting (pid $pid), waiting up to ${KAFKA_TIMEOUT}s"
    fi
    started=$SECONDS
    if ! wait_until "$KAFKA_TIMEOUT" answers_or_exited "$pid" secure_kafka_answers ||
        ! secure_kafka_answers; then
        show_log "$SECURE_LOGS/kafka.log" 50
        show_log "$SECURE_LOGS/kafka.out" 20
        die "secure-kafka: no authenticated answer from $HOST:$SECURE_PORT"
    fi
    say "secure-kafka: SASL_SSL on $HOST:$SECURE_PORT (answering after $((SECONDS - started))s)"
}

secure_down() {
    if is_ours secure-kafka; then
        stop_pid secure-kafka "$SECURE_PID" kafka.Kafka 30
        unmark secure-kafka
    else
        say "secure-kafka: not started by this script"
    fi
}

secure_main() {
    local cmd=${1:-}
    mkdir -p "$LOG_DIR" "$RUN_DIR" "$SECURE_LOGS"
    case $cmd in
        env) secure_client_env ;;
        status)
            if secure_kafka_answers; then
                say "secure-kafka: up on $HOST:$SECURE_PORT"
            else
                say "secure-kafka: down"
                return 1
            fi
            ;;
        up | down)
            # Like stack.sh's lock, on descriptor 9, which the broker is started without.
            exec 9>"$RUN_DIR/secure-kafka.lock"
            flock -w 300 9 || die "another scripts/secure-kafka.sh up/down holds the lock"
            if secure_kafka_answers; then
                [[ $cmd == up ]] && say "secure-kafka: already running on $HOST:$SECURE_PORT"
                [[ $cmd == up ]] && return 0
            fi
            "secure_$cmd"
            ;;
        *)
            printf 'usage: %s up|down|status|env\n' "$0" >&2
            exit 2
            ;;
    esac
}

secure_main "$@"
