/* Tern web chat widget. Plain ES2020 classic script, no dependencies.
 * Embed: <script src="https://HOST/v1/channels/NAME/web/widget.js" data-title="Support"
 *          data-avatar="https://example.com/bot.png" data-open="true" async></script>
 * Only global: window.TernChat = { open(), close() }. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var src = script.src;
  var cut = src.indexOf("/v1/channels/");
  if (cut < 0) return;
  var base = src.slice(0, cut);
  var name = src.slice(cut + 13).split(/[/?#]/)[0];
  if (!name) return;
  var api = base + "/v1/channels/" + name + "/web";
  var storeKey = "tern-web:" + base + ":" + name;
  var title = script.getAttribute("data-title") || "Chat";
  var avatar = script.getAttribute("data-avatar");
  var startOpen = script.getAttribute("data-open") === "true";
  // Tern's own pages (the console's Try it): the chat inside an element of the page, with a
  // session the page was given, a flow to start, and a link to each reply's run.
  var mount = script.getAttribute("data-mount");
  var given = script.getAttribute("data-session");
  var givenExpires = Number(script.getAttribute("data-session-expires") || 0);
  var startFlow = script.getAttribute("data-start-flow") || "";
  var runLinks = script.getAttribute("data-run-links");
  // A chat of Tern's own pages goes with the operator's sign-in (its cookie); a visitors' chat
  // sends no cookie anywhere.
  var creds = mount ? "same-origin" : "omit";
  if (mount) storeKey += ":" + mount;
  if (given && (script.getAttribute("data-new") === "true" || !loadSessionFrom(storeKey))) {
    try { localStorage.setItem(storeKey, JSON.stringify({ session: given, expires_at: givenExpires })); } catch (e) { /* ignore */ }
  }

  // ---- state ----
  var session = loadSession();
  var lastSeq = 0;
  var seen = new Set();           // seqs rendered for the current session
  var outbox = new Map();         // message_id -> local visitor message
  var awaiting = new Set();       // message_ids sent, waiting for their contact entry
  var maxBotSeq = -1;
  var maxContactSeq = -1;
  var unread = 0;
  var isOpen = false;
  var creating = null;            // in-flight session creation promise
  var streamCtl = null;
  var streamRunning = false;
  var wake = null;                // resolves the stream back-off sleep early
  var root, launcher, badge, panel, scroller, log, typing, input, sendBtn;

  // ---- small helpers ----
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    c.getRandomValues(b);
    return Array.from(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }
  function loadSessionFrom(key) {
    try {
      var s = JSON.parse(localStorage.getItem(key) || "null");
      return s && typeof s.session === "string" && s.expires_at * 1000 > Date.now() + 30000 ? s : null;
    } catch (e) { return null; }
  }
  function loadSession() {
    if (mount && given && !loadSessionFrom(storeKey)) return { session: given, expires_at: givenExpires };
    try {
      var s = JSON.parse(localStorage.getItem(storeKey) || "null");
      if (s && typeof s.session === "string" && s.expires_at * 1000 > Date.now() + 30000) return s;
      localStorage.removeItem(storeKey);
    } catch (e) { /* storage unavailable */ }
    return null;
  }
  function saveSession(s) {
    session = s;
    try { localStorage.setItem(storeKey, JSON.stringify(s)); } catch (e) { /* ignore */ }
  }
  function dropSession() {
    session = null;
    try { localStorage.removeItem(storeKey); } catch (e) { /* ignore */ }
    if (streamCtl) streamCtl.abort();
  }
  function validSession() {
    if (session && session.expires_at * 1000 <= Date.now()) dropSession();
    return session;
  }
  function req(path, opts) {
    opts = opts || {};
    var h = { Accept: "application/json" };
    if (opts.body != null) h["Content-Type"] = "application/json";
    if (opts.auth) h.Authorization = "Bearer " + opts.auth;
    return fetch(api + path, {
      method: opts.method || "GET",
      headers: h,
      body: opts.body != null ? JSON.stringify(opts.body) : undefined,
      mode: "cors",
      credentials: creds,
      cache: "no-store",
      signal: opts.signal
    });
  }
  function errText(res) {
    return res.json().then(function (j) {
      return (j && (typeof j.error === "string" ? j.error : j.error && j.error.message)) || "Error " + res.status;
    }, function () { return "Error " + res.status; });
  }

  // ---- sessions ----
  function ensureSession() {
    if (validSession()) return Promise.resolve(session);
    if (!creating) {
      creating = req("/sessions", { method: "POST", body: {} }).then(function (res) {
        if (!res.ok) {
          return errText(res).then(function (m) {
            var e = new Error(m); e.status = res.status; throw e;
          });
        }
        return res.json();
      }).then(function (j) {
        newConversation();
        saveSession({ session: j.session, expires_at: j.expires_at });
        startStream();
        return session;
      }).finally(function () { creating = null; });
    }
    return creating;
  }
  // A new session may be a new conversation: forget seqs, keep what is shown above.
  function newConversation() {
    lastSeq = 0; seen.clear(); maxBotSeq = maxContactSeq = -1;
    if (log) Array.prototype.forEach.call(log.children, function (c) {
      if (c._k !== Infinity) c._k = -Infinity;
    });
  }

  // ---- history ----
  // Read pages (the server returns at most a few hundred entries a time) until it has no more.
  async function loadHistory() {
    var s = validSession();
    if (!s) return;
    try {
      for (var page = 0; page < 20; page++) {
        var res = await req("/history" + (lastSeq ? "?after=" + lastSeq : ""), { auth: s.session });
        if (res.status === 401) { if (session === s) dropSession(); return; }
        if (!res.ok) break;
        var j = await res.json();
        if (session !== s) break;
        var list = j.entries || [];
        list.forEach(function (e) { handleEntry(e, true); });
        if (typeof j.last_seq === "number" && j.last_seq > lastSeq) lastSeq = j.last_seq;
        if (list.length < 100) break;
      }
    } catch (e) { unreachable(); /* the stream replays what is missing once it answers */ }
    startStream();
  }

  // ---- stream (SSE over fetch) ----
  function startStream() {
    if (streamRunning) { if (wake) wake(); return; }
    if (!validSession()) return;
    streamRunning = true;
    streamLoop().finally(function () { streamRunning = false; });
  }
  async function streamLoop() {
    var delay = 1000;
    while (validSession()) {
      var s = session;
      streamCtl = new AbortController();
      try {
        var res = await fetch(api + "/stream?after=" + lastSeq, {
          headers: { Authorization: "Bearer " + s.session, Accept: "text/event-stream" },
          mode: "cors", credentials: creds, cache: "no-store", signal: streamCtl.signal
        });
        if (res.status === 401) { if (session === s) dropSession(); break; }
        if (!res.ok || !res.body) throw new Error("stream " + res.status);
        var reader = res.body.getReader();
        var dec = new TextDecoder();
        var buf = "", data = [], ev = "", id = "";
        for (;;) {
          var r = await reader.read();
          if (r.done) break;
          buf += dec.decode(r.value, { stream: true });
          var lines = buf.split(/\r\n|\r|\n/);
          buf = lines.pop();
          // a lone trailing "\r" may be half of "\r\n": keep parsing consistent
          for (var i = 0; i < lines.length; i++) {
            var line = lines[i];
            if (line === "") {
              if (data.length && (ev === "" || ev === "entry")) {
                try {
                  var entry = JSON.parse(data.join("\n"));
                  if (entry.seq == null && id !== "") entry.seq = Number(id);
                  handleEntry(entry, false);
                  delay = 1000;
                } catch (e) { /* bad event: skip */ }
              }
              data = []; ev = "";
              continue;
            }
            if (line[0] === ":") continue;
            var c = line.indexOf(":");
            var field = c < 0 ? line : line.slice(0, c);
            var val = c < 0 ? "" : line.slice(c + 1);
            if (val[0] === " ") val = val.slice(1);
            if (field === "data") data.push(val);
            else if (field === "event") ev = val;
            else if (field === "id") id = val;
          }
        }
      } catch (e) { /* network error or abort: reconnect */ }
      if (!validSession()) break;
      if (session !== s) { delay = 1000; continue; }
      await new Promise(function (r) { wake = r; setTimeout(r, delay); });
      wake = null;
      delay = Math.min(delay * 2, 30000);
    }
  }

  // ---- entries ----
  function handleEntry(e, fromHistory) {
    var seq = Number(e.seq);
    if (!isFinite(seq) || seen.has(seq)) return;
    seen.add(seq);
    if (seq > lastSeq) lastSeq = seq;
    if (e.from === "contact") {
      if (seq > maxContactSeq) maxContactSeq = seq;
      var m = outbox.get(e.message_id);
      if (m) {
        outbox.delete(e.message_id);
        setState(m, "delivered");
        place(m.node, seq);
      } else {
        var n = msgNode("visitor", e.display || e.text, e.at_ms);
        n.classList.add("tern-delivered");
        place(n, seq);
      }
      awaiting.delete(e.message_id);
      updateTyping();
    } else {
      var b = msgNode("bot", e.text, e.at_ms);
      var ch = Array.isArray(e.choices) ? e.choices : [];
      if (ch.length) {
        var g = el("div", "tern-choices");
        g.setAttribute("role", "group");
        g.setAttribute("aria-label", "Choices");
        g._seq = seq;
        ch.forEach(function (c) {
          var btn = el("button", "tern-choice", c.title || c.payload);
          btn.type = "button";
          btn.addEventListener("click", function () {
            disableChoices(Infinity);
            send(String(c.payload != null ? c.payload : c.title), c.title || String(c.payload));
          });
          g.appendChild(btn);
        });
        b.appendChild(g);
      }
      if (runLinks && e.run_id) {
        var r = el("a", "tern-run", "run");
        r.href = runLinks + encodeURIComponent(e.run_id);
        b.appendChild(r);
      }
      if (seq > maxBotSeq) maxBotSeq = seq;
      place(b, seq);
      if (!fromHistory && !isOpen) { unread++; updateBadge(); }
    }
    // only the latest bot entry keeps live choices, and only until the visitor answers
    disableChoices(Math.max(maxBotSeq, maxContactSeq + 1) - 1);
  }
  function disableChoices(upTo) {
    if (!log) return;
    log.querySelectorAll(".tern-choices").forEach(function (g) {
      if (!(g._seq > upTo) || g.closest(".tern-msg")._k === -Infinity) {
        g.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }
    });
  }
  function linkify(parent, text) {
    var re = /https?:\/\/[^\s<>"']+/g, last = 0, m;
    while ((m = re.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]}]+$/, "");
      if (/^https?:\/\/[^/]/.test(url)) {
        parent.appendChild(document.createTextNode(text.slice(last, m.index)));
        var a = el("a", "tern-link", url);
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        parent.appendChild(a);
        last = m.index + url.length;
        re.lastIndex = last;
      }
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }
  function msgNode(who, text, atMs) {
    var n = el("div", "tern-msg tern-msg-" + who);
    var b = el("div", "tern-bubble");
    if (who === "bot") linkify(b, String(text || "")); else b.textContent = String(text || "");
    n.appendChild(el("span", "tern-sr", who === "bot" ? title + ": " : "You: "));
    if (atMs) n.title = new Date(atMs).toLocaleString();
    n.appendChild(b);
    return n;
  }
  // Keep the log ordered: earlier conversations (-Infinity), then by seq, then unsent (Infinity).
  function place(node, k) {
    node._k = k;
    if (!log) return;
    var kids = log.children, before = null;
    for (var i = 0; i < kids.length; i++) {
      if (kids[i] !== node && kids[i]._k > k) { before = kids[i]; break; }
    }
    if (node.nextSibling !== before || node.parentNode !== log) log.insertBefore(node, before);
    scrollDown();
  }
  function scrollDown() {
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }
  // A request the browser could not complete: the server is down or elsewhere, or it refused
  // this page's origin (the browser hides which). Said once, with what to check.
  var warned = false;
  function unreachable() {
    if (warned) return;
    warned = true;
    if (window.console) {
      console.warn("Tern chat: " + api + " did not answer this page. Either the server is not reachable at that " +
        "address (check tern serve's --public-url), or this page's origin, " + location.origin + ", is not one " +
        "of the channel's allowed origins (tern channels add " + name + " --kind web --origin " + location.origin +
        " --update, with every other origin too).");
    }
    sysLine("The chat cannot reach its server right now.");
  }
  function sysLine(text) {
    var n = el("div", "tern-msg tern-system tern-error", text);
    place(n, Infinity);
  }

  // ---- sending ----
  function send(text, display) {
    if (!text.trim()) return;
    disableChoices(Infinity);
    var m = { id: uuid(), text: text, display: display, node: msgNode("visitor", display || text) };
    m.node.setAttribute("data-message-id", m.id);
    outbox.set(m.id, m);
    place(m.node, Infinity);
    deliver(m);
  }
  function setState(m, st) {
    if (m.state === "delivered") return;
    m.state = st;
    var c = m.node.classList;
    c.remove("tern-pending", "tern-sent", "tern-failed", "tern-rejected");
    c.add("tern-" + st);
    var old = m.node.querySelector(".tern-note");
    if (old) old.remove();
    if (st === "delivered" || st === "sent") m.node.setAttribute("aria-busy", "false");
    else m.node.setAttribute("aria-busy", st === "pending" ? "true" : "false");
  }
  function note(m, text, retry) {
    var n = el("div", "tern-note" + (retry ? "" : " tern-error"), text);
    if (retry) {
      var b = el("button", "tern-retry", "Retry");
      b.type = "button";
      b.addEventListener("click", function () { deliver(m); });
      n.appendChild(b);
    }
    m.node.appendChild(n);
    scrollDown();
  }
  async function deliver(m) {
    setState(m, "pending");
    awaiting.add(m.id);
    updateTyping();
    var body = { message_id: m.id, text: m.text };
    if (startFlow) { body.start_flow = startFlow; startFlow = ""; }
    if (m.display != null && m.display !== m.text) body.display = m.display;
    var tries = 0, reauth = 0, waits = 0;
    for (;;) {
      var res = null, err = null;
      try {
        var s = await ensureSession();
        res = await req("/messages", { method: "POST", auth: s.session, body: body });
      } catch (e) {
        err = e;
        if (e.status >= 400 && e.status < 500 && e.status !== 429) {
          return fail(m, e.message);
        }
        if (!e.status) unreachable();
      }
      if (m.state === "delivered") return;
      if (res && (res.status === 200 || res.status === 202 || res.ok)) {
        setState(m, "sent");
        return;
      }
      if (res && res.status === 401 && reauth++ < 3) {
        if (session && session.session === s.session) dropSession();
        continue;
      }
      if (res && res.status === 429 && waits++ < 20) {
        var ra = parseFloat(res.headers.get("Retry-After"));
        await sleep((isFinite(ra) && ra >= 0 ? ra : 5) * 1000);
        continue;
      }
      if (err || !res || res.status >= 500 || res.status === 401 || res.status === 429) {
        if (++tries >= 5) {
          awaiting.delete(m.id);
          updateTyping();
          setState(m, "failed");
          note(m, "Not sent \u2014 ", true);
          return;
        }
        await sleep(1000 * Math.pow(2, tries - 1));
        continue;
      }
      return fail(m, await errText(res));
    }
  }
  function fail(m, text) {
    awaiting.delete(m.id);
    outbox.delete(m.id);
    updateTyping();
    setState(m, "rejected");
    note(m, text, false);
  }
  function submit() {
    var t = input.value;
    if (!t.trim()) return;
    input.value = "";
    grow();
    send(t);
  }

  // ---- UI ----
  function updateTyping() {
    if (!typing) return;
    typing.hidden = awaiting.size === 0;
    if (!typing.hidden) scrollDown();
  }
  function updateBadge() {
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = unread === 0;
  }
  function grow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  }
  function open() {
    if (!root) { startOpen = true; return; }
    isOpen = true;
    panel.hidden = false;
    root.classList.add("tern-open");
    launcher.setAttribute("aria-label", "Close chat");
    launcher.setAttribute("aria-expanded", "true");
    unread = 0;
    updateBadge();
    scrollDown();
    input.focus();
    if (!validSession()) ensureSession().catch(function (e) {
      if (e.status) sysLine(e.message);
    });
  }
  function close() {
    if (!root) { startOpen = false; return; }
    var had = panel.contains(document.activeElement);
    isOpen = false;
    panel.hidden = true;
    root.classList.remove("tern-open");
    launcher.setAttribute("aria-label", "Open chat");
    launcher.setAttribute("aria-expanded", "false");
    if (had) launcher.focus();
  }
  function svg(d) {
    var ns = "http://www.w3.org/2000/svg";
    var s = document.createElementNS(ns, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", d);
    s.appendChild(p);
    return s;
  }
  function build() {
    var link = el("link");
    link.rel = "stylesheet";
    link.href = api + "/widget.css";
    document.head.appendChild(link);

    root = el("div", "tern-chat");
    var uid = "tern-" + Math.random().toString(36).slice(2, 8);

    panel = el("div", "tern-panel");
    panel.id = uid + "-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", title);

    var head = el("div", "tern-header");
    if (avatar) {
      var img = el("img", "tern-avatar");
      img.alt = "";
      img.src = avatar;
      img.addEventListener("error", function () { img.remove(); });
      head.appendChild(img);
    }
    head.appendChild(el("div", "tern-title", title));
    var x = el("button", "tern-close");
    x.type = "button";
    x.setAttribute("aria-label", "Close chat");
    x.appendChild(svg("M6 6l12 12M18 6L6 18"));
    x.addEventListener("click", close);
    head.appendChild(x);

    scroller = el("div", "tern-scroll");
    log = el("div", "tern-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Messages");
    typing = el("div", "tern-typing");
    typing.hidden = true;
    typing.appendChild(el("span", "tern-sr", "Typing"));
    for (var i = 0; i < 3; i++) typing.appendChild(el("span", "tern-dot"));
    scroller.appendChild(log);
    scroller.appendChild(typing);

    var form = el("form", "tern-form");
    input = el("textarea", "tern-input");
    input.rows = 1;
    input.maxLength = 2000;
    input.placeholder = "Type a message\u2026";
    input.setAttribute("aria-label", "Message");
    input.addEventListener("input", grow);
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submit();
      }
    });
    sendBtn = el("button", "tern-send", "Send");
    sendBtn.type = "submit";
    form.addEventListener("submit", function (e) { e.preventDefault(); submit(); input.focus(); });
    form.appendChild(input);
    form.appendChild(sendBtn);

    panel.appendChild(head);
    panel.appendChild(scroller);
    panel.appendChild(form);
    panel.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.stopPropagation(); close(); launcher.focus(); }
    });

    launcher = el("button", "tern-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-label", "Open chat");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", panel.id);
    var ic = svg("M4 5h16v11H9l-5 4z");
    ic.classList.add("tern-icon-chat");
    launcher.appendChild(ic);
    ic = svg("M6 6l12 12M18 6L6 18");
    ic.classList.add("tern-icon-x");
    launcher.appendChild(ic);
    badge = el("span", "tern-badge");
    badge.id = uid + "-badge";
    badge.hidden = true;
    launcher.setAttribute("aria-describedby", badge.id);
    launcher.appendChild(badge);
    launcher.addEventListener("click", function () { if (isOpen) close(); else open(); });

    root.appendChild(panel);
    var host = mount && document.querySelector(mount);
    if (host) {
      // Inline: always open, no launcher.
      root.classList.add("tern-inline");
      x.remove();
      launcher.hidden = true;
      root.appendChild(launcher);
      host.appendChild(root);
      startOpen = true;
    } else {
      root.appendChild(launcher);
      document.body.appendChild(root);
    }

    // anything rendered before the DOM existed is re-placed now
    if (startOpen) open();
    loadHistory();
  }

  window.TernChat = { open: open, close: close };
  if (document.body) build();
  else document.addEventListener("DOMContentLoaded", build);
})();
