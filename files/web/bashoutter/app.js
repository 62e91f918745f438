// Bashoutter GUI: plain ES module, no build step. The API URL comes from config.json (written by the
// playbook at deploy time); an override typed in the footer is kept in localStorage. With sign-in
// (config.json's signin.mode "cognito"), the page signs in with Cognito's InitiateAuth (USER_PASSWORD_AUTH)
// and sends the ID token in Authorization; the token lives in sessionStorage (this tab) until sign-out.
const OVERRIDE_KEY = "bashoutter.apiUrl";
const SESSION_KEY = "bashoutter.session";
const $ = (id) => document.getElementById(id);
let apiUrl = "";
let signin = { mode: "none" };
let session = null; // {idToken, username, sub, expires}

async function loadSettings() {
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) return await res.json();
  } catch (err) { /* fall through */ }
  return {};
}

async function loadConfig() {
  const settings = await loadSettings();
  if (settings.signin && typeof settings.signin === "object") signin = settings.signin;
  return localStorage.getItem(OVERRIDE_KEY) || settings.apiUrl || "";
}

// The claims of a JWT, read only to show who is signed in (the API verifies the token, not this page).
function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
  } catch (err) {
    return {};
  }
}

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && typeof saved.idToken === "string" && saved.expires > Date.now() / 1000) return saved;
  } catch (err) { /* ignore */ }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

function showSession() {
  const enabled = signin.mode === "cognito";
  $("signin-card").hidden = !enabled;
  if (!enabled) return;
  $("signin-form").hidden = Boolean(session);
  $("signed-in").hidden = !session;
  $("whoami").textContent = session ? session.username : "";
  $("post-button").disabled = !session;
  $("username").value = session && !$("username").value ? session.username : $("username").value;
}

async function signIn(event) {
  event.preventDefault();
  const status = $("signin-status");
  status.classList.remove("error");
  status.textContent = "Signing in…";
  try {
    const res = await fetch(`${String(signin.endpoint || "").replace(/\/+$/, "")}/`, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
      },
      body: JSON.stringify({
        AuthFlow: "USER_PASSWORD_AUTH",
        ClientId: String(signin.clientId || ""),
        AuthParameters: { USERNAME: $("signin-user").value.trim(), PASSWORD: $("signin-password").value },
      }),
    });
    const data = await res.json().catch(() => ({}));
    const result = data && data.AuthenticationResult;
    if (!res.ok || !result || typeof result.IdToken !== "string") {
      throw new Error((data && (data.message || data.__type)) || `${res.status}`);
    }
    const claims = claimsOf(result.IdToken);
    const name = text(claims["cognito:username"]) || text(claims.email) || text(claims.sub);
    session = { idToken: result.IdToken, username: name, sub: text(claims.sub), expires: Number(claims.exp) || 0 };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    $("signin-password").value = "";
    status.textContent = "";
    showSession();
    await refresh();
  } catch (err) {
    status.classList.add("error");
    status.textContent = `Sign-in failed: ${err.message}`;
  }
}

function signOut() {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  showSession();
  refresh();
}

function setApiUrl(url) {
  apiUrl = (url || "").replace(/\/+$/, "");
  $("api-url").textContent = apiUrl || "(not configured — set it below)";
  $("api-override").value = localStorage.getItem(OVERRIDE_KEY) || "";
}

async function api(method, path, body) {
  if (!apiUrl) throw new Error("No API URL: the deploy writes config.json, or set one at the bottom of the page.");
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (session && method !== "GET") headers.Authorization = session.idToken;
  const res = await fetch(apiUrl + path, {
    method,
    headers,
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
  if (h.author !== undefined) meta.textContent += ` · by ${text(h.author)}`;
  li.append(verse, like, meta);
  if (session && text(h.author) && text(h.author) === session.username) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary delete";
    remove.textContent = "Delete";
    remove.addEventListener("click", async () => {
      remove.disabled = true;
      try {
        await api("DELETE", `/haiku/${encodeURIComponent(text(h.item_id))}`);
        await refresh();
      } catch (err) {
        $("list-status").textContent = `Delete failed: ${err.message}`;
        remove.disabled = false;
      }
    });
    li.append(remove);
  }
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
  session = signin.mode === "cognito" ? loadSession() : null;
  showSession();
  $("signin-form").addEventListener("submit", signIn);
  $("signout-button").addEventListener("click", signOut);
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
