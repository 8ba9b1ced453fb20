// The device pages' small enhancements: print and copy the backup codes.
// Without JavaScript the buttons stay hidden; the download link works anyway.

const codes = document.querySelector("[data-stepup-codes]");

function codeText() {
  return Array.from(codes.querySelectorAll("code"), (code) => code.textContent.trim()).join("\n");
}

if (codes) {
  const print = document.querySelector("[data-stepup-print]");
  if (print) {
    print.hidden = false;
    print.addEventListener("click", () => window.print());
  }
  const copy = document.querySelector("[data-stepup-copy]");
  if (copy && navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", async () => {
      await navigator.clipboard.writeText(codeText());
      copy.textContent = copy.dataset.stepupCopied;
    });
  }
}
