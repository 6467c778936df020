#!/usr/bin/env bash
# Clean-room proof of the README's two commands: debootstraps a minimal Debian 12 (bookworm) into a folder, copies
# the committed tree (git archive HEAD) into it, and inside a chroot runs exactly
#   ./scripts/install-deps.sh && ./scripts/build.sh && ./build/nuance generate -p "red apple, noto style" -o apple.png
#   ./scripts/test.sh
# Needs root, debootstrap and Debian's package mirror; takes 20-40 minutes on 2 cores. Not part of CI (root, time);
# scripts/check-deps.sh is CI's cheaper proof.
#   scripts/clean-room.sh [DIR]     DIR defaults to /var/tmp/nuance-clean-room (removed first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-/var/tmp/nuance-clean-room}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
[ "$(id -u)" = 0 ] || { echo "clean-room: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
umount_all() { for m in dev/shm dev/pts dev proc sys; do umount -l "$DIR/$m" 2>/dev/null || true; done; }
umount_all
rm -rf "$DIR"
mkdir -p "$DIR"
echo "clean-room: debootstrap bookworm into $DIR"
debootstrap --variant=minbase bookworm "$DIR" "$MIRROR" >"$DIR.debootstrap.log" 2>&1 || {
  tail -20 "$DIR.debootstrap.log"; exit 1; }
trap umount_all EXIT
mount -t proc proc "$DIR/proc"; mount -t sysfs sys "$DIR/sys"
mount --bind /dev "$DIR/dev"; mount --bind /dev/pts "$DIR/dev/pts"; mount -t tmpfs shm "$DIR/dev/shm"
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
# debootstrap writes no /etc/hosts (Debian's installer and cloud images do): without it "localhost" does not resolve,
# and Selenium reaches chromedriver by that name.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$DIR/etc/hosts"
mkdir -p "$DIR/src/nuance"
git -C "$ROOT" archive HEAD | tar x -C "$DIR/src/nuance"
echo "clean-room: the README's first command"
chroot "$DIR" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 bash -c \
  'cd /src/nuance && ./scripts/install-deps.sh && ./scripts/build.sh && ./build/nuance generate -p "red apple, noto style" -o apple.png && ls -l apple.png'
echo "clean-room: the README's second command"
chroot "$DIR" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 CI=true bash -c \
  'cd /src/nuance && ./scripts/test.sh'
echo "clean-room: both commands passed on a fresh Debian 12"
