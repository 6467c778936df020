#!/usr/bin/env bash
# The README's SD3.5 / Flux / DiT / T5-XXL side-by-side: nuance (`nuance bench --json`, full-size `make-random` files)
# and diffusers 0.31 / torch CPU (tools/bench_reference.py, same shapes and thread count), back to back in one run.
# Every command runs under /usr/bin/time -v; each JSON line it prints gets the command's load average at its start
# ("load_avg"), its peak RSS by time -v ("time_v_rss_mb"), its major page faults and wall time, and goes to
# $OUT/results.jsonl.
# Usage: tools/bench_side_by_side.sh DIR_WITH_FILES OUT_DIR [phase...]
#   phases: nuance (= nu_sd35m nu_sd35m_fp32 nu_dit), diffusers (= py_sd35m py_small py_t5), flux_ops (nuance's
#   Flux blocks), flux_full; REPEAT=N timed repeats (default 3)
#   DIR_WITH_FILES holds (make-random --dtype bf16): sd35m, clip_l, clip_g, t5xxl, vae16, vae_sd, dit256, dit512
#   .safetensors; flux_full wants flux_dev.safetensors and t5xxl_d1.safetensors (t5xxl --depth 1: the 24 GB
#   transformer and a 9.5 GB T5 do not fit the disk budget and the memory together).
set -uo pipefail
F=${1:?files dir}; OUT=${2:?out dir}; shift 2
PHASES=${*:-nuance diffusers flux_ops}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NU=${NUANCE:-$ROOT/build/nuance}
PY=${PYTHON:-/tmp/samplers-venv/bin/python}
REF="$ROOT/tools/bench_reference.py"
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-3}  # timed repeats of each nuance figure (and runs of the reference's short parts)
mkdir -p "$OUT"
RES="$OUT/results.jsonl"

run() {  # run LABEL CMD...: one measured command
    local label=$1; shift
    local la; la=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== $label ($(date -u +%H:%M:%S), load $la): $*" >&2
    /usr/bin/time -v -o "$OUT/$label.time" "$@" > "$OUT/$label.out" 2> "$OUT/$label.err"
    local rc=$?
    local rss major wall
    rss=$(awk '/Maximum resident/ {print int($6/1024)}' "$OUT/$label.time")
    major=$(awk '/Major \(requiring I\/O\)/ {print $6}' "$OUT/$label.time")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $8}' "$OUT/$label.time")
    grep '^{' "$OUT/$label.out" | LABEL=$label LA="$la" RSS=${rss:-0} MAJ=${major:-0} WALL=$wall RC=$rc CMD="$*" \
        python3 -c 'import json, os, sys
for line in sys.stdin:
    j = json.loads(line)
    if "impl" not in j: j["impl"] = "diffusers"
    j.update(label=os.environ["LABEL"], load_avg=os.environ["LA"], time_v_rss_mb=int(os.environ["RSS"]),
             major_faults=int(os.environ["MAJ"]), wall=os.environ["WALL"], rc=int(os.environ["RC"]), cmd=os.environ["CMD"])
    print(json.dumps(j))' >> "$RES"
    [ $rc -eq 0 ] || { echo "   rc=$rc: $(tail -2 "$OUT/$label.err")" >&2; }
}

SD3="-m $F/sd35m.safetensors --clip-l $F/clip_l.safetensors --clip-g $F/clip_g.safetensors --vae $F/vae16.safetensors"
expand() {  # composite phase names
    for p in "$@"; do case $p in
        nuance) echo nu_sd35m nu_t5_512 nu_sd35m_fp32 nu_dit ;;
        diffusers) echo py_sd35m py_small py_t5 ;;
        *) echo "$p" ;;
    esac; done
}
for phase in $(expand $PHASES); do case $phase in
nu_sd35m)
    run nu_sd35m_bf16 "$NU" bench $SD3 --t5xxl "$F/t5xxl.safetensors" --res 1024 --steps 1 --repeat $REPEAT \
        -t $THREADS --profile --precision bf16 --json ;;
nu_sd35m_nt5)  # the step and decode without T5 in memory (SD3 then uses a zero T5 context: the same step)
    run nu_sd35m_nt5_bf16 "$NU" bench $SD3 --res 1024 --steps 1 --repeat $REPEAT -t $THREADS --precision bf16 \
        --parts step,vae --json ;;
