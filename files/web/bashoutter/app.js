// Bashoutter GUI: plain ES module, no build step. The API URL comes from config.json (written by the
// playbook at deploy time); an override typed in the footer is kept in localStorage.
const OVERRIDE_KEY = "bashoutter.apiUrl";
const $ = (id) => document.getElementById(id);
let apiUrl = "";

async function loadConfig() {
  const override = localStorage.getItem(OVERRIDE_KEY);
  if (override) return override;
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) return (await res.json()).apiUrl || "";
  } catch (err) { /* fall through */ }
  return "";
}

function setApiUrl(url) {
  apiUrl = (url || "").replace(/\/+$/, "");
  $("api-url").textContent = apiUrl || "(not configured — set it below)";
  $("api-override").value = localStorage.getItem(OVERRIDE_KEY) || "";
}

async function api(method, path, body) {
  if (!apiUrl) throw new Error("No API URL: the deploy writes config.json, or set one at the bottom of the page.");
  const res = await fetch(apiUrl + path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const where = data && data.field ? ` (${data.field})` : "";
    throw new Error(`${res.status}: ${(data && data.message) || res.statusText}${where}`);
  }
  return data;
}

function haikuItem(h) {
  const li = document.createElement("li");
  li.className = "haiku";
  li.dataset.itemId = h.item_id;
  const verse = document.createElement("div");
  verse.className = "verse";
  verse.textContent = `${h.first}\n${h.second}\n${h.third}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const when = new Date(h.created_at);
  meta.textContent = `— ${h.username} · ${isNaN(when) ? h.created_at : when.toLocaleString()}`;
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like";
  like.title = "Like";
  like.innerHTML = `<span aria-hidden="true">♥</span><span class="count">${h.likes}</span>`;
  like.addEventListener("click", async () => {
    like.disabled = true;
    try {
      const out = await api("PATCH", `/haiku/${encodeURIComponent(h.item_id)}`);
      like.querySelector(".count").textContent = out.likes;
    } catch (err) {
      $("list-status").textContent = `Like failed: ${err.message}`;
    } finally {
      like.disabled = false;
    }
  });
  li.append(verse, like, meta);
  return li;
}

async function refresh() {
  const status = $("list-status");
  status.classList.remove("error");
  status.textContent = "Loading…";
  try {
    const items = await api("GET", "/haiku");
    $("haiku-list").replaceChildren(...items.map(haikuItem));
    $("count").textContent = `(${items.length})`;
    status.textContent = items.length ? "" : "No haiku yet — be the first.";
  } catch (err) {
    status.classList.add("error");
    status.textContent = `Could not load haiku: ${err.message}`;
  }
}

async function post(event) {
  event.preventDefault();
  const status = $("form-status");
  const fields = ["first", "second", "third", "username"];
  const body = Object.fromEntries(fields.map((f) => [f, $(f).value.trim()]));
  const missing = fields.find((f) => !body[f]);
  status.classList.remove("error");
  if (missing) {
    status.classList.add("error");
    status.textContent = `Please fill in ${missing}.`;
    $(missing).focus();
    return;
  }
  $("post-button").disabled = true;
  try {
    await api("POST", "/haiku", body);
    ["first", "second", "third"].forEach((f) => { $(f).value = ""; });
    status.textContent = "Posted.";
    await refresh();
  } catch (err) {
    status.classList.add("error");
    status.textContent = `Post failed: ${err.message}`;
  } finally {
    $("post-button").disabled = false;
  }
}

async function main() {
  setApiUrl(await loadConfig());
  $("post-form").addEventListener("submit", post);
  $("refresh-button").addEventListener("click", refresh);
  $("api-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const url = $("api-override").value.trim();
    if (url) localStorage.setItem(OVERRIDE_KEY, url); else localStorage.removeItem(OVERRIDE_KEY);
    setApiUrl(url || apiUrl);
    refresh();
  });
  $("api-reset").addEventListener("click", async () => {
    localStorage.removeItem(OVERRIDE_KEY);
    setApiUrl(await loadConfig());
    refresh();
  });
  await refresh();
}

main();
