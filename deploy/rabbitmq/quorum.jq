# jq -f deploy/rabbitmq/quorum.jq definitions.json > definitions-quorum.json
# Every queue a quorum queue, as the daemons declare them with
# SAGA_QUEUE_TYPE=quorum (lib/bus.h): x-queue-type quorum, and
# x-delivery-limit 20 on those with a dead-letter exchange. The presence
# queues stay classic (the daemons declare them so): announcements are
# transient and worthless once old, nothing to replicate.
.queues |= map(
  if .name | endswith(".presence") then .
  else
    .arguments["x-queue-type"] = "quorum"
    | if .arguments | has("x-dead-letter-exchange")
      then .arguments["x-delivery-limit"] = 20 else . end
  end)
