#!/usr/bin/env bash
# Installs or updates crigate on the node this pod runs on, then stays to keep the node's
# config in step with the ConfigMap. It is the entrypoint of the installer image
# (packaging/Containerfile.installer), run by the DaemonSet in packaging/kubernetes/.
#
# crigate itself runs under the host's systemd, never in this pod: kubelet needs the CRI
# socket before it can start any pod. This pod only copies files onto the host and asks
# the host's systemd (through nsenter into PID 1's namespaces; the pod has hostPID) to
# start or restart the units. A rolling update of the DaemonSet is how a node is updated.
#
# Steps, each done only when the content differs from what the host has:
#   1. the binary staged as ${CRIGATE_BIN_DIR}/crigate.new;
#   2. config.toml (and trustpolicy.json, if the ConfigMap has it) to /etc/crigate, each
#      checked with `crigate policy check` (the new binary's) on the host first; the
#      Notation trust store directories; then the staged binary renamed to
#      ${CRIGATE_BIN_DIR}/crigate once it accepts the node's config (so a running
#      crigate is never overwritten in place, nor replaced by one that would not start);
#   3. crigate.socket and crigate.service to /etc/systemd/system, ExecStart pointing at
#      that binary; the journald catalog to /usr/local/lib/systemd/catalog, then
#      journalctl --update-catalog;
#   4. systemctl daemon-reload; enable, then start, crigate.socket crigate.service; restart
#      crigate.service when the binary or a unit changed, in this run or in one stopped
#      before it could restart (the socket stays, so kubelet's calls queue during the
#      restart; a new binary that does not start is replaced by the one before it, kept
#      as crigate.previous, and the install fails), else reload it when the trust policy
#      changed (in this run or in one stopped before it could reload);
#   5. mark the pod ready, then every CRIGATE_SYNC_SECONDS copy a changed config again
#      (crigate reloads its config file by itself; a changed trust policy gets
#      systemctl reload) until the pod is stopped.
#
# Environment (defaults in brackets):
#   CRIGATE_HOST_ROOT    where the host's directories are mounted [/host]
#   CRIGATE_BIN_DIR      host directory for the binary; must be mounted [/usr/local/bin]
#   CRIGATE_SOURCE_DIR   the image's files: bin/crigate, systemd/, config.toml [/opt/crigate]
#   CRIGATE_CONFIG_DIR   the ConfigMap's mount: config.toml, trustpolicy.json [/etc/crigate-config]
#   CRIGATE_READY_FILE   created once installed, for the readiness probe [/tmp/crigate-installed]
#   CRIGATE_SYNC_SECONDS seconds between config checks; 0 exits after installing [30]
set -euo pipefail

host_root=${CRIGATE_HOST_ROOT:-/host}
bin_dir=${CRIGATE_BIN_DIR:-/usr/local/bin}
source_dir=${CRIGATE_SOURCE_DIR:-/opt/crigate}
config_dir=${CRIGATE_CONFIG_DIR:-/etc/crigate-config}
ready_file=${CRIGATE_READY_FILE:-/tmp/crigate-installed}
sync_seconds=${CRIGATE_SYNC_SECONDS:-30}

unit_dir=/etc/systemd/system
# journalctl reads catalogs here as well as from /usr/lib/systemd/catalog, which belongs
# to the host's packages.
catalog_dir=/usr/local/lib/systemd/catalog
etc_dir=/etc/crigate

log() { printf 'install-on-host: %s\n' "$*" >&2; }

# Stops the installer. The functions below are called as conditions, where errexit does
# not hold, so each step that must not fail half-done says so with `|| fail`.
fail() {
  log "error: $*"
  exit 1
}

# copy SRC DEST: DEST holds SRC's bytes, flushed to disk before anything renames it into
# place. A short copy (a full disk) stops the installer: a config cut short can still
# parse, and say less than the ConfigMap does.
copy() {
  if ! { cp "$1" "$2" && cmp -s "$1" "$2" && sync "$2"; }; then
    rm -f "$2"
    fail "cannot copy $1 to $2"
  fi
}

# A crigate.service restart the binary or units call for, and not yet made: kept on the
# host, so that an installer stopped between the two makes it at its next start.
restart_marker="${bin_dir}/.crigate-restart-pending"
restart_needed() {
  touch "${host_root}${restart_marker}" || fail "cannot write ${restart_marker}"
}

