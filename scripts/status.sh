#!/usr/bin/env bash
# Prints Switchyard's status view (networks, bridges, endpoints, published ports) as JSON,
# read from the enabled plugin's socket: what `docker ps` cannot show for a plugin driver.
set -euo pipefail
plugin=${1:-switchyard:latest}
command -v curl >/dev/null || { echo "status: needs curl (apt-get install -y curl)" >&2; exit 1; }
id=$(DOCKER_API_VERSION=1.41 /usr/bin/docker plugin inspect -f '{{.Id}}' "$plugin")
curl -sS --unix-socket "/run/docker/plugins/$id/switchyard.sock" http://switchyard/Switchyard.Status
echo
