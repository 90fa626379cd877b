# Sourced by scripts/demo and scripts/test: prepares everything they need.
#  - system packages the tests and the demo use (tshark, strongSwan), with apt-get when root,
#    and libreswan unpacked beside strongSwan into .cache/libreswan;
#  - a local virtual environment in .venv with the package (editable) and its test tools.
# Safe to run again: it only does work when something is missing or pyproject.toml changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
[ -x /usr/lib/ipsec/charon ] || need_apt+=(strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins)
command -v swanctl >/dev/null 2>&1 || need_apt+=(strongswan-swanctl)
# tests/interop/test_auth.py: strongSwan's EAP-MSCHAPv2 client (eap-mschapv2 plugin).
[ -e /usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so ] || need_apt+=(libcharon-extauth-plugins)
# tests/interop/test_tunnel.py: strongSwan's userspace ESP (kernel-libipsec), ping and curl
# through the tunnel to a host behind vpngw --tun.
[ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || need_apt+=(libcharon-extra-plugins)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# tests/interop/test_fragments.py builds network namespaces and drops IP fragments in them.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# tests/interop/test_nat.py: a masquerading NAT namespace whose mappings it flushes (rebinding).
command -v conntrack >/dev/null 2>&1 || need_apt+=(conntrack)
# tests/enrp/test_status_page_chromium.py: the admin status page in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# tests/enrp/test_attack_tls.py: openssl s_client, a TLS-PSK client we did not write.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # tests/test_operator_examples.py verifies the sample units
# scripts/compile (the mypyc build that scripts/test checks): a C compiler and Python's headers.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
if [ ! -e "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
    need_apt+=(python3-dev)
fi
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need_apt+=(python3-venv)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system packages: ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        say "missing system packages (${need_apt[*]}); run as root to install them with apt-get"
    fi
fi

# tests/interop/test_libreswan.py runs libreswan's pluto. Debian's package conflicts with
# strongSwan's, so only its dependencies are installed and the package itself is unpacked
# into .cache/libreswan/root beside strongSwan (../shared/interop/libreswan/README.md).
LIBRESWAN_ROOT="$ROOT/.cache/libreswan/root"
if [ ! -x "$LIBRESWAN_ROOT/usr/libexec/ipsec/pluto" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "unpacking libreswan into $LIBRESWAN_ROOT"
        export DEBIAN_FRONTEND=noninteractive
        lsw_cache="$ROOT/.cache/libreswan"
        mkdir -p "$lsw_cache"
        rm -f "$lsw_cache"/libreswan_*.deb
        if ! (cd "$lsw_cache" && apt-get download -qq libreswan >/dev/null 2>&1); then
            apt-get update -qq >/dev/null
            (cd "$lsw_cache" && apt-get download -qq libreswan >/dev/null 2>&1)
        fi
        lsw_deb=$(ls "$lsw_cache"/libreswan_*.deb)
        # Its Depends, first alternatives without versions, and certutil for the NSS database.
        lsw_deps=$(dpkg-deb -f "$lsw_deb" Depends | sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/,/ /g')
        # shellcheck disable=SC2086 # one word per package
        apt-get install -y -qq --no-install-recommends $lsw_deps libnss3-tools >/dev/null
        rm -rf "$LIBRESWAN_ROOT.tmp"
        dpkg-deb -x "$lsw_deb" "$LIBRESWAN_ROOT.tmp"
        mv "$LIBRESWAN_ROOT.tmp" "$LIBRESWAN_ROOT"
    else
        say "libreswan is not unpacked in $LIBRESWAN_ROOT; run as root to fetch it with apt-get"
    fi
fi
export TWISTED_RSERPOOL_LIBRESWAN="$LIBRESWAN_ROOT"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "Python 3.11 or newer is required (found $("$PYTHON" --version 2>&1))"
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in .venv"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "installing twisted-rserpool and its test tools into .venv"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"
