// The simulator's stand-in for Plaid's link-initialize.js: the same `Plaid.create(config)`
// and handler (`open`, `exit`, `destroy`, `submit`), the same callbacks (`onSuccess(public_token,
// metadata)`, `onExit(error, metadata)`, `onEvent(eventName, metadata)`, `onLoad()`), and Link
// itself in a full-window iframe served by the simulator, as Plaid's is.
(function () {
  "use strict";
  var origin = new URL(document.currentScript.src).origin;
  var frames = 0;

  function create(config) {
    if (!config || typeof config.token !== "string" || !config.token) {
      throw new Error("Plaid.create: a link token is required (config.token)");
    }
    var frame = null;

    function close() {
      window.removeEventListener("message", listen);
      if (frame) { frame.remove(); frame = null; }
    }
    function listen(e) {
      if (!frame || e.origin !== origin || e.source !== frame.contentWindow) return;
      var m = e.data || {};
      if (m.type === "event") {
        if (config.onEvent) config.onEvent(m.eventName, m.metadata || {});
      } else if (m.type === "success") {
        close();
        if (config.onSuccess) config.onSuccess(m.public_token, m.metadata || {});
      } else if (m.type === "exit") {
        close();
        if (config.onExit) config.onExit(m.error || null, m.metadata || {});
      }
    }
    var handler = {
      open: function () {
        if (frame) return;
        frames += 1;
        frame = document.createElement("iframe");
        frame.id = "plaid-link-iframe-" + frames;
        frame.title = "Plaid Link";
        frame.src = origin + "/link/ui?token=" + encodeURIComponent(config.token);
        frame.style.cssText =
          "position:fixed;top:0;left:0;width:100%;height:100%;border:0;z-index:2147483647;";
        window.addEventListener("message", listen);
        document.body.appendChild(frame);
      },
      exit: function () {
        if (!frame) return;
        close();
        if (config.onExit) config.onExit(null, { status: null, institution: null });
      },
      submit: function () {},
      destroy: close,
    };
    if (config.onLoad) setTimeout(config.onLoad, 0);
    return handler;
  }

  window.Plaid = { create: create };
})();
