// Lab 7's draw-a-digit page: a 280x280 canvas, downsampled to the 28x28 grayscale MNIST expects, sent to
// POST predict on the same stage. Results are written with textContent only (no innerHTML).
"use strict";
(function () {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const status = document.getElementById("status");
  const digit = document.getElementById("digit");
  const bars = document.getElementById("bars");
  let drawing = false;

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    digit.textContent = "?";
    bars.replaceChildren();
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
  }

  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    ctx.beginPath();
    ctx.moveTo(...point(event));
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.strokeStyle = "#fff";
    ctx.lineTo(...point(event));
    ctx.stroke();
  });
  window.addEventListener("pointerup", () => { drawing = false; });

  // 28x28 luminance in 0-1: average each 10x10 block of the canvas.
  function pixels() {
    const small = document.createElement("canvas");
    small.width = 28;
    small.height = 28;
    const sctx = small.getContext("2d");
    sctx.drawImage(pad, 0, 0, 28, 28);
    const data = sctx.getImageData(0, 0, 28, 28).data;
    const out = [];
    for (let i = 0; i < data.length; i += 4) out.push(Math.round((data[i] / 255) * 1000) / 1000);
    return out;
  }

  function show(result) {
    digit.textContent = String(result.digit);
    bars.replaceChildren();
    result.probabilities.forEach((p, d) => {
      const row = document.createElement("div");
      row.className = "bar";
      row.dataset.digit = String(d);
      const label = document.createElement("span");
      label.textContent = `${d} ${(100 * p).toFixed(1).padStart(5)}%`;
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${Math.max(1, Math.round(200 * p))}px`;
      row.append(label, fill);
      bars.append(row);
    });
    const t = result.timings || {};
    status.textContent = `${result.cold_start ? "cold start" : "warm"}; inference ${t.inference_ms} ms`;
  }

  async function predict() {
    status.textContent = "Asking the model...";
    try {
      const response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ pixels: pixels() }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
      show(body);
    } catch (error) {
      status.textContent = `Error: ${error.message}`;
    }
  }

  document.getElementById("predict").addEventListener("click", predict);
  document.getElementById("clear").addEventListener("click", clear);
  window.kumolabDigitPad = { pixels, predict };
  clear();
})();
