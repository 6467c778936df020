#!/usr/bin/env bash
# A two-host MPI job on one machine (issue 17): two network namespaces, nuance-h1 (10.77.0.1) and nuance-h2
# (10.77.0.2), joined by a veth pair. mpirun runs in h1 and starts Open MPI's daemon in h2 through an rsh agent that
# enters h2's namespace (in place of ssh to another machine); the ranks then talk over TCP on the veth only
# (`--mca btl self,tcp`), as two machines on a network would. Needs root (ip netns). Not part of the test suite.
#
#   sudo scripts/mpi-two-hosts.sh                       # a short `nuance train` on 2 "hosts", then generation
#   sudo scripts/mpi-two-hosts.sh generate -p "red heart" -b 4 -o /tmp/h.png
#
# On a real cluster the same run is (the run folder on a shared file system, or -o on each host's local disk with
# rank 0's copy kept):
#   mpirun -np 2 --hostfile hosts --mca btl self,tcp --mca btl_tcp_if_include eth0 nuance train ...  # hosts: "a slots=1\nb slots=1"
#   srun -N 2 -n 2 --mpi=pmix nuance train ...                                                          # SLURM
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
nuance="${NUANCE:-$here/build/nuance}"
[ -x "$nuance" ] || { echo "mpi-two-hosts: build nuance first ($nuance)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "mpi-two-hosts: needs root for ip netns (run with sudo)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi-two-hosts: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }

work="$(mktemp -d /tmp/nuance-2hosts.XXXXXX)"
cleanup() {
  ip netns del nuance-h1 2>/dev/null || true
  ip netns del nuance-h2 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add nuance-h1
ip netns add nuance-h2
ip link add nuance-v1 type veth peer name nuance-v2
ip link set nuance-v1 netns nuance-h1
ip link set nuance-v2 netns nuance-h2
ip -n nuance-h1 addr add 10.77.0.1/24 dev nuance-v1
ip -n nuance-h2 addr add 10.77.0.2/24 dev nuance-v2
for n in 1 2; do
  ip -n nuance-h$n link set lo up
  ip -n nuance-h$n link set nuance-v$n up
done

# Open MPI's launcher calls "<agent> <host> <daemon command>": this agent runs the command inside that host's namespace.
cat >"$work/netns-rsh" <<'AGENT'
#!/bin/sh
host="$1"; shift
case "$host" in
  10.77.0.1) ns=nuance-h1 ;;
  10.77.0.2) ns=nuance-h2 ;;
  *) echo "netns-rsh: unknown host '$host'" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
AGENT
chmod +x "$work/netns-rsh"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' >"$work/hosts"

mpi=(mpirun --allow-run-as-root -np 2 --hostfile "$work/hosts" --map-by node
     --mca plm_rsh_agent "$work/netns-rsh" --mca btl self,tcp
     --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24
     -x OMP_NUM_THREADS)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

run() { echo "+ ${mpi[*]} $nuance $*" >&2; ip netns exec nuance-h1 "${mpi[@]}" "$nuance" "$@"; }

if [ $# -gt 0 ]; then
  run "$@"
  exit
fi
# The default demonstration: a small VAE trained on 2 "hosts" (16 coloured 16x16 squares made here), then
# 4 images of the built-in model, 2 per host.
mkdir -p "$work/data"
python3 - "$work/data" <<'PY'
import sys, zlib, struct
out = sys.argv[1]
def png(path, rgb):
    raw = b"".join(b"\x00" + bytes(rgb) * 16 for _ in range(16))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
cols = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 220), "yellow": (230, 220, 30)}
for i in range(16):
    name = list(cols)[i % 4]
    png(f"{out}/img{i}.png", cols[name])
    open(f"{out}/img{i}.txt", "w").write(f"{name} square")
PY
run train --model vae --data "$work/data" --resolution 16 --batch 8 --steps 20 --checkpoint-every 10 \
    --arch '{"vae":{"block_out_channels":[16,32],"norm_num_groups":8}}' -q -o "$work/run"
run generate -p "red heart" -b 4 -s 1 -q -o "$work/heart.png"
ls -l "$work"/heart*.png
echo "mpi-two-hosts: OK (files in $work)"