# Runs a command in the host's namespaces, where systemd and the host's files are.
on_host() { nsenter -t 1 -m -u -i -n -p -- "$@"; }

# install_file SRC DEST MODE: makes host path DEST (under host_root) hold SRC's bytes
# with MODE, written to a temporary file in DEST's directory and renamed over DEST, so
# no reader sees half a file. Succeeds if DEST changed, fails if it already matched.
install_file() {
  local src=$1 dest=$2 mode=$3 tmp
  # Called as a condition, where errexit does not hold: a missing SRC would install an
  # empty file.
  [ -f "$src" ] || { log "error: ${src} is missing"; exit 1; }
  if [ -f "${host_root}${dest}" ] && cmp -s "$src" "${host_root}${dest}"; then
    chmod "$mode" "${host_root}${dest}"
    return 1
  fi
  mkdir -p "${host_root}$(dirname "$dest")" || fail "cannot create $(dirname "$dest")"
  tmp=$(mktemp "${host_root}$(dirname "$dest")/.$(basename "$dest").XXXXXX") ||
    fail "cannot write in $(dirname "$dest")"
  copy "$src" "$tmp"
  chmod "$mode" "$tmp" || fail "cannot chmod ${tmp}"
  mv -f "$tmp" "${host_root}${dest}" || fail "cannot rename ${tmp} to ${dest}"
  log "wrote ${dest}"
}

# install_checked SRC DEST CONFIG: like install_file, but first stages SRC on the host
# and has the installed crigate check CONFIG (with the staged file in place of DEST) so
# a ConfigMap that does not validate never replaces a working file.
install_checked() {
  local src=$1 dest=$2 config=$3 staged
  # A trust policy left in place by an installer stopped while checking it was never
  # found valid: the one it replaced goes back first, and the new one is checked anew.
  if [ -f "${host_root}${dest}.previous" ]; then
    mv -f "${host_root}${dest}.previous" "${host_root}${dest}" || fail "cannot restore ${dest}"
  elif [ -f "${host_root}${dest}.unchecked" ]; then
    rm -f "${host_root}${dest}" "${host_root}${dest}.unchecked" || fail "cannot remove ${dest}"
  fi
  if [ -f "${host_root}${dest}" ] && cmp -s "$src" "${host_root}${dest}"; then
    return 1
  fi
  staged="${dest}.staged"
  mkdir -p "${host_root}$(dirname "$dest")" || fail "cannot create $(dirname "$dest")"
  copy "$src" "${host_root}${staged}"
  chmod 0644 "${host_root}${staged}" || fail "cannot chmod ${staged}"
  if [ "$dest" = "${etc_dir}/config.toml" ]; then
    config=$staged
  else
    # A trust policy is checked in its place: the old one is kept aside to put back, and
    # the new one renamed in whole.
    if [ -f "${host_root}${dest}" ]; then
      copy "${host_root}${dest}" "${host_root}${dest}.previous"
    else
      touch "${host_root}${dest}.unchecked" || fail "cannot write ${dest}.unchecked"
    fi
    mv -f "${host_root}${staged}" "${host_root}${dest}" || fail "cannot rename ${staged} to ${dest}"
  fi
  if ! on_host "$checker" policy check --config "$config" >&2; then
    log "error: ${src} does not validate (crigate policy check above); ${dest} is unchanged"
    rm -f "${host_root}${staged}"
    if [ -f "${host_root}${dest}.previous" ]; then
      mv -f "${host_root}${dest}.previous" "${host_root}${dest}"
    elif [ "$dest" != "${etc_dir}/config.toml" ]; then
      rm -f "${host_root}${dest}"
    fi
    rm -f "${host_root}${dest}.unchecked"
    return 2
  fi
  rm -f "${host_root}${dest}.previous" "${host_root}${dest}.unchecked"
  if [ -e "${host_root}${staged}" ]; then
    mv -f "${host_root}${staged}" "${host_root}${dest}" || fail "cannot rename ${staged} to ${dest}"
  fi
  log "wrote ${dest}"
}

