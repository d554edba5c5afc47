#!/usr/bin/env bash
# Install the WeChat backend on a bare Debian/Ubuntu server (root). Safe to run again after `git pull`.
# Assumes the project is checked out in /srv/weixin; see docs/deploy.md for the steps it automates.
set -euo pipefail

APP_DIR=/srv/weixin
APP_USER=www-data
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo deploy/install.sh)"
[ "$SOURCE_DIR" = "$APP_DIR" ] || die "the checkout must be in $APP_DIR (the configs name that path); it is in $SOURCE_DIR"
[ -f "$APP_DIR/index.py" ] && [ -f "$APP_DIR/uwsgi.xml" ] || die "$APP_DIR is not a checkout of this project"

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
id -u "$APP_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$APP_USER"

say "python venv in $APP_DIR/.venv (uWSGI compiles on the first run: a minute)"
[ -x "$APP_DIR/.venv/bin/python" ] || python3 -m venv "$APP_DIR/.venv"
"$APP_DIR/.venv/bin/pip" install --quiet --upgrade pip
"$APP_DIR/.venv/bin/pip" install --quiet -r "$APP_DIR/requirements.txt"

say "configuration $APP_DIR/.env"
if [ ! -f "$APP_DIR/.env" ]; then
  install -m 640 -o root -g "$APP_USER" "$APP_DIR/deploy/env.example" "$APP_DIR/.env"
  echo "created $APP_DIR/.env from deploy/env.example: fill in WECHAT_TOKEN, WECHAT_APPID, WECHAT_APPSECRET, ..."
else
  chown root:"$APP_USER" "$APP_DIR/.env"
  chmod 640 "$APP_DIR/.env"
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
if grep -q '^WECHAT_TOKEN=..*' "$APP_DIR/.env" && grep -q '^WECHAT_APPSECRET=..*' "$APP_DIR/.env"; then
  # restart, not start: a second run after `git pull` must load the new code.
  systemctl restart weixin.service weixin-token.service weixin-worker.service
  say "running. Check: curl -s http://127.0.0.1/health ; systemctl status weixin weixin-token weixin-worker"
else
  say "fill in $APP_DIR/.env, then: systemctl restart weixin weixin-token weixin-worker (see docs/deploy.md)"
fi
