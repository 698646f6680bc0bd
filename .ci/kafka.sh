#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker (KRaft, combined broker + controller)
# on localhost:9092 for development, tests and the demo.
#
#   .ci/kafka.sh up      resolve the jars (first time), format (first time), start, wait until ready
#   .ci/kafka.sh down    stop the broker started by `up`, by its PID
#   .ci/kafka.sh status  exit 0 when a broker answers on the bootstrap address
#
# When GATEWAY_KAFKA_BOOTSTRAP_SERVERS names another cluster, nothing is started:
# `up` only waits for that cluster to answer.
#
# KAFKA_PORT (default 9092; the controller listens on the next port) and KAFKA_STATE_DIR (default
# .cache/kafka) start a second, private broker beside the first, as tests that kill one do.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/kafka"
libs="$cache/libs"
port="${KAFKA_PORT:-9092}"
state="${KAFKA_STATE_DIR:-$cache}"
data="$state/data"
conf="$state/server.properties"
log="$state/server.log"
pidfile="$state/broker.pid"
bootstrap="${GATEWAY_KAFKA_BOOTSTRAP_SERVERS:-localhost:$port}"
ready_timeout="${KAFKA_READY_TIMEOUT:-90}"

is_local() { [ "$bootstrap" = "localhost:$port" ] || [ "$bootstrap" = "127.0.0.1:$port" ]; }

answers() { python3 "$root/.ci/kafka_ready.py" "$bootstrap" --timeout "${1:-2}"; }

resolve_jars() {
  [ -f "$libs/.complete" ] && return
  echo "kafka: resolving broker jars from Maven Central into $libs" >&2
  rm -rf "$libs"
  mvn -q -B -f "$root/.ci/kafka-pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  touch "$libs/.complete"
}

write_config() {
  cat >"$conf" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:$((port + 1))
listeners=PLAINTEXT://localhost:$port,CONTROLLER://localhost:$((port + 1))
advertised.listeners=PLAINTEXT://localhost:$port,CONTROLLER://localhost:$((port + 1))
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
log.retention.hours=24
PROPS
}

java_opts=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$root/.ci/kafka-log4j2.properties"
  -Dkafka.log.file="$log" -cp "$libs/*")

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

up() {
  local pid
  if answers 1; then
    if pid=$(running_pid); then
      echo "kafka: the broker this checkout started (pid $pid) answers on $bootstrap, log: $log"
    else
      echo "kafka: reusing the broker that already answers on $bootstrap; this checkout did not start it," \
        "so its log is not in $state and \`make kafka-down\` leaves it running"
    fi
    return
  fi
  if ! is_local; then
    echo "kafka: waiting for $bootstrap (GATEWAY_KAFKA_BOOTSTRAP_SERVERS); nothing is started locally" >&2
    answers "$ready_timeout" || { echo "kafka: $bootstrap does not answer" >&2; exit 1; }
    return
  fi
  resolve_jars
  mkdir -p "$state"
  write_config
  if [ ! -f "$data/meta.properties" ]; then
    echo "kafka: formatting storage in $data" >&2
    java "${java_opts[@]}" kafka.tools.StorageTool format --standalone \
      -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" -c "$conf" >&2
  fi
  if ! running_pid >/dev/null; then
    nohup java "${java_opts[@]}" kafka.Kafka "$conf" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  echo "kafka: starting (pid $(cat "$pidfile")), log: $log" >&2
  if ! answers "$ready_timeout"; then
    echo "kafka: broker did not answer within ${ready_timeout}s; last log lines:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "kafka: ready on $bootstrap, log: $log"
}

down() {
  local pid
  if ! pid=$(running_pid); then
    echo "kafka: no broker started by this checkout is running"
    rm -f "$pidfile"
    return
  fi
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka: pid $pid did not stop in 30s; killing it" >&2
    kill -9 "$pid"
  fi
  rm -f "$pidfile"
  echo "kafka: stopped (pid $pid)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) answers 2 ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
