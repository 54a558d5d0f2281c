"""The preview page: one static HTML file with its CSS and script inline; the data come from sample.js.

Boxes are SVG over each chip with viewBox 0 0 1 1, so a box's rectangle is its normalised bbox times the
displayed image size, whatever size the browser gives the image.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'self' 'unsafe-inline'">
<title>satsft preview</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 12px 20px; }
header h1 { margin: 0 0 6px; font-size: 20px; }
#summary { font-size: 13px; opacity: .9; }
#charts img { background: #fff; margin: 8px 8px 0 0; max-width: 100%; border-radius: 4px; }
#controls { position: sticky; top: 0; background: #fff; padding: 10px 20px; border-bottom: 1px solid #ddd;
            z-index: 2; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
#controls button { border: 1px solid #bbb; background: #fff; border-radius: 12px; padding: 3px 10px;
                   cursor: pointer; font-size: 12px; }
#controls button.on { background: #1d2330; color: #fff; border-color: #1d2330; }
#controls .group { margin-right: 10px; }
#search { padding: 4px 8px; min-width: 220px; }
#count { font-size: 13px; margin-left: auto; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px; padding: 14px 20px; }
.card { background: #fff; border-radius: 6px; padding: 10px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
.card h2 { font-size: 13px; margin: 0 0 6px; word-break: break-all; }
.tag { display: inline-block; font-size: 11px; padding: 1px 7px; border-radius: 8px; background: #e4e7ee;
       margin-right: 4px; }
.images { display: flex; gap: 6px; flex-wrap: wrap; margin: 6px 0; }
.frame { position: relative; width: 224px; height: 224px; }
.frame img { width: 224px; height: 224px; display: block; image-rendering: pixelated; }
.frame svg { position: absolute; left: 0; top: 0; width: 224px; height: 224px; overflow: visible; }
.frame.gone { box-sizing: border-box; border: 2px dashed #c0392b; color: #c0392b; padding: 8px; font-size: 12px; overflow-wrap: anywhere; }
.msg { font-size: 12px; white-space: pre-wrap; margin: 4px 0; padding: 4px 6px; border-left: 3px solid #ccc; }
.msg.assistant { border-color: #4C78A8; background: #f2f6fb; }
.msg.system { border-color: #aaa; color: #555; }
.role { font-weight: bold; font-size: 11px; text-transform: uppercase; color: #667; }
details { font-size: 12px; }
table.meta { font-size: 11px; border-collapse: collapse; margin-top: 4px; }
table.meta td { border-top: 1px solid #eee; padding: 1px 6px; vertical-align: top; word-break: break-all; }
.absent { font-size: 12px; color: #a33; }
.tag.shared { background: #f6dcc8; color: #8a3b00; }
</style>
<script src="sample.js"></script>
</head>
<body>
<header><h1 id="title">satsft preview</h1><div id="summary"></div><div id="charts"></div></header>
<div id="controls"></div>
<main id="cards"></main>
<script>
(function () {
  const data = window.SATSFT_PREVIEW;
  const el = (tag, attrs, children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children || []) node.appendChild(c);
    return node;
  };
  const svgEl = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  document.getElementById("title").textContent = data.title + " preview";
  const r = data.report;
  const parts = [r.rows.total + " rows"];
  if (r.tiles) parts.push(r.tiles.in + " tiles in, " + r.tiles.with_rows + " with rows, " + r.tiles.rejected + " rejected");
  const rejects = Object.entries(r.rejects_by_reason || {});
  parts.push(rejects.length ? "rejects: " + rejects.map(([k, n]) => k + " " + n).join(", ") : "nothing rejected");
  parts.push(data.cards.length + " rows in this sample");
  document.getElementById("summary").textContent = parts.join(" \\u00b7 ");
  for (const chart of data.charts) document.getElementById("charts").appendChild(el("img", {src: chart, alt: chart}));

  const state = {task: "", split: "", profile: "", source: "", q: ""};
  const controls = document.getElementById("controls");
  const facets = [["task", "task"], ["split", "split"], ["profile", "profile"], ["source", "source"]];
  for (const [key, label] of facets) {
    const values = [...new Set(data.cards.map(c => c[key]).filter(v => v))].sort();
    if (!values.length) continue;
    const group = el("span", {class: "group"});
    group.appendChild(el("b", {text: label + ": "}));
    for (const v of ["", ...values]) {
      const n = v ? data.cards.filter(c => c[key] === v).length : data.cards.length;
      const b = el("button", {"data-facet": key, "data-value": v, text: (v || "all") + " (" + n + ")"});
      if (!v) b.classList.add("on");
      b.addEventListener("click", () => {
        state[key] = v;
        for (const o of controls.querySelectorAll('button[data-facet="' + key + '"]')) o.classList.toggle("on", o === b);
        render();
      });
      group.appendChild(b);
    }
    controls.appendChild(group);
  }
  const search = el("input", {id: "search", type: "search", placeholder: "search text and ids"});
  search.addEventListener("input", () => { state.q = search.value.toLowerCase(); render(); });
  controls.appendChild(search);
  const count = el("span", {id: "count"});
  controls.appendChild(count);

  function chipFrame(card, src) {
    const frame = el("div", {class: "frame"});
    frame.appendChild(el("img", {src: src, alt: card.id}));
    const svg = svgEl("svg", {viewBox: "0 0 1 1", preserveAspectRatio: "none"});
    for (const box of card.boxes) {
      const [x1, y1, x2, y2] = box.bbox;
      const colour = data.palette[box.label] || "#ff00ff";
      svg.appendChild(svgEl("rect", {x: x1, y: y1, width: x2 - x1, height: y2 - y1, fill: "none", stroke: colour,
                                      "stroke-width": 2, "vector-effect": "non-scaling-stroke",
                                      "data-label": box.label, class: "box"}));
    }
    frame.appendChild(svg);
    const labels = el("div", {style: "position:absolute;left:0;top:0;width:224px;height:224px;pointer-events:none"});
    for (const box of card.boxes) {
      labels.appendChild(el("span", {text: box.label, style: "position:absolute;font-size:10px;color:#fff;padding:0 2px;" +
        "left:" + (box.bbox[0] * 100) + "%;top:" + (box.bbox[1] * 100) + "%;background:" + (data.palette[box.label] || "#f0f")}));
    }
    frame.appendChild(labels);
    return frame;
  }
  function messageBlock(m) {
    const block = el("div", {class: "msg " + m.role});
    block.appendChild(el("div", {class: "role", text: m.role}));
    const start = m.text.indexOf("{");
    if (m.role === "user" && start >= 0 && m.text.indexOf("tim_modality_outputs") > 0) {
      const end = m.text.lastIndexOf("}") + 1;
      block.appendChild(document.createTextNode(m.text.slice(0, start)));
      const d = el("details", {}, [el("summary", {text: "TiM analytics JSON (" + (end - start) + " chars)"})]);
      d.appendChild(el("pre", {text: m.text.slice(start, end)}));
      block.appendChild(d);
      block.appendChild(document.createTextNode(m.text.slice(end)));
    } else {
      block.appendChild(el("span", {class: m.role === "assistant" ? "answer" : "text", text: m.text}));
    }
    return block;
  }
  const cards = data.cards.map(card => {
    const node = el("article", {class: "card", "data-task": card.task, "data-split": card.split,
                                "data-profile": card.profile, "data-source": card.source});
    node.appendChild(el("h2", {text: card.id}));
    for (const k of ["task", "split", "profile", "source"]) if (card[k]) node.appendChild(el("span", {class: "tag", text: card[k]}));
    if (card.shared_ground) node.appendChild(el("span", {class: "tag shared", text: "on shared ground",
      title: "a tile of another split shows this tile's ground too (metadata/shared_ground.jsonl): a model may have trained on it"}));
    const images = el("div", {class: "images"});
    card.images.forEach((src, i) => {
      if (!src) {  // an image the row names that could not be read when the page was made
        images.appendChild(el("div", {class: "frame gone", text: "image " + ((card.missing || {})[i] || "missing")}));
        return;
      }
      images.appendChild(i === card.chip ? chipFrame(card, src) :
        el("div", {class: "frame"}, [el("img", {src: src, alt: src})]));
    });
    node.appendChild(images);
    if (card.note) node.appendChild(el("div", {class: "absent", text: card.note}));
    for (const m of card.messages) node.appendChild(messageBlock(m));
    const meta = el("table", {class: "meta"});
    for (const [k, v] of Object.entries(card.metadata)) meta.appendChild(el("tr", {}, [el("td", {text: k}), el("td", {text: String(v)})]));
    node.appendChild(el("details", {}, [el("summary", {text: "metadata"}), meta]));
    node._search = (card.id + " " + card.messages.map(m => m.text).join(" ")).toLowerCase();
    node._card = card;
    return node;
  });
  const main = document.getElementById("cards");
  for (const c of cards) main.appendChild(c);
  function render() {
    let shown = 0;
    for (const node of cards) {
      const c = node._card;
      const ok = (!state.task || c.task === state.task) && (!state.split || c.split === state.split) &&
        (!state.profile || c.profile === state.profile) && (!state.source || c.source === state.source) &&
        (!state.q || node._search.includes(state.q));
      node.style.display = ok ? "" : "none";
      shown += ok;
    }
    count.textContent = shown + " of " + cards.length + " rows";
  }
  render();
})();
</script>
</body>
</html>
"""
