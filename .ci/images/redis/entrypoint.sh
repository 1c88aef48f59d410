#!/bin/sh
# As the official image's entry point: a redis-server started without a config file answers other containers.
set -e
if [ "$1" = redis-server ] && [ "${2#*.conf}" = "${2:-}" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
