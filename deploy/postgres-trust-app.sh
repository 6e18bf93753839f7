#!/bin/sh
# Lets the gateway's login role (created by `portcullis migrate`, without a password) connect
# from the compose network. In production give the role a password or a client certificate
# and keep scram-sha-256 or cert authentication for it.
set -e
sed -i '1i host portcullis portcullis_app samenet trust' "$PGDATA/pg_hba.conf"
