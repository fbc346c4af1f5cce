// Liên Thông console: the few things a page does in the browser besides checking proofs.
"use strict";
(function () {
  const print = document.getElementById("print-button");
  if (print) print.addEventListener("click", function () { window.print(); });
})();
