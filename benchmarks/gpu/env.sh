# The GPU scripts' shared set-up (sourced from the repository root): $OUT, $DEVICE (cuda; cpu to
# try a script here), $SIZE (full; tiny for a try with the tiny model), the carried wheels
# installed into /tmp/site on a lent machine, PYTHONPATH, and everything offline.
OUT=${OUT:-/tmp/leap-gpu-check}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-full}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu: the wheels did not install" >&2; return 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# a fresh machine's home holds no converted models; nothing there needs them
if [ "$DEVICE" = cuda ]; then export LEAP_CACHE=${LEAP_CACHE:-/tmp/leap-cache}; fi
