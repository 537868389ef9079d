// Sizes that come from figures (progress bars, the per-minute chart), read from data-width /
// data-height (percent) and set through the CSSOM: the Content-Security-Policy forbids style
// attributes, not this.
"use strict";
(function () {
  function percent(value) {
    const number = parseFloat(value);
    return Number.isFinite(number) ? Math.min(100, Math.max(0, number)) + "%" : "0%";
  }
  function size() {
    document.querySelectorAll("[data-width]").forEach(function (element) {
      element.style.width = percent(element.dataset.width);
    });
    document.querySelectorAll("[data-height]").forEach(function (element) {
      element.style.height = percent(element.dataset.height);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", size);
  } else {
    size();
  }
})();
