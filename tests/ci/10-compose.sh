#!/usr/bin/env bash
# Issue 7: docker-compose.yml is valid (Debian's docker-compose; no Docker engine runs here) and
# every PERFSTREAM_* variable it sets for `perfstream run` is one the config accepts.
set -euo pipefail
: "${E2E_PERFSTREAM_BIN:?}"
if ! command -v docker-compose >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml: valid"
PY=${PY:-python3}
for svc in perfstream topics; do
  envs=$("$PY" - "$svc" <<'PYEOF'
import sys, yaml
svc = yaml.safe_load(open("docker-compose.yml"))["services"][sys.argv[1]]
for k, v in (svc.get("environment") or {}).items():
    if k.startswith("PERFSTREAM_"):
        print(f"{k}={v}")
PYEOF
)
  # shellcheck disable=SC2086
  env -i PATH="$PATH" $envs "$E2E_PERFSTREAM_BIN" check-config >/dev/null
  echo "docker-compose.yml: $svc env accepted by check-config ($(echo "$envs" | wc -l) vars)"
done
