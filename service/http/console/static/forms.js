// One submission per form: a second click while the first is on its way (a double click, a slow
// network) would train a second model or answer "already exists" for the draft the first created.
// Only POST forms: a GET form may stay on the page (a download). The guard lifts when the page comes
// back from the browser's history cache, and by itself after a few seconds (a stopped or failed load).
(function () {
  var HOLD_MS = 5000;
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
    // A page that answers a post (a form sent back with its errors, a confirmation left unticked) becomes its
    // plain address in the history as its form goes: Back to it then asks for the page again, instead of
    // Chromium's "Confirm Form Resubmission", whose resend would answer that the corrected draft already exists.
    // Only now, as it is left: reloading the page itself still keeps what it shows.
    if (document.documentElement.hasAttribute("data-answers-a-post") && window.history.replaceState) {
      window.history.replaceState(window.history.state, "", window.location.href);
    }
    // A stopped load (Esc) leaves the page as it was: the form works again once the hold is over.
    setTimeout(function () {
      delete form.dataset.sentAt;
      form.removeAttribute("aria-busy");
    }, HOLD_MS);
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent-at]").forEach(function (form) {
      delete form.dataset.sentAt;
      form.removeAttribute("aria-busy");
    });
  });
})();

