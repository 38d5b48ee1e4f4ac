#!/usr/bin/env bash
# Start, stop or query a single-node Apache Kafka (KRaft) broker on loopback for
# development, tests and benchmarks. The broker's jars come from Maven Central
# through `mvn`, so nothing but Java 17 and Maven is needed.
#
#   scripts/kafka.sh start    fetch jars if needed, format storage, start, wait until ready
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh kill     SIGKILL the broker (fault-injection tests)
#   scripts/kafka.sh status   exit 0 if it accepts requests
#
# Environment:
#   KAFKA_VERSION   (default 4.3.1)   all Kafka artifacts are taken at this version
#   KAFKA_HOME_DIR  (default .kafka in the repository) jars, config, logs, data
#   KAFKA_PORT      (default 9092)    the client listener on 127.0.0.1
#   KAFKA_CONTROLLER_PORT (default 9093)
#   KAFKA_SASL_SSL_PORT   (unset: none) a second listener with TLS and SASL/PLAIN, for
#                         testing clients' security settings; it then also needs
#   KAFKA_SSL_PEM         a PEM file with the broker's PKCS#8 private key and certificate chain
#   KAFKA_SASL_USERS      "user:password[,user:password...]" accepted on that listener
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${KAFKA_VERSION:-4.3.1}"
home="${KAFKA_HOME_DIR:-$here/.kafka}"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-9093}"
libs="$home/libs-$version"
data="$home/data-$port"
conf="$home/server-$port.properties"
pidfile="$home/broker-$port.pid"
log="$home/broker-$port.log"

log() { echo "kafka.sh: $*" >&2; }

fetch_jars() {
  if [[ -f "$libs/.complete" ]]; then return; fi
  mkdir -p "$libs"
  log "fetching Apache Kafka $version jars from Maven Central (first run only)"
  local pom="$home/fetch-pom.xml"
  cat >"$pom" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.hr</groupId><artifactId>kafka-broker-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>$version</version></dependency>
  </dependencies>
</project>
POM
  mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  touch "$libs/.complete"
}

is_up() {
  # A TCP connect is not enough: the broker answers metadata only once KRaft elected itself.
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  java -cp "$libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
}

running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  fetch_jars
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on 127.0.0.1:$port"
    wait_ready
    return
  fi
  mkdir -p "$data"
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT"
  if [[ -n "${KAFKA_SASL_SSL_PORT:-}" ]]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    protocols="$protocols,SASL_SSL:SASL_SSL"
  fi
  cat >"$conf" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
PROPS
  if [[ -n "${KAFKA_SASL_SSL_PORT:-}" ]]; then
    local users="" pair
    IFS=',' read -ra pairs <<<"${KAFKA_SASL_USERS:?KAFKA_SASL_USERS is required with KAFKA_SASL_SSL_PORT}"
    for pair in "${pairs[@]}"; do users="$users user_${pair%%:*}=\"${pair#*:}\""; done
    cat >>"$conf" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=${KAFKA_SSL_PEM:?KAFKA_SSL_PEM is required with KAFKA_SASL_SSL_PORT}
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;
PROPS
  fi
  if [[ ! -f "$data/meta.properties" ]]; then
    java -cp "$libs/*" kafka.tools.StorageTool format -t "hr-test-cluster-000001" -c "$conf" >/dev/null 2>"$home/format.err" \
      || java -cp "$libs/*" org.apache.kafka.tools.StorageTool format -t "hr-test-cluster-000001" -c "$conf" >/dev/null \
      || { cat "$home/format.err" >&2; exit 1; }
  fi
  log "starting broker on 127.0.0.1:$port (log: $log)"
  # shellcheck disable=SC2086
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC ${KAFKA_JAVA_OPTS:-} \
    -Dlog4j2.configurationFile=none -cp "$libs/*" kafka.Kafka "$conf" >"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_ready
}

wait_ready() {
  for _ in $(seq 1 120); do
    if is_up; then log "ready on 127.0.0.1:$port"; return 0; fi
    if ! running_pid >/dev/null; then log "broker exited; last lines of $log:"; tail -n 30 "$log" >&2; exit 1; fi
    sleep 1
  done
  log "broker did not become ready within 120 s; see $log"; exit 1
}

stop() {
  local sig="${1:-TERM}"
  if pid="$(running_pid)"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    log "stopped (pid $pid, $sig)"
  else
    log "not running"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  status) fetch_jars; if is_up; then log "up on 127.0.0.1:$port"; else log "down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|kill|status" >&2; exit 2 ;;
esac
