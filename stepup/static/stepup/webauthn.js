// Passkeys and security keys for stepup's pages: an ES module, no inline script, CSP 'self' only.
//
// Verification: a <form data-stepup-webauthn="verify" data-begin-url="…"> (stepup/factors/webauthn.html).
// Its button asks the begin URL for the options of a ceremony bound to the form's challenge, runs
// navigator.credentials.get(), puts the credential (JSON) into the form's "credential" field and
// submits the form to the verify page, which checks it like any other factor.
//
// Registration: a <form data-stepup-webauthn="register" data-begin-url="…" data-complete-url="…"
// data-done-url="…"> (stepup/webauthn_register.html). Its button runs navigator.credentials.create()
// with the begin URL's options and posts the result to the complete URL.
//
// Every sentence shown comes from the page (data-msg-* attributes, translated server-side) or from
// the server's JSON "detail"; nothing here is in one language.

const b64urlToBuffer = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
};

const bufferToB64url = (buffer) => {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

const descriptors = (list) =>
  (list || []).map((item) => ({ ...item, id: b64urlToBuffer(item.id) }));

export function requestOptions(json) {
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

export function creationOptions(json) {
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    user: { ...json.user, id: b64urlToBuffer(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

export function credentialJSON(credential) {
  const response = credential.response;
  const json = {
    id: credential.id,
    rawId: bufferToB64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: bufferToB64url(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = bufferToB64url(response.attestationObject);
    json.response.transports = response.getTransports ? response.getTransports() : [];
  } else {
    json.response.authenticatorData = bufferToB64url(response.authenticatorData);
    json.response.signature = bufferToB64url(response.signature);
    if (response.userHandle) json.response.userHandle = bufferToB64url(response.userHandle);
  }
  return json;
}

const csrfToken = (form) => form.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";

async function postJSON(form, url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken(form) },
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = {};
  }
  return { status: response.status, data };
}

function show(form, message) {
  const status = form.querySelector("[data-stepup-webauthn-status]");
  if (status) {
    status.textContent = message;
    status.hidden = !message;
  }
}

const message = (form, name) => form.dataset[name] || "";

// A 401 from begin: step up first, then come back to this page.
function stepUpFirst(data) {
  if (typeof data.verify_url !== "string" || !data.verify_url.startsWith("/")) return false;
  const target = new URL(data.verify_url, window.location.origin);
  target.searchParams.set("next", window.location.pathname + window.location.search);
  window.location.assign(target.pathname + target.search);
  return true;
}

async function verify(form, button) {
  const challenge = form.querySelector("input[name=challenge]")?.value || "";
  const begun = await postJSON(form, form.dataset.beginUrl, { challenge });
  if (begun.status !== 200) {
    show(form, begun.data.detail || message(form, "msgFailed"));
    return;
  }
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: requestOptions(begun.data.publicKey) });
  } catch {
    show(form, message(form, "msgCancelled"));
    return;
  }
  form.querySelector("input[name=credential]").value = JSON.stringify(credentialJSON(credential));
  form.dataset.submitted = "1";
  form.submit();
}

async function register(form) {
  const begun = await postJSON(form, form.dataset.beginUrl, {});
  if (begun.status === 401 && stepUpFirst(begun.data)) return;
  if (begun.status !== 200) {
    show(form, begun.data.detail || message(form, "msgFailed"));
    return;
  }
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: creationOptions(begun.data.publicKey) });
  } catch {
    show(form, message(form, "msgCancelled"));
    return;
  }
  const name = form.querySelector("input[name=name]")?.value || "";
  const done = await postJSON(form, form.dataset.completeUrl, { credential: credentialJSON(credential), name });
  if (done.status !== 201) {
    show(form, done.data.detail || message(form, "msgFailed"));
    return;
  }
  show(form, message(form, "msgAdded"));
  const next = form.dataset.doneUrl;
  if (next && next.startsWith("/") && !next.startsWith("//")) window.location.assign(next);
}

function attach(form) {
  const button = form.querySelector("button[data-stepup-webauthn-start]");
  if (!button) return;
  if (!window.PublicKeyCredential || !navigator.credentials) {
    button.disabled = true;
    show(form, message(form, "msgUnsupported"));
    return;
  }
  button.hidden = false;
  const run = form.dataset.stepupWebauthn === "register" ? () => register(form) : () => verify(form, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    show(form, "");
    run()
      .catch(() => show(form, message(form, "msgFailed")))
      .finally(() => {
        if (!form.dataset.submitted) button.disabled = false;
      });
  });
}

document.querySelectorAll("form[data-stepup-webauthn]").forEach(attach);
