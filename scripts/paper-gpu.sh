#!/bin/bash
# The paper's full CIFAR-10 protocol on one CUDA GPU: experiments/paper-cifar10-gpu.json (every
# method, the Table 6 ablation, 2-3 seeds, OOD / calibration / PGD evaluation of every run), then
# SGLD samples of the generative runs scored with IS and FID, then the results tables. Estimated at
# about 215 GPU-hours on one H200 (the spec's description gives the basis). Run from anywhere:
#
#   LIBTORCH=/opt/libtorch DATA_DIR=/data FID_WEIGHTS=pt_inception-2015-12-05-6726825d.pth scripts/paper-gpu.sh
#
# Rerunning continues: finished runs, evaluations and samples are skipped and an interrupted run
# resumes from its newest checkpoint (Ctrl-C saves one first). Settings, all optional:
#   LIBTORCH     a CUDA libtorch (a libtorch zip or a PyTorch install's torch/ folder): the shim and
#                bin/hdge-torch are rebuilt against it, as bench/gpu.sh does (Dockerfile.cuda sets it)
#   DATA_DIR     the folder holding cifar-10-batches-bin/, cifar-100-binary/ and, optionally, svhn/
#                (test_32x32.mat); default: the first of $HDGE_DATA, ../shared/data, ./shared/data
#                and the per-user cache that has CIFAR-10. `hdge-torch data fetch NAME` downloads one.
#   FID_WEIGHTS  pytorch-fid's Inception-v3 file, for IS and FID proper; without it the samples
#                are scored in the features of the CE run of the same seed (not comparable with
#                published FIDs)
#   JOBS         units trained at once on the GPU (default 2)
#   SEEDS        "paper" (default: seeds 1-2 of every run, then seed 3 of ce and hdge) or "all"
#   ONLY         comma-separated runs to work on (default: all; stage 1 of a chained run comes along)
#   SAMPLE_N, SAMPLE_STEPS, SAMPLE_ROUNDS, SAMPLE_BATCH
#                chains per class (1000), SGLD steps per round (20), rounds (5), chains per batch (500)
#   RESAMPLE=1   draw the samples again although they exist (after adding FID_WEIGHTS, say)
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC=experiments/paper-cifar10-gpu.json
OUT=experiments/out/paper-cifar10-gpu
# The runs the script samples (the ones with a replay buffer) and the runs trained with a third
# seed; experiment/paper_test.go checks both lists against the spec.
GEN_RUNS="jem hdge-jem jem-n128"
THIRD_SEED_RUNS="ce,hdge"

JOBS=${JOBS:-2}
SEEDS=${SEEDS:-paper}
SAMPLE_N=${SAMPLE_N:-1000}
SAMPLE_STEPS=${SAMPLE_STEPS:-20}
SAMPLE_ROUNDS=${SAMPLE_ROUNDS:-5}
SAMPLE_BATCH=${SAMPLE_BATCH:-500}

die() {
	echo "paper-gpu: $*" >&2
	exit 1
}

# --- build, as bench/gpu.sh: the shim against LIBTORCH, the binary where Go is installed.
if [ -n "${LIBTORCH:-}" ]; then
	make -j"$(nproc)" shim LIBTORCH="$LIBTORCH"
fi
if command -v go >/dev/null 2>&1; then
	make build ${LIBTORCH:+LIBTORCH="$LIBTORCH"}
fi
[ -x bin/hdge-torch ] || die "bin/hdge-torch is missing and there is no Go toolchain to build it: build it elsewhere (make build), or use Dockerfile.cuda"
export LD_LIBRARY_PATH="$PWD/build${LIBTORCH:+:$LIBTORCH/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- CUDA: libtorch must see a device, not just the machine.
version=$(bin/hdge-torch version) || die "bin/hdge-torch does not start (is build/libhdgetorch.so built? LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
echo "$version"
case "$version" in
*"cuda available: true"*) ;;
*)
	gpus=$(nvidia-smi -L 2>/dev/null || true)
	if [ -n "$gpus" ]; then
		die "the GPU is there ($gpus) but libtorch does not see it: the shim is built against a CPU libtorch; give LIBTORCH=/path/to/a/CUDA/libtorch (see Dockerfile.cuda)"
	fi
	die "no CUDA device visible (nvidia-smi finds none, libtorch reports: $version); this protocol needs a GPU (about 215 GPU-hours)"
	;;
esac

# --- data: CIFAR-10 (train and test) and the CIFAR-100 test split are required, SVHN is optional.
has_cifar10() {
	local d=$1 f
	for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin; do
		[ -f "$d/cifar-10-batches-bin/$f" ] || return 1
	done
}
if [ -z "${DATA_DIR:-}" ]; then
	IFS=: read -r -a candidates <<<"${HDGE_DATA:-}"
	candidates+=(../shared/data shared/data "${XDG_CACHE_HOME:-$HOME/.cache}/hdge-torch")
	for d in "${candidates[@]}"; do
		if [ -n "$d" ] && has_cifar10 "$d"; then
			DATA_DIR=$d
			break
		fi
	done
	[ -n "${DATA_DIR:-}" ] || die "CIFAR-10 not found in \$HDGE_DATA, ../shared/data, shared/data or the per-user cache: set DATA_DIR, or run bin/hdge-torch data fetch cifar10 --data-dir DIR"
