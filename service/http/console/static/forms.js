// One submission per form: a second click while the first is on its way (a double click, a slow
// network) would train a second model or answer "already exists" for the draft the first created.
// Only POST forms: a GET form may stay on the page (a download), and the page can come back from the
// browser's history cache, so the guard lifts when it does, or after a while if the request failed.
(function () {
  var HOLD_MS = 15000;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
    var sent = Number(form.dataset.sentAt || 0);
    if (sent && Date.now() - sent < HOLD_MS) {
      event.preventDefault();
      return;
    }
    form.dataset.sentAt = String(Date.now());
    form.setAttribute("aria-busy", "true");
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent-at]").forEach(function (form) {
      delete form.dataset.sentAt;
      form.removeAttribute("aria-busy");
    });
  });
})();
