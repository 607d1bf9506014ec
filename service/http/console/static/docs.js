// Swagger UI over this service's own OpenAPI document; loaded from the vendored bundle, no other host.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    // The page's own h1 and introduction say what this is; Swagger UI's info block would be a second h1.
    plugins: [function () { return { wrapComponents: { InfoContainer: function () { return function () { return null; }; } } }; }],
    // Swagger UI's server menu has a heading beside it but no label of its own: a screen reader would read it unnamed.
    onComplete: function () {
      var servers = document.getElementById("servers");
      if (servers && !servers.hasAttribute("aria-label")) servers.setAttribute("aria-label", "Server");
    },
  });
});
