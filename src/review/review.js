// podgate review: starts the player on a session page, makes the markers seek it, and
// searches the transcript. Served as /assets/review.js: the page's Content-Security-Policy
// allows no inline script. Recording text only ever reaches the DOM as text nodes.
"use strict";
(function () {
  const el = document.getElementById("player");
  let player = null;
  if (el && window.AsciinemaPlayer) {
    player = window.AsciinemaPlayer.create(el.dataset.cast, el, {
      fit: "width",
      preload: true,
      terminalFontSize: "small",
    });
    // For a reviewer's console (and the browser test): the player's API.
    window.podgateReview = { player };
  }

  // Markers: seek the player to the marker (it keeps playing if it was, else shows that
  // moment's screen).
  for (const a of document.querySelectorAll("#markers a[data-time], #marker-bar a[data-time]")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      const t = parseFloat(a.dataset.time);
      if (player && Number.isFinite(t)) {
        player.seek(t);
        el.scrollIntoView({ block: "nearest" });
      }
    });
  }

  // Transcript search: highlight every match (case-insensitive), Enter goes to the next.
  const input = document.getElementById("search");
  const pre = document.getElementById("transcript");
  const count = document.getElementById("search-count");
  if (!input || !pre) return;
  const original = pre.textContent;
  const MAX_MATCHES = 10000;
  let marks = [];
  let current = -1;
  let timer = null;

  function show(i) {
    if (marks.length === 0) return;
    if (current >= 0) marks[current].classList.remove("current");
    current = (i + marks.length) % marks.length;
    marks[current].classList.add("current");
    marks[current].scrollIntoView({ block: "nearest" });
    count.textContent = `${current + 1} of ${marks.length}${marks.length === MAX_MATCHES ? "+" : ""}`;
  }

  function search() {
    const q = input.value;
    marks = [];
    current = -1;
    pre.textContent = "";
    if (q === "") {
      pre.textContent = original;
      count.textContent = "";
      return;
    }
    const re = new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of original.matchAll(re)) {
      frag.append(original.slice(last, m.index));
      const mark = document.createElement("mark");
      mark.textContent = m[0];
      frag.append(mark);
      marks.push(mark);
      last = m.index + m[0].length;
      if (marks.length === MAX_MATCHES) break;
    }
    frag.append(original.slice(last));
    pre.append(frag);
    if (marks.length === 0) {
      count.textContent = "no match";
    } else {
      show(0);
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, 120);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      show(current + (ev.shiftKey ? -1 : 1));
    }
  });
})();
