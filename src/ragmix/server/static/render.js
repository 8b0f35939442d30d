// Drawing answers: sources with prior and posterior, quoted spans, the per-token heat map.
// Text from the collection is only ever set as text (never as HTML).

export function el(tag, { cls, text, title } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  if (title) node.title = title;
  for (const child of children) node.append(child);
  return node;
}

// One colour per passage (1-based n), spread around the hue circle by the golden angle.
export function passageColour(n, alpha = 1) {
  return `hsl(${Math.round((n - 1) * 137.508) % 360} 70% 50% / ${alpha})`;
}

function fmt(p) {
  return p === null || p === undefined ? "—" : p.toFixed(3);
}

function bar(p) {
  const fill = el("span");
  fill.style.width = `${Math.round(100 * Math.max(0, Math.min(1, p || 0)))}%`;
  return el("span", { cls: "bar" }, [fill]);
}

// `text` with the [start, end) ranges in <mark>; ranges may come in any order and overlap.
export function highlighted(text, ranges) {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const nodes = [];
  let at = 0;
  for (const [start, end] of sorted) {
    const from = Math.max(start, at);
    if (end <= from) continue;
    if (from > at) nodes.push(document.createTextNode(text.slice(at, from)));
    nodes.push(el("mark", { text: text.slice(from, end) }));
    at = end;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

function passageItem(hit, n, { prior, posterior, ranges = [], cited = false } = {}) {
  const swatch = el("span", { cls: "swatch" });
  swatch.style.background = passageColour(n);
  const head = el("div", { cls: "head" }, [
    el("span", {}, [swatch, el("span", { cls: "title", text: hit.title || hit.doc_id })]),
    el("span", { cls: "source", text: `${hit.source} · chars ${hit.start}-${hit.end}` }),
  ]);
  const probs = el("div", { cls: "probs" });
  if (prior !== undefined) {
    probs.append(el("span", { text: `prior ${fmt(prior)}`, title: "p(z|x): before the answer" },
                    [bar(prior)]));
  }
  if (posterior !== undefined) {
    probs.append(el("span", { text: `posterior ${fmt(posterior)}`,
                              title: "p(z|x,y): given the answer" }, [bar(posterior)]));
  }
  const item = el("li", { cls: cited ? "cited" : "" },
                  [head, probs, el("p", { cls: "text" }, highlighted(hit.text, ranges))]);
  item.value = n;
  item.dataset.n = String(n);
  return item;
}

// The passages as retrieved, before the answer: prior only.
export function renderRetrieval(list, hits, prior) {
  list.replaceChildren(...hits.map((hit, i) => passageItem(hit, i + 1, { prior: prior[i] })));
}

// The answer's passages, best first, with prior, posterior and each quote marked.
export function renderSources(list, answer) {
  const hits = answer.hits || [];
  const prior = answer.prior && answer.prior.length ? answer.prior : hits.map((h) => h.prob);
  const posterior = answer.posterior && answer.posterior.length ? answer.posterior : null;
  const order = hits.map((_, i) => i);
  if (posterior) order.sort((a, b) => posterior[b] - posterior[a]);
  const cited = new Set([...(answer.cited || []), ...(answer.quotes || []).map((q) => q.hit)]);
  list.replaceChildren(...order.map((i) => passageItem(hits[i], i + 1, {
    prior: prior[i],
    posterior: posterior ? posterior[i] : null,
    ranges: (answer.quotes || []).filter((q) => q.hit === i + 1).map((q) => [q.start, q.end]),
    cited: cited.has(i + 1),
  })));
}

// Search hits: rank, p(z|x) and score.
export function renderHits(list, hits) {
  list.replaceChildren(...hits.map((hit) => {
    const item = passageItem(hit, hit.rank, { prior: hit.prob });
    item.querySelector(".probs").append(el("span", { text: `score ${hit.score.toFixed(3)}` }));
    return item;
  }));
}

// The RAG paper's Figure 2: each answer token coloured by the passage its posterior favours,
// as strong as that posterior; hovering shows every passage's.
export function renderHeatmap(box, tokensEl, legend, answer) {
  const tokens = answer.tokens || [];
  const rows = answer.token_posteriors || [];
  box.hidden = !(tokens.length && rows.length);
  if (box.hidden) return;
  tokensEl.replaceChildren(...tokens.map((token, t) => {
    const row = rows[t] || [];
    let best = 0;
    row.forEach((p, k) => { if (p > row[best]) best = k; });
    const span = el("span", {
      text: token,
      title: row.map((p, k) => `[${k + 1}] ${p.toFixed(2)}`).join("  "),
    });
    span.style.background = passageColour(best + 1, 0.15 + 0.75 * (row[best] || 0));
    span.dataset.passage = String(best + 1);
    return span;
  }));
  legend.replaceChildren(...(answer.hits || []).map((hit, i) => {
    const swatch = el("span", { cls: "swatch" });
    swatch.style.background = passageColour(i + 1);
    return el("li", {}, [swatch, `[${i + 1}] ${hit.title || hit.doc_id}`]);
  }));
}

// Confidence, or the abstention with its withheld guess.
export function renderConfidence(confidenceEl, abstainedEl, guessEl, answer) {
  abstainedEl.hidden = !answer.abstained;
  guessEl.textContent = answer.abstained && answer.guess
    ? `Best guess, withheld: “${answer.guess}”` : "";
  const parts = [`${answer.mode}, ${answer.decoding} decoding`];
  if (answer.confidence !== null && answer.confidence !== undefined) {
    parts.push(`confidence ${answer.confidence.toFixed(2)}`);
  } else if (Object.keys(answer.signals || {}).length) { // grounded: it could have had one
    parts.push("no calibrated confidence for this generator");
  }
  confidenceEl.textContent = parts.join(" · ");
}
