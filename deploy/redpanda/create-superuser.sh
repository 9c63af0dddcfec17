#!/bin/bash
# The redpanda-users one-shot of docker-compose.yml: creates Redpanda's SASL/SCRAM-SHA-256 superuser (named in
# deploy/redpanda/bootstrap.yaml) with the password of the Docker secret tickwire_kafka_sasl_password (the file
# tickwire reads as TICKWIRE_KAFKA_SASL_PASSWORD), or sets that password if the user exists (so changing
# KAFKA_PASSWORD in .env and starting the stack again rotates it).
#
# The password is read from the secret file, never from the compose file, an environment variable or a log.
# rpk accepts a new user's password only as a flag, so it is on the argv of this one short rpk call, inside
# this one-shot container (visible there and to root on the host while the call lasts).
set -euo pipefail

user="${KAFKA_USERNAME:?KAFKA_USERNAME names the superuser}"
secret="${KAFKA_PASSWORD_FILE:-/run/secrets/tickwire_kafka_sasl_password}"
if [ ! -s "$secret" ]; then
  echo "create-superuser: $secret is empty: set KAFKA_PASSWORD in .env" >&2
  exit 1
fi
password="$(cat "$secret")"
admin=(-X "admin.hosts=${REDPANDA_ADMIN:?REDPANDA_ADMIN is the admin API, host:port}")

if out="$(rpk security user create "$user" --password "$password" --mechanism SCRAM-SHA-256 "${admin[@]}" 2>&1)"; then
  echo "create-superuser: created SASL user $user"
elif grep -qi "already exists" <<<"$out"; then
  rpk security user update "$user" --new-password "$password" --mechanism SCRAM-SHA-256 "${admin[@]}" > /dev/null
  echo "create-superuser: SASL user $user exists; its password is the secret's"
else
  echo "create-superuser: $out" >&2
  exit 1
fi
