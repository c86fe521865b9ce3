#!/usr/bin/env bash
# Builds the dnnd container image with buildah (no registry, no Docker
# engine: vfs storage, chroot isolation) and exports it as an OCI archive.
#
#   deploy/build-image.sh                 # builds build/dnnd if needed, then the image
#   deploy/build-image.sh --with-data     # also dnnd-fashion-mnist (one more layer: the data set)
#   deploy/build-image.sh --binary path/to/dnnd --out dir
#
# Output (default dir build/image/):
#   dnnd-<version>.oci.tar                 image localhost/dnnd:<version>
#   dnnd-fashion-mnist-<version>.oci.tar   with --with-data
# Load one into podman with `podman load -i <archive>`, into Docker with
# `docker load -i <archive>` (Docker 25+ reads OCI archives), or copy it to a
# registry with `skopeo copy oci-archive:<archive> docker://<registry>/dnnd:<version>`.
#
# buildah keeps its own storage under build/containers/ (DNND_BUILDAH_ROOT):
# nothing is written to the machine's shared container storage. Layers carry
# the commit's timestamp, so the same commit and binary give the same digests.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}

binary="" out="build/image" with_data=0
data_dir="/usr/share/datasets/fashion-mnist"
while (($#)); do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --with-data) with_data=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "build-image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "build-image.sh: $*" >&2; exit 1; }

command -v buildah >/dev/null || die "buildah is not installed (scripts/setup.sh --tests installs it; or apt-get install buildah)"

if [[ -z "$binary" ]]; then
  # Build (or refresh) the dnnd target only: cheap when it is up to date.
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build build -j"${DNND_JOBS:-2}" --target dnnd >/dev/null
  binary="build/dnnd"
fi
[[ -f "$binary" && -x "$binary" ]] || die "no executable at $binary"
# The image has no libc and no loader: the binary must be static.
if readelf -lW "$binary" 2>/dev/null | grep -q "Requesting program interpreter"; then
  die "$binary is dynamically linked; the image needs the static build (cmake -DDNND_STATIC=ON, the default)"
fi
readelf -hW "$binary" 2>/dev/null | grep -q "Advanced Micro Devices X86-64" || die "$binary is not an x86-64 ELF executable"

version_line=$("$binary" version) || die "'$binary version' failed"
version=$(awk '$1 == "dnnd" {print $2; exit}' <<<"$version_line")
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read a version from '$version_line'"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ "$revision" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  revision="$revision-dirty"
fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

root=${DNND_BUILDAH_ROOT:-build/containers}
mkdir -p "$root" "$out"
root=$(realpath "$root")
bh=(buildah --root "$root/storage" --runroot "$root/run" --storage-driver vfs)

# The build context: only what the image holds.
ctx="$out/context"
rm -rf "$ctx"
mkdir -p "$ctx/workdir"
cp -a deploy/image/rootfs "$ctx/rootfs"
chmod 0644 "$ctx"/rootfs/etc/*
mkdir -p "$ctx/rootfs/var/lib"  # root-owned parents of the workdir (COPY --chown would own them too)
strip --strip-all -o "$ctx/dnnd" "$binary"
chmod 0555 "$ctx/dnnd"
"$ctx/dnnd" version >/dev/null || die "the stripped binary does not run"

name="localhost/dnnd:$version"
echo "building $name from $binary ($version_line)"
"${bh[@]}" bud --isolation chroot --timestamp "$epoch" --quiet \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
  -f deploy/Containerfile -t "$name" "$ctx" >/dev/null

images=("dnnd")
if ((with_data)); then
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [[ -f "$data_dir/$f" ]] || die "--with-data: $data_dir/$f is missing (apt-get install dataset-fashion-mnist)"
  done
  mkdir -p "$ctx/fashion-mnist"
  cp "$data_dir"/*.gz "$ctx/fashion-mnist/"
  chmod 0644 "$ctx"/fashion-mnist/*
  echo "building localhost/dnnd-fashion-mnist:$version on top of it"
  "${bh[@]}" bud --isolation chroot --timestamp "$epoch" --quiet --build-arg BASE="$name" \
    -f deploy/Containerfile.fashion-mnist -t "localhost/dnnd-fashion-mnist:$version" "$ctx" >/dev/null
  images+=("dnnd-fashion-mnist")
fi

# Export, then report sizes from the archive itself: compressed = the layer
# blobs as stored (gzip), uncompressed = the layers' tar streams.
for image in "${images[@]}"; do
  archive="$out/$image-$version.oci.tar"
  rm -f "$archive"
  "${bh[@]}" push --quiet "localhost/$image:$version" "oci-archive:$archive:localhost/$image:$version" >/dev/null
  python3 - "$archive" "$image:$version" <<'EOF'
import gzip, json, os, sys, tarfile
path, name = sys.argv[1], sys.argv[2]
with tarfile.open(path) as tar:
    def blob(digest):
        return tar.extractfile("blobs/" + digest.replace(":", "/"))
    index = json.load(tar.extractfile("index.json"))
    manifest = json.load(blob(index["manifests"][0]["digest"]))
    compressed = uncompressed = 0
    for layer in manifest["layers"]:
        compressed += layer["size"]
        with gzip.open(blob(layer["digest"])) as f:
            while chunk := f.read(1 << 20):
                uncompressed += len(chunk)
mb = lambda n: f"{n / 1e6:.1f} MB"
print(f"{name}: {len(manifest['layers'])} layer(s), compressed {mb(compressed)}, "
      f"uncompressed {mb(uncompressed)}; archive {path} ({mb(os.path.getsize(path))})")
EOF
done
# Earlier builds' images that lost their tag to this one: free their storage.
"${bh[@]}" rmi --prune >/dev/null 2>&1 || true
