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

// A like count as shown: a non-negative integer whatever the API sent.
function likeCount(value) {
  const n = Number(value);
  return String(Number.isSafeInteger(n) && n >= 0 ? n : 0);
}

// Text from the API as shown: a string (a hostile or broken API may send anything).
const text = (value) => (typeof value === "string" ? value : "");

function haikuItem(h) {
  const li = document.createElement("li");
  li.className = "haiku";
  li.dataset.itemId = text(h.item_id);
  const verse = document.createElement("div");
  verse.className = "verse";
  verse.textContent = `${text(h.first)}\n${text(h.second)}\n${text(h.third)}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const when = new Date(text(h.created_at));
  meta.textContent = `— ${text(h.username)} · ${isNaN(when) ? text(h.created_at) : when.toLocaleString()}`;
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like";
  like.title = "Like";
  // Built with createElement/textContent, never from markup: the API URL can be overridden by the
  // user (a classmate's API), so nothing an API sends is trusted as HTML.
  const heart = document.createElement("span");
  heart.setAttribute("aria-hidden", "true");
  heart.textContent = "♥";
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = likeCount(h.likes);
  like.append(heart, count);
  like.addEventListener("click", async () => {
    like.disabled = true;
    try {
      const out = await api("PATCH", `/haiku/${encodeURIComponent(text(h.item_id))}`);
      count.textContent = likeCount(out && out.likes);
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
    const data = await api("GET", "/haiku");
    const items = Array.isArray(data) ? data.filter((h) => h && typeof h === "object") : [];
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
