#!/usr/bin/env bash
# Makes the data-app suite (tests/e2e/dataapps.rs: real Dash, Streamlit, Shiny and Jupyter
# Server apps from tests/dataapps/) runnable on Debian 12: a private virtualenv outside the
# clone, so CI runs reuse it, with the packages pinned in tests/dataapps/requirements.txt.
# The suite finds the venv's python through GATEHOUSE_DATAAPPS_PYTHON, else at the default
# place below.
#
# Idempotent: when the venv matches requirements.txt it only checks, in well under a second.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req=$(cd "$here/../dataapps" && pwd)/requirements.txt
venv="${GATEHOUSE_DATAAPPS_VENV:-$HOME/.cache/gatehouse/venv-dataapps}"

say() { echo "dataapps.sh: $*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Python 3 with venv (Debian 12: python3 3.11 and python3-venv).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing Debian's python3 and python3-venv"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi

# 2. The venv, rebuilt only when missing or when requirements.txt changed.
stamp="$venv/.gatehouse-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ ! -x "$venv/bin/python" ] || [ "$want" != "$have" ]; then
  start=$(date +%s)
  say "installing tests/dataapps/requirements.txt into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
  say "installed in $(( $(date +%s) - start )) s"
fi

say "ready: $("$venv/bin/python" -c 'import dash, diskcache, multiprocess, streamlit, shiny, jupyter_server, dash_enterprise_auth as d, gunicorn, uvicorn; print("dash", dash.__version__, "streamlit", streamlit.__version__, "shiny", shiny.__version__, "jupyter_server", jupyter_server.__version__, "gunicorn", gunicorn.__version__, "uvicorn", uvicorn.__version__)')"
