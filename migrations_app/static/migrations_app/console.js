/* The console's own script, on every admin page (templates/admin/base_site.html). The
   Content-Security-Policy allows no inline script or event handler: behaviour is attached here.

   Copy buttons (`button.copy-id[data-copy]`): one click puts the id on the clipboard, and the
   button says "copied" for a moment (or "press Ctrl-C" where the browser refused, with the id
   selected on the page for it). */
"use strict";

(function () {
  const SHOWN_MS = 1500;

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyWithSelection(text) {
    // Older browsers, or a page served over plain HTTP to another host: no Clipboard API.
    const buffer = document.createElement("textarea");
    buffer.className = "copy-buffer";
    buffer.value = text;
    buffer.setAttribute("readonly", "");
    document.body.appendChild(buffer);
    buffer.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } finally {
      buffer.remove();
    }
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(() => copyWithSelection(text));
    }
    return copyWithSelection(text);
  }

  function show(button, state) {
    button.classList.remove("copied", "copy-failed");
    button.classList.add(state);
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(() => button.classList.remove(state), SHOWN_MS);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.copy-id");
    if (!button) {
      return;
    }
    event.preventDefault();
    copy(button.dataset.copy).then(
      () => show(button, "copied"),
      () => {
        const shown = button.parentElement.querySelector(".id-text, code");
        if (shown) {
          selectText(shown);
        }
        show(button, "copy-failed");
      },
    );
  });
})();
