#!/usr/bin/env bash
# The main job end to end on this machine, no GPU needed: export the demo models (zoo
# architectures with the weights in demo/weights, trained by demo/train_*.py) into a Triton
# model repository, serve it on the embedded Triton server, call every model over gRPC,
# write the pictures, stop the server.
#
# The demo keeps to itself: its repository is $OUT/repository (made afresh each run, so
# reruns do not pile up versions), it never reads or writes the user's `models/`, and its
# server listens on free loopback ports (not 8000-8002, which a user's `prodgen serve` may
# hold). GRPC_PORT=N picks the gRPC port (N-1 HTTP, N+1 metrics); a taken port fails at once.
set -euo pipefail

OUT=${OUT:-demo-output}
REPOSITORY="$OUT/repository"
PHOTOS=(examples/photos/coffee.jpg examples/photos/chelsea.jpg)
WEIGHTS=demo/weights

ports_taken() {  # prints the first of the given loopback ports that is taken, if any
    python - "$@" <<'PY'
import socket, sys
for port in map(int, sys.argv[1:]):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            print(port)
            break
PY
}

if [ -n "${GRPC_PORT:-}" ]; then
    HTTP_PORT=$((GRPC_PORT - 1)) METRICS_PORT=$((GRPC_PORT + 1))
    TAKEN=$(ports_taken "$GRPC_PORT" "$HTTP_PORT" "$METRICS_PORT")
    if [ -n "$TAKEN" ]; then
        echo "demo: port $TAKEN is taken (GRPC_PORT=$GRPC_PORT needs $HTTP_PORT..$METRICS_PORT free); pick another GRPC_PORT or leave it unset for free ports" >&2
        exit 2
    fi
else
    read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(python - <<'PY'
import socket
probes = [socket.socket() for _ in range(3)]
for probe in probes:
    probe.bind(("127.0.0.1", 0))
print(*(probe.getsockname()[1] for probe in probes))
for probe in probes:
    probe.close()
PY
)
fi
URL="127.0.0.1:${GRPC_PORT}"

rm -rf "$OUT"
mkdir -p "$OUT"

echo "== export: the demo models → $REPOSITORY/"
prodgen-export srvgg-x2-small --checkpoint "$WEIGHTS/srvgg-x2-demo.safetensors" --name upscaler-x2 --repository "$REPOSITORY"
prodgen-export fast-neural-style --checkpoint "$WEIGHTS/catalogue-look.safetensors" --name catalogue-look --repository "$REPOSITORY"
prodgen-export catalogue-dcgan --checkpoint "$WEIGHTS/catalogue-dcgan.safetensors" --name catalogue --repository "$REPOSITORY"
prodgen-export u2netp-demo --checkpoint "$WEIGHTS/cutout.safetensors" --name cutout --repository "$REPOSITORY"
DIFFUSION_STARTED=$SECONDS
# served defaults: the sampler settings the weights were judged with (demo/README.md)
prodgen-export stable-diffusion --checkpoint "$WEIGHTS/catalogue-diffusion" --name catalogue-diffusion --repository "$REPOSITORY" \
    --default-steps 20 --default-guidance 5 --default-scheduler dpmpp-2m
echo "demo: the diffusion export took $((SECONDS - DIFFUSION_STARTED)) s"

echo "== serve: embedded Triton on $URL"
prodgen serve --repository "$REPOSITORY" --grpc-port "$GRPC_PORT" \
    --http-port "$HTTP_PORT" --metrics-port "$METRICS_PORT" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    prodgen health --url "$URL" --timeout 2 > /dev/null 2>&1 && break
    kill -0 $SERVER 2>/dev/null || { echo "demo: the server stopped; its log ($OUT/server.log):" >&2; cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.5
done
prodgen health --url "$URL"
prodgen models --url "$URL"

echo "== call every model over gRPC"
python - "$URL" "$OUT" "${PHOTOS[@]}" <<'PY'
import subprocess, sys
from prodgen.client import ProdgenClient

url, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
with ProdgenClient(url) as client:
    models = client.models()
for model in models:
    target = f"{out}/{model.name}"
    if model.task in ("diffusion", "restage", "cutout"):  # diffusion, its restage model and the cutout: below
        continue
    if model.task == "generate":
        command = ["prodgen", "generate", model.name, "--seed", "0", "--count", "16"]
        if model.inputs_of("class"):  # one grid per product category
            for class_id in range(model.facts.num_classes or 1):
                grid = ["--class-id", str(class_id), "--out", f"{target}-class{class_id}.png"]
                subprocess.run([*command, *grid, "--url", url], check=True)
            continue
        command += ["--out", f"{target}.png"]
    elif len(model.inputs_of("image")) > 1:  # a content and a style image
        command = ["prodgen", "stylize", model.name, photos[0], "--style", photos[1], "--out", target]
    elif model.task == "upscale":
        command = ["prodgen", "upscale", model.name, *photos, "--out", target]
    else:
        command = ["prodgen", "stylize", model.name, *photos, "--out", target]
    subprocess.run([*command, "--url", url], check=True)
PY

echo "== cutout: the product of a real photo, its matte as alpha, at the photo's size"
prodgen cutout cutout "${PHOTOS[0]}" --out "$OUT/cutout/" --url "$URL"

echo "== restage a real photo: its product cut out on the server, a new scene drawn around it, at the photo's size"
prodgen restage catalogue-diffusion "on a wooden table" "${PHOTOS[0]}" --cutout cutout --out "$OUT/coffee-restaged.png" --url "$URL"

echo "== text to picture: captions a shop writes, pairs never trained on, a product restaged"
DIFFUSION_STARTED=$SECONDS
python -m demo.diffusion_pictures "$URL" "$OUT" catalogue-diffusion
echo "demo: the diffusion pictures took $((SECONDS - DIFFUSION_STARTED)) s"

echo "== bench: the served look network at 256x256, with a direct ONNX Runtime reference"
prodgen-bench served catalogue-look --url "$URL" --repository "$REPOSITORY" --size 256 --concurrency 1,4 \
    --warmup 0.5 --window 1 --min-requests 5 --max-windows 3 --ceiling-seconds 0.3 --out "$OUT/bench"

kill -TERM $SERVER 2>/dev/null || true
wait $SERVER 2>/dev/null || true
trap - EXIT
echo "== done: pictures are in $(cd "$OUT" && pwd)"
