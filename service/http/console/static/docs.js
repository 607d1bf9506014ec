// Swagger UI over this service's own OpenAPI document; loaded from the vendored bundle, no other host.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    // Swagger UI's server menu has a heading beside it but no label of its own: a screen reader would read it unnamed.
    onComplete: function () {
      var servers = document.getElementById("servers");
      if (servers && !servers.hasAttribute("aria-label")) servers.setAttribute("aria-label", "Server");
    },
  });
});
