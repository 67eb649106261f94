// Live validation for the audience builder: as you type, the definition is
// checked and counted by the server; the form works the same without it.
(function () {
  "use strict";
  var form = document.querySelector("form[data-live]");
  if (!form || !window.fetch) { return; }
  var area = form.querySelector("textarea");
  var out = document.getElementById("live");
  var timer = null, seq = 0;
  area.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
  function check() {
    var mine = ++seq;
    var body = new URLSearchParams(new FormData(form));
    fetch(form.getAttribute("data-live"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (v) {
        if (mine !== seq) { return; }
        out.className = v.ok ? "ok" : "bad";
        out.textContent = v.ok ? v.size + " customers match" : v.error;
      })
      .catch(function () {});
  }
}());