# sync_config: copies the ConfigMap's files to the host when they changed. Fails if one
# does not validate. crigate sees a changed config file by itself, but reads the trust
# policy only when it loads its config: a new trust policy leaves a marker on the host
# until crigate has been reloaded (or restarted), so that an installer stopped between
# the two reloads it at its next start.
reload_marker="${etc_dir}/.crigate-reload-pending"
sync_config() {
  local status=0 rc
  if [ -f "${config_dir}/config.toml" ]; then
    rc=0
    install_checked "${config_dir}/config.toml" "${etc_dir}/config.toml" "${etc_dir}/config.toml" || rc=$?
    [ "$rc" -le 1 ] || status=1
  elif [ ! -f "${host_root}${etc_dir}/config.toml" ]; then
    install_file "${source_dir}/config.toml" "${etc_dir}/config.toml" 0644 || true
  fi
  if [ -f "${config_dir}/trustpolicy.json" ]; then
    rc=0
    install_checked "${config_dir}/trustpolicy.json" "${etc_dir}/notation/trustpolicy.json" \
      "${etc_dir}/config.toml" || rc=$?
    if [ "$rc" = 0 ]; then
      touch "${host_root}${reload_marker}" || fail "cannot write ${reload_marker}"
    fi
    [ "$rc" -le 1 ] || status=1
  fi
  return "$status"
}

# --- 0. refuse to shadow the Debian package ---------------------------------------
# Units in /etc/systemd/system override the package's in /usr/lib/systemd/system, and two
# binaries would drift apart: a node is managed by one of the two.
if on_host test -e /var/lib/dpkg/info/crigate.list; then
  log "error: the crigate Debian package is installed on this node; remove it or the DaemonSet"
  exit 1
fi

# --- 1. binary -------------------------------------------------------------------
# A new binary is staged beside the installed one, checks the configuration (step 2),
# and takes its place, and the units are written, only once it accepts the node's: one
# that exits at start would be restarted in a loop while kubelet's calls wait on the
# socket.
checker="${bin_dir}/crigate"
staged=""
if ! cmp -s "${source_dir}/bin/crigate" "${host_root}${bin_dir}/crigate" 2>/dev/null; then
  install_file "${source_dir}/bin/crigate" "${bin_dir}/crigate.new" 0755 || true
  staged="${bin_dir}/crigate.new"
  checker=$staged
fi
on_host "$checker" --version >&2

# --- 2. configuration and trust store layout -------------------------------------
for store in ca signingAuthority tsa; do
  mkdir -p "${host_root}${etc_dir}/notation/truststore/x509/${store}"
done
chmod 0755 "${host_root}${etc_dir}"
# The config a new binary replaces is kept with the binary it replaces (step 4): a
# ConfigMap may add keys only the new binary knows, which the one put back would refuse.
# Kept from the first run of an upgrade, so that a run stopped after the config was
# written does not keep the new one instead.
config_rollback="${etc_dir}/config.toml.rollback"
if [ -n "$staged" ] && [ -f "${host_root}${etc_dir}/config.toml" ] && [ ! -e "${host_root}${config_rollback}" ]; then
  copy "${host_root}${etc_dir}/config.toml" "${host_root}${config_rollback}"
fi
if ! sync_config; then
  if [ -n "$staged" ]; then
    rm -f "${host_root}${staged}"
    # The config may have been written, checked by the new binary alone, before another
    # file was refused: the binary that stays runs with the config it ran with.
    if [ -f "${host_root}${config_rollback}" ]; then
      mv -f "${host_root}${config_rollback}" "${host_root}${etc_dir}/config.toml" ||
        fail "cannot put back ${etc_dir}/config.toml"
      log "put back the config the installed binary runs with"
    fi
  fi
  exit 1
fi

# The new binary, once it accepts the configuration the node now has.

if [ -n "$staged" ]; then
  if ! on_host "$staged" policy check --config "${etc_dir}/config.toml" >&2; then
    rm -f "${host_root}${staged}"
    log "error: the new crigate refuses ${etc_dir}/config.toml (above); the installed crigate is unchanged"
    exit 1
  fi
  # The binary it replaces is kept until the new one has started, to be put back if it
  # does not.
  if [ -f "${host_root}${bin_dir}/crigate" ]; then
    copy "${host_root}${bin_dir}/crigate" "${host_root}${bin_dir}/crigate.previous"
    chmod 0755 "${host_root}${bin_dir}/crigate.previous" || fail "cannot chmod crigate.previous"
  fi
  restart_needed
  mv -f "${host_root}${staged}" "${host_root}${bin_dir}/crigate" || fail "cannot rename ${staged}"
  log "wrote ${bin_dir}/crigate"
  checker="${bin_dir}/crigate"
fi

