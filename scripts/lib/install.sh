# Shared by the benchmark scripts (source it): installs a missing tool
# with apt-get, running `apt-get update` first only if the install fails
# (a fresh image's package lists may be stale or absent). Needs root or
# sudo the first time.
#
#   install_if_missing fio [package]

install_if_missing() {
    local command=$1 package=${2:-$1}
    command -v "$command" >/dev/null && return
    echo "$(basename "$0"): $command not found; installing $package with apt-get" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y "$package" || { $sudo apt-get update && $sudo apt-get install -y "$package"; }
}
