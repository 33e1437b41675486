#!/usr/bin/env bash
# bench/deps.sh installs what `make bench` drives, only when missing:
# Postfix (smtp-sink, smtp-source, and a private instance as the relay hop
# attachgate is compared with), strace (fsync counts), nginx-light (the
# download baseline) and wrk. apt-get update runs once, and only if something is
# missing. No service is started: Postfix is preseeded to "No
# configuration" and a temporary policy-rc.d keeps invoke-rc.d from
# starting postfix or nginx (the benchmark starts its own instances on
# free loopback ports).
set -euo pipefail

missing=()
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || missing+=(postfix)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
# Postfix also runs as a plain relay hop beside attachgate (postfix -c DIR);
# strace counts the fsyncs of both.
[ -x /usr/sbin/postfix ] || missing+=(postfix)
command -v strace >/dev/null || missing+=(strace)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bench-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	added_policy=1
fi
cleanup() { [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Belt and braces: if a service did start anyway, stop it so it does not hold
# port 25 or 80.
if command -v service >/dev/null; then
	service postfix stop >/dev/null 2>&1 || true
	service nginx stop >/dev/null 2>&1 || true
fi
