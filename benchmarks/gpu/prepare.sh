#!/usr/bin/env bash
# Prepare the one-call GPU check (benchmarks/gpu/check.sh), here, on a machine with PyPI:
#   - the wheels of leap's dependencies that the lent GPU machines' image lacks (Python 3.12,
#     x86-64; the versions installed here) into .whl/ (about 10 MiB);
#   - SmolLM2-135M's config and tokenizer (3.4 MiB; no weights: the benchmarks build a randomly
#     initialised model of the same shapes there) into .bench/smollm2-shape/.
# Both folders are git-ignored (.git/info/exclude) and travel with the call:
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl", ".bench"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
for folder in /.whl/ /.bench/; do
  grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done

# what the image lacks (trl, datasets, pydantic, json-repair, openai) and their own needs that it
# lacks too, at the versions installed here
names=(trl datasets dill multiprocess pydantic pydantic_core annotated-types typing-inspection
       json_repair openai jiter distro sniffio)
pins=()
for name in "${names[@]}"; do
  version=$(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] || { echo "prepare: $name is not installed here (bash scripts/setup.sh first)" >&2; exit 1; }
  pins+=("$name==$version")
done
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl "${pins[@]}"

shape=.bench/smollm2-shape
rm -rf "$shape" && mkdir -p "$shape"
model=$(python3 -c "from leap.models.registry import resolve_model_path as r; print(r('smollm2-135m'))")
for f in config.json tokenizer.json tokenizer_config.json chat_template.jinja special_tokens_map.json generation_config.json; do
  [ -f "$model/$f" ] && cp "$model/$f" "$shape/"
done
du -sh .whl .bench