# --- 3. units --------------------------------------------------------------------
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for unit in crigate.socket crigate.service; do
  {
    echo "# Written by crigate's installer DaemonSet (packaging/install-on-host.sh): edits are"
    echo "# overwritten at its next start. Override with a drop-in in ${unit}.d/ instead."
    sed "s|/usr/bin/crigate|${bin_dir}/crigate|g" "${source_dir}/systemd/${unit}"
  } >"${rendered}/${unit}"
  install_file "${rendered}/${unit}" "${unit_dir}/${unit}" 0644 && restart_needed
done
# The catalog explains crigate's audit records in `journalctl -x`; crigate does not read it.
if install_file "${source_dir}/systemd/crigate.catalog" "${catalog_dir}/crigate.catalog" 0644; then
  on_host journalctl --update-catalog || log "warning: journalctl --update-catalog failed"
fi

# --- 4. systemd --------------------------------------------------------------------
# roll_back: puts back the binary a new one replaced, with the config it ran with if it
# refuses the node's current one, and restarts crigate.service. Fails with why.
roll_back() {
  local previous="${bin_dir}/crigate.previous"
  if on_host "$previous" policy check --config "${etc_dir}/config.toml" >&2; then
    :
  elif [ -f "${host_root}${config_rollback}" ] &&
    on_host "$previous" policy check --config "${config_rollback}" >&2; then
    mv -f "${host_root}${config_rollback}" "${host_root}${etc_dir}/config.toml" ||
      fail "crigate.service does not start, and the previous config cannot be put back"
    log "put back the config the previous binary ran with"
  else
    fail "crigate.service does not start, and the previous binary refuses the node's config"
  fi
  mv -f "${host_root}${previous}" "${host_root}${bin_dir}/crigate" ||
    fail "crigate.service does not start, and the previous binary cannot be put back"
  on_host systemctl restart crigate.service ||
    fail "crigate.service does not start, with the new binary or the previous one"
  rm -f "${host_root}${restart_marker}" "${host_root}${config_rollback}"
  fail "crigate.service does not start with the new binary: the previous one is back and running"
}

was_active=0
on_host systemctl is-active --quiet crigate.service && was_active=1
on_host systemctl daemon-reload
# Enabled at boot, or the run fails. A service that fails to start here (Type=notify: it
# never said READY=1) is dealt with below, where every unit must be active.
on_host systemctl enable crigate.socket crigate.service
on_host systemctl start crigate.socket crigate.service ||
  log "warning: systemctl start did not start every unit"
if [ -e "${host_root}${restart_marker}" ] && [ "$was_active" = 1 ]; then
  log "binary or units changed: restarting crigate.service"
  if ! on_host systemctl restart crigate.service; then
    on_host systemctl status --no-pager crigate.service >&2 || true
    [ ! -f "${host_root}${bin_dir}/crigate.previous" ] || roll_back
    fail "crigate.service does not start"
  fi
  rm -f "${host_root}${restart_marker}" "${host_root}${bin_dir}/crigate.previous" \
    "${host_root}${config_rollback}"
elif [ -e "${host_root}${reload_marker}" ] && [ "$was_active" = 1 ]; then
  on_host systemctl reload crigate.service
fi
# Restarted, reloaded, or started afresh: nothing is owed.
rm -f "${host_root}${reload_marker}"
[ "$was_active" = 1 ] || rm -f "${host_root}${restart_marker}"
for unit in crigate.socket crigate.service; do
  if ! on_host systemctl is-active --quiet "$unit"; then
    on_host systemctl status --no-pager "$unit" >&2 || true
    # A service that was not running to restart (one an earlier run left failing with a
    # new binary, say) is given back the binary before it, if one is kept.
    if [ "$unit" = crigate.service ] && [ -f "${host_root}${bin_dir}/crigate.previous" ]; then
      roll_back
    fi
    log "error: ${unit} is not active"
    exit 1
  fi
done
# Running: the binary and config kept to go back to are no longer needed.
rm -f "${host_root}${bin_dir}/crigate.previous" "${host_root}${config_rollback}"

# --- 5. ready; keep the config in step ------------------------------------------------
touch "$ready_file"
log "crigate is installed and active"
[ "$sync_seconds" = 0 ] && exit 0
trap 'exit 0' TERM INT
while true; do
  sleep "$sync_seconds" &
  wait $!
  sync_config || true
  if [ -e "${host_root}${reload_marker}" ]; then
    if on_host systemctl reload crigate.service; then
      rm -f "${host_root}${reload_marker}"
    else
      log "error: reloading crigate.service failed"
    fi
  fi
done
