// While a version trains, the list of versions updates in place every 5 s instead of the page reloading:
// a reload moved the keyboard's focus back to the top and had a screen reader read the page again from
// its start (WCAG 2.2.1). Focus and opened trial lists stay where they were; the end of training is said
// in the status line. Without JavaScript the page reloads itself as before (the <noscript> refresh).
(function () {
  var EVERY_MS = 5000;
  var status = document.getElementById("training-status");
  var live = document.getElementById("versions-live");
  if (!status || !live || !status.hasAttribute("data-refresh")) return;
  var off = status.querySelector("a");
  status.textContent = "A version is training; the list below updates itself every 5 seconds, leaving the keyboard's focus where it is: ";
  if (off) {
    off.textContent = "stop updating";
    status.appendChild(off);
    status.appendChild(document.createTextNode("."));
  }

  // The focused element, found again in the new list by what it is: a link by its address, a summary by its
  // words, else the first of its kind and class (the table's scrolling frame); else that frame itself.
  function same(old, fresh) {
    var candidates = Array.prototype.slice.call(fresh.querySelectorAll(old.tagName));
    var href = old.getAttribute("href");
    var found = candidates.filter(function (c) { return href ? c.getAttribute("href") === href : c.textContent === old.textContent; })[0] ||
      (href ? null : candidates.filter(function (c) { return c.className === old.className; })[0]);
    return found || fresh.querySelector(".scroll[tabindex]");
  }

  function update() {
    fetch(location.href, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : Promise.reject(response.status);
    }).then(function (html) {
      var page = new DOMParser().parseFromString(html, "text/html");
      var fresh = page.getElementById("versions-live");
      if (!fresh) { location.reload(); return; }  // signed out meanwhile: the server says where to go
      var focused = live.contains(document.activeElement) ? document.activeElement : null;
      var open = Array.prototype.map.call(live.querySelectorAll("details[open] > summary"), function (s) { return s.textContent; });
      fresh.querySelectorAll("details > summary").forEach(function (s) { if (open.indexOf(s.textContent) >= 0) s.parentNode.open = true; });
      var target = focused && same(focused, fresh);
      live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes).map(function (n) { return document.adoptNode(n); }));
      if (target) target.focus({ preventScroll: true });
      if (page.getElementById("training-status")) {
        setTimeout(update, EVERY_MS);
      } else {
        status.textContent = "Training has finished: the list below is up to date.";
      }
    }).catch(function () {
      setTimeout(update, EVERY_MS);  // a dropped request: try again at the next turn
    });
  }
  setTimeout(update, EVERY_MS);
})();
