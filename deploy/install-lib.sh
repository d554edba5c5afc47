# shellcheck shell=bash
# The file-writing steps of deploy/install.sh as functions, so that tests can run them on a temporary folder
# (tests/deploy/test_install_script.py). Sourced: nothing runs at source time.
#
# Secrets never pass through a program's argv (every local user sees argv in ps): only bash builtins
# (printf, read, parameter expansion) handle them; sha256sum reads one on a pipe and openssl prints one.

REDIS_SOCKET=/run/redis/redis-server.sock
# One env file and one Redis ACL user (weixin-<unit>) per systemd unit.
UNIT_NAMES=(web token worker)

# A new Redis password: 64 hex digits, nothing in it needs URL-encoding in REDIS_URL.
new_password() { openssl rand -hex 32; }

# env_get FILE KEY: the value of the `KEY=` line in FILE (nothing if there is none).
env_get() {
  local line
  [ -f "$1" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in "$2="*) printf '%s\n' "${line#"$2="}"; return 0 ;; esac
  done <"$1"
}

# env_set FILE KEY VALUE: replace the `KEY=` line, or append one; the file keeps its owner and mode.
env_set() {
  local file=$1 key=$2 value=$3 line found=0 content=""
  while IFS= read -r line || [ -n "$line" ]; do
    if [ "$found" = 0 ] && [[ "$line" == "$key="* ]]; then
      line="$key=$value"
      found=1
    fi
    content+="$line"$'\n'
  done <"$file"
  [ "$found" = 1 ] || content+="$key=$value"$'\n'
  printf '%s' "$content" >"$file"
}

# redis_url USER PASSWORD: the REDIS_URL that logs in as USER on the local Redis socket.
redis_url() { printf 'unix://%s:%s@%s?db=0\n' "$1" "$2" "$REDIS_SOCKET"; }

# password_in_url URL USER: the password of a REDIS_URL written by redis_url for USER, or nothing.
password_in_url() {
  local rest
  case "$1" in
    "unix://$2:"*"@$REDIS_SOCKET?db=0")
      rest=${1#"unix://$2:"}
      printf '%s\n' "${rest%"@$REDIS_SOCKET?db=0"}"
      ;;
  esac
}

# ensure_redis_password ENV_FILE USER: the password ENV_FILE's REDIS_URL already has for USER (a second run
# keeps it), else a new one, written into ENV_FILE's REDIS_URL. Printed for the ACL file.
ensure_redis_password() {
  local file=$1 user=$2 password
  password=$(password_in_url "$(env_get "$file" REDIS_URL)" "$user")
  if [ -z "$password" ]; then
    password=$(new_password)
    env_set "$file" REDIS_URL "$(redis_url "$user" "$password")"
  fi
  printf '%s\n' "$password"
}

sha256_hex() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# render_acl TEMPLATE OUT WEB_PASSWORD TOKEN_PASSWORD WORKER_PASSWORD: the Redis ACL file, with each password's
# SHA-256 (Redis keeps only hashes) and without comment or blank lines (an ACL file has no comments).
render_acl() {
  local template=$1 out=$2 line web token worker content=""
  web=$(sha256_hex "$3")
  token=$(sha256_hex "$4")
  worker=$(sha256_hex "$5")
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    line=${line//@WEB_PASSWORD_SHA256@/$web}
    line=${line//@TOKEN_PASSWORD_SHA256@/$token}
    line=${line//@WORKER_PASSWORD_SHA256@/$worker}
    content+="$line"$'\n'
  done <"$template"
  printf '%s' "$content" >"$out"
}

# unit_env_from TEMPLATE LEGACY OUT: OUT from TEMPLATE, every `KEY=` line taking the value the old single
# .env (LEGACY) has for KEY, if any. Keys the template does not name stay behind: that is the split.
unit_env_from() {
  local template=$1 legacy=$2 out=$3 line key value content=""
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ "$line" =~ ^([A-Z][A-Z0-9_]*)= ]]; then
      key=${BASH_REMATCH[1]}
      value=$(env_get "$legacy" "$key")
      [ -z "$value" ] || line="$key=$value"
    fi
    content+="$line"$'\n'
  done <"$template"
  printf '%s' "$content" >"$out"
}

# split_env TEMPLATES LEGACY DIR: DIR/common.env and DIR/<unit>.env from the templates in TEMPLATES
# (deploy/env), filled in from LEGACY (the old /srv/weixin/.env; may be missing). Files that exist are kept.
# The web process gets the AppSecret only when the old file had the OAuth pages on (PUBLIC_BASE_URL).
split_env() {
  local templates=$1 legacy=$2 dir=$3 name
  for name in common "${UNIT_NAMES[@]}"; do
    [ -f "$dir/$name.env" ] && continue
    (umask 077 && unit_env_from "$templates/$name.env.example" "$legacy" "$dir/$name.env")
    if [ "$name" = web ] && [ -n "$(env_get "$legacy" PUBLIC_BASE_URL)" ] && [ -n "$(env_get "$legacy" WECHAT_APPSECRET)" ]; then
      env_set "$dir/web.env" WECHAT_APPSECRET "$(env_get "$legacy" WECHAT_APPSECRET)"
    fi
  done
}
