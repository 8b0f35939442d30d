// The page's behaviour: selectors from /v1/vocabulary, ask (streamed), search, upload, documents.
import { Problem, apiKey, request, setApiKey, stream } from "./api.js";
import {
  el, renderConfidence, renderHeatmap, renderHits, renderRetrieval, renderSources,
} from "./render.js";

const $ = (id) => document.getElementById(id);
const JOB_POLL_MS = 300;
let vocabulary = null;
let asking = null; // the AbortController of the answer streaming in

function collection() {
  return encodeURIComponent($("collection").value);
}

function status(text) {
  $("status").textContent = text;
}

function showError(id, error) {
  const node = $(id);
  node.hidden = !error;
  node.textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : "";
}

function fill(select, names, chosen, labels = {}) {
  select.replaceChildren(...names.map((name) => {
    const option = el("option", { text: labels[name] || name });
    option.value = name;
    option.selected = name === chosen;
    return option;
  }));
}

// The decoding selector: "default" (named after the mode's default) and every decoding.
function fillDecodings() {
  const chosen = $("decoding").value;
  const fallback = vocabulary.default_decoding[$("mode").value];
  fill($("decoding"), ["", ...vocabulary.decodings], chosen,
       { "": `default (${fallback})` });
}

async function loadVocabulary() {
  vocabulary = await request("GET", "/v1/vocabulary");
  const d = vocabulary.defaults;
  fill($("mode"), vocabulary.generation_modes, d.mode);
  fillDecodings();
  fill($("ask-retrieval"), vocabulary.retrieval_modes, d.retrieval);
  fill($("search-retrieval"), vocabulary.retrieval_modes, d.retrieval);
  fill($("fusion"), vocabulary.fusions, d.fusion);
  for (const id of ["ask-k", "search-k"]) {
    $(id).max = vocabulary.limits.max_k;
    $(id).value = d.k;
  }
}

async function loadCollections() {
  const chosen = $("collection").value;
  try {
    const { collections } = await request("GET", "/v1/collections");
    const names = collections.map((c) => c.name);
    fill($("collection"), names, names.includes(chosen) ? chosen : names[0]);
    status(`${names.length} collection(s)`);
    await loadDocuments();
  } catch (error) {
    $("collection").replaceChildren();
    status(error.status === 401 ? "this server needs an API key: paste one above"
                                : error.message);
  }
}

// ---- ask ----

async function ask(event) {
  event.preventDefault();
  if (asking) asking.abort();
  asking = new AbortController();
  const body = {
    question: $("question").value,
    mode: $("mode").value,
    retrieval: $("ask-retrieval").value,
    k: Number($("ask-k").value),
    explain: $("explain").checked,
    stream: true,
  };
  if ($("decoding").value) body.decoding = $("decoding").value;
  const answerEl = $("answer");
  showError("ask-error", null);
  $("answer-box").hidden = false;
  $("abstained").hidden = true;
  $("heatmap").hidden = true;
  $("confidence").textContent = "";
  $("sources").replaceChildren();
  answerEl.textContent = "";
  answerEl.dataset.pieces = "0"; // text pieces streamed in so far
  delete answerEl.dataset.done;
  answerEl.classList.add("streaming");
  $("ask-button").disabled = true;
  try {
    await stream(`/v1/collections/${collection()}/ask`, body, (name, data) => {
      if (name === "retrieval") renderRetrieval($("sources"), data.hits, data.prior);
      else if (name === "token") {
        answerEl.textContent += data.text;
        answerEl.dataset.pieces = String(Number(answerEl.dataset.pieces || 0) + 1);
      }
      else if (name === "citation") markCited(data.n);
      else if (name === "final") showAnswer(data);
      else if (name === "error") showError("ask-error", new Problem(data.status, data));
    }, asking.signal);
  } catch (error) {
    if (error.name !== "AbortError") showError("ask-error", error);
  } finally {
    answerEl.classList.remove("streaming");
    $("ask-button").disabled = false;
  }
}

function markCited(n) {
  const item = $("sources").querySelector(`li[data-n="${n}"]`);
  if (item) item.classList.add("cited");
}

