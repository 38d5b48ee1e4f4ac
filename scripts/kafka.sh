#!/usr/bin/env bash
# Start, stop or query a single-node Apache Kafka (KRaft) broker on loopback for
# development, tests and benchmarks. The broker's jars come from Maven Central
# through `mvn`, so nothing but Java 17 and Maven is needed.
#
#   scripts/kafka.sh start    fetch jars if needed, format storage, start, wait until ready
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh kill     SIGKILL the broker (fault-injection tests)
#   scripts/kafka.sh status   exit 0 if it accepts requests
#   scripts/kafka.sh acls FILE  add the ACLs in FILE, one `kafka-acls.sh` argument list per
#                             line (as `hub --print-acls` prints them), as the admin user
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
#   KAFKA_SASL_MECHANISM  (default PLAIN) or SCRAM-SHA-512: the users are then SCRAM
#                         credentials written when the storage is formatted
#   KAFKA_ACLS=1          secure only: no plaintext client listener, the StandardAuthorizer
#                         with no access without an ACL, the brokers talk to each other over
#                         SASL_SSL as the first user of KAFKA_SASL_USERS (the one super user;
#                         `acls` runs as it), which needs
#   KAFKA_SSL_CA          the PEM of the CA that signed KAFKA_SSL_PEM
#                         The controller listener stays plaintext on loopback: a test broker.
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

secure_only="${KAFKA_ACLS:-0}"
mechanism="${KAFKA_SASL_MECHANISM:-PLAIN}"
admin_props="$home/admin-$port.properties"
# The port clients use: the SASL_SSL one when it is the only one.
client_port="$port"
if [[ "$secure_only" == 1 ]]; then client_port="${KAFKA_SASL_SSL_PORT:?KAFKA_ACLS=1 needs KAFKA_SASL_SSL_PORT}"; fi

log() { echo "kafka.sh: $*" >&2; }

# The first user of KAFKA_SASL_USERS: the super user of a broker with ACLs.
admin_user() { local first="${KAFKA_SASL_USERS%%,*}"; echo "${first%%:*}"; }
admin_password() { local first="${KAFKA_SASL_USERS%%,*}"; echo "${first#*:}"; }

# Client settings of the admin user, for the status check and `acls`.
write_admin_props() {
  umask 077
  if [[ "$secure_only" == 1 ]]; then
    local module="org.apache.kafka.common.security.scram.ScramLoginModule"
    [[ "$mechanism" == PLAIN ]] && module="org.apache.kafka.common.security.plain.PlainLoginModule"
    cat >"$admin_props" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=$mechanism
sasl.jaas.config=$module required username="$(admin_user)" password="$(admin_password)";
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_SSL_CA:?KAFKA_ACLS=1 needs KAFKA_SSL_CA}
PROPS
  else
    : >"$admin_props"
  fi
}

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
  (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null || return 1
  write_admin_props
  java -cp "$libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$client_port" --command-config "$admin_props" >/dev/null 2>&1
}

# Adds the ACLs of FILE, a few calls at a time (each is a JVM start).
add_acls() {
  local file="$1" line pids=()
  write_admin_props
  while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    # shellcheck disable=SC2086
    java -cp "$libs/*" org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$client_port" \
      --command-config "$admin_props" $line >"$home/acl-$$-${#pids[@]}.log" 2>&1 &
    pids+=($!)
    if (( ${#pids[@]} % 4 == 0 )); then wait "${pids[@]: -4}" || { cat "$home"/acl-$$-*.log >&2; exit 1; }; fi
  done <"$file"
  for pid in "${pids[@]}"; do wait "$pid" || { cat "$home"/acl-$$-*.log >&2; exit 1; }; done
  rm -f "$home"/acl-$$-*.log
  log "added the ACLs of $file"
}

running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  # A PID file can outlive its broker (a reboot, a machine restored from a snapshot) and
  # name another process by then, another port's broker even: only this port's counts.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "/server-$port.properties" || return 1
  echo "$pid"
}

start() {
  fetch_jars
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on 127.0.0.1:$port"
    wait_ready
    return
  fi
  mkdir -p "$data"
  umask 077 # the broker's configuration may hold the admin's password
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT" inter="PLAINTEXT"
  if [[ "$secure_only" == 1 ]]; then
    listeners="SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT" protocols="SASL_SSL:SASL_SSL" inter="SASL_SSL"
  elif [[ -n "${KAFKA_SASL_SSL_PORT:-}" ]]; then
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
inter.broker.listener.name=$inter
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
  local scram=()
  if [[ -n "${KAFKA_SASL_SSL_PORT:-}" ]]; then
    local users="" pair
    IFS=',' read -ra pairs <<<"${KAFKA_SASL_USERS:?KAFKA_SASL_USERS is required with KAFKA_SASL_SSL_PORT}"
    cat >>"$conf" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=${KAFKA_SSL_PEM:?KAFKA_SSL_PEM is required with KAFKA_SASL_SSL_PORT}
sasl.enabled.mechanisms=$mechanism
PROPS
    if [[ "$mechanism" == PLAIN ]]; then
      for pair in "${pairs[@]}"; do users="$users user_${pair%%:*}=\"${pair#*:}\""; done
      echo "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$(admin_user)\" password=\"$(admin_password)\"$users;" >>"$conf"
    else
      # SCRAM credentials live in the cluster's metadata, written at format time.
      for pair in "${pairs[@]}"; do scram+=(--add-scram "$mechanism=[name=${pair%%:*},password=${pair#*:}]"); done
      echo "listener.name.sasl_ssl.$(tr 'A-Z' 'a-z' <<<"$mechanism").sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$(admin_user)\" password=\"$(admin_password)\";" >>"$conf"
    fi
  fi
  if [[ "$secure_only" == 1 ]]; then
    cat >>"$conf" <<PROPS
sasl.mechanism.inter.broker.protocol=$mechanism
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_SSL_CA:?KAFKA_ACLS=1 needs KAFKA_SSL_CA}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$(admin_user);User:ANONYMOUS
PROPS
  fi
  chmod 600 "$conf"
  if [[ ! -f "$data/meta.properties" ]]; then
    java -cp "$libs/*" kafka.tools.StorageTool format -t "hr-test-cluster-000001" -c "$conf" "${scram[@]}" >/dev/null 2>"$home/format.err" \
      || java -cp "$libs/*" org.apache.kafka.tools.StorageTool format -t "hr-test-cluster-000001" -c "$conf" "${scram[@]}" >/dev/null \
      || { cat "$home/format.err" >&2; exit 1; }
  fi
  log "starting broker on 127.0.0.1:$client_port (log: $log)"
  # shellcheck disable=SC2086
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC ${KAFKA_JAVA_OPTS:-} \
    -Dlog4j2.configurationFile=none -cp "$libs/*" kafka.Kafka "$conf" >"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_ready
}

wait_ready() {
  for _ in $(seq 1 120); do
    if is_up; then log "ready on 127.0.0.1:$client_port"; return 0; fi
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
  status) fetch_jars; if is_up; then log "up on 127.0.0.1:$client_port"; else log "down"; exit 1; fi ;;
  acls) fetch_jars; add_acls "${2:?usage: $0 acls FILE}" ;;
  *) echo "usage: $0 start|stop|kill|status|acls FILE" >&2; exit 2 ;;
esac