py_sd35m_bf16|py_sd35m_fp32)
    run $phase "$PY" "$REF" sd35m --res 1024 --dtype ${phase#py_sd35m_} --threads $THREADS --runs 1 --warmup 0 ;;
py_flux512|py_flux1024)
    for p in bf16 fp32; do
        run ${phase}_$p "$PY" "$REF" flux --res ${phase#py_flux} --dtype $p --threads $THREADS --runs $REPEAT --warmup 1
    done ;;
flux_ops512|flux_ops1024)
    run nu_$phase "$ROOT/build/nuance_bench_ops" --benchmark_filter="flux_.*/${phase#flux_ops}/" --benchmark_min_time=0.01 --benchmark_repetitions=$REPEAT ;;
nu_dit256|nu_dit512)
    for p in bf16 fp32; do
        run ${phase}_$p "$NU" bench -m "$F/dit${phase#nu_dit}.safetensors" --vae "$F/vae_sd.safetensors" \
            --res ${phase#nu_dit} --steps 1 --repeat $REPEAT -t $THREADS --precision $p --parts step --json --profile
    done ;;
py_dit256|py_dit512)
    for p in bf16 fp32; do
        run ${phase}_$p "$PY" "$REF" dit --res ${phase#py_dit} --dtype $p --threads $THREADS --runs $REPEAT --warmup 1
    done ;;
py_vae16_bf16|py_vae16_fp32)
    run $phase "$PY" "$REF" vae16 --res 1024 --dtype ${phase#py_vae16_} --threads $THREADS --runs $REPEAT --warmup 1 ;;
flux_full512|flux_full1024)
    run nu_fluxdev_full_${phase#flux_full} "$NU" bench -m "$F/flux_dev.safetensors" --clip-l "$F/clip_l.safetensors" \
        --t5xxl "$F/t5xxl_d1.safetensors" --vae "$F/vae16.safetensors" --res ${phase#flux_full} --steps 1 \
        --repeat $REPEAT -t $THREADS --precision bf16 --parts step --json ;;
nu_t5_512)
    run nu_t5_512_bf16 "$NU" bench $SD3 --t5xxl "$F/t5xxl.safetensors" --res 256 --parts t5 --t5-tokens 512 \
        --repeat $REPEAT -t $THREADS --precision bf16 --json ;;
nu_sd35m_fp32)
    # fp32: without T5 (its fp32 copy alone would be 19 GB); SD3 runs with a zero T5 context then (the step is the same)
    run nu_sd35m_fp32 "$NU" bench $SD3 --res 1024 --steps 1 --repeat $REPEAT -t $THREADS --precision fp32 \
        --parts step,vae --json ;;
nu_dit)
    for r in 256 512; do for p in bf16 fp32; do
        run nu_dit${r}_$p "$NU" bench -m "$F/dit$r.safetensors" --vae "$F/vae_sd.safetensors" --res $r --steps 1 \
            --repeat $REPEAT -t $THREADS --precision $p --parts step --json --profile
    done; done ;;
py_sd35m)
    for p in fp32 bf16; do
        run py_sd35m_$p "$PY" "$REF" sd35m --res 1024 --dtype $p --threads $THREADS --runs 1 --warmup 0
    done ;;
py_small)
    for p in fp32 bf16; do
        run py_vae16_$p "$PY" "$REF" vae16 --res 1024 --dtype $p --threads $THREADS --runs $REPEAT --warmup 1
        for r in 256 512; do
            run py_dit${r}_$p "$PY" "$REF" dit --res $r --dtype $p --threads $THREADS --runs $REPEAT --warmup 1
        done
        for r in 512 1024; do
            run py_flux${r}_$p "$PY" "$REF" flux --res $r --dtype $p --threads $THREADS --runs $REPEAT --warmup 1
        done
    done ;;
py_t5)
    # T5-XXL: fp32 weights are 19 GB (and bf16 autocast keeps them fp32): only bf16 weights fit beside the rest.
    for t in 256 512; do
        run py_t5_${t}_bf16w "$PY" "$REF" t5 --tokens $t --dtype bf16w --threads $THREADS --runs $REPEAT --warmup 1
    done ;;
flux_ops)
    run nu_flux_blocks "$ROOT/build/nuance_bench_ops" --benchmark_filter='flux_' --benchmark_min_time=0.01 --benchmark_repetitions=$REPEAT ;;
flux_full)
    for r in 512 1024; do
        run nu_fluxdev_full_$r "$NU" bench -m "$F/flux_dev.safetensors" --clip-l "$F/clip_l.safetensors" \
            --t5xxl "$F/t5xxl_d1.safetensors" --vae "$F/vae16.safetensors" --res $r --steps 1 --repeat $REPEAT \
            -t $THREADS --precision bf16 --parts step --json
    done ;;
*) echo "unknown phase $phase" >&2; exit 2 ;;
esac; done
