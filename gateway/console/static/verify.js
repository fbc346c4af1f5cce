// Liên Thông console: check one audit entry in the browser, with Web Crypto only.
//
// 1. leaf hash = SHA-256(0x00 || leaf bytes)                            (RFC 9162 §2.1.1)
// 2. fold the inclusion proof with node = SHA-256(0x01 || left || right) (RFC 9162 §2.1.3.2)
// 3. the result must equal the root written in the signed checkpoint note, for the same tree size
// 4. the note's Ed25519 signature (C2SP signed-note) against the log's verifier key, when this
//    browser's Web Crypto has Ed25519; otherwise the page says the signature was checked on the server.
// "Verified" is shown only when all of this holds.
"use strict";

(function () {
  const verdict = document.getElementById("verdict");
  const steps = document.getElementById("verify-steps");
  const dataEl = document.getElementById("proof-data");
  const textsEl = document.getElementById("verify-texts");
  if (!verdict || !dataEl || !textsEl) return;
  const data = JSON.parse(dataEl.textContent);
  const T = JSON.parse(textsEl.textContent);
  const enc = new TextEncoder();

  function step(ok, text, detail) {
    const li = document.createElement("li");
    li.className = ok === true ? "ok" : ok === false ? "bad" : "info";
    li.textContent = (ok === true ? "✓ " : ok === false ? "✗ " : "• ") + text;
    if (detail) {
      const code = document.createElement("code");
      code.className = "hash";
      code.textContent = detail;
      li.appendChild(document.createElement("br"));
      li.appendChild(code);
    }
    steps.appendChild(li);
  }

  function finish(state, text) {
    verdict.dataset.state = state;
    verdict.textContent = text;
  }

  function b64(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function unhex(text) {
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 §2.1.3.2, with BigInt so that any index and size work.
  async function rootFromInclusion(index, size, leafHash, proof) {
    if (index >= size) return null;
    let fn = index, sn = size - 1n, r = leafHash;
    for (const p of proof) {
      if (sn === 0n) return null;
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n ? r : null;
  }

  // A C2SP signed note: text (ending in a newline), a blank line, signature lines "— name base64".
  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0) return null;
    const text = note.slice(0, split + 1);
    const lines = text.slice(0, -1).split("\n");
    const signatures = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 ")).map((l) => {
      const rest = l.slice(2), space = rest.indexOf(" ");
      return { name: rest.slice(0, space), blob: b64(rest.slice(space + 1)) };
    });
    if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) return null;
    return { text: enc.encode(text), origin: lines[0], size: BigInt(lines[1]), root: b64(lines[2]), signatures };
  }

  // verifier key: name+hex key id+base64(0x01 || 32-byte Ed25519 public key)
  async function checkSignature(note, vkey) {
    // the name has no "+", the key id is 8 hex digits; the base64 after them may hold "+" signs
    const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
    if (first < 0 || second < 0) return false;
    const name = vkey.slice(0, first), keyIdHex = vkey.slice(first + 1, second), keyB64 = vkey.slice(second + 1);
    const keyBytes = b64(keyB64);
    if (keyBytes[0] !== 1 || keyBytes.length !== 33) return false;
    const computedId = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), keyBytes))).slice(0, 4);
    if (hex(computedId) !== keyIdHex.toLowerCase()) return false;
    const sig = note.signatures.find((s) => s.name === name && hex(s.blob.slice(0, 4)) === keyIdHex.toLowerCase());
    if (!sig) return false;
    let key;
    try {
      key = await crypto.subtle.importKey("raw", keyBytes.slice(1), { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return null; // this browser has no Ed25519 in Web Crypto
    }
    try {
      return await crypto.subtle.verify({ name: "Ed25519" }, key, sig.blob.slice(4), note.text);
    } catch (e) {
      return null;
    }
  }

  async function run() {
    if (!window.crypto || !crypto.subtle) {
      finish("unsupported", T.unsupported);
      return;
    }
    const leaf = b64(data.leaf);
    const leafHash = await sha256(concat(Uint8Array.of(0), leaf));
    step(null, T.leafHash, hex(leafHash));
    const note = parseNote(data.note);
    if (!note || note.origin !== data.origin || note.size !== BigInt(data.size) || note.root.length !== 32) {
      step(false, T.noteBad);
      finish("not-verified", T.notVerified);
      return;
    }
    const root = await rootFromInclusion(BigInt(data.index), note.size, leafHash, data.proof.map(unhex));
    step(null, T.root, root ? hex(root) : "–");
    step(null, T.noteRoot, hex(note.root));
    const included = root !== null && equal(root, note.root);
    step(included, included ? T.inclusionOk : T.inclusionBad);
    const signature = await checkSignature(note, data.vkey);
    let signed;
    if (signature === null) {
      signed = data.serverSignatureOk === true;
      step(signed, signed ? T.sigServer : T.sigServerBad);
    } else {
      signed = signature;
      step(signed, signed ? T.sigBrowser : T.sigBad);
    }
    verdict.dataset.signature = signature === null ? "server" : "browser";
    if (included && signed) finish("verified", T.verified);
    else finish("not-verified", T.notVerified);
  }

  run().catch(function (e) {
    step(false, String(e));
    finish("not-verified", T.notVerified);
  });
})();
