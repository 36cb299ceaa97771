// Keyboard shortcuts for a day of queue work, and images that enlarge. Every action stays reachable without
// them: each shortcut only does what a Tab and an Enter would (the pages list them under "Keyboard shortcuts").
"use strict";

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function zoom(button, on) {
  button.setAttribute("aria-pressed", String(on));
  button.closest("figure").classList.toggle("zoomed", on);
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element && event.target.closest("button.zoom");
  if (button) zoom(button, button.getAttribute("aria-pressed") !== "true");
});

const DECISIONS = { a: "approve", r: "reject", h: "home_visit" };

document.addEventListener("keydown", (event) => {
  const decision = document.getElementById("decision");
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && decision && decision.contains(event.target)) {
    event.preventDefault();
    decision.requestSubmit();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const key = event.key.toLowerCase();
  if (key === "n" && document.getElementById("claim-next")) {
    event.preventDefault();
    document.getElementById("claim-next").requestSubmit();
  } else if (key === "/" && document.getElementById("filters")) {
    event.preventDefault();
    document.querySelector("#filters select, #filters input:not([type=hidden])").focus();
  } else if (DECISIONS[key] && decision) {
    event.preventDefault();
    document.getElementById("decision-" + DECISIONS[key]).checked = true;
    document.getElementById("decision-reason").focus();
  } else if (key === "z") {
    const buttons = [...document.querySelectorAll("button.zoom")];
    const on = !buttons.some((b) => b.getAttribute("aria-pressed") === "true");
    buttons.forEach((b) => zoom(b, on));
  }
});