function showAnswer(answer) {
  const answerEl = $("answer");
  answerEl.textContent = answer.abstained ? "" : answer.text;
  answerEl.dataset.done = "true";
  renderConfidence($("confidence"), $("abstained"), $("guess"), answer);
  renderSources($("sources"), answer);
  renderHeatmap($("heatmap"), $("heat-tokens"), $("heat-legend"), answer);
}

// ---- search ----

async function search(event) {
  event.preventDefault();
  showError("search-error", null);
  try {
    const { hits } = await request("POST", `/v1/collections/${collection()}/search`, {
      body: {
        query: $("query").value,
        retrieval: $("search-retrieval").value,
        fusion: $("fusion").value,
        k: Number($("search-k").value),
      },
    });
    renderHits($("hits"), hits);
    if (!hits.length) $("hits").replaceChildren(el("p", { cls: "meta", text: "No passages." }));
  } catch (error) {
    showError("search-error", error);
  }
}

// ---- upload and documents ----

async function upload(event) {
  event.preventDefault();
  const form = new FormData();
  for (const file of $("files").files) form.append("files", file, file.name);
  showError("documents-error", null);
  $("upload-button").disabled = true;
  try {
    const job = await request("POST", `/v1/collections/${collection()}/documents`, { form });
    $("job").hidden = false;
    await followJob(job.id);
    $("upload-form").reset();
  } catch (error) {
    showError("documents-error", error);
  } finally {
    $("upload-button").disabled = false;
  }
}

// Poll the job until it is done or failed, showing its stage and progress.
async function followJob(id) {
  for (;;) {
    const job = await request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    showJob(job);
    if (job.status === "done" || job.status === "failed") break;
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
  await loadDocuments();
}

function showJob(job) {
  const { stage, done, total, files_done: filesDone } = job.progress;
  const bar = $("job-progress");
  if (total) {
    bar.max = total;
    bar.value = done;
  } else if (job.status === "done" || job.status === "failed") {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute("value"); // indeterminate while the stage has no total
  }
  const files = `${filesDone}/${job.files.length} file(s)`;
  $("job-status").textContent = job.status === "failed"
    ? `failed: ${job.error}` : `${job.status} · ${stage} · ${files}`;
  $("job-status").dataset.status = job.status;
  $("job-results").replaceChildren(...job.results.map((r) => el("li", {
    text: `${r.filename}: ${r.status}${r.reason ? ` (${r.reason})` : ""}`,
  })));
}

async function loadDocuments() {
  if (!$("collection").value) return;
  try {
    const { documents, total } = await request(
      "GET", `/v1/collections/${collection()}/documents?limit=500`);
    $("documents").tBodies[0].replaceChildren(...documents.map(documentRow));
    if (total > documents.length) {
      $("documents").tBodies[0].append(el("tr", {}, [el("td", {
        text: `… and ${total - documents.length} more`,
      })]));
    }
  } catch (error) {
    showError("documents-error", error);
  }
}

function documentRow(doc) {
  const remove = el("button", { text: "Delete", title: `delete ${doc.doc_id}` });
  remove.type = "button";
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Delete ${doc.doc_id}? It will never be retrieved again.`)) return;
    try {
      await request("DELETE",
                    `/v1/collections/${collection()}/documents/${encodeURIComponent(doc.doc_id)}`);
      await loadDocuments();
    } catch (error) {
      showError("documents-error", error);
    }
  });
  return el("tr", {}, [
    el("td", { text: doc.source || doc.doc_id, title: doc.doc_id }),
    el("td", { text: doc.title }),
    el("td", { text: String(doc.n_chunks) }),
    el("td", {}, [remove]),
  ]);
}

// ---- tabs and start ----

function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".tab")) panel.hidden = panel.id !== `tab-${name}`;
  if (name === "documents") loadDocuments();
}

async function start() {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", () => {
    setApiKey($("api-key").value.trim());
    loadCollections();
  });
  $("collection").addEventListener("change", loadDocuments);
  $("mode").addEventListener("change", fillDecodings);
  $("ask-form").addEventListener("submit", ask);
  $("search-form").addEventListener("submit", search);
  $("upload-form").addEventListener("submit", upload);
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  try {
    await loadVocabulary();
  } catch (error) {
    status(`cannot read /v1/vocabulary: ${error.message}`);
    return;
  }
  await loadCollections();
  document.body.dataset.ready = "true";
}

start();
