# jq -f deploy/rabbitmq/quorum.jq definitions.json > definitions-quorum.json
# Every queue a quorum queue, as the daemons declare them with
# SAGA_QUEUE_TYPE=quorum (lib/bus.h): x-queue-type quorum, and
# x-delivery-limit 20 on those with a dead-letter exchange. (The presence
# queues too: a classic one is down with its node, and an orchestrator
# that cannot declare it cannot connect to the rest of the cluster.)
# Streams (audit) stay streams: a stream replicates over the cluster by
# itself, and lib/bus never makes one quorum.
.queues |= map(
  if .arguments["x-queue-type"] == "stream" then . else
    .arguments["x-queue-type"] = "quorum"
    | if .arguments | has("x-dead-letter-exchange")
      then .arguments["x-delivery-limit"] = 20 else . end
  end)