fi
DATA_DIR=$(cd "$DATA_DIR" && pwd)
has_cifar10 "$DATA_DIR" || die "$DATA_DIR/cifar-10-batches-bin lacks some of data_batch_1..5.bin, test_batch.bin (bin/hdge-torch data fetch cifar10 --data-dir $DATA_DIR)"
[ -f "$DATA_DIR/cifar-100-binary/test.bin" ] || die "$DATA_DIR/cifar-100-binary/test.bin (the CIFAR-100 test split, an OOD set of Table 1) is missing (bin/hdge-torch data fetch cifar100 --data-dir $DATA_DIR)"
# The spec names no data folder: the trainer and the evaluation find the sets through HDGE_DATA.
export HDGE_DATA="$DATA_DIR${HDGE_DATA:+:$HDGE_DATA}"
svhn_now=absent
[ -f "$DATA_DIR/svhn/test_32x32.mat" ] && svhn_now=present
# The evaluation includes SVHN when its file is there; record what the first sitting found, so
# that a later sitting does not mix evaluations with and without it unnoticed.
mark=$OUT/.paper-gpu/svhn
mkdir -p "$OUT/.paper-gpu"
if [ -f "$mark" ]; then
	svhn_then=$(cat "$mark")
	if [ "$svhn_then" != "$svhn_now" ]; then
		die "SVHN was $svhn_then when this grid started and is $svhn_now now: restore that, or delete $OUT/*/seed-*/eval/metrics.json and $mark to evaluate every run again (training is kept)"
	fi
else
	echo "$svhn_now" >"$mark"
fi
[ "$svhn_now" = present ] || echo "paper-gpu: warning: SVHN ($DATA_DIR/svhn/test_32x32.mat) is absent: the OOD tables leave it out (bin/hdge-torch data fetch svhn --data-dir $DATA_DIR before the first sitting adds it)" >&2
if [ -n "${FID_WEIGHTS:-}" ]; then
	[ -f "$FID_WEIGHTS" ] || die "FID_WEIGHTS=$FID_WEIGHTS: no such file (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)"
	FID_WEIGHTS=$(cd "$(dirname "$FID_WEIGHTS")" && pwd)/$(basename "$FID_WEIGHTS")
fi
free_gb=$(df -Pk "$OUT" | awk 'NR == 2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 45 ]; then
	echo "paper-gpu: warning: $free_gb GB free under $OUT; the checkpoints take about 40 GB (1 GB a run × seed)" >&2
fi

# --- train and evaluate (the runner skips what is done and resumes what was interrupted). A run
# that fails (JEM diverging past its restarts, say) is recorded and the others go on; the script
# then samples what did train and exits with the failure. Ctrl-C (130) or a spec error (2) stops it.
failed=0
experiment() {
	local rc=0
	bin/hdge-torch experiment run --jobs "$JOBS" --no-progress "$@" "$SPEC" || rc=$?
	case $rc in
	0) ;;
	2 | 130) exit "$rc" ;;
	*) failed=$rc ;;
	esac
}
sittings() {
	local only=(${ONLY:+--only "$ONLY"})
	case "$SEEDS" in
	all) experiment "${only[@]}" ;;
	paper)
		experiment "${only[@]}" --seeds 1,2
		if [ -z "${ONLY:-}" ]; then
			experiment --only "$THIRD_SEED_RUNS" --seeds 3
		fi
		;;
	*) die "SEEDS=$SEEDS: want paper or all" ;;
	esac
}
sittings

# --- sample the generative runs once trained; the CE run of the same seed scores them when no
# Inception weights are given.
sampled=0
for r in $GEN_RUNS; do
	for d in "$OUT/$r"/seed-*; do
		[ -f "$d/summary.json" ] || continue
		if [ -f "$d/samples/metrics.json" ] && [ "${RESAMPLE:-0}" != 1 ]; then
			continue
		fi
		seed=${d##*/seed-}
		if [ -n "${FID_WEIGHTS:-}" ]; then
			score=(--fid-weights "$FID_WEIGHTS")
		elif [ -f "$OUT/ce/seed-$seed/summary.json" ]; then
			score=(--feature-checkpoint "$OUT/ce/seed-$seed")
		else
			echo "paper-gpu: $d: no FID_WEIGHTS and ce seed $seed is not trained: sampled later" >&2
			continue
		fi
		echo "paper-gpu: sampling $d"
		bin/hdge-torch sample --checkpoint "$d" --out "$d/samples" --device cuda --class all --from-buffer \
			-n "$SAMPLE_N" --steps "$SAMPLE_STEPS" --rounds "$SAMPLE_ROUNDS" --batch-size "$SAMPLE_BATCH" "${score[@]}" ||
			{ failed=1 && echo "paper-gpu: sampling $d failed; running the script again retries it" >&2 && continue; }
		sampled=$((sampled + 1))
	done
done
# A second sitting adds the new samples to each run's evaluation report and to the results,
# evaluating nothing again.
if [ "$sampled" -gt 0 ]; then
	sittings
fi
bin/hdge-torch experiment aggregate "$SPEC" >/dev/null
echo "paper-gpu: results in $OUT/results.md and $OUT/results.json"
if [ "$failed" -ne 0 ]; then
	echo "paper-gpu: some runs failed (their experiment.json says why); running the script again retries them" >&2
	exit "$failed"
fi
