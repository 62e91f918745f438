"""Lab 7: recognise a handwritten digit with a PyTorch model that lives on EFS, not in the deployment package.

The zip holds this file only. torch (about 700 MB unpacked, far over Lambda's 250 MB package limit) and the
trained weights are on the EFS access point mounted at ``MOUNT_PATH`` (``/mnt/models``): the loader function put
torch under ``python/`` and the weights under ``model/``. At the start of an execution environment (the cold
start) this module puts ``python/`` first on ``sys.path``, imports torch from there and loads the model once;
every request after that reuses it (warm).

Routes (API Gateway proxy events): ``POST /predict`` with ``{"pixels": [...]}`` (784 numbers 0-1 or 0-255, or
28 rows of 28; white digit on black, as MNIST) or ``{"png": "<base64 PNG>"}`` (8-bit grayscale/RGB/RGBA, 28x28,
non-interlaced) returns ``{"digit", "probabilities", "timings", "cold_start"}``; ``GET /`` and ``GET /app.js``
serve the draw-a-digit page. A direct invoke with the same body as the event works too.
"""

import base64
import json
import os
import struct
import sys
import time
import zlib

MOUNT_PATH = os.environ.get("MOUNT_PATH", "/mnt/models")
MODEL_FILE = os.environ.get("MODEL_FILE", "model/mnist_fast.pt")
MEAN, STD = 0.1307, 0.3081
MAX_BODY = 64 * 1024
_started = time.perf_counter()
sys.path.insert(0, os.path.join(MOUNT_PATH, "python"))

import torch  # noqa: E402  (from EFS: the line above)
from torch import nn  # noqa: E402

torch.set_num_threads(1)
_IMPORT_S = time.perf_counter() - _started


class FastNet(nn.Module):
    """The network kumolab_workloads.mnist trains (config "fast"); the weights on EFS are its state_dict."""

    def __init__(self, c1=8, c2=32, hidden=64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _load_model():
    started = time.perf_counter()
    weights = torch.load(os.path.join(MOUNT_PATH, MODEL_FILE), map_location="cpu", weights_only=True)
    model = FastNet()
    model.load_state_dict(weights)
    model.eval()
    return model, time.perf_counter() - started


MODEL, _LOAD_S = _load_model()
_COLD = {"pending": True}


class BadInput(ValueError):
    pass


def _png_pixels(data):
    """A 28x28 8-bit PNG (grayscale, RGB or RGBA; not interlaced) as 784 luminance values 0-255."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise BadInput("png is not a PNG file")
    pos, chunks, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise BadInput("png has no IHDR chunk")
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if (width, height) != (28, 28) or depth != 8 or channels is None or interlace:
        raise BadInput("png must be 28x28, 8-bit grayscale/RGB/RGBA, not interlaced")
    raw = zlib.decompress(b"".join(chunks))
    stride, rows, previous = width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            predictor = {0: 0, 1: a, 2: b, 3: (a + b) // 2}.get(kind)
            if kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + predictor) & 0xFF
        rows.append(line)
        previous = line
    pixels = []
    for line in rows:
        for x in range(width):
            px = line[x * channels : (x + 1) * channels]
            pixels.append(px[0] if channels <= 2 else round(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]))
    return pixels


def parse_image(body):
    """784 floats in 0-1 from a request body, or BadInput saying what is wrong."""
    if not isinstance(body, dict):
        raise BadInput('the body must be a JSON object: {"pixels": [...]} or {"png": "<base64>"}')
    if "png" in body:
        try:
            values = _png_pixels(base64.b64decode(body["png"], validate=True))
        except (ValueError, TypeError, zlib.error, struct.error) as exc:
            raise BadInput(f"png: {exc}") from None
        scale = 255.0
    elif "pixels" in body:
        values = body["pixels"]
        if isinstance(values, list) and len(values) == 28 and all(isinstance(r, list) for r in values):
            values = [v for row in values for v in row]
        if not isinstance(values, list) or len(values) != 784:
            raise BadInput("pixels must be 784 numbers (or 28 rows of 28)")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
            raise BadInput("every pixel must be a number from 0 to 1 (or 0 to 255)")
        scale = 255.0 if max(values) > 1 else 1.0
    else:
        raise BadInput('give "pixels" (784 numbers) or "png" (a base64 28x28 PNG)')
    return [float(v) / scale for v in values]


def predict(pixels):
    started = time.perf_counter()
    x = torch.tensor(pixels, dtype=torch.float32).view(1, 1, 28, 28).sub_(MEAN).div_(STD)
    with torch.no_grad():
        probabilities = torch.softmax(MODEL(x), dim=1)[0]
    cold = _COLD.pop("pending", False)
    return {
        "digit": int(probabilities.argmax()),
        "probabilities": [round(float(p), 6) for p in probabilities],
        "cold_start": cold,
        "timings": {
            "inference_ms": round((time.perf_counter() - started) * 1000, 3),
            "torch_import_s": round(_IMPORT_S, 3),
            "model_load_s": round(_LOAD_S, 4),
        },
        "torch": {"version": torch.__version__, "from": os.path.dirname(torch.__file__)},
    }


PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static(name, content_type):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", name), "rb") as f:
        return {
            "statusCode": 200,
            "headers": dict(PAGE_HEADERS, **{"Content-Type": content_type, "Cache-Control": "no-cache"}),
            "body": f.read().decode(),
        }


def _json(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def handler(event, context):
    if "httpMethod" not in event:  # a direct invoke: the body itself
        try:
            return predict(parse_image(event))
        except BadInput as exc:
            return {"error": str(exc)}
    method, path = event.get("httpMethod"), event.get("resource") or event.get("path") or ""
    if method == "GET" and path in ("/", ""):
        return _static("index.html", "text/html; charset=utf-8")
    if method == "GET" and path == "/app.js":
        return _static("app.js", "text/javascript; charset=utf-8")
    if method != "POST" or path != "/predict":
        return _json(404, {"message": f"no route {method} {path}"})
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode("utf-8", "replace")
    if len(raw) > MAX_BODY:
        return _json(413, {"message": f"body over {MAX_BODY} bytes"})
    try:
        body = json.loads(raw or "null")
        return _json(200, predict(parse_image(body)))
    except ValueError as exc:
        return _json(400, {"message": str(exc)})
