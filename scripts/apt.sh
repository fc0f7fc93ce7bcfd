# apt.sh, sourced by the scripts that install what they need when it is
# missing (deps.sh, demo_data.sh, test_report.sh, test_slurm.sh):
# apt_install PKG... runs apt-get install, as root or through sudo, after
# one apt-get update per script.
[ -z "${apt_sh_loaded:-}" ] || return 0
apt_sh_loaded=1
apt_sudo=""
if [ "$(id -u)" != 0 ]; then apt_sudo="sudo"; fi
apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then $apt_sudo apt-get update -qq; apt_updated=1; fi
  echo "$(basename "$0"): apt-get install $*" >&2
  DEBIAN_FRONTEND=noninteractive $apt_sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
