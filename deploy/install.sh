#!/usr/bin/env bash
# Install the WeChat backend on a bare Debian/Ubuntu server (root). Safe to run again after `git pull`.
# Assumes the project is checked out in /srv/weixin; see docs/deploy.md for the steps it automates.
set -euo pipefail

APP_DIR=/srv/weixin
# The app, the worker and token_service run as this system user (group of the same name); nginx stays www-data
# and reaches only uWSGI's socket (weixin.service: Group=www-data).
APP_USER=weixin
CONFIG_DIR=/etc/weixin
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/install-lib.sh
. "$SOURCE_DIR/deploy/install-lib.sh"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo deploy/install.sh)"
[ "$SOURCE_DIR" = "$APP_DIR" ] || die "the checkout must be in $APP_DIR (the configs name that path); it is in $SOURCE_DIR"
if [ ! -f "$APP_DIR/index.py" ] || [ ! -f "$APP_DIR/uwsgi.xml" ]; then die "$APP_DIR is not a checkout of this project"; fi

say "system packages"
export DEBIAN_FRONTEND=noninteractive
packages=(python3 python3-venv python3-dev gcc make redis-server nginx openssl certbot python3-certbot-nginx curl ca-certificates)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
systemctl enable --now redis-server

say "user $APP_USER"
id -u "$APP_USER" >/dev/null 2>&1 ||
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$APP_USER"

say "python venv in $APP_DIR/.venv (uWSGI compiles on the first run: a minute)"
[ -x "$APP_DIR/.venv/bin/python" ] || python3 -m venv "$APP_DIR/.venv"
"$APP_DIR/.venv/bin/pip" install --quiet --upgrade pip
"$APP_DIR/.venv/bin/pip" install --quiet -r "$APP_DIR/requirements.txt"
# The units see /srv/weixin read-only (ProtectSystem=strict): compile the bytecode now, as root.
"$APP_DIR/.venv/bin/python" -m compileall -q -x '/[.]venv/' "$APP_DIR" >/dev/null || true

say "configuration in $CONFIG_DIR (one env file per unit: each gets only the secrets it needs)"
install -d -m 750 -o root -g "$APP_USER" "$CONFIG_DIR"
# A first run after an install with the single /srv/weixin/.env splits it; later runs keep the files as they are.
split_env "$APP_DIR/deploy/env" "$APP_DIR/.env" "$CONFIG_DIR"
# common.env holds no secret; the units' files are read by systemd (root) only, not by the processes.
chown root:"$APP_USER" "$CONFIG_DIR/common.env" "$CONFIG_DIR/web.env" "$CONFIG_DIR/token.env" "$CONFIG_DIR/worker.env"
chmod 640 "$CONFIG_DIR/common.env"
chmod 600 "$CONFIG_DIR/web.env" "$CONFIG_DIR/token.env" "$CONFIG_DIR/worker.env"
if [ -f "$APP_DIR/.env" ]; then
  # weixin/config.py reads /srv/weixin/.env when it exists (a command run from the checkout would find every secret).
  moved_to="$CONFIG_DIR/old-dotenv.$(date +%Y%m%d%H%M%S)"
  install -m 600 -o root -g root "$APP_DIR/.env" "$moved_to"
  rm -f "$APP_DIR/.env"
  echo "moved $APP_DIR/.env to $moved_to (its values are in $CONFIG_DIR/*.env now); delete it once all works"
fi

say "Redis: ACL users, unix socket for group $APP_USER, memory limit"
web_password=$(ensure_redis_password "$CONFIG_DIR/web.env" weixin-web)
token_password=$(ensure_redis_password "$CONFIG_DIR/token.env" weixin-token)
worker_password=$(ensure_redis_password "$CONFIG_DIR/worker.env" weixin-worker)
acl_draft=$(mktemp /etc/redis/users.acl.XXXXXX)
render_acl "$APP_DIR/deploy/redis/users.acl.template" "$acl_draft" "$web_password" "$token_password" "$worker_password"
unset web_password token_password worker_password
redis_changed=0
install_if_changed() { # SOURCE TARGET MODE OWNER:GROUP
  if ! cmp -s "$1" "$2"; then
    install -m "$3" -o "${4%%:*}" -g "${4##*:}" "$1" "$2"
    redis_changed=1
  fi
}
install_if_changed "$acl_draft" /etc/redis/users.acl 640 root:redis
rm -f "$acl_draft"
install_if_changed "$APP_DIR/deploy/redis/weixin.conf" /etc/redis/weixin.conf 640 root:redis
install -d -m 755 /etc/systemd/system/redis-server.service.d
install_if_changed "$APP_DIR/deploy/redis/redis-server-socket-group.conf" \
  /etc/systemd/system/redis-server.service.d/weixin.conf 644 root:root
if ! grep -qx 'include /etc/redis/weixin.conf' /etc/redis/redis.conf; then
  # Last, so that its lines win over the ones above (port, unixsocket, aclfile, maxmemory).
  printf '\n# WeChat backend (deploy/install.sh)\ninclude /etc/redis/weixin.conf\n' >>/etc/redis/redis.conf
  redis_changed=1
fi
if [ "$redis_changed" = 1 ]; then
  systemctl daemon-reload
  systemctl restart redis-server
fi

say "nginx site"
if [ ! -f /etc/ssl/weixin/fullchain.pem ]; then
  # nginx refuses to start without the certificate the 443 block names; a throwaway one until certbot's.
  mkdir -p /etc/ssl/weixin
  openssl req -x509 -nodes -newkey rsa:2048 -days 30 -subj "/CN=$(hostname -f 2>/dev/null || hostname)" \
    -keyout /etc/ssl/weixin/privkey.pem -out /etc/ssl/weixin/fullchain.pem 2>/dev/null
  chmod 600 /etc/ssl/weixin/privkey.pem
  echo "placeholder self-signed certificate in /etc/ssl/weixin (replace it with certbot's, see docs/deploy.md)"
fi
ln -sfn "$APP_DIR/nginx/weixin.conf" /etc/nginx/sites-available/weixin
ln -sfn /etc/nginx/sites-available/weixin /etc/nginx/sites-enabled/weixin
# Debian's default site also claims port 80 as default_server and would answer WeChat instead.
rm -f /etc/nginx/sites-enabled/default
nginx -t
systemctl enable nginx
systemctl reload-or-restart nginx

say "systemd units"
install -m 644 "$APP_DIR/deploy/systemd/weixin.service" /etc/systemd/system/weixin.service
install -m 644 "$APP_DIR/deploy/systemd/weixin-token.service" /etc/systemd/system/weixin-token.service
install -m 644 "$APP_DIR/deploy/systemd/weixin-worker.service" /etc/systemd/system/weixin-worker.service
systemctl daemon-reload
systemctl enable weixin.service weixin-token.service weixin-worker.service
if [ -n "$(env_get "$CONFIG_DIR/web.env" WECHAT_TOKEN)" ] && [ -n "$(env_get "$CONFIG_DIR/token.env" WECHAT_APPSECRET)" ]; then
  # restart, not start: a second run after `git pull` must load the new code.
  systemctl restart weixin.service weixin-token.service weixin-worker.service
  say "running. Check: curl -s http://127.0.0.1/health ; systemctl status weixin weixin-token weixin-worker"
else
  say "fill in $CONFIG_DIR/common.env, web.env and token.env, then: systemctl restart weixin weixin-token weixin-worker (see docs/deploy.md)"
fi
